"""A disk image that boots on real QEMU in a moment and says so on its serial port.

Its boot sector (written here byte by byte, no assembler needed) prints ``text`` to the
VGA screen and to COM1 again and again, so a test reads it whenever it connects to the
VM's serial console; the rest of the disk is zeros.  ``serial_text`` reads a running
VM's serial console through libvirt until a text arrives.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

BOOT_TEXT = b"KIMCHI BASE OK"

# 16-bit real mode, loaded at 0x7c00: ds=0, es=0xb800 (text screen); then, forever: print
# the message at the top of the screen and out of port 0x3f8, wait (loop over ecx), again
_CODE = bytes.fromhex(
    "31C0" "8ED8"          # xor ax,ax; mov ds,ax
    "B800B8" "8EC0"        # mov ax,0xb800; mov es,ax
    "31FF"                 # again: xor di,di
    "BE277C"               # mov si,0x7c27 (the message)
    "B41F"                 # mov ah,0x1f (white on blue)
    "AC" "84C0" "7407"     # next: lodsb; test al,al; jz wait
    "AB"                   # stosw (to the screen)
    "BAF803" "EE"          # mov dx,0x3f8; out dx,al (to COM1)
    "EBF4"                 # jmp next
    "66B900000004"         # wait: mov ecx,0x04000000
    "67E2FD"               # loop (ecx)
    "EBE2")                # jmp again


def make_boot_disk(path: Path, text: bytes = BOOT_TEXT, size: int = 1 << 20) -> Path:
    assert len(_CODE) == 0x27
    sector = _CODE + text + b"\r\n\0"
    assert len(sector) <= 510
    sector += b"\0" * (510 - len(sector)) + b"\x55\xaa"
    with open(path, "wb") as f:
        f.write(sector)
        f.truncate(size)
    return path


def serial_text(conn: Any, name: str, want: bytes = BOOT_TEXT, timeout: float = 30) -> bytes:
    """What the running VM ``name`` writes to its serial port, read until ``want`` shows
    (or ``timeout`` s); a blocking libvirt stream read on a thread of its own."""
    import libvirt

    stream = conn.newStream(0)
    conn.lookupByName(name).openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
    got = bytearray()

    def read() -> None:
        try:
            while want not in got:
                chunk = stream.recv(4096)
                if not chunk or not isinstance(chunk, bytes):
                    return
                got.extend(chunk)
        except libvirt.libvirtError:
            return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    try:
        stream.abort()
    except libvirt.libvirtError:
        pass
    return bytes(got)
