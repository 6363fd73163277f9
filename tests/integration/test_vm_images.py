"""VMs from disk images on a real libvirtd with real QEMU: image templates, linked and full
disks, many VMs in one request, a template made from a VM, cloud-init seeds.

The image is a tiny boot disk (tests/bootdisk.py) that prints a line on its serial port
the moment it boots, so "the VM boots" is what the guest itself says."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import libvirt

from tests.bootdisk import BOOT_TEXT, make_boot_disk, serial_text
from tests.conftest import Kimchi, wait_for
from tests.isoservers import HttpIsoServer

URI = "qemu:///system"
PLAIN_QEMU = {"libvirt": {"uri": URI}, "features": {"kvm": "off"}}


def _connected(k: Kimchi) -> None:
    """Wait for a daemon just started to have its libvirt connection open: it answers
    /health before, and a change asked of it meanwhile gets a 503."""
    wait_for(lambda: k.get("/health").json().get("libvirt") == "up", timeout=30,
             what="kimchid connected to libvirtd")


def _image_template(k: Kimchi, pool: Any, name: str, **fields: Any) -> Path:
    _connected(k)
    base = make_boot_disk(pool.folder / f"{name}-image.img")
    pool.refresh(0)
    body = {"name": name, "source_media": {"type": "image", "path": str(base)},
            "networks": [], "memory": {"current": 128, "maxmemory": 128},
            "disks": [{"index": 0, "size": 0.05, "pool": {"name": pool.name()}}], **fields}
    r = k.post("/templates", body)
    assert r.status_code == 201, r.text
    return base


def _disk(k: Kimchi, vm: str) -> dict[str, Any]:
    (disk,) = [d for d in k.get(f"/vms/{vm}").json()["disks"] if d["device"] == "disk"]
    return disk


def _chain(path: str) -> list[str]:
    out = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", path],
                         capture_output=True, text=True, check=True).stdout
    return [layer["filename"] for layer in json.loads(out)]


def _reads(path: str, fmt: str, pattern: int) -> bool:
    """Whether 4 KiB at 512 KiB of the image read as ``pattern`` (qemu-io's -P check)."""
    done = subprocess.run(["qemu-io", "-r", "-f", fmt, "-c", f"read -P {pattern} 512k 4k",
                           path], capture_output=True, text=True)
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


def _boots(k: Kimchi, vm: str) -> None:
    assert k.post(f"/vms/{vm}/start").status_code == 200
    try:
        assert BOOT_TEXT in serial_text(libvirt.open(URI), vm)
    finally:
        assert k.post(f"/vms/{vm}/poweroff").status_code == 200


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_linked_vms_of_an_image_template_boot_and_keep_their_writes_apart(
        kimchi_factory, redis_db, qemu_pool):
    k = kimchi_factory(redis_url=redis_db.url, extra=PLAIN_QEMU)
    pool, tag = qemu_pool, qemu_pool.tag
    base = _image_template(k, pool, f"img-{tag}")
    t = k.get(f"/templates/img-{tag}").json()
    assert t["source_media"] == {"type": "image", "path": str(base), "format": "raw",
                                 "virtual_size": 1 << 20}
    assert t["vms"] == [] and t["invalid"] == {}

    task = k.post("/vms", {"template": f"img-{tag}", "name": f"ln-{tag}", "count": 2}).json()
    done = k.wait_task(task["id"], timeout=60)
    assert done["status"] == "finished", done
    vms = [f"ln-{tag}-1", f"ln-{tag}-2"]
    assert done["result"]["names"] == vms
    leaves = []
    for vm in vms:
        disk = _disk(k, vm)
        assert disk["backing"] == str(base)
        assert _chain(disk["path"]) == [disk["path"], str(base)]  # a leaf over the image
        leaves.append(disk["path"])
        _boots(k, vm)
    # a write in one leaf is in neither the other nor the base
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 512k 4k", leaves[0]],
                   check=True, capture_output=True)
    assert _reads(leaves[0], "qcow2", 0xAB)
    assert _reads(leaves[1], "qcow2", 0) and _reads(str(base), "raw", 0)

    # the base is protected while VMs stand on it
    assert sorted(k.get(f"/templates/img-{tag}").json()["vms"]) == vms
    r = k.delete(f"/templates/img-{tag}")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHTMPL0022E", r.text
    assert all(vm in r.json()["reason"] for vm in vms)
    for vm in vms:
        assert k.delete(f"/vms/{vm}").status_code == 204
    assert k.delete(f"/templates/img-{tag}").status_code == 204
    assert base.exists()  # the user's image: the template only used it


def test_a_vm_made_a_template_continues_on_a_leaf_over_a_read_only_base(
        kimchi_factory, redis_db, qemu_pool):
    k = kimchi_factory(redis_url=redis_db.url, extra=PLAIN_QEMU)
    pool, tag = qemu_pool, qemu_pool.tag
    _image_template(k, pool, f"img-{tag}")
    vm = f"full-{tag}"
    task = k.post("/vms", {"template": f"img-{tag}", "name": vm, "disk_mode": "full"}).json()
    assert k.wait_task(task["id"], timeout=60)["status"] == "finished"
    old = _disk(k, vm)
    assert old["backing"] is None and _chain(old["path"]) == [old["path"]]  # a copy
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x3c 512k 4k", old["path"]],
                   check=True, capture_output=True)

    task = k.post(f"/vms/{vm}/template", {"name": f"from-{tag}"}).json()
    assert task["kind"] == "vm.template" and task["target_uri"] == f"/templates/from-{tag}"
    done = k.wait_task(task["id"], timeout=60)
    assert done["status"] == "finished", done
    base = str(pool.folder / f"from-{tag}-base-0.qcow2")
    leaf = str(pool.folder / f"{vm}-0-from-{tag}.qcow2")
    assert done["result"]["bases"] == [base] and done["result"]["leaves"] == [leaf]
    disk = _disk(k, vm)
    assert disk["path"] == leaf and disk["backing"] == base
    assert _chain(leaf) == [leaf, base]
    assert stat.S_IMODE(os.stat(base).st_mode) == 0o444  # read-only
    assert not Path(old["path"]).exists()  # the VM's old disk went
    assert _reads(leaf, "qcow2", 0x3C) and _reads(base, "qcow2", 0x3C)  # its data is kept
    _boots(k, vm)

    t = k.get(f"/templates/from-{tag}").json()
    assert t["source_media"]["owned"] is True and t["vms"] == [vm]
    shown = k.get(f"/vms/{vm}").json()  # the hardware its system boots on comes along
    assert (t["machine"], t["firmware"]) == (shown["machine"], shown["firmware"])
    assert t["disks"][0]["base"] == {"path": base, "format": "qcow2"}
    # a new VM of it is one more leaf over the same base
    task = k.post("/vms", {"template": f"from-{tag}", "name": f"two-{tag}"}).json()
    assert k.wait_task(task["id"], timeout=60)["status"] == "finished"
    assert _disk(k, f"two-{tag}")["backing"] == base
    assert sorted(k.get(f"/templates/from-{tag}").json()["vms"]) == sorted([f"two-{tag}", vm])
    assert k.delete(f"/templates/from-{tag}").status_code == 400
    for name in (vm, f"two-{tag}"):
        assert k.delete(f"/vms/{name}").status_code == 204
    assert k.delete(f"/templates/from-{tag}").status_code == 204
    assert not Path(base).exists()  # it owned its base


def test_a_cancelled_or_crashed_template_from_a_vm_leaves_a_vm_that_boots(
        kimchi_factory, redis_db, qemu_pool):
    # each progress report of the copy waits 1 s: the task is caught mid-copy
    k = kimchi_factory(redis_url=redis_db.url, extra=PLAIN_QEMU,
                       env={"KIMCHI_FAULT_SLOW_REPORTS": "1.0"})
    pool, tag = qemu_pool, qemu_pool.tag
    _image_template(k, pool, f"img-{tag}")
    vm = f"src-{tag}"
    task = k.post("/vms", {"template": f"img-{tag}", "name": vm}).json()
    assert k.wait_task(task["id"], timeout=60)["status"] == "finished"
    before = libvirt.open(URI).lookupByName(vm).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    files = _files(pool.folder)

    task = k.post(f"/vms/{vm}/template", {"name": f"c-{tag}"}).json()
    wait_for(lambda: _copying(k, f"c-{tag}"), what="the copy job")
    r = k.post(f"/vms/{vm}/start")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0019E"
    assert k.delete(f"/tasks/{task['id']}").status_code == 202
    assert k.wait_task(task["id"], timeout=30)["status"] == "cancelled"
    after = libvirt.open(URI).lookupByName(vm).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert after == before  # exactly as it was
    assert _files(pool.folder) == files  # no base, leaf or .part left
    assert k.get(f"/templates/c-{tag}").status_code == 404
    _boots(k, vm)

    # kill -9 of the workers mid-copy: the job is taken over and the task completes
    task = k.post(f"/vms/{vm}/template", {"name": f"k-{tag}"}).json()
    wait_for(lambda: _copying(k, f"k-{tag}"), what="the copy job")
    for w in k.workers():
        w.send_signal(signal.SIGKILL)
    done = k.wait_task(task["id"], timeout=90)
    assert done["status"] == "finished", done
    base = str(pool.folder / f"k-{tag}-base-0.qcow2")
    leaf = str(pool.folder / f"{vm}-0-k-{tag}.qcow2")
    assert _disk(k, vm)["path"] == leaf and _chain(leaf) == [leaf, base]
    assert not [f for f in _files(pool.folder) if f.endswith(".part")]
    _boots(k, vm)
    assert k.delete(f"/vms/{vm}").status_code == 204
    assert k.delete(f"/templates/k-{tag}").status_code == 204


def test_a_daemon_killed_at_each_step_of_a_template_from_a_vm_leaves_it_whole(
        kimchi_factory, redis_db, qemu_pool):
    k = kimchi_factory(redis_url=redis_db.url, extra=PLAIN_QEMU,
                       env={"KIMCHI_FAULT_SLOW_REPORTS": "1.0"})
    pool, tag = qemu_pool, qemu_pool.tag
    _image_template(k, pool, f"img-{tag}")
    vm = f"d-{tag}"
    task = k.post("/vms", {"template": f"img-{tag}", "name": vm, "disk_mode": "full"}).json()
    assert k.wait_task(task["id"], timeout=60)["status"] == "finished"
    others = [f for f in _files(pool.folder) if not f.startswith(vm)]

    def made(template: str, task_id: str) -> None:
        """The task ended well after the daemon came back: the VM on its one new leaf
        over the template's base, no other file of the VM's, and it boots."""
        done = k.wait_task(task_id, timeout=120)
        assert done["status"] == "finished", done
        base = str(pool.folder / f"{template}-base-0.qcow2")
        leaf = str(pool.folder / f"{vm}-0-{template}.qcow2")
        assert _disk(k, vm)["path"] == leaf and _chain(leaf) == [leaf, base]
        assert k.get(f"/templates/{template}").json()["disks"][0]["base"]["path"] == base
        mine = [f for f in _files(pool.folder) if f not in others]
        assert mine == sorted([f"{template}-base-0.qcow2", f"{vm}-0-{template}.qcow2"]), mine
        _boots(k, vm)
        others.append(f"{template}-base-0.qcow2")  # the next template leaves this base be

    # kill -9 of the daemon mid-copy (its workers go with it): the next one finishes
    task = k.post(f"/vms/{vm}/template", {"name": f"m-{tag}"}).json()
    wait_for(lambda: _copying(k, f"m-{tag}"), what="the copy job")
    k.stop(signal.SIGKILL)
    k.start()
    made(f"m-{tag}", task["id"])

    # killed with the copy done and the VM not yet moved; then right after it moved
    for point, template in (("vm.template.commit", f"c-{tag}"),
                            ("vm.template.committed", f"a-{tag}")):
        k.stop()
        k.env["KIMCHI_FAULT_CRASH_AT"] = point
        k.start()
        # listed: the daemon has read the host's VMs (before, a change of one is a 503)
        wait_for(lambda: k.get(f"/vms/{vm}").status_code == 200, what=f"{vm} listed")
        task = k.post(f"/vms/{vm}/template", {"name": template}).json()
        assert k.proc is not None
        assert k.proc.wait(90) == -signal.SIGKILL, point  # it died there
        del k.env["KIMCHI_FAULT_CRASH_AT"]
        k.start()
        made(template, task["id"])
    assert k.delete(f"/vms/{vm}").status_code == 204
    for template in (f"a-{tag}", f"c-{tag}", f"m-{tag}"):
        assert k.delete(f"/templates/{template}").status_code == 204


def _copying(k: Kimchi, template: str) -> bool:
    """Whether the copy job of the template being made has reported progress."""
    return any(t["status"] == "running" and t["progress"]
               for t in k.get("/tasks?kind=vm.template.disks").json()
               if t["target_uri"] == f"/templates/{template}")


def test_cloud_init_seed_holds_what_was_asked_and_goes_with_the_vm(
        kimchi_factory, redis_db, qemu_pool):
    k = kimchi_factory(redis_url=redis_db.url, extra=PLAIN_QEMU)
    pool, tag = qemu_pool, qemu_pool.tag
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtestkeyonlyfortests ops@laptop"
    _image_template(k, pool, f"ci-{tag}", cloud_init={
        "user": "ops", "password": "s3cret-Pw", "ssh_authorized_keys": [key]})
    shown = k.get(f"/templates/ci-{tag}").json()["cloud_init"]
    assert shown == {"user": "ops", "ssh_authorized_keys": [key], "password_set": True}
    vm = f"ci-{tag}-vm"
    task = k.post("/vms", {"template": f"ci-{tag}", "name": vm, "cloud_init": {
        "hostname": "web-1.example.org", "user_data": "#!/bin/sh\necho kimchi-was-here\n"}})
    assert task.status_code == 202, task.text
    assert "s3cret" not in json.dumps(task.json())  # never in a task
    assert k.wait_task(task.json()["id"], timeout=60)["status"] == "finished"
    cdroms = [d for d in k.get(f"/vms/{vm}").json()["disks"] if d["device"] == "cdrom"]
    (seed,) = [d["path"] for d in cdroms]
    assert seed == str(pool.folder / f"{vm}-cidata.iso")
    label = subprocess.run(["isoinfo", "-d", "-i", seed], capture_output=True, text=True)
    assert "Volume id: cidata" in label.stdout

    def read(name: str) -> str:
        return subprocess.run(["isoinfo", "-R", "-i", seed, "-x", f"/{name}"],
                              capture_output=True, text=True, check=True).stdout

    meta = json.loads(read("meta-data"))
    assert meta["local-hostname"] == "web-1.example.org"
    user_data = read("user-data")
    assert "s3cret" not in user_data and "$6$" in user_data  # hashed
    assert '"name": "ops"' in user_data and key in user_data
    assert '"fqdn": "web-1.example.org"' in user_data
    assert "kimchi-was-here" in user_data  # the raw part, beside the fields
    _boots(k, vm)  # the seed CD-ROM does not stop it booting from its disk
    assert k.delete(f"/vms/{vm}").status_code == 204
    assert not Path(seed).exists()


def test_a_template_of_an_image_url_downloads_it_into_a_pool_first(
        kimchi_factory, redis_db, qemu_pool, tmp_path):
    k = kimchi_factory(redis_url=redis_db.url,
                       extra={**PLAIN_QEMU, "outbound": {"allow": ["127.0.0.1"]}})
    pool, tag = qemu_pool, qemu_pool.tag
    served = tmp_path / "served"
    served.mkdir()
    make_boot_disk(served / "debian-12-generic-amd64.raw")
    (served / "notes.raw").write_text("not a disk\n" * 1000)
    with HttpIsoServer(served) as http:
        r = k.post("/templates", {"name": f"url-{tag}", "networks": [],
                                  "memory": {"current": 128, "maxmemory": 128},
                                  "source_media": {"type": "image", "pool": pool.name(),
                                                   "path": http.url(
                                                       "debian-12-generic-amd64.raw")}})
        assert r.status_code == 202, r.text
        task = r.json()
        assert task["kind"] == "template.image" and task["target_uri"] == f"/templates/url-{tag}"
        done = k.wait_task(task["id"], timeout=60)
        assert done["status"] == "finished", done
        # not an image: the download is made, refused as a base, and removed
        r = k.post("/templates", {"name": f"bad-{tag}", "source_media": {
            "type": "image", "pool": pool.name(), "path": http.url("notes.raw")}})
        assert r.status_code == 202, r.text
        bad = k.wait_task(r.json()["id"], timeout=60)
    assert bad["status"] == "failed" and "not a disk image" in bad["message"], bad
    assert k.get(f"/templates/bad-{tag}").status_code == 404
    path = str(pool.folder / "debian-12-generic-amd64.raw")
    assert _files(pool.folder) == ["debian-12-generic-amd64.raw"]
    t = k.get(f"/templates/url-{tag}").json()
    assert (t["os_distro"], t["os_version"]) == ("debian", "12")
    assert t["source_media"]["path"] == path and t["source_media"]["owned"] is True
    assert t["source_media"]["url"].endswith("/debian-12-generic-amd64.raw")
    task = k.post("/vms", {"template": f"url-{tag}", "name": f"u-{tag}"}).json()
    assert k.wait_task(task["id"], timeout=60)["status"] == "finished"
    assert _disk(k, f"u-{tag}")["backing"] == path
    _boots(k, f"u-{tag}")
    assert k.delete(f"/vms/{'u-' + tag}").status_code == 204
    assert k.delete(f"/templates/url-{tag}").status_code == 204
    assert not Path(path).exists()  # downloaded for the template: deleted with it
