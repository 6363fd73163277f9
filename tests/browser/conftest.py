"""A real Chromium (Debian's, driven by Playwright's sync API) for the UI tests.

One browser per session (starting Chromium is the slow part); a fresh context and
page per test, at 1280x800. The page fixture records console errors, uncaught
exceptions and Content-Security-Policy violations: a test fails if the UI logged any.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ARTIFACTS, ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# axe-core, the accessibility checker the tests inject into pages: ./kimchi.sh test installs
# it there, at the version pinned in kimchi.sh (AXE_CORE_VERSION).
AXE_JS = ROOT / ".cache" / "node" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's source, to run in a page with ``page.evaluate(axe_source)``.

    Missing, the tests that need it fail when run by ./kimchi.sh test (which installs it),
    and are skipped when pytest is run by hand.
    """
    if not AXE_JS.is_file():
        if os.environ.get("KIMCHI_TEST_RUNNER") == "kimchi.sh":
            pytest.fail(f"axe-core is missing at {AXE_JS}, though ./kimchi.sh test installs it")
        pytest.skip(f"axe-core is not installed at {AXE_JS}: ./kimchi.sh test installs it")
    return AXE_JS.read_text()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots are kept after the run (tests/conftest.py ARTIFACTS)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageProblems:
    """What went wrong in the page: console errors, uncaught exceptions, CSP violations."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.allowed: list[str] = []  # substrings of expected errors (e.g. a failed reconnect)

    def add(self, text: str) -> None:
        if not any(a in text for a in self.allowed):
            self.items.append(text)


@pytest.fixture
def problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def page(chromium: Any, problems: PageProblems, pam_users: Any) -> Iterator[Any]:
    """A Chromium page signed in as the test admin (a session cookie from ``POST /login``
    for each daemon it opens), as a user who logged in through the login page would be."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800},
                                   device_scale_factor=1, reduced_motion="no-preference")
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    signed_in: set[str] = set()
    goto = pg.goto

    def goto_signed_in(url: str, **kw: Any) -> Any:
        origin = "/".join(url.split("/")[:3])
        if origin not in signed_in and not getattr(pg, "anonymous", False):
            r = requests.post(origin + "/login", timeout=20, json={
                "username": pam_users.admin.name, "password": pam_users.admin.password})
            assert r.status_code == 200, r.text
            context.add_cookies([{"name": "kimchi_session", "url": origin,
                                  "value": r.cookies["kimchi_session"]}])
            signed_in.add(origin)
        return goto(url, **kw)

    pg.goto = goto_signed_in

    def console(message: Any) -> None:
        if message.type == "error":
            where = (message.location or {}).get("url") or ""
            if where.endswith("/screenshot") and "status of 404" in message.text:
                return  # a thumbnail of a VM stopped meanwhile: the page expects it
            problems.add(f"console: {message.text}" + (f" ({where})" if where else ""))

    pg.on("console", console)
    pg.on("pageerror", lambda e: problems.add(f"exception: {e}"))
    yield pg
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Close the page as soon as the test body ends, then fail on what the page logged.

    Done here rather than in the fixture's teardown: the daemon fixtures are torn down
    first, and the page would log its reconnection attempts to a stopped daemon.
    """
    result = yield
    funcargs = getattr(item, "funcargs", {})
    pg = funcargs.get("page")
    if pg is not None:
        pg.context.close()
        found = funcargs.get("problems")
        if found is not None and found.items:
            pytest.fail("the page logged errors:\n" + "\n".join(found.items), pytrace=False)
    return result


@pytest.fixture
def idle_kimchi(kimchi_factory: Any, redis_db: Any) -> Any:
    """A daemon without workers (quicker to start): pages that queue no worker job."""
    return kimchi_factory(redis_url=redis_db.url, workers=0)
