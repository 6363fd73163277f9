"""Issue 4 end to end on a real libvirtd: the boot ISO that the end-to-end test of VMs relies on.

The guest boots a tiny ISO the test builds (tests/isofactory.make_boot_iso): its boot
program clears the screen and prints one line of text in the middle.  A screenshot that
shows lit pixels exactly where that text goes, and nowhere else, proves that the VM
kimchi made really booted from the template's ISO (QEMU's "display not initialised"
notice and the BIOS banner light other places).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from PIL import Image

from tests.conftest import wait_for
from tests.isofactory import boot_text_region, make_boot_iso

URI = "qemu:///system"
BOOT_TEXT = "KIMCHI E2E"
# A pixel brighter than this is text; the boot program's screen is black elsewhere.
_LIT = 64


def text_box(png: bytes) -> tuple[float, float, float, float] | None:
    """The bounding box of the lit pixels of a screenshot, as fractions of its size."""
    img = Image.open(io.BytesIO(png)).convert("L")
    box = img.point(lambda p: 255 if p > _LIT else 0).getbbox()
    if box is None:
        return None  # uniform: nothing on the screen
    w, h = img.size
    return box[0] / w, box[1] / h, box[2] / w, box[3] / h


def shows_boot_text(png: bytes, text: str = BOOT_TEXT) -> bool:
    """True when the screen shows the boot program's *text*: lit where the text goes,
    across most of its width, and dark everywhere else (one cell of slack for scaling)."""
    box = text_box(png)
    if box is None:
        return False
    left, top, right, bottom = boot_text_region(text)
    cell_w, cell_h = (right - left) / len(text), bottom - top
    inside = (box[0] >= left - cell_w and box[1] >= top - cell_h
              and box[2] <= right + cell_w and box[3] <= bottom + cell_h)
    return inside and box[2] - box[0] >= 0.6 * (right - left)


def libvirt_screenshot(conn: Any, dom: Any) -> bytes:
    """The guest's screen, unscaled, straight from virDomainScreenshot."""
    stream = conn.newStream(0)
    dom.screenshot(stream, 0, 0)
    data = b""
    while chunk := stream.recv(1 << 18):
        data += chunk
    stream.finish()
    return data


def remove_domains(conn: Any, prefix: str) -> None:
    """Test clean-up: destroy and undefine our domains, with their disk volumes."""
    for dom in conn.listAllDomains(0):
        if not dom.name().startswith(prefix):
            continue
        try:
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError:
            pass
        for disk in ET.fromstring(dom.XMLDesc(0)).findall("devices/disk[@device='disk']"):
            source = disk.find("source")
            path = source.get("file") if source is not None else None
            if path:
                try:
                    conn.storageVolLookupByPath(path).delete(0)
                except libvirt.libvirtError:
                    Path(path).unlink(missing_ok=True)
        try:
            dom.undefine()
        except libvirt.libvirtError:
            pass


def virsh_names() -> list[str]:
    out = subprocess.run(["virsh", "-c", URI, "list", "--all", "--name"], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


@pytest.fixture
def boot_iso() -> Iterator[Path]:
    """The boot ISO, in a folder QEMU (another user under qemu:///system) can enter."""
    folder = Path(tempfile.mkdtemp(prefix="kimchi-e2e-"))
    folder.chmod(0o755)
    try:
        yield make_boot_iso(folder / "kimchi-e2e.iso", text=BOOT_TEXT)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def prefix(libvirtd: Any) -> Iterator[str]:
    """A name prefix of this test's own; whatever domain carries it is removed at the end."""
    tag = f"kimchi-e2e-{uuid.uuid4().hex[:6]}"
    yield tag
    remove_domains(libvirt.open(URI), tag)


def test_the_boot_iso_shows_its_text_on_a_plain_qemu_guest(boot_iso: Path, prefix: str):
    conn = libvirt.open(URI)
    dom = conn.defineXML(f"""<domain type='qemu'><name>{prefix}</name>
      <memory unit='MiB'>64</memory><vcpu>1</vcpu>
      <os><type arch='x86_64'>hvm</type><boot dev='cdrom'/></os><devices>
      <disk type='file' device='cdrom'><source file='{boot_iso}'/><target dev='hdc' bus='ide'/>
        <readonly/></disk>
      <graphics type='vnc' listen='127.0.0.1'/><video><model type='vga'/></video>
      </devices></domain>""")
    dom.create()
    png = wait_for(lambda: (lambda s: shows_boot_text(s) and s)(libvirt_screenshot(conn, dom)),
                   timeout=30, interval=0.5, what="the boot text on the guest's screen")
    img = Image.open(io.BytesIO(png))
    assert img.size == (720, 400)  # VGA text mode, 80x25 cells of 9x16
    assert not shows_boot_text(png, "X" * 40)  # the check tells one text from another
    dom.destroy()
    dom.undefine()
    assert prefix not in virsh_names()

