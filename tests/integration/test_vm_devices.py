"""A VM's disks, CD-ROMs and interfaces after it was made: on the test driver (a shut-off
VM's definition edited), and on a real libvirtd (hot-plug into a running QEMU guest, a CD
changed while it runs)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import libvirt
import requests

from tests.conftest import Kimchi, RedisServer, wait_for
from tests.integration.test_console import URI, guest  # noqa: F401 (fixture)
from tests.integration.test_vm_e2e import boot_iso  # noqa: F401 (fixture)
from tests.isofactory import make_iso


def put(k: Kimchi, path: str, body: Any) -> Any:
    return k.http.put(k.url + path, json=body, allow_redirects=False, timeout=10)


def test_devices_of_a_shut_off_vm(kimchi: Kimchi, tmp_path: Path, pam_users: Any) -> None:
    k = kimchi
    assert k.post("/vms/test/poweroff").status_code == 200
    assert [(s["dev"], s["type"]) for s in k.get("/vms/test/storages").json()] == [
        ("vda", "disk")]
    iso = make_iso(tmp_path / "a.iso", "Fedora-WS-Live-39-1-5")
    other = make_iso(tmp_path / "b.iso", "Debian 12.2.0 amd64 n")
    r = k.post("/vms/test/storages", {"type": "cdrom", "path": str(iso)})
    assert r.status_code == 201, r.text
    cd = r.json()
    assert cd["type"] == "cdrom" and cd["path"] == str(iso) and cd["dev"] == "hda"
    assert r.headers["Location"] == f"/vms/test/storages/{cd['dev']}"
    # another medium, then none
    assert put(k, f"/vms/test/storages/{cd['dev']}", {"path": str(other)}).json()[
        "path"] == str(other)
    assert put(k, f"/vms/test/storages/{cd['dev']}", {"path": ""}).json()["path"] == ""
    assert k.get(f"/vms/test/storages/{cd['dev']}").json()["path"] == ""
    # a disk from an image file: its format read from the file
    img = tmp_path / "data.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "8M"], check=True)
    r = k.post("/vms/test/storages", {"type": "disk", "path": str(img)})
    assert r.status_code == 201, r.text
    assert r.json()["dev"] == "vdb" and r.json()["format"] == "qcow2"
    wait_for(lambda: any(d["path"] == str(img) for d in k.get("/vms/test").json()["disks"]),
             what="the VM view to show the new disk")
    assert k.delete("/vms/test/storages/vdb").status_code == 204
    assert img.exists()  # detached, not deleted
    assert k.delete(f"/vms/test/storages/{cd['dev']}").status_code == 204
    assert [s["dev"] for s in k.get("/vms/test/storages").json()] == ["vda"]

    # interfaces
    before = k.get("/vms/test/ifaces").json()
    assert [i["network"] for i in before] == ["default"]
    r = k.post("/vms/test/ifaces", {"network": "default", "model": "e1000"})
    assert r.status_code == 201, r.text
    mac = r.json()["mac"]
    assert r.json()["model"] == "e1000" and len(k.get("/vms/test/ifaces").json()) == 2
    assert k.delete(f"/vms/test/ifaces/{mac}").status_code == 204
    assert k.get("/vms/test/ifaces").json() == before

    # bad requests: clear errors, nothing changed
    for body in ({"type": "disk"}, {"type": "disk", "path": "relative.img"},
                 {"type": "disk", "path": "/proc/self/environ"},
                 {"type": "disk", "path": str(tmp_path / "nosuch.img")},
                 {"type": "disk", "pool": "default"}, {"type": "tape", "path": str(iso)},
                 {"type": "disk", "path": "/guest/diskimage1", "x": 1}):
        r = k.post("/vms/test/storages", body)
        assert r.status_code == 400, (body, r.text)
    assert k.post("/vms/test/ifaces", {"network": "nosuch"}).status_code == 404
    assert k.post("/vms/test/ifaces", {"network": "default", "model": "ne2k"}).status_code == 400
    assert k.get("/vms/test/storages/vdz").json()["errcode"] == "KCHVMSTOR0001E"
    assert k.delete("/vms/test/ifaces/00:11:22:33:44:55").status_code == 404
    assert [s["dev"] for s in k.get("/vms/test/storages").json()] == ["vda"]

    # users look, admins change
    assert put(k, "/vms/test", {"users": [pam_users.user.name]}).status_code == 200
    user = (pam_users.user.name, pam_users.user.password)
    assert requests.get(k.url + "/vms/test/storages", auth=user, timeout=20).status_code == 200
    r = requests.post(k.url + "/vms/test/storages", auth=user, timeout=20,
                      json={"type": "cdrom", "path": str(iso)})
    assert r.status_code == 403


def test_on_libvirtd_a_running_guest_gets_a_disk_and_a_new_cd(
        kimchi_factory: Any, redis_db: RedisServer,
        guest: str, boot_iso: Path) -> None:  # noqa: F811 (the fixtures imported above)
    k = kimchi_factory(redis_url=redis_db.url, workers=0, extra={"libvirt": {"uri": URI}})
    wait_for(lambda: k.get(f"/vms/{guest}").status_code == 200, what="the guest listed")
    conn = libvirt.open(URI)
    dom = conn.lookupByName(guest)
    assert dom.isActive()
    storages = k.get(f"/vms/{guest}/storages").json()
    cd = next(s for s in storages if s["type"] == "cdrom")
    # a CD-ROM drive cannot be added to a running VM; its medium can change
    folder = boot_iso.parent
    r = k.post(f"/vms/{guest}/storages", {"type": "cdrom", "path": str(boot_iso)})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVMSTOR0003E", r.text
    other = make_iso(folder / "other.iso", "Debian 12.2.0 amd64 n")
    r = put(k, f"/vms/{guest}/storages/{cd['dev']}", {"path": str(other)})
    assert r.status_code == 200, r.text
    live = dom.XMLDesc(0)
    assert str(other) in live  # QEMU has the new medium now
    # a virtio disk hot-plugged into the running guest, then unplugged
    img = folder / "hot.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "8M"], check=True)
    r = k.post(f"/vms/{guest}/storages", {"type": "disk", "path": str(img)})
    assert r.status_code == 201, r.text
    dev = r.json()["dev"]
    assert f"dev='{dev}'" in dom.XMLDesc(0)  # live
    assert f"dev='{dev}'" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)  # and kept
    r = k.delete(f"/vms/{guest}/storages/{dev}")
    assert r.status_code in (204, 400), r.text  # a guest without an OS may not let go
    assert img.exists()
