"""The debug reports page in a real Chromium, with a real ``sos report`` run by a worker.

An admin makes a report and watches it being made (the row's bar moves with the
tool's plugins), downloads it, renames and deletes it; and stops one being made.
Each step is checked against what the REST API and the disk say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi, RedisServer, wait_for

pytestmark = pytest.mark.browser


@pytest.fixture
def reports_kimchi(kimchi_factory: Any, redis_db: RedisServer) -> Kimchi:
    """Two sos plugins (a report in a second or two), each announced half a second late,
    so the report being made is on screen long enough to be seen and stopped."""
    return kimchi_factory(redis_url=redis_db.url,
                          extra={"debugreports": {"plugins": ["host", "kernel"]}},
                          env={"KIMCHI_FAULT_SLOW_REPORTS": "0.5"})


def open_reports(page: Any, kimchi: Kimchi) -> None:
    page.goto(kimchi.url + "/#/reports")
    page.wait_for_selector('#conn[data-state="live"]')
    page.wait_for_selector("#report-count:has-text('report')")


def row(page: Any, name: str) -> Any:
    return page.locator(f'#report-rows > tr[data-name="{name}"]')


def test_admin_makes_downloads_renames_and_deletes_a_report(
        page: Any, reports_kimchi: Kimchi, artifacts: Path, tmp_path: Path) -> None:
    k = reports_kimchi
    open_reports(page, k)
    assert page.locator("#report-empty").is_visible()
    page.get_by_label("Report name").fill("ui-report")
    page.get_by_role("button", name="Make report").click()

    pending = page.locator('#report-making > tr[data-name="ui-report"]')
    pending.wait_for()
    page.wait_for_function(
        "() => { const m = document.querySelector('#report-making .report-msg');"
        " return !!m && m.textContent.startsWith('Collecting'); }")
    assert pending.locator("progress").get_attribute("value") is not None
    page.screenshot(path=str(artifacts / "ui-report-being-made.png"))

    done = row(page, "ui-report")
    done.wait_for(timeout=60_000)
    assert pending.count() == 0
    listed = k.get("/debugreports/ui-report").json()
    assert page.locator("#report-count").inner_text() == "1 report"

    with page.expect_download() as info:
        done.get_by_role("link", name="Download ui-report").click()
    download = info.value
    assert download.suggested_filename == "ui-report.tar.xz"
    saved = tmp_path / "got.tar.xz"
    download.save_as(saved)
    assert saved.stat().st_size == listed["size"]
    assert saved.read_bytes()[:6] == b"\xfd7zXZ\x00"

    done.get_by_role("button", name="Rename ui-report").click()
    page.get_by_label("New name").fill("case-0815")
    page.get_by_role("button", name="Rename", exact=True).click()
    row(page, "case-0815").wait_for()
    assert row(page, "ui-report").count() == 0
    assert [r["name"] for r in k.get("/debugreports").json()] == ["case-0815"]
    # focus comes back to the renamed report's Rename button
    page.wait_for_function("() => document.activeElement.getAttribute('aria-label')"
                           " === 'Rename case-0815'")

    row(page, "case-0815").get_by_role("button", name="Delete case-0815").click()
    dialog = page.locator("#confirm-dialog")
    assert "case-0815" in dialog.inner_text()
    dialog.get_by_role("button", name="Delete").click()
    page.locator("#report-empty").wait_for()
    assert k.get("/debugreports").json() == []
    assert not list((k.dir / "state" / "debugreports").glob("*.tar*"))


def test_a_report_being_made_can_be_stopped(
        page: Any, kimchi_factory: Any, redis_db: RedisServer, problems: Any) -> None:
    k = kimchi_factory(redis_url=redis_db.url,  # sos's default set: seconds of work
                       env={"KIMCHI_FAULT_SLOW_REPORTS": "0.2"})
    open_reports(page, k)
    page.get_by_role("button", name="Make report").click()  # unnamed: report-<time>
    pending = page.locator("#report-making > tr")
    pending.wait_for()
    name = pending.get_attribute("data-name")
    assert name and name.startswith("report-")
    page.wait_for_function(
        "() => { const m = document.querySelector('#report-making .report-msg');"
        " return !!m && m.textContent.startsWith('Collecting'); }")
    page.get_by_role("button", name=f"Stop making {name}").click()
    pending.wait_for(state="detached", timeout=15_000)
    task = k.get("/tasks?kind=debugreport.collect").json()[0]
    assert task["status"] == "cancelled"
    assert k.get("/debugreports").json() == []
    assert page.locator("#report-empty").is_visible()
    wait_for(lambda: not list((k.dir / "state" / "debugreports" / ".work").glob("*")),
             timeout=5, what="the working folder to be removed")


def test_bad_name_is_explained_without_a_request(page: Any, reports_kimchi: Kimchi) -> None:
    open_reports(page, reports_kimchi)
    page.get_by_label("Report name").fill("../secrets")
    page.get_by_role("button", name="Make report").click()
    error = page.locator("#report-error")
    error.wait_for()
    assert "letters, digits" in error.inner_text()
    assert page.get_by_label("Report name").get_attribute("aria-invalid") == "true"
    assert reports_kimchi.get("/tasks?kind=debugreport.collect").json() == []
