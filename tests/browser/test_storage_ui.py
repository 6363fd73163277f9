"""The storage page in a real Chromium, on libvirt's test driver: pools made, used,
stopped and forgotten, volumes made and deleted, each step checked against the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi

pytestmark = pytest.mark.browser



def pool_row(page: Any, name: str) -> Any:
    return page.locator(f'#pool-rows > tr[data-name="{name}"]')


def test_admin_makes_a_pool_and_a_volume_then_forgets_them(
        page: Any, idle_kimchi: Kimchi, tmp_path: Path, artifacts: Path, problems: Any) -> None:
    problems.allowed.append("status of 400")  # Chromium logs the refused requests itself
    k = idle_kimchi
    page.goto(k.url + "/#/storage")
    page.wait_for_selector('#conn[data-state="live"]')
    pool_row(page, "default-pool").wait_for()
    page.evaluate("() => { window.__noReload = true; }")
    assert "free of 100 GiB" in pool_row(page, "default-pool").inner_text()

    # a relative folder is explained before any request
    page.get_by_label("Pool name").fill("fast")
    page.get_by_label("Pool folder").fill("relative/path")
    page.get_by_role("button", name="Make pool").click()
    page.locator("#pool-error:not([hidden])").wait_for()
    assert "absolute path" in page.locator("#pool-error").inner_text()
    assert k.get("/storagepools/fast").status_code == 404

    page.get_by_label("Pool folder").fill(str(tmp_path / "fast"))
    page.get_by_role("button", name="Make pool").click()
    row = pool_row(page, "fast")
    row.wait_for()
    assert "Active" in row.inner_text() and str(tmp_path / "fast") in row.inner_text()
    assert k.get("/storagepools/fast").json()["state"] == "active"

    row.get_by_role("button", name="Volumes of fast").click()
    volumes = page.locator("#volumes")
    volumes.wait_for()
    assert volumes.locator("h2").inner_text() == "Volumes of fast"
    page.locator("#volume-empty").wait_for()
    page.get_by_label("Volume name").fill("data.qcow2")
    page.get_by_label("Size (GiB)").fill("3")
    page.get_by_role("button", name="Make volume").click()
    vol = page.locator('#volume-rows > tr[data-name="data.qcow2"]')
    vol.wait_for()
    assert "3.0 GiB" in vol.inner_text() and "qcow2" in vol.inner_text()
    got = k.get("/storagepools/fast/storagevolumes/data.qcow2").json()
    assert got["capacity"] == 3 * 1024 ** 3 and got["format"] == "qcow2"
    page.screenshot(path=str(artifacts / "ui-storage.png"))

    # a taken name: the server's reason in the form
    page.get_by_label("Volume name").fill("data.qcow2")
    page.get_by_role("button", name="Make volume").click()
    page.locator("#volume-error:not([hidden])").wait_for()
    assert "KCHVOL0001E" in page.locator("#volume-error").inner_text()

    vol.get_by_role("button", name="Delete data.qcow2").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Delete").click()
    vol.wait_for(state="detached")
    assert k.get("/storagepools/fast/storagevolumes").json() == []

    # an active pool offers no Delete; deactivated, it does
    assert row.get_by_role("button", name="Delete fast").count() == 0
    row.get_by_role("button", name="Deactivate fast", exact=True).click()
    row.get_by_role("button", name="Activate fast", exact=True).wait_for()
    assert volumes.is_hidden()  # a stopped pool has no volumes to show
    page.wait_for_timeout(400)  # a listing asked for before the change never brings it back
    assert volumes.is_hidden() and row.get_by_role("button", name="Activate fast", exact=True).count() == 1
    row.get_by_role("button", name="Delete fast").click()
    dialog = page.locator("#confirm-dialog")
    assert "Its files stay" in dialog.inner_text()
    dialog.get_by_role("button", name="Forget").click()
    row.wait_for(state="detached")
    assert k.get("/storagepools/fast").status_code == 404
    assert page.evaluate("window.__noReload") is True  # all of it without a reload
