"""Image templates and many VMs at once through the API, on libvirt's test driver: what is
accepted, what is refused and why, and that a refused request makes nothing.

The real-QEMU paths (booting, leaves, template from a VM) are in test_vm_images.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.bootdisk import make_boot_disk
from tests.conftest import Kimchi
from tests.isofactory import make_iso
from tests.systemdisk import make_system_disk


def _post_image(k: Kimchi, name: str, path: Path | str, **fields: object):
    return k.post("/templates", {"name": name, "source_media": {"type": "image",
                                                               "path": str(path)},
                                 "networks": [], **fields})


def test_what_is_not_a_disk_image_is_refused_with_the_reason(kimchi, tmp_path: Path):
    text = tmp_path / "notes.img"
    text.write_text("just some notes\n" * 100)
    iso = make_iso(tmp_path / "f.iso", "Fedora-WS-Live-39-1-5")
    leaf = tmp_path / "leaf.qcow2"
    make_boot_disk(tmp_path / "base.img")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                    str(tmp_path / "base.img"), str(leaf)], check=True)
    for path, why in ((text, "not a disk image"), (iso, "install media"),
                      (leaf, "backing file"), (tmp_path / "gone.img", "no such file"),
                      (tmp_path, "folder")):
        r = _post_image(kimchi, "t", path)
        assert r.status_code == 400 and r.json()["errcode"] == "KCHTMPL0020E", r.text
        assert why in r.json()["reason"], r.text
    r = _post_image(kimchi, "t", "images/relative.img")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHTMPL0004E", r.text
    r = kimchi.post("/templates", {"name": "t", "source_media": {"type": "image"}})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHTMPL0013E", r.text
    # a URL is downloaded into a folder pool: the test driver's are none
    r = _post_image(kimchi, "t", "https://192.0.2.7/debian-12-generic-amd64.qcow2")
    assert r.status_code == 400 and r.json()["errcode"] in ("KCHVOL0008E", "KCHVOL0009E")
    assert kimchi.get("/templates").json() == []  # nothing was kept


def test_an_image_templates_os_is_read_from_the_image_before_its_name(
        kimchi, tmp_path: Path):
    # the image's own os-release wins over a name that says otherwise
    image = make_system_disk(tmp_path / "jammy-server-cloudimg-amd64.qcow2",
                             'NAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\n',
                             "gpt", "qcow2")
    r = _post_image(kimchi, "read", image)
    assert r.status_code == 201, r.text
    assert (r.json()["os_distro"], r.json()["os_version"]) == ("debian", "12")
    # a user's word wins over both
    r = _post_image(kimchi, "told", image, os_distro="ubuntu", os_version="24.04")
    assert (r.json()["os_distro"], r.json()["os_version"]) == ("ubuntu", "24.04"), r.text


def test_an_image_template_reads_the_image_and_makes_many_vms_in_one_request(
        kimchi, tmp_path: Path):
    image = make_boot_disk(tmp_path / "debian-12-generic-amd64.raw", size=3 << 30)
    r = _post_image(kimchi, "ci", image, cloud_init={"user": "ops", "password": "pw"})
    assert r.status_code == 201, r.text
    assert r.json()["cloud_init"] == {"user": "ops", "password_set": True}  # no hash shown
    r = _post_image(kimchi, "deb", image)
    assert r.status_code == 201, r.text
    t = r.json()
    assert (t["os_distro"], t["os_version"]) == ("debian", "12")  # from the name
    assert t["source_media"] == {"type": "image", "path": str(image), "format": "raw",
                                 "virtual_size": 3 << 30}
    assert t["disks"][0]["size"] == 3.0 and t["disks"][0]["format"] == "qcow2"
    assert t["disks"][0]["base"] == {"path": str(image), "format": "raw"}
    # its source stays; its other fields change, the base kept
    r = kimchi.http.put(kimchi.url + "/templates/deb", json={
        "source_media": {"type": "image", "path": str(image)}})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHTMPL0021E", r.text
    r = kimchi.http.put(kimchi.url + "/templates/deb", json={"disks": [{"size": 5}]})
    assert r.status_code == 200, r.text
    assert r.json()["disks"][0]["base"] == {"path": str(image), "format": "raw"}

    task = kimchi.post("/vms", {"template": "deb", "count": 3}).json()
    assert task["target_uri"] == "/vms"
    done = kimchi.wait_task(task["id"])
    assert done["status"] == "finished", done
    names = ["deb-vm-1", "deb-vm-2", "deb-vm-3"]
    assert done["result"]["names"] == names
    assert sorted(kimchi.get("/templates/deb").json()["vms"]) == names
    for name in names:
        (disk,) = [d for d in kimchi.get(f"/vms/{name}").json()["disks"]
                   if d["device"] == "disk"]
        assert disk["backing"] == str(image)
    # a name already taken refuses the whole request, and makes nothing
    r = kimchi.post("/vms", {"template": "deb", "name": "deb-vm", "count": 4})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0001E", r.text
    assert "deb-vm-1" in r.json()["reason"]
    assert sorted(vm["name"] for vm in kimchi.get("/vms").json()
                  if vm["name"].startswith("deb-")) == names


def test_vm_requests_that_do_not_fit_the_template_are_refused(kimchi, tmp_path: Path):
    iso = make_iso(tmp_path / "f.iso", "Fedora-WS-Live-39-1-5")
    assert kimchi.post("/templates", {"name": "iso", "cdrom": str(iso),
                                      "networks": []}).status_code == 201
    r = kimchi.post("/vms", {"template": "iso", "disk_mode": "full"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0042E", r.text
    image = make_boot_disk(tmp_path / "base.img")
    assert _post_image(kimchi, "img", image).status_code == 201
    r = kimchi.post("/vms", {"template": "img", "host": "h2"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0041E", r.text
    r = kimchi.post("/vms", {"template": "img", "cloud_init": {"password": "x"}})
    assert r.status_code == 400 and "user" in r.json()["reason"], r.text
    r = kimchi.post("/vms", {"template": "img", "count": 0})
    assert r.status_code == 400, r.text
    done = kimchi.wait_task(kimchi.post("/vms", {"template": "img", "name": "a"}).json()["id"])
    assert done["status"] == "finished"
    r = kimchi.post("/vms", {"template": "img", "name": "a"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0001E"
    before = {vm["name"] for vm in kimchi.get("/vms").json()}
    # the test driver's volumes are no files: the copy job fails, saying so, and no
    # template is kept
    r = kimchi.post("/vms/a/template", {"name": "x"})
    assert r.status_code == 202, r.text
    done = kimchi.wait_task(r.json()["id"])
    assert done["status"] == "failed" and done["message"].startswith("KCHVM0044E"), done
    assert "does not exist" in done["message"]
    assert kimchi.get("/templates/x").status_code == 404
    r = kimchi.post("/vms/a/template", {"name": "img"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHTMPL0001E", r.text
    assert kimchi.post("/vms/a/start").status_code == 200
    r = kimchi.post("/vms/a/template", {"name": "y"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0043E", r.text
    assert "shut it off" in r.json()["reason"]
    assert {vm["name"] for vm in kimchi.get("/vms").json()} == before
