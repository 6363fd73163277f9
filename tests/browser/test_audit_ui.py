"""The Audit log page in a real Chromium against a real daemon (libvirt's test driver):
changes made by an admin and by a user through the REST API appear in the table, newest
first; the user and time filters narrow it; the page passes axe; a user who is no admin
neither sees the page in the navigation nor reaches it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.browser.test_a11y import AXE_RUN, FAILING
from tests.conftest import Kimchi, wait_for

pytestmark = pytest.mark.browser


def rows(page: Any) -> Any:
    return page.locator("#audit-rows > tr")


def cells(page: Any, column: int) -> list[str]:
    texts: list[str] = page.locator(f"#audit-rows > tr > td:nth-child({column})") \
        .all_inner_texts()
    return texts


def test_admin_reads_the_audit_log_and_narrows_it_by_user_and_time(
        page: Any, idle_kimchi: Kimchi, pam_users: Any, axe_source: str,
        artifacts: Path) -> None:
    k = idle_kimchi
    admin, user = pam_users.admin, pam_users.user
    # changes by both: the admin gives the VM to the user, who stops it; a failed login
    assert k.http.put(k.url + "/vms/test", json={"users": [user.name]}, timeout=10).ok
    r = requests.post(k.url + "/vms/test/poweroff", auth=(user.name, user.password),
                      timeout=20)
    assert r.status_code == 200, r.text
    bad = requests.post(k.url + "/login", json={"username": user.name, "password": "no"},
                        timeout=20)
    assert bad.status_code == 401
    wait_for(lambda: len(k.get("/auditlog").json()) >= 3, what="three entries")

    page.goto(k.url + "/#/audit")
    page.wait_for_selector('#conn[data-state="live"]')
    page.wait_for_selector("#audit:not([hidden])")
    page.wait_for_selector("#audit-rows > tr")
    assert page.locator("#nav-audit").is_visible()
    assert rows(page).count() >= 3
    who = cells(page, 2)
    changes = cells(page, 4)
    results = cells(page, 6)
    listed = list(zip(who, changes, results, strict=True))
    # newest first (the page's own sign-in as the admin is newer still)
    failed = listed.index((user.name, "POST /login", "401 KCHAUTH0001E"))
    stopped = listed.index((user.name, "POST /vms/test/poweroff", "200"))
    given = listed.index((admin.name, "PUT /vms/test", "200"))
    assert failed < stopped < given
    assert cells(page, 3)[stopped] == "127.0.0.1" and cells(page, 5)[stopped] == "/vms/test"
    assert page.locator("#audit-count").inner_text() == f"{rows(page).count()} changes"

    # one user's changes only
    page.get_by_label("Audit user").fill(admin.name)
    page.get_by_role("button", name="Show changes").click()
    page.wait_for_function(
        "(name) => { const c = [...document.querySelectorAll('#audit-rows > tr > "
        "td:nth-child(2)')]; return c.length > 0 && c.every((td) => td.textContent === "
        "name); }", arg=admin.name)
    assert "PUT /vms/test" in cells(page, 4)
    axe_check(page, axe_source, artifacts)
    page.screenshot(path=str(artifacts / "ui-audit.png"))

    # a time window with nothing in it: the empty note; Everything brings all back
    page.get_by_label("Audit user").fill("")
    page.get_by_label("From", exact=True).fill("2099-01-01T00:00:00")
    page.get_by_role("button", name="Show changes").click()
    page.locator("#audit-empty").wait_for(state="visible")
    assert rows(page).count() == 0
    assert page.locator("#audit-count").inner_text() == "0 changes"
    page.get_by_label("From", exact=True).fill("")
    page.get_by_label("Until", exact=True).fill(datetime.now().strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_role("button", name="Show changes").click()
    page.wait_for_selector("#audit-rows > tr")
    assert page.locator("#audit-empty").is_hidden()
    page.get_by_role("button", name="Everything").click()
    wait_for(lambda: rows(page).count() >= 3, what="every change listed again")
    assert page.get_by_label("Until", exact=True).input_value() == ""


def test_a_user_neither_sees_nor_reaches_the_audit_page(
        chromium: Any, idle_kimchi: Kimchi, pam_users: Any) -> None:
    k = idle_kimchi
    user = pam_users.user
    r = requests.post(k.url + "/login", json={"username": user.name,
                                              "password": user.password}, timeout=20)
    assert r.status_code == 200
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    try:
        context.add_cookies([{"name": "kimchi_session", "url": k.url,
                              "value": r.cookies["kimchi_session"]}])
        pg = context.new_page()
        pg.set_default_timeout(15_000)
        pg.goto(k.url + "/#/audit")
        pg.wait_for_selector('#conn[data-state="live"]')
        pg.wait_for_selector(".page:not([hidden])")
        assert pg.locator("#nav-audit").is_hidden()
        assert pg.locator("#audit").is_hidden()
        assert rows(pg).count() == 0  # never asked: the server would refuse (403)
    finally:
        context.close()


def axe_check(page: Any, axe_source: str, artifacts: Path) -> None:
    """axe-core over the page (as tests/browser/test_a11y.py does for the others)."""
    page.evaluate(axe_source + "\n;void 0")
    violations = page.evaluate(AXE_RUN, None)
    (artifacts / "a11y-audit.json").write_text(str(violations))
    bad = [f"{v['id']} ({v['impact']}): {v['help']} {[n['target'] for n in v['nodes'][:5]]}"
           for v in violations if v["impact"] in FAILING]
    assert not bad, "\n".join(bad)
