"""VM lifecycle actions and deletion (libvirt's test driver; a real libvirtd for the disks)."""

from __future__ import annotations

import uuid
from pathlib import Path

import libvirt
import pytest

from tests.conftest import Kimchi, wait_for
from tests.isofactory import make_iso

NODE = """<node>
  <domain type='test'><name>vm1</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
    <memory>524288</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices/></domain>
</node>"""


@pytest.fixture
def k(kimchi_factory, redis_db, tmp_path: Path) -> Kimchi:
    node = tmp_path / "node.xml"
    node.write_text(NODE)
    return kimchi_factory(redis_url=redis_db.url, extra={"libvirt": {"uri": f"test://{node}"}})


def test_actions_change_state_and_are_refused_in_the_wrong_state(k: Kimchi):
    wait_for(lambda: k.get("/vms/vm1").status_code == 200, what="the VM list")
    assert k.get("/vms/vm1").json()["state"] == "running"  # the test driver starts them
    assert k.post("/vms/vm1/poweroff").json()["state"] == "shutoff"
    steps = [("start", "running"), ("suspend", "paused"), ("resume", "running"),
             ("reset", "running"), ("poweroff", "shutoff")]
    for action, state in steps:
        r = k.post(f"/vms/vm1/{action}")
        assert r.status_code == 200, (action, r.text)
        assert r.json()["state"] == state, action
    for action in ("poweroff", "shutdown", "reset", "suspend", "resume"):
        r = k.post(f"/vms/vm1/{action}")
        assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0010E", action
        assert "shutoff" in r.json()["reason"]
    assert k.post("/vms/vm1/start").status_code == 200
    assert k.post("/vms/vm1/start").json()["errcode"] == "KCHVM0010E"
    assert k.post("/vms/nosuch/start").status_code == 404
    states = [e["data"]["state"] for e in k.get("/events?since=0&types=vm.state").json()]
    assert states[:3] == ["shutoff", "running", "paused"]
    assert k.delete("/vms/vm1").status_code == 204  # also when running
    assert k.get("/vms/vm1").status_code == 404


def test_delete_removes_the_disks_but_never_the_cdrom(kimchi_factory, redis_db, libvirtd,
                                                      tmp_path: Path):
    k = kimchi_factory(redis_url=redis_db.url, extra={"libvirt": {"uri": "qemu:///system"}})
    conn = libvirt.open("qemu:///system")
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    tag = uuid.uuid4().hex[:8]
    pool = conn.storagePoolCreateXML(
        f"<pool type='dir'><name>kimchi-test-{tag}</name><target><path>{pool_dir}</path>"
        "</target></pool>", 0)
    try:
        vol = pool.createXML("<volume><name>disk0.img</name><capacity unit='M'>8</capacity>"
                             "<target><format type='raw'/></target></volume>", 0)
        iso = make_iso(tmp_path / "install.iso", "Fedora-WS-Live-39-1-5")
        name = f"kimchi-test-{tag}"
        conn.defineXML(f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>
          <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices>
          <disk type='file' device='disk'><source file='{vol.path()}'/>
            <target dev='vda' bus='virtio'/></disk>
          <disk type='file' device='cdrom'><source file='{iso}'/><target dev='hdc' bus='ide'/>
            <readonly/></disk></devices></domain>""")
        wait_for(lambda: k.get(f"/vms/{name}").status_code == 200, what="the new VM")
        disk_path = Path(vol.path())
        assert disk_path.exists()
        assert k.delete(f"/vms/{name}").status_code == 204
        assert not disk_path.exists()  # the disk went with the VM
        assert Path(iso).exists()  # the install ISO did not
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(name)
        wait_for(lambda: k.get(f"/vms/{name}").status_code == 404, what="the VM to go")
    finally:
        pool.destroy()


def test_screenshot_is_a_thumbnail_keeping_the_aspect_ratio(k: Kimchi):
    import io

    from PIL import Image

    wait_for(lambda: k.get("/vms/vm1").status_code == 200, what="the VM list")
    r = k.get("/vms/vm1/screenshot", headers={"Accept": "image/png"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "PNG" and img.width <= 320 and img.height <= 240
    full = libvirt.open(f"test://{k.dir.parent / 'node.xml'}")  # the screen, unscaled
    st = full.newStream(0)
    full.lookupByName("vm1").screenshot(st, 0, 0)
    raw = b""
    while chunk := st.recv(1 << 18):
        raw += chunk
    st.finish()
    orig = Image.open(io.BytesIO(raw))
    assert abs(img.width / img.height - orig.width / orig.height) < 0.02
    assert k.get("/vms/vm1/screenshot").content == r.content  # cached for a few seconds
    k.post("/vms/vm1/poweroff")
    gone = k.get("/vms/vm1/screenshot")
    assert gone.status_code == 404 and gone.json()["errcode"] == "KCHVM0012E"
