"""The VM serial console: kimchid's WebSocket to a real QEMU guest's serial port, through
libvirt's console stream.

The guest is a boot sector of our own (no OS, no firmware option): it writes a line to
its serial port every second and answers each key it reads there, in capitals.  One guest
boots for the whole file (and for the browser test's); the last test powers it off.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import requests
import websocket

from tests.conftest import Kimchi, RedisServer, wait_for
from tests.integration.test_vm_e2e import remove_domains

URI = "qemu:///system"
BANNER = "kimchi serial guest: type, I answer in capitals"
_LOAD_ADDRESS = 0x7C00


def serial_boot_sector() -> bytes:
    """A 512-byte x86 real-mode boot program that talks on COM1 (port 0x3F8).

    Hand-assembled, as tests/isofactory.py's: it writes :data:`BANNER` and a line break to
    the serial port, then, for about a second (18 ticks of the BIOS clock at 0000:046C),
    reads what arrives there and writes each byte back, a-z in capitals; then the banner
    again.  Polled: the UART's line status (0x3FD) says when a byte came (bit 0) and when
    it may send (bit 5).  Every jump and call is relative; the text is read at its
    absolute address (DS = 0), so 0000:7C00 and 07C0:0000 entries both work."""
    def imm16(value: int) -> bytes:
        return struct.pack("<H", value)

    text = BANNER.encode() + b"\r\n\x00"
    code = b"".join([
        b"\xfa",                            # 00 cli
        b"\x31\xc0",                        # 01 xor ax, ax
        b"\x8e\xd8",                        # 03 mov ds, ax
        b"\x8e\xc0",                        # 05 mov es, ax
        b"\x8e\xd0",                        # 07 mov ss, ax
        b"\xbc" + imm16(_LOAD_ADDRESS),     # 09 mov sp, 0x7c00
        b"\xfb",                            # 0c sti                 ; the clock ticks
        b"\xfc",                            # 0d cld
        b"\xbe" + imm16(_LOAD_ADDRESS + 0x5C),  # 0e banner: mov si, text
        b"\xe8\x3d\x00",                    # 11 call print (51)
        b"\xa1\x6c\x04",                    # 14 mov ax, [0x46c]     ; the BIOS clock
        b"\x89\xc5",                        # 17 mov bp, ax          ; when the banner went
        b"\xba\xfd\x03",                    # 19 poll: mov dx, 0x3fd ; line status
        b"\xec",                            # 1c in al, dx
        b"\xa8\x01",                        # 1d test al, 1          ; a byte came?
        b"\x74\x13",                        # 1f jz idle (34)
        b"\xba\xf8\x03",                    # 21 mov dx, 0x3f8
        b"\xec",                            # 24 in al, dx           ; the byte
        b"\x3c\x61",                        # 25 cmp al, 'a'
        b"\x72\x06",                        # 27 jb echo (2f)
        b"\x3c\x7a",                        # 29 cmp al, 'z'
        b"\x77\x02",                        # 2b ja echo (2f)
        b"\x2c\x20",                        # 2d sub al, 0x20        ; in capitals
        b"\xe8\x0e\x00",                    # 2f echo: call putc (40)
        b"\xeb\xe5",                        # 32 jmp poll (19)
        b"\xa1\x6c\x04",                    # 34 idle: mov ax, [0x46c]
        b"\x29\xe8",                        # 37 sub ax, bp
        b"\x83\xf8\x12",                    # 39 cmp ax, 18          ; a second gone?
        b"\x72\xdb",                        # 3c jb poll (19)
        b"\xeb\xce",                        # 3e jmp banner (0e)
        b"\x88\xc4",                        # 40 putc: mov ah, al
        b"\xba\xfd\x03",                    # 42 mov dx, 0x3fd
        b"\xec",                            # 45 wait: in al, dx
        b"\xa8\x20",                        # 46 test al, 0x20       ; room to send?
        b"\x74\xfb",                        # 48 jz wait (45)
        b"\x88\xe0",                        # 4a mov al, ah
        b"\xba\xf8\x03",                    # 4c mov dx, 0x3f8
        b"\xee",                            # 4f out dx, al
        b"\xc3",                            # 50 ret
        b"\xac",                            # 51 print: lodsb
        b"\x84\xc0",                        # 52 test al, al
        b"\x74\x05",                        # 54 jz done (5b)
        b"\xe8\xe7\xff",                    # 56 call putc (40)
        b"\xeb\xf6",                        # 59 jmp print (51)
        b"\xc3",                            # 5b done: ret
    ])
    assert len(code) == 0x5C
    return (code + text).ljust(510, b"\x00") + b"\x55\xaa"


def serial_guest_xml(name: str, disk: Path) -> str:
    """A plain-QEMU guest booting ``disk`` with a pty serial port, its console (and a
    screen, as kimchi's VMs have: the VMs page shows its thumbnail)."""
    return f"""<domain type='qemu'><name>{name}</name>
      <memory unit='MiB'>32</memory><vcpu>1</vcpu>
      <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os><devices>
      <disk type='file' device='disk'><driver name='qemu' type='raw'/>
        <source file='{disk}'/><target dev='hda' bus='ide'/></disk>
      <serial type='pty'><target port='0'/></serial>
      <console type='pty'><target type='serial' port='0'/></console>
      <graphics type='vnc' listen='127.0.0.1'/><video><model type='vga'/></video>
      </devices></domain>"""


@pytest.fixture(scope="module")
def serial_guests(libvirtd: Any) -> Iterator[tuple[str, str]]:
    """(a running guest talking on its serial port, the same guest defined but shut off);
    removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="kimchi-serial-"))
    folder.chmod(0o755)  # QEMU runs as another user under qemu:///system
    disk = folder / "serial-guest.img"
    disk.write_bytes(serial_boot_sector().ljust(64 * 1024, b"\x00"))
    disk.chmod(0o666)
    tag = f"kimchi-serial-{uuid.uuid4().hex[:6]}"
    conn = libvirt.open(URI)
    try:
        conn.defineXML(serial_guest_xml(f"{tag}-on", disk)).create()
        conn.defineXML(serial_guest_xml(f"{tag}-off", disk))
        yield f"{tag}-on", f"{tag}-off"
    finally:
        remove_domains(conn, tag)
        conn.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def system(kimchi_factory: Any, redis_db: RedisServer, libvirtd: Any,
           serial_guests: tuple[str, str]) -> Kimchi:
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, workers=0,
                               extra={"libvirt": {"uri": URI}})
    for name in serial_guests:
        wait_for(lambda n=name: k.get(f"/vms/{n}").status_code == 200,
                 what=f"{name} listed")
    return k


class Serial:
    """A client of ``/.../serial``: what the guest wrote, as text, and how the socket closed."""

    def __init__(self, k: Kimchi, address: str, **kw: Any) -> None:
        kw.setdefault("header", k.ws_headers)
        self.ws = websocket.create_connection(f"{k.ws_url}{address}/serial", timeout=10, **kw)
        self.text = ""
        self.closed: tuple[int, str] | None = None

    def read_until(self, done: Callable[[Serial], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not done(self):
            assert time.monotonic() < deadline, f"waited {timeout} s; got {self.text[-400:]!r}"
            assert self.closed is None, f"closed {self.closed}; got {self.text[-400:]!r}"
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            op, frame = self.ws.recv_data_frame(True)
            if op == websocket.ABNF.OPCODE_BINARY:
                self.text += frame.data.decode("utf-8", "replace")
            elif op == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data
                code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 1005
                self.closed = (code, data[2:].decode("utf-8", "replace"))

    def wait_closed(self, timeout: float = 15.0) -> tuple[int, str]:
        try:
            self.read_until(lambda s: s.closed is not None, timeout)
        except AssertionError:
            if self.closed is None:
                raise
        assert self.closed is not None
        return self.closed

    def close(self) -> None:
        self.ws.close()


def test_text_flows_both_ways_at_both_addresses(system: Kimchi,
                                                serial_guests: tuple[str, str]) -> None:
    k, (guest, _off) = system, serial_guests
    host = k.get(f"/vms/{guest}").json()["host"]
    for address in (f"/vms/{guest}", f"/hosts/{host}/vms/{guest}"):
        s = Serial(k, address)
        try:
            s.read_until(lambda s: BANNER in s.text)  # the guest's own output
            s.ws.send("hello")  # keys typed: the guest answers each in capitals
            s.read_until(lambda s: "HELLO" in s.text)
            s.ws.send_binary(b"ok")
            s.read_until(lambda s: "OK" in s.text)
        finally:
            s.close()


def test_a_vm_of_another_host(system: Kimchi, serial_guests: tuple[str, str]) -> None:
    """Another host's VM: its console comes through that host's own libvirt connection.
    "h2" is the machine's libvirtd again, reached by another URI (a connection of its
    own): the same guest, at h2's address."""
    k, (guest, _off) = system, serial_guests
    r = k.post("/hosts", {"name": "h2", "uri": "qemu+unix:///system"}, timeout=30)
    assert r.status_code in (200, 201), r.text
    wait_for(lambda: k.get(f"/hosts/h2/vms/{guest}").status_code == 200, what="h2's VM")
    s = Serial(k, f"/hosts/h2/vms/{guest}")
    try:
        s.read_until(lambda s: BANNER in s.text)
        s.ws.send("far")
        s.read_until(lambda s: "FAR" in s.text)
    finally:
        s.close()


def test_the_newest_client_takes_the_console_over(system: Kimchi,
                                                 serial_guests: tuple[str, str]) -> None:
    k, (guest, _off) = system, serial_guests
    first = Serial(k, f"/vms/{guest}")
    first.read_until(lambda s: BANNER in s.text)
    second = Serial(k, f"/vms/{guest}")
    try:
        assert first.wait_closed() == (4001, "another client took the serial console over")
        second.ws.send("abc")
        second.read_until(lambda s: "ABC" in s.text)
    finally:
        first.close()
        second.close()
    # a client gone lets the console go: the next one opens it without a fight
    third = Serial(k, f"/vms/{guest}")
    third.read_until(lambda s: BANNER in s.text)
    # a client of libvirt's own (virsh console --force) takes it over too
    conn = libvirt.open(URI)
    try:
        stream = conn.newStream(0)
        conn.lookupByName(guest).openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        assert third.wait_closed() == (4001, "another client took the serial console over")
        stream.abort()
    finally:
        third.close()
        conn.close()

    # kimchid stopping closes the console with its reason (and gives it back to libvirt)
    last = Serial(k, f"/vms/{guest}")
    last.read_until(lambda s: BANNER in s.text)
    k.stop()
    assert last.wait_closed() == (4002, "kimchid is shutting down")
    last.close()
    conn = libvirt.open(URI)
    try:
        stream = conn.newStream(0)
        conn.lookupByName(guest).openConsole(None, stream, 0)  # no one holds it: no force
        stream.abort()
    finally:
        conn.close()


def test_refusals(system: Kimchi, serial_guests: tuple[str, str], pam_users: Any) -> None:
    k, (guest, off) = system, serial_guests
    r = k.get(f"/vms/{guest}/serial")  # asked without the upgrade: says what it is
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0022E", r.text
    r = k.get(f"/vms/{off}/serial", headers={"Upgrade": "websocket"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0020E", r.text
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        Serial(k, f"/vms/{off}")
    assert e.value.status_code == 400
    assert k.get("/vms/nosuch/serial").status_code == 404
    # a user reaches only the consoles of their own VMs
    user = (pam_users.user.name, pam_users.user.password)
    r = requests.get(f"{k.url}/vms/{guest}/serial", auth=user, timeout=20)
    assert r.status_code == 403 and r.json()["errcode"] == "KCHAUTH0006E", r.text
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        Serial(k, f"/vms/{guest}", header=[
            "Authorization: " + requests.auth._basic_auth_str(*user)])
    assert e.value.status_code == 403
    # another site's page cannot open it with a session cookie
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        Serial(k, f"/vms/{guest}", header=[f"Cookie: kimchi_session={k.login_cookie()}"],
               origin="http://evil.example")
    assert e.value.status_code == 403


def test_no_serial_console_on_the_test_driver(kimchi: Kimchi) -> None:
    r = kimchi.get("/vms/test/serial", headers={"Upgrade": "websocket"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0033E", r.text


def test_the_vm_stopping_closes_the_console(system: Kimchi,
                                            serial_guests: tuple[str, str]) -> None:
    """Last in the file: the guest is powered off."""
    k, (guest, _off) = system, serial_guests
    s = Serial(k, f"/vms/{guest}")
    s.read_until(lambda s: BANNER in s.text)
    assert k.post(f"/vms/{guest}/poweroff").status_code == 200
    assert s.wait_closed() == (1000, "the VM stopped")
    s.close()
    wait_for(lambda: k.get(f"/vms/{guest}").json()["state"] == "shutoff", what="shut off")
    r = k.get(f"/vms/{guest}/serial", headers={"Upgrade": "websocket"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0020E", r.text
