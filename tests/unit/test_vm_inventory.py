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
from kimchid.model.vms import VmActions, VmInventory


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


def watching() -> tuple[LibvirtConnection, RecordedEvents, VmInventory, VmActions]:
    """A connection to this process's test driver, the view of its VMs and their actions."""
    start_event_loop()
    conn = LibvirtConnection("test:///default", reactor)
    events = RecordedEvents()
    vms = VmInventory(conn, events)  # type: ignore[arg-type]
    return conn, events, vms, VmActions(vms)


async def with_own_vm(conn: LibvirtConnection, vms: VmInventory) -> tuple[str, str, Any]:
    """Start watching, then define a VM of this test's own (as virsh would): its name,
    UUID and domain, once the view lists it."""
    conn.startService()
    await until(lambda: vms.loaded)
    name, uid = f"vm-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
    dom = libvirt.open("test:///default").defineXML(DOMAIN.format(name=name, uuid=uid))
    await until(lambda: vms.has(name))
    return name, uid, dom


@pytest_twisted.ensureDeferred
async def test_an_event_delivered_late_never_undoes_the_next_action(monkeypatch):
    """libvirt may hand over an action's event after the action's reply (a busy machine):
    poweroff then start at once must not see the late "stopped" turn the VM back off."""
    conn, events, vms, actions = watching()
    late = conn._lifecycle

    def deliver_late(*args: Any) -> None:
        r: Any = reactor
        r.callFromThread(r.callLater, 0.3, late, *args)

    monkeypatch.setattr(conn, "_lifecycle", deliver_late)
    try:
        name, uid, dom = await with_own_vm(conn, vms)
        steps = [("start", "running"), ("poweroff", "shutoff"), ("start", "running"),
                 ("suspend", "paused"), ("resume", "running"), ("poweroff", "shutoff")]
        for action, state in steps:
            assert (await actions.act(name, action))["state"] == state, action
            assert vms.get(name)["state"] == state, action
        await task.deferLater(reactor, 0.5)  # anything still on its way has come
        assert vms.get(name)["state"] == "shutoff"
        said = [d["state"] for t, d in events.sent if t == "vm.state" and d["uuid"] == uid]
        assert said == [s for _a, s in steps]  # each change said once, in order
        dom.undefine()
    finally:
        conn.stopService()


@pytest_twisted.ensureDeferred
async def test_a_read_begun_before_an_action_and_answered_after_it_is_not_taken(monkeypatch):
    import time

    from kimchid.model import vms as vms_module

    conn, events, vms, actions = watching()
    real = vms_module._read_one
    slow = {"on": False}

    def slow_read(c: Any, u: str) -> Any:
        found = real(c, u)
        if slow["on"]:
            time.sleep(0.4)  # answered long after it looked
        return found

    monkeypatch.setattr(vms_module, "_read_one", slow_read)
    try:
        name, uid, dom = await with_own_vm(conn, vms)
        dom.create()
        await until(lambda: vms.has(name) and vms.get(name)["state"] == "running")
        await task.deferLater(reactor, 0.1)
        slow["on"] = True
        dom.suspend()  # by another client: the event's read looks now, answers in 0.4 s
        await until(lambda: vms.get(name)["state"] == "paused")
        assert (await actions.act(name, "resume"))["state"] == "running"
        await task.deferLater(reactor, 1.2)  # both slow reads have answered
        assert vms.get(name)["state"] == "running"
        said = [d["state"] for t, d in events.sent if t == "vm.state" and d["uuid"] == uid]
        assert said[-2:] == ["paused", "running"] and said.count("paused") == 1
        dom.destroy()
        dom.undefine()
    finally:
        conn.stopService()
