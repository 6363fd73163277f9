"""VM settings and a template's hardware in a real Chromium, against the real daemon on
libvirt's test driver: the Edit dialog changes autostart, the boot order, the CPU topology
and the NIC model, and the VM shows them; what the host cannot give (the test driver has
no UEFI, no TPM) is not offered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_vms_ui import item, open_vms, press
from tests.conftest import Kimchi
from tests.isofactory import make_iso

pytestmark = pytest.mark.browser


def boot_rows(page: Any) -> list[tuple[str, bool]]:
    """The boot order list as shown: (device, checked), in order."""
    return [(r.locator("label").inner_text(), r.locator("input").is_checked())
            for r in page.locator("#vm-edit-boot li").all()]


def test_edit_autostart_boot_order_topology_and_nic_model(page: Any, idle_kimchi: Kimchi,
                                                           problems: Any) -> None:
    kimchi = idle_kimchi
    open_vms(page, kimchi)
    item(page, "test").wait_for()
    press(page, "test", "Power off", "Shut off")
    item(page, "test").get_by_role("button", name="Edit test").click()
    dialog = page.locator("#vm-edit-dialog")
    dialog.wait_for(state="visible")

    # as the VM is: boots from its disk only, no autostart, libvirt's topology, one NIC
    assert boot_rows(page) == [("Hard disk", True), ("CD-ROM", False),
                               ("Network (PXE)", False)]
    assert not page.locator("#vm-edit-autostart").is_checked()
    assert page.locator("#vm-edit-sockets").input_value() == ""
    nic = kimchi.get("/vms/test").json()["interfaces"][0]["model"]
    assert page.locator("#vm-edit-nic").input_value() == (nic or "")
    # the test driver gives neither UEFI nor a TPM: not offered
    assert page.locator("#vm-edit-firmware-field").is_hidden()
    assert page.locator("#vm-edit-tpm-field").is_hidden()

    # a topology that cannot hold the vCPUs: said before anything is sent
    page.locator("#vm-edit-sockets").fill("1")
    page.locator("#vm-edit-cores").fill("1")
    page.locator("#vm-edit-threads").fill("1")
    dialog.get_by_role("button", name="Save").click()
    error = page.locator("#vm-edit-error")
    error.wait_for()
    assert "more than sockets × cores × threads" in error.inner_text()

    page.locator("#vm-edit-autostart").check()
    page.locator("#vm-edit-boot-cdrom").check()
    page.get_by_role("button", name="Move CD-ROM up").click()  # CD-ROM, then the disk
    assert boot_rows(page)[:2] == [("CD-ROM", True), ("Hard disk", True)]
    page.locator("#vm-edit-cores").fill("2")
    page.locator("#vm-edit-nic").select_option("e1000e")
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")

    vm = kimchi.get("/vms/test").json()
    assert vm["autostart"] is True and vm["boot"] == ["cdrom", "hd"], vm
    assert vm["cpu_topology"] == {"sockets": 1, "cores": 2, "threads": 1}, vm
    assert [i["model"] for i in vm["interfaces"]] == ["e1000e"], vm

    # opened again, the dialog shows what the VM now has
    item(page, "test").get_by_role("button", name="Edit test").click()
    dialog.wait_for(state="visible")
    assert page.locator("#vm-edit-autostart").is_checked()
    assert boot_rows(page)[:2] == [("CD-ROM", True), ("Hard disk", True)]
    assert [page.locator(f"#vm-edit-{k}").input_value()
            for k in ("sockets", "cores", "threads")] == ["1", "2", "1"]
    assert page.locator("#vm-edit-nic").input_value() == "e1000e"
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="hidden")


def test_a_templates_hardware_shows_its_os_defaults(page: Any, idle_kimchi: Kimchi,
                                                    tmp_path: Path) -> None:
    kimchi = idle_kimchi
    iso = tmp_path / "iso" / "fedora.iso"
    make_iso(iso, "Fedora-WS-Live-39-1-5")
    r = kimchi.post("/templates", {"name": "f39", "source_media": {"type": "disk",
                                                                   "path": str(iso)}})
    assert r.status_code == 201, r.text
    page.goto(kimchi.url + "/#/templates")
    page.wait_for_selector('#conn[data-state="live"]')
    row = page.locator('#tmpl-rows tr[data-name="f39"]')
    row.wait_for()
    assert row.locator(".tmpl-hw-text").inner_text() == "q35 · BIOS"
    # the New template form offers no UEFI, Secure Boot or TPM on this host
    assert page.locator("#tmpl-firmware-field").is_hidden()
    assert page.locator("#tmpl-tpm-field").is_hidden()

    row.get_by_role("button", name="Hardware of f39").click()
    dialog = page.locator("#tmpl-hw-dialog")
    dialog.wait_for(state="visible")
    options = page.locator("#tmpl-hw-machine option").all_inner_texts()
    assert options == ["q35 (OS default)", "pc (i440FX)"], options
    assert "fedora 39" in page.locator("#tmpl-hw-text").inner_text()
    page.locator("#tmpl-hw-machine").select_option("pc")
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")
    assert kimchi.get("/templates/f39").json()["machine"] == "pc"
    page.wait_for_function(
        "() => document.querySelector('#tmpl-rows tr[data-name=\"f39\"] .tmpl-hw-text')"
        ".textContent === 'pc · BIOS'")
