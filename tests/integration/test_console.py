"""The VM console: RFB through kimchid's own WebSocket to QEMU's VNC server.

On a real libvirtd, a plain QEMU guest booting the test's ISO: the socket speaks the RFB
handshake end to end (version, security, ServerInit with the guest's screen size).  On the
test driver, and for users, the refusals.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import requests
import websocket

from tests.conftest import Kimchi, RedisServer, wait_for
from tests.integration.test_vm_e2e import boot_iso, remove_domains  # noqa: F401 (fixture)

URI = "qemu:///system"


@pytest.fixture
def guest(libvirtd: Any, boot_iso: Path) -> Iterator[str]:  # noqa: F811
    """A running plain-QEMU guest with a VNC screen on the host only; removed at the end."""
    iso = boot_iso
    name = f"kimchi-console-{uuid.uuid4().hex[:6]}"
    conn = libvirt.open(URI)
    dom = conn.defineXML(f"""<domain type='qemu'><name>{name}</name>
      <memory unit='MiB'>64</memory><vcpu>1</vcpu>
      <os><type arch='x86_64'>hvm</type><boot dev='cdrom'/></os>
      <features><acpi/><apic/></features><devices>
      <disk type='file' device='cdrom'><source file='{iso}'/><target dev='hdc' bus='ide'/>
        <readonly/></disk>
      <graphics type='vnc' listen='127.0.0.1'/><video><model type='vga'/></video>
      </devices></domain>""")
    dom.create()
    yield name
    remove_domains(conn, name)


@pytest.fixture
def system(kimchi_factory: Any, redis_db: RedisServer, libvirtd: Any) -> Kimchi:
    return kimchi_factory(redis_url=redis_db.url, workers=0, extra={"libvirt": {"uri": URI}})


def recv_exactly(ws: websocket.WebSocket, n: int, buf: bytearray) -> bytes:
    while len(buf) < n:
        frame = ws.recv()
        assert isinstance(frame, bytes), frame  # binary frames only
        buf.extend(frame)
    out = bytes(buf[:n])
    del buf[:n]
    return out


def test_the_console_speaks_rfb_to_the_guest(system: Kimchi, guest: str) -> None:
    k = system
    wait_for(lambda: k.get(f"/vms/{guest}").status_code == 200, what="the guest listed")
    vm = k.get(f"/vms/{guest}").json()
    assert vm["state"] == "running" and vm["graphics"]["type"] == "vnc"
    assert k.get("/config/capabilities").json()["console"] is True

    ws = websocket.create_connection(f"{k.ws_url}/vms/{guest}/console", timeout=10,
                                     header=k.ws_headers, subprotocols=["binary"])
    try:
        assert ws.getsubprotocol() == "binary"
        buf = bytearray()
        assert recv_exactly(ws, 12, buf) == b"RFB 003.008\n"  # QEMU's VNC server
        ws.send_binary(b"RFB 003.008\n")
        count = recv_exactly(ws, 1, buf)[0]
        types = recv_exactly(ws, count, buf)
        assert 1 in types  # "None": the server listens on the host only
        ws.send_binary(b"\x01")
        assert recv_exactly(ws, 4, buf) == b"\x00\x00\x00\x00"  # security result: OK
        ws.send_binary(b"\x01")  # ClientInit, shared
        width, height = struct.unpack(">HH", recv_exactly(ws, 4, buf))
        assert (width, height) in ((720, 400), (640, 480), (1024, 768), (800, 600))
    finally:
        ws.close()

    # asked without the upgrade: says what it is
    r = k.get(f"/vms/{guest}/console")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0022E", r.text
    # another site's page cannot open it with a session cookie
    cookie = k.login_cookie()
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(f"{k.ws_url}/vms/{guest}/console", timeout=10,
                                    header=[f"Cookie: kimchi_session={cookie}"],
                                    origin="http://evil.example")
    assert e.value.status_code == 403

    # powered off: the socket closes, and a new one is refused with the reason
    ws = websocket.create_connection(f"{k.ws_url}/vms/{guest}/console", timeout=10,
                                     header=k.ws_headers)
    assert ws.recv()[:4] == b"RFB "
    assert k.post(f"/vms/{guest}/poweroff").status_code == 200
    ws.settimeout(10)
    try:
        while ws.recv():  # the RFB stream until the server closes the socket
            pass
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        pass  # closed, the close frame answered or not
    assert not ws.connected
    ws.close()
    r = k.get(f"/vms/{guest}/console")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0020E", r.text


def test_refusals_on_the_test_driver(kimchi: Kimchi, pam_users: Any) -> None:
    k = kimchi  # the driver's "test" VM runs, with no screen
    r = k.get("/vms/test/console", headers={"Upgrade": "websocket"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0021E", r.text
    assert k.get("/vms/nosuch/console").status_code == 404
    # a user reaches only the consoles of their own VMs
    r = requests.get(k.url + "/vms/test/console", timeout=20,
                     auth=(pam_users.user.name, pam_users.user.password))
    assert r.status_code == 403, r.text
