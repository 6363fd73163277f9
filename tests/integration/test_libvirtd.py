"""Against a real libvirtd: VMs made outside kimchi appear live; a libvirtd restart is survived."""

from __future__ import annotations

import json
import uuid

import libvirt
import websocket

from tests.conftest import Kimchi, wait_for

DOMAIN = """<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid>
<memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os><devices/></domain>"""


def test_vm_defined_with_libvirt_appears_live_and_survives_a_libvirtd_restart(
        kimchi_factory, redis_db, libvirtd):
    k: Kimchi = kimchi_factory(redis_url=redis_db.url,
                               extra={"libvirt": {"uri": "qemu:///system"}})
    wait_for(lambda: k.get("/vms").status_code == 200, what="the VM list")
    ws = websocket.create_connection(f"{k.ws_url}/events?types=vm.*", timeout=20,
                                     header=k.ws_headers)
    conn = libvirt.open("qemu:///system")
    name, uid = f"kimchi-test-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    try:
        conn.defineXML(DOMAIN.format(name=name, uuid=uid))  # as virsh define would
        ev = json.loads(ws.recv())
        assert ev["type"] == "vm.created" and ev["data"]["name"] == name
        assert k.get(f"/vms/{name}").json()["state"] == "shutoff"

        libvirtd.restart()
        conn = libvirt.open("qemu:///system")
        # changed while kimchi was reconnecting: it must notice after the restart
        conn.lookupByUUIDString(uid).undefine()
        wait_for(lambda: k.get(f"/vms/{name}").status_code == 404, timeout=30,
                 what="kimchi to reconnect and see the VM gone")
        assert name not in [v["name"] for v in k.get("/vms").json()]
        assert "libvirt" in k.log_text()
    finally:
        ws.close()
        try:
            libvirt.open("qemu:///system").lookupByUUIDString(uid).undefine()
        except libvirt.libvirtError:
            pass


def test_libvirtd_down_degrades_explains_and_recovers(kimchi_factory, redis_db, libvirtd):
    k: Kimchi = kimchi_factory(redis_url=redis_db.url,
                               extra={"libvirt": {"uri": "qemu:///system"}})
    wait_for(lambda: k.get("/vms").status_code == 200, what="the VM list")
    health = k.get("/health").json()
    assert health["libvirt"] == "up" and health["problems"] == []  # default net and pool ok
    conn = libvirt.open("qemu:///system")
    assert conn.networkLookupByName("default").isActive()
    assert conn.storagePoolLookupByName("default").isActive()
    libvirtd.stop()
    try:
        def degraded():
            h = k.get("/health")
            return h.status_code == 200 and h.json()["status"] == "degraded" and h.json()
        h = wait_for(degraded, timeout=20, what="health to say libvirt is down")
        assert h["libvirt"] == "down" and "libvirtd" in h["problems"][0]["fix"]
        err = wait_for(lambda: (lambda r: r.json() if r.status_code == 503 else None)(
            k.get("/vms")), what="/vms to answer 503")
        assert err["errcode"] == "KCHSVC0002E"
        assert k.get("/config").status_code == 200  # the rest still answers
        assert k.get("/config/capabilities").status_code == 200
        assert k.get("/debugreports").json() == []  # answers: reports need no libvirt
        events = k.get("/events?since=0&types=service.*").json()
        assert any(e["type"] == "service.degraded" and e["data"]["component"] == "libvirt"
                   for e in events)
    finally:
        libvirtd.start()
    wait_for(lambda: k.get("/vms").status_code == 200, timeout=30, what="recovery")
    assert k.get("/health").json()["status"] == "ok"
    wait_for(lambda: any(e["data"].get("component") == "libvirt" for e in
                         k.get("/events?since=0&types=service.recovered").json()),
             what="service.recovered")
