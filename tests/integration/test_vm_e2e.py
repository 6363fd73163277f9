"""Issue 4 end to end on a real libvirtd: template -> VM -> start -> screenshot -> poweroff -> delete.

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
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from PIL import Image

from tests.conftest import Kimchi, wait_for
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


def _created_vm(k: Kimchi, body: dict[str, Any]) -> dict[str, Any]:
    """POST /vms, check the 202 task, wait for it, return the finished task."""
    r = k.post("/vms", body)
    assert r.status_code == 202, r.text
    task = r.json()
    assert task["kind"] == "vm.create"
    assert r.headers["Location"] == f"/tasks/{task['id']}"
    done = k.wait_task(task["id"], timeout=60)
    assert done["status"] == "finished", done
    return done


def test_template_to_vm_to_screen_to_deletion_through_rest(
        kimchi_factory: Any, redis_db: Any, boot_iso: Path, prefix: str):
    started = time.monotonic()
    # KVM guests do not boot on every host that has /dev/kvm (nested virtualisation):
    # plain QEMU emulation boots everywhere, and this guest needs no speed.
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, extra={"libvirt": {"uri": URI},
                                                             "features": {"kvm": "off"}})
    wait_for(lambda: k.get("/vms").status_code == 200, timeout=30, what="the VM list")
    caps = k.get("/config/capabilities").json()
    assert caps["libvirtd_running"] and caps["screenshot"] and not caps["kvm"]

    # template from the ISO: identified as Alpine 3.19, the smallest defaults
    r = k.post("/templates", {"name": prefix, "source_media": {"type": "disk",
                                                                "path": str(boot_iso)}})
    assert r.status_code == 201, r.text
    template = r.json()
    assert (template["os_distro"], template["os_version"]) == ("alpine", "3.19")

    # VM from the template, made by a vm.create task
    name = f"{prefix}-one"
    _created_vm(k, {"template": prefix, "name": name})
    vm = k.get(f"/vms/{name}").json()
    assert vm["state"] == "shutoff"
    disks = [d["path"] for d in vm["disks"] if d["device"] == "disk"]
    cdroms = [d["path"] for d in vm["disks"] if d["device"] == "cdrom"]
    assert disks and all(Path(p).exists() for p in disks), vm["disks"]
    assert cdroms == [str(boot_iso)], vm["disks"]
    assert name in virsh_names()
    xml = ET.fromstring(libvirt.open(URI).lookupByName(name).XMLDesc(0))
    assert xml.get("type") == "qemu"  # as [features] kvm = "off" says

    # it boots from the template's ISO: the thumbnail shows the boot program's text
    r = k.post(f"/vms/{name}/start")
    assert r.status_code == 200 and r.json()["state"] == "running", r.text

    def screen() -> bytes | None:
        shot = k.get(f"/vms/{name}/screenshot", headers={"Accept": "image/png"})
        assert shot.status_code == 200 and shot.headers["Content-Type"] == "image/png", shot.text
        return shot.content if shows_boot_text(shot.content) else None

    png = wait_for(screen, timeout=60, interval=1.0, what="the boot text in the screenshot")
    thumb = Image.open(io.BytesIO(png))
    assert thumb.format == "PNG" and thumb.width <= 320 and thumb.height <= 240

    r = k.post(f"/vms/{name}/poweroff")
    assert r.status_code == 200 and r.json()["state"] == "shutoff", r.text
    assert k.get(f"/vms/{name}/screenshot").status_code == 404

    # deleted: gone from kimchi, from libvirt and from the disk; the ISO stays
    assert k.delete(f"/vms/{name}").status_code == 204
    assert name not in [v["name"] for v in k.get("/vms").json()]
    assert k.get(f"/vms/{name}").status_code == 404
    assert name not in virsh_names()
    assert not any(Path(p).exists() for p in disks), disks
    assert boot_iso.exists()

    # without a name, VMs are named after the template: <template>-vm-1, -vm-2
    auto_disks = []
    for n in (1, 2):
        auto = f"{prefix}-vm-{n}"
        task = _created_vm(k, {"template": prefix})
        assert (task["target_uri"], task["result"]["name"]) == (f"/vms/{auto}", auto), task
        r = k.get(f"/vms/{auto}")
        assert r.status_code == 200, [v["name"] for v in k.get("/vms").json()]
        auto_disks += [d["path"] for d in r.json()["disks"] if d["device"] == "disk"]
    for n in (1, 2):
        assert k.delete(f"/vms/{prefix}-vm-{n}").status_code == 204
    assert not [v for v in virsh_names() if v.startswith(prefix)]
    assert auto_disks and not any(Path(p).exists() for p in auto_disks), auto_disks
    assert time.monotonic() - started < 90
