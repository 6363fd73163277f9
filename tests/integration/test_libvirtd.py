"""Against a running libvirtd: VMs made outside kimchi appear live; a libvirtd restart, and
libvirtd down, are survived.

The libvirtd is the test's own (tests/libvirtd_private.py: its own sockets, only the test
driver), never the machine's: a user who runs the test command on a host where kimchi and
its guests run finds the machine's libvirtd as it was."""

from __future__ import annotations

import json
import uuid

import libvirt
import websocket

from tests.conftest import Kimchi, wait_for
from tests.libvirtd_private import PrivateLibvirtd, own_libvirtd  # noqa: F401  (a fixture)

DOMAIN = """<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>
<memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type>hvm</type></os><devices/></domain>"""


def test_vm_defined_with_libvirt_appears_live_and_survives_a_libvirtd_restart(
        kimchi_factory, redis_db, own_libvirtd: PrivateLibvirtd):  # noqa: F811
    uri = own_libvirtd.uri
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, extra={"libvirt": {"uri": uri}})
    wait_for(lambda: k.get("/vms").status_code == 200, what="the VM list")
    ws = websocket.create_connection(f"{k.ws_url}/events?types=vm.*", timeout=20,
                                     header=k.ws_headers)
    conn = libvirt.open(uri)  # held open: the test driver keeps its state while one is
    name, uid = f"kimchi-test-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    try:
        conn.defineXML(DOMAIN.format(name=name, uuid=uid))  # as virsh define would
        ev = json.loads(ws.recv())
        assert ev["type"] == "vm.created" and ev["data"]["name"] == name
        assert k.get(f"/vms/{name}").json()["state"] == "shutoff"

        # libvirtd dies and comes back without what was made meanwhile (the test driver
        # starts afresh, as a host whose libvirtd lost a transient VM): kimchi reconnects
        # and lists what libvirt lists now, not what it had
        own_libvirtd.kill()
        own_libvirtd.start()
        conn = libvirt.open(uri)
        now = sorted(d.name() for d in conn.listAllDomains())
        assert name not in now
        wait_for(lambda: k.get(f"/vms/{name}").status_code == 404, timeout=30,
                 what="kimchi to reconnect and see the VM gone")
        assert sorted(v["name"] for v in k.get("/vms").json()) == now
        assert "libvirt" in k.log_text()
    finally:
        ws.close()


def test_libvirtd_down_degrades_explains_and_recovers(kimchi_factory, redis_db,
                                                      own_libvirtd: PrivateLibvirtd):  # noqa: F811
    k: Kimchi = kimchi_factory(redis_url=redis_db.url,
                               extra={"libvirt": {"uri": own_libvirtd.uri}})
    wait_for(lambda: k.get("/vms").status_code == 200, what="the VM list")
    health = k.get("/health").json()
    assert health["libvirt"] == "up" and health["problems"] == []  # default net and pool ok
    own_libvirtd.kill()
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
        own_libvirtd.start()
    wait_for(lambda: k.get("/vms").status_code == 200, timeout=30, what="recovery")
    wait_for(lambda: k.get("/health").json()["status"] == "ok", what="health ok again")
    wait_for(lambda: any(e["data"].get("component") == "libvirt" for e in
                         k.get("/events?since=0&types=service.recovered").json()),
             what="service.recovered")
