"""The VM view follows libvirt's events (libvirt's test driver, in this process)."""

from __future__ import annotations

import uuid
from typing import Any

import libvirt
import pytest
import pytest_twisted
from twisted.internet import reactor, task

from kimchi.errors import NotFound
from kimchid.adapters.libvirt import LibvirtConnection, start_event_loop
from kimchid.model.vms import VmInventory


class RecordedEvents:
    """Stands in for the event hub: records what would be published."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def emit(self, etype: str, data: dict[str, Any], task_id: str = "") -> str:
        self.sent.append((etype, data))
        return "0-1"

    async def publish(self, etype: str, data: dict[str, Any]) -> None:
        await self.emit(etype, data)


async def until(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await task.deferLater(reactor, 0.02)
    raise AssertionError("condition not met in time")


DOMAIN = """<domain type='test'><name>{name}</name><uuid>{uuid}</uuid><memory>1048576</memory>
<vcpu>2</vcpu><os><type>hvm</type></os>
<metadata><k:access xmlns:k="urn:kimchi:vm:1"><k:user>alice</k:user><k:group>ops</k:group>
</k:access></metadata>
<devices><disk type='file' device='disk'><source file='/var/lib/libvirt/images/{name}.qcow2'/>
<target dev='vda' bus='virtio'/></disk><graphics type='vnc' port='-1' listen='127.0.0.1'/>
</devices></domain>"""


@pytest_twisted.ensureDeferred
async def test_vms_made_outside_appear_change_state_and_go():
    start_event_loop()
    conn = LibvirtConnection("test:///default", reactor)
    events = RecordedEvents()
    vms = VmInventory(conn, events)  # type: ignore[arg-type]
    conn.startService()
    try:
        await until(lambda: vms.loaded)
        assert [v["name"] for v in vms.list()] == ["test"]  # the driver's own domain
        other = libvirt.open("test:///default")  # like virsh: another connection
        name, uid = f"vm-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
        dom = other.defineXML(DOMAIN.format(name=name, uuid=uid))
        await until(lambda: any(v["name"] == name for v in vms.list()))
        vm = vms.get(name)
        assert vm["state"] == "shutoff" and vm["cpus"] == 2
        assert vm["memory"] == {"current": 1024, "maxmemory": 1024}
        assert vm["users"] == ["alice"] and vm["groups"] == ["ops"]
        assert vm["disks"][0]["path"].endswith(f"{name}.qcow2")
        assert vm["graphics"]["type"] == "vnc"
        dom.create()
        await until(lambda: vms.get(name)["state"] == "running")
        assert vms.get(name)["screenshot"] == f"/vms/{name}/screenshot"
        dom.destroy()
        dom.undefine()
        await until(lambda: all(v["name"] != name for v in vms.list()))
        mine = [(t, d.get("state")) for t, d in events.sent if d.get("uuid") == uid]
        assert mine == [("vm.created", "shutoff"), ("vm.state", "running"),
                        ("vm.state", "shutoff"), ("vm.deleted", None)]
        with pytest.raises(NotFound):
            vms.get(name)
    finally:
        conn.stopService()


@pytest_twisted.ensureDeferred
async def test_a_vm_defined_while_every_domain_is_being_read_is_not_lost(monkeypatch):
    import time

    from kimchid.model import vms as vms_module

    start_event_loop()
    other = libvirt.open("test:///default")
    name, uid = f"vm-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
    real = vms_module._read_all

    def read_then_define(conn: Any) -> Any:
        found = real(conn)  # the list is taken ...
        other.defineXML(DOMAIN.format(name=name, uuid=uid))  # ... then the VM comes
        time.sleep(0.3)  # its event reaches the reactor while this read is still running
        return found

    monkeypatch.setattr(vms_module, "_read_all", read_then_define)
    conn = LibvirtConnection("test:///default", reactor)
    vms = VmInventory(conn, RecordedEvents())  # type: ignore[arg-type]
    conn.startService()
    try:
        await until(lambda: vms.loaded)
        await until(lambda: any(v["name"] == name for v in vms.list()))
    finally:
        conn.stopService()
        other.lookupByUUIDString(uid).undefine()
