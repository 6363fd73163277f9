"""The default network and storage pool taken away from, and given back to, a running
kimchid through its REST API, as an admin would: for the tests that check it is noticed
(tests/integration/test_health.py, and the browser's)."""

from __future__ import annotations

from typing import Any

from tests.conftest import Kimchi, wait_for

POOL_PATH = "/var/lib/libvirt/images"  # where kimchid makes the default pool


def _ok(r: Any, *codes: int) -> Any:
    assert r.status_code in codes, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r


def remove_default_network(k: Kimchi) -> None:
    """Stop and delete the network ``default`` of ``k`` (its client must be an admin's).

    The VMs that use it lose their interfaces on it first (on libvirt's test driver the
    running VM ``test`` has one, and the driver unplugs nothing live: a running VM is
    powered off for that and started again); the VMs themselves stay.
    """
    for vm in k.get("/networks/default").json()["used_by"]["vms"]:
        running = k.get(f"/vms/{vm}").json()["state"] != "shutoff"
        if running:
            _ok(k.post(f"/vms/{vm}/poweroff"), 200)
        for iface in _ok(k.get(f"/vms/{vm}/ifaces"), 200).json():
            if iface.get("network") == "default":
                _ok(k.delete(f"/vms/{vm}/ifaces/{iface['mac']}"), 204)
        if running:
            _ok(k.post(f"/vms/{vm}/start"), 200)
    # the VM list follows libvirt's events: wait until it no longer names the network
    wait_for(lambda: not k.get("/networks/default").json()["used_by"]["vms"],
             what="no VM on the default network")
    if k.get("/networks/default").json()["state"] == "active":
        _ok(k.post("/networks/default/deactivate"), 200)
    _ok(k.delete("/networks/default"), 204)


def make_default_network(k: Kimchi) -> dict[str, Any]:
    """Make the network ``default`` again (NAT, started, autostart) and return it."""
    return _ok(k.post("/networks", {"name": "default", "connection": "nat"}), 201).json()


def remove_default_pool(k: Kimchi) -> None:
    """Stop and forget the storage pool ``default`` of ``k`` (its files stay)."""
    if k.get("/storagepools/default").json()["state"] == "active":
        _ok(k.post("/storagepools/default/deactivate"), 200)
    _ok(k.delete("/storagepools/default"), 204)


def make_default_pool(k: Kimchi) -> dict[str, Any]:
    """Make the storage pool ``default`` again (a folder pool where kimchid makes it)."""
    return _ok(k.post("/storagepools", {"name": "default", "type": "dir",
                                        "path": POOL_PATH}), 201).json()
