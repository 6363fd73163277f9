"""Snapshots from the VM list, in a real Chromium, on libvirt's test driver: taken as
tasks, listed in the VM's dialog, reverted to and deleted behind confirmations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi

pytestmark = pytest.mark.browser



def snap(page: Any, name: str) -> Any:
    return page.locator(f'#snap-list > li[data-name="{name}"]')


def test_admin_takes_reverts_and_deletes_snapshots(page: Any, idle_kimchi: Kimchi,
                                                   artifacts: Path, problems: Any) -> None:
    problems.allowed.append("status of 400")  # Chromium logs the refused request itself
    k = idle_kimchi
    page.goto(k.url + "/#/vms")
    page.wait_for_selector('#conn[data-state="live"]')
    row = page.locator('#vm-list > li[data-name="test"]')
    row.get_by_role("button", name="Snapshots of test").click()
    dialog = page.locator("#snap-dialog")
    dialog.wait_for()
    assert dialog.get_by_role("heading").inner_text() == "Snapshots of test"
    page.locator("#snap-empty").wait_for()

    page.get_by_label("Snapshot name").fill("before")
    dialog.get_by_role("button", name="Take snapshot").click()
    first = snap(page, "before")
    first.wait_for()
    page.wait_for_function("() => document.querySelector('#snap-list > li[data-name=\"before\"]')"
                           "?.classList.contains('is-current')")
    assert "the VM running" in first.inner_text()
    page.get_by_label("Snapshot name").fill("after")
    dialog.get_by_role("button", name="Take snapshot").click()
    snap(page, "after").wait_for()
    page.wait_for_function("() => document.querySelector('#snap-list > li[data-name=\"after\"]')"
                           "?.classList.contains('is-current')")
    assert [s["name"] for s in k.get("/vms/test/snapshots").json()] == ["before", "after"]
    kinds = page.locator("#task-list > li.task .task-kind").all_inner_texts()
    assert kinds.count("Snapshot") == 2
    page.screenshot(path=str(artifacts / "ui-snapshots.png"))

    # a taken name: the server's reason in the dialog
    page.get_by_label("Snapshot name").fill("before")
    dialog.get_by_role("button", name="Take snapshot").click()
    page.locator("#snap-error:not([hidden])").wait_for()
    assert "KCHSNAP0001E" in page.locator("#snap-error").inner_text()

    first.get_by_role("button", name="Revert test to before").click()
    confirm = page.locator("#confirm-dialog")
    assert "goes back to “before”" in confirm.inner_text()
    confirm.get_by_role("button", name="Revert").click()
    page.wait_for_function("() => document.querySelector('#snap-list > li[data-name=\"before\"]')"
                           "?.classList.contains('is-current')")
    assert k.get("/vms/test/snapshots/current").json()["name"] == "before"

    snap(page, "after").get_by_role("button", name="Delete snapshot after").click()
    confirm.get_by_role("button", name="Delete").click()
    snap(page, "after").wait_for(state="detached")
    assert [s["name"] for s in k.get("/vms/test/snapshots").json()] == ["before"]
    dialog.get_by_role("button", name="Close").click()
    dialog.wait_for(state="hidden")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Snapshots of test"
