"""Live migration of a real QEMU guest between two hosts, each a libvirtd of its own in its
own network, mount and UTS namespaces (tests/qemu_hosts.py), the guest's disk on a folder
both see (a storage pool over it on each)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Kimchi, wait_for
from tests.qemu_hosts import QemuHosts, qemu_hosts, virsh  # noqa: F401  (a fixture)

GUEST = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory>
<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
<graphics type='vnc' port='-1' listen='127.0.0.1'/><video><model type='vga'/></video>
</devices></domain>"""


@pytest.fixture
def shared(qemu_hosts: QemuHosts) -> Iterator[Path]:  # noqa: F811
    """A folder both hosts see (QEMU may read it), a storage pool "shared" over it on each."""
    folder = Path(tempfile.mkdtemp(prefix="kimchi-migrate-", dir="/tmp"))
    folder.chmod(0o755)
    for h in qemu_hosts.hosts:  # transient: gone with the host
        virsh(h.uri, "pool-create-as", "shared", "dir", "--target", str(folder))
    yield folder
    for h in qemu_hosts.hosts:
        try:
            virsh(h.uri, "pool-destroy", "shared")
        except RuntimeError:
            pass
    shutil.rmtree(folder, ignore_errors=True)


def _guest(uri: str, folder: Path, name: str) -> None:
    """A running guest on host ``uri``, its disk in the shared folder."""
    disk = folder / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    os.chmod(disk, 0o666)
    virsh(uri, "pool-refresh", "shared")
    xml = folder / f"{name}.xml"
    xml.write_text(GUEST.format(name=name, disk=disk))
    virsh(uri, "define", str(xml))
    virsh(uri, "start", name)


def _names(uri: str, active: bool | None = None) -> set[str]:
    """The guests of host ``uri`` (only the running ones, or only the others)."""
    which = {None: "--all", True: "--state-running", False: "--inactive"}[active]
    return set(virsh(uri, "list", "--name", which).split())


def test_a_running_guest_moves_live_a_cancel_leaves_it_and_a_shut_off_one_moves_back(
        kimchi_factory, redis_db, qemu_hosts: QemuHosts, shared: Path):  # noqa: F811
    h0, h1 = qemu_hosts.hosts
    _guest(h0.uri, shared, "mover")
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, workers=0,
                               extra={"libvirt": {"uri": h0.uri}})
    assert k.post("/hosts", json={"name": "h1", "uri": h1.uri}).status_code == 201
    wait_for(lambda: k.get("/vms/mover").json().get("state") == "running", what="the guest")

    # refused with the reason: to its own host; a name taken there
    r = k.post("/vms/mover/migrate", {"host": "local"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0030E"
    assert "on that host already" in r.json()["reason"]
    r = k.post("/vms/mover/migrate", {"host": "h1", "copy_storage": "all"})
    assert r.status_code == 400 and "write over them" in r.json()["reason"]

    # cancelled half-way (1 MiB/s): it stays on its source, running
    task = k.post("/vms/mover/migrate", {"host": "h1", "bandwidth": 1}).json()
    assert task["kind"] == "vm.migrate" and task["target_uri"] == "/hosts/h1/vms/mover"
    wait_for(lambda: (k.get(f"/tasks/{task['id']}").json().get("details") or {})
             .get("bytes"), timeout=60, what="the first bytes moved")
    assert k.delete(f"/tasks/{task['id']}").status_code == 202
    assert k.wait_task(task["id"], timeout=60)["status"] == "cancelled"
    assert "mover" in _names(h0.uri, active=True) and "mover" not in _names(h1.uri)
    assert k.get("/vms/mover").json()["host"] == "local"

    # moved live: running on h1, gone from h0, listed on h1
    task = k.post("/vms/mover/migrate", {"host": "h1"}).json()
    done = k.wait_task(task["id"], timeout=120)
    assert done["status"] == "finished", done
    assert done["result"]["host"] == "h1" and done["progress"] == 100
    assert "mover" in _names(h1.uri, active=True) and "mover" not in _names(h0.uri)
    vm = k.get("/vms/mover").json()
    assert vm["host"] == "h1" and vm["state"] == "running"
    moves = k.get(f"/events?since=0&task={task['id']}&types=task.progress").json()
    assert any(e["data"]["message"].startswith("Moving mover to h1") for e in moves)

    # shut off, it moves back (its definition; the disk stays where both see it)
    assert k.post("/hosts/h1/vms/mover/poweroff").json()["state"] == "shutoff"
    back = k.wait_task(k.post("/hosts/h1/vms/mover/migrate", {"host": "local"}).json()["id"],
                       timeout=60)
    assert back["status"] == "finished", back
    assert "mover" in _names(h0.uri, active=False) and "mover" not in _names(h1.uri)
    wait_for(lambda: k.get("/vms/mover").json().get("host") == "local", what="listed back")
    assert k.post("/vms/mover/start").json()["state"] == "running"
    k.post("/vms/mover/poweroff")
    virsh(h0.uri, "undefine", "mover")


def test_a_guest_whose_disk_the_target_cannot_see_moves_with_a_copy_of_it(
        kimchi_factory, redis_db, qemu_hosts: QemuHosts, shared: Path):  # noqa: F811
    """Each host's /var/lib/libvirt/images is its own (a bind mount of the host's folder):
    a disk there is not on the other host, so copy_storage auto copies it (libvirt makes
    the volume in the target's pool over that folder, then mirrors the disk)."""
    h0, h1 = qemu_hosts.hosts
    pools = [_images(h.uri) for h in (h0, h1)]
    virsh(h0.uri, "vol-create-as", pools[0], "copied.qcow2", "64M", "--format", "qcow2")
    disk = virsh(h0.uri, "vol-path", "--pool", pools[0], "copied.qcow2").strip()
    xml = shared / "copied.xml"
    xml.write_text(GUEST.format(name="copied", disk=disk))
    virsh(h0.uri, "define", str(xml))
    virsh(h0.uri, "start", "copied")
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, workers=0,
                               extra={"libvirt": {"uri": h0.uri}})
    assert k.post("/hosts", json={"name": "h1", "uri": h1.uri}).status_code == 201
    wait_for(lambda: k.get("/vms/copied").json().get("state") == "running", what="the guest")

    r = k.post("/vms/copied/migrate", {"host": "h1", "copy_storage": "none"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0030E"
    assert "not on storage h1 sees" in r.json()["reason"]
    done = k.wait_task(k.post("/vms/copied/migrate", {"host": "h1"}).json()["id"],
                       timeout=180)
    assert done["status"] == "finished", done
    assert "copied" in _names(h1.uri, active=True) and "copied" not in _names(h0.uri)
    virsh(h1.uri, "pool-refresh", pools[1])
    # the copy, on the target's own disk
    assert "copied.qcow2" in virsh(h1.uri, "vol-list", pools[1])
    virsh(h1.uri, "destroy", "copied")
    virsh(h1.uri, "undefine", "copied")
    for h, pool in zip((h0, h1), pools, strict=True):
        virsh(h.uri, "pool-refresh", pool)
        if "copied.qcow2" in virsh(h.uri, "vol-list", pool):
            virsh(h.uri, "vol-delete", "--pool", pool, "copied.qcow2")


def _images(uri: str) -> str:
    """The name of the host's pool over its own /var/lib/libvirt/images (kimchid makes one,
    "default", on its local host; made here on the other), running."""
    for name in virsh(uri, "pool-list", "--all", "--name").split():
        if "<path>/var/lib/libvirt/images</path>" in virsh(uri, "pool-dumpxml", name):
            if name not in virsh(uri, "pool-list", "--name").split():
                virsh(uri, "pool-start", name, "--build")
            return name
    virsh(uri, "pool-create-as", "images", "dir", "--target", "/var/lib/libvirt/images",
          "--build")
    return "images"
