"""The degraded banner in a real Chromium: what is wrong, why and how to fix it, for
whoever opens the page, live; and the debug report an admin collects from it.

The default network is taken away from a running kimchid (libvirt's test driver, through
the REST API as an admin would); a page already open shows it at once, a page opened
afterwards shows it from the start, and both see it go when the network is made again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi, RedisServer, wait_for
from tests.defaults import make_default_network, remove_default_network

pytestmark = pytest.mark.browser

PROBLEM = '#banner-problems > li[data-problem="network-default"]'


@pytest.fixture
def banner_kimchi(kimchi_factory: Any, redis_db: RedisServer) -> Kimchi:
    """Workers for the debug report (two quick sos plugins, each a little late: time to see
    the report's progress in the banner)."""
    return kimchi_factory(redis_url=redis_db.url,
                          extra={"debugreports": {"plugins": ["host", "kernel"]}},
                          env={"KIMCHI_FAULT_SLOW_REPORTS": "0.3"})


def open_live(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector('#conn:is([data-state="live"], [data-state="degraded"])')


def test_a_missing_default_network_is_shown_to_every_page_with_its_fix(
        page: Any, chromium: Any, banner_kimchi: Kimchi, artifacts: Path) -> None:
    k = banner_kimchi
    open_live(page, k.url + "/#/vms")
    assert page.locator("#banner").is_hidden()

    remove_default_network(k)
    try:
        # the page that was open: live, without a reload
        problem = page.locator(PROBLEM)
        problem.wait_for(timeout=20_000)
        assert page.locator("#banner").is_visible()
        assert page.locator("#conn").get_attribute("data-state") == "degraded"
        assert "The default network" in problem.locator(".banner-what").inner_text()
        assert problem.locator(".banner-reason").inner_text().strip()
        fix = problem.locator(".banner-fix").inner_text()
        assert "default" in fix and ("Networks page" in fix or "restart kimchid" in fix), fix
        assert page.get_by_role("alert").filter(has_text="degraded").count() == 1
        page.screenshot(path=str(artifacts / "ui-banner-network.png"))

        # a page opened afterwards: the banner from the start (GET /health's problems)
        late = page.context.new_page()
        late.goto(k.url + "/#/isos")
        late.locator(PROBLEM).wait_for(timeout=10_000)
        assert late.locator("#banner-title").inner_text().startswith("kimchi is degraded")
        assert late.locator(PROBLEM).locator(".banner-fix").inner_text() == fix
        late.close()
    finally:
        make_default_network(k)

    # made again: the banner goes, on its own
    page.wait_for_selector("#banner", state="hidden", timeout=20_000)
    page.wait_for_selector('#conn[data-state="live"]')
    assert page.locator("#banner-problems > li").count() == 0


def test_an_admin_collects_a_debug_report_from_the_banner(
        page: Any, banner_kimchi: Kimchi, artifacts: Path, tmp_path: Path) -> None:
    k = banner_kimchi
    open_live(page, k.url + "/#/vms")
    remove_default_network(k)
    try:
        page.locator(PROBLEM).wait_for(timeout=20_000)
        make = page.get_by_role("button", name="Collect a debug report")
        make.click()
        # its progress in the banner, then the download
        page.wait_for_function(
            "() => document.getElementById('banner-report-status').textContent.startsWith('Collecting')")
        assert make.is_disabled()
        link = page.get_by_role("link", name="Download the report")
        link.wait_for(timeout=90_000)
        assert "is ready" in page.locator("#banner-report-status").inner_text()
        page.screenshot(path=str(artifacts / "ui-banner-report.png"))
        reports = k.get("/debugreports").json()
        assert len(reports) == 1
        name = reports[0]["name"]
        assert link.get_attribute("href") == f"/debugreports/{name}/content"
        with page.expect_download() as dl:
            link.click()
        saved = tmp_path / "report.tar.xz"
        dl.value.save_as(saved)
        assert saved.stat().st_size == reports[0]["size"]
        # the same task is in the panel
        assert page.locator('#task-list > li.task[data-status="finished"]').count() >= 1
    finally:
        make_default_network(k)


def test_the_login_page_and_a_user_see_the_problem_but_no_report_button(
        page: Any, banner_kimchi: Kimchi, pam_users: Any, problems: Any) -> None:
    problems.allowed.append("status of 401")  # GET /session before signing in
    k = banner_kimchi
    remove_default_network(k)
    try:
        wait_for(lambda: any(p["id"] == "network-default" for p in k.get("/health").json()["problems"]),
                 what="kimchid to notice")
        page.anonymous = True
        page.goto(k.url + "/")
        # the login page already says what is wrong (GET /health needs no login)
        page.locator(PROBLEM).wait_for(timeout=10_000)
        assert page.locator("#login").is_visible()
        assert page.locator("#banner-report").is_hidden()
        page.get_by_label("User name").fill(pam_users.user.name)
        page.get_by_label("Password", exact=True).fill(pam_users.user.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector('#conn[data-state="degraded"]', timeout=20_000)
        assert page.locator("#account-role").inner_text() == "User"
        assert page.locator(PROBLEM).is_visible()
        assert page.locator("#banner-report").is_hidden()
    finally:
        make_default_network(k)
