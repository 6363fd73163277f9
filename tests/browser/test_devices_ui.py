"""A VM's devices from the VM list, in a real Chromium, on libvirt's test driver: a CD-ROM
attached from the ISO library, its disc ejected, the drive detached; an interface added
and removed — each step checked against the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi
from tests.isofactory import make_iso

pytestmark = pytest.mark.browser



def test_admin_attaches_a_cd_and_an_interface(page: Any, idle_kimchi: Kimchi, tmp_path: Path,
                                              problems: Any, artifacts: Path) -> None:
    problems.allowed.append("status of 400")  # Chromium logs the refused request itself
    k = idle_kimchi
    assert k.post("/vms/test/poweroff").status_code == 200
    iso = make_iso(tmp_path / "install.iso", "Fedora-WS-Live-39-1-5")
    page.goto(k.url + "/#/vms")
    page.wait_for_selector('#conn[data-state="live"]')
    row = page.locator('#vm-list > li[data-name="test"]')
    row.get_by_role("button", name="Devices of test").click()
    dialog = page.locator("#dev-dialog")
    dialog.wait_for()
    page.locator('#dev-storages > li[data-dev="vda"]').wait_for()

    # a disk needs a file: said before any request
    page.get_by_label("Attach", exact=True).select_option("disk")
    dialog.get_by_role("button", name="Attach", exact=True).click()
    assert "path of the disk image" in page.locator("#dev-error").inner_text()

    page.get_by_label("Attach", exact=True).select_option("cdrom")
    page.get_by_label("File", exact=True).fill(str(iso))
    dialog.get_by_role("button", name="Attach", exact=True).click()
    cd = page.locator('#dev-storages > li[data-dev="hda"]')
    cd.wait_for()
    assert str(iso) in cd.inner_text()
    assert k.get("/vms/test/storages/hda").json()["path"] == str(iso)
    page.screenshot(path=str(artifacts / "ui-devices.png"))

    cd.get_by_role("button", name="Eject the disc of hda").click()
    page.wait_for_function("() => document.querySelector('#dev-storages > li[data-dev=\"hda\"]')"
                           "?.textContent.includes('no disc')")
    assert k.get("/vms/test/storages/hda").json()["path"] == ""
    cd.get_by_role("button", name="Detach hda").click()
    cd.wait_for(state="detached")
    assert [s["dev"] for s in k.get("/vms/test/storages").json()] == ["vda"]

    dialog.get_by_label("Network", exact=True).select_option("default")
    dialog.get_by_label("Model").select_option("e1000")
    dialog.get_by_role("button", name="Add", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('#dev-ifaces > li').length === 2")
    added = [i for i in k.get("/vms/test/ifaces").json() if i["model"] == "e1000"]
    assert len(added) == 1
    page.locator(f'#dev-ifaces > li[data-mac="{added[0]["mac"]}"]').get_by_role(
        "button", name=f"Remove interface {added[0]['mac']}").click()
    page.wait_for_function("() => document.querySelectorAll('#dev-ifaces > li').length === 1")
    assert len(k.get("/vms/test/ifaces").json()) == 1
    dialog.get_by_role("button", name="Close").click()
    dialog.wait_for(state="hidden")
