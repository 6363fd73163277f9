"""Moving VMs between hosts, and making one on another host, from the VMs page, in a real
Chromium: a real QEMU guest migrated between two namespaced hosts (tests/qemu_hosts.py,
the guest set up as tests/integration/test_migration.py does), and the New VM dialog's
Host select on the simulated cluster (tests/cluster.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster, add_host, cluster3, multi  # noqa: F401  (fixtures)
from tests.conftest import Kimchi, wait_for
from tests.integration.test_migration import GUEST, _guest, _names, shared  # noqa: F401
from tests.qemu_hosts import QemuHosts, qemu_hosts, virsh  # noqa: F401  (a fixture)

pytestmark = pytest.mark.browser

NAME = "uimover"
# Keeps what the page says to screen readers (#announcer), each said once and soon replaced.
SAID = """() => {
  window.__said = [];
  const a = document.getElementById('announcer');
  new MutationObserver(() => { if (a.textContent) window.__said.push(a.textContent); })
    .observe(a, { subtree: true, childList: true, characterData: true });
}"""


def open_vms(page: Any, k: Kimchi) -> None:
    page.goto(f"{k.url}/#/vms")
    page.wait_for_selector("#conn:not([data-state='connecting'])", state="attached")
    page.wait_for_selector("#vms:not([hidden])")


def row(page: Any, name: str, host: str = "") -> Any:
    """The row of VM ``name`` (of ``host``: rows say their host with several hosts)."""
    on = f'[data-host="{host}"]' if host else ""
    return page.locator(f'#vm-list > li[data-name="{name}"]{on}')


def open_migrate(page: Any, name: str, host: str) -> Any:
    button = row(page, name, host).get_by_role("button", name=f"Migrate {name} on {host}")
    button.wait_for()
    wait_for(button.is_enabled, what="the Migrate button")
    button.click()
    dialog = page.locator("#vm-migrate-dialog")
    dialog.wait_for(state="visible")
    return dialog


def _drop(uri: str, name: str) -> None:
    for step in ("destroy", "undefine"):
        try:
            virsh(uri, step, name)
        except RuntimeError:
            pass  # not running, or not there


def test_a_running_guest_is_moved_to_another_host_from_the_migrate_dialog(
        page: Any, problems: Any, kimchi_factory: Any, redis_db: Any,
        qemu_hosts: QemuHosts, shared: Path, artifacts: Path) -> None:  # noqa: F811
    problems.allowed.append("status of 400")  # Chromium logs the refused POST itself
    h0, h1 = qemu_hosts.hosts
    _guest(h0.uri, shared, NAME)
    try:
        k = kimchi_factory(redis_url=redis_db.url, workers=0,
                           extra={"libvirt": {"uri": h0.uri}})
        r = k.post("/hosts", {"name": "h1", "uri": h1.uri}, timeout=30)
        assert r.status_code == 201, r.text
        wait_for(lambda: k.get(f"/vms/{NAME}").json().get("state") == "running",
                 what="the guest")
        wait_for(lambda: any(h["name"] == "h1" and h["state"] == "connected"
                             for h in k.get("/hosts").json()), what="h1 connected")

        open_vms(page, k)
        page.evaluate(SAID)
        item = row(page, NAME, "local")
        item.locator(".vm-host").filter(has_text="on local").wait_for()

        # the name is taken on h1 (a shut-off domain of its own): refused, with the reason
        taken = shared / "taken.xml"
        taken.write_text(GUEST.format(name=NAME, disk=shared / "other.qcow2"))
        virsh(h1.uri, "define", str(taken))
        row(page, NAME, "h1").wait_for()  # a row of its own
        dialog = open_migrate(page, NAME, "local")
        assert page.locator("#vm-migrate-dialog h2").inner_text() == f"Migrate {NAME}"
        # every other connected host, not its own
        assert dialog.locator("#vm-migrate-host option").all_inner_texts() == ["h1"]
        assert page.get_by_label("Live").is_checked()
        assert page.get_by_label("Disks").locator("option").all_inner_texts() == [
            "Automatic", "Keep on shared storage", "Copy disks"]
        page.get_by_label("Target host").select_option("h1")
        dialog.get_by_role("button", name="Start").click()
        error = page.locator("#vm-migrate-error")
        error.wait_for()
        text = " ".join(error.inner_text().split())
        assert f"Cannot move virtual machine {NAME} to host h1" in text, text
        assert dialog.is_visible()
        virsh(h1.uri, "undefine", NAME)
        row(page, NAME, "h1").wait_for(state="detached")

        # moved live: the dialog closes, the row says its new host, it runs there
        dialog.get_by_role("button", name="Start").click()
        dialog.wait_for(state="hidden", timeout=150_000)
        page.wait_for_function(f"() => window.__said.includes('Moved {NAME} to h1')")
        moved = row(page, NAME, "h1")
        moved.locator(".vm-host").filter(has_text="on h1").wait_for(timeout=30_000)
        item.wait_for(state="detached")
        assert NAME in _names(h1.uri, active=True)
        assert NAME not in _names(h0.uri)
        # the keyboard is back in the row
        assert page.evaluate(
            f"() => !!document.activeElement.closest('#vm-list > li[data-name=\"{NAME}\"]')")
        page.screenshot(path=str(artifacts / "migrate-moved.png"))

        # from h1, its Migrate offers the local host (the move back is tested through the
        # API: tests/integration/test_migration.py)
        dialog = open_migrate(page, NAME, "h1")
        assert dialog.locator("#vm-migrate-host option").all_inner_texts() == ["local"]
        dialog.get_by_role("button", name="Cancel").click()
    finally:
        _drop(h0.uri, NAME)
        _drop(h1.uri, NAME)


def test_the_new_vm_dialog_makes_the_vm_on_the_host_chosen(
        page: Any, multi: Kimchi, cluster3: Cluster, tmp_path: Path) -> None:  # noqa: F811
    from tests.isofactory import make_iso

    k = multi
    iso = make_iso(tmp_path / "iso" / "fedora.iso", "Fedora-WS-Live-39-1-5")
    add_host(k, cluster3, "h2")
    r = k.post("/templates", {"name": "f39", "source_media": {"type": "disk", "path": str(iso)},
                              "disks": [{"index": 0, "size": 1,
                                         "pool": {"name": "default-pool"}}]})
    assert r.status_code == 201, r.text
    wait_for(lambda: k.get("/templates/f39").json()["invalid"] == {}, what="the template")

    open_vms(page, k)
    page.get_by_role("button", name="New VM").click()
    dialog = page.locator("#vm-new-dialog")
    dialog.wait_for(state="visible")
    host = dialog.get_by_label("Host", exact=True)
    host.wait_for()
    assert host.locator("option").all_inner_texts() == ["local", "h2"]
    assert host.input_value() == "local"
    host.select_option("h2")
    page.get_by_label("Name of the new VM").fill("onh2")
    dialog.get_by_role("button", name="Create").click()
    dialog.wait_for(state="hidden")
    row(page, "onh2").locator(".vm-host").filter(has_text="on h2").wait_for(timeout=30_000)
    assert cluster3["h2"].keep.lookupByName("onh2").name() == "onh2"
    assert "onh2" not in [d.name() for d in cluster3["h1"].keep.listAllDomains()]
