"""VM snapshots: taken as tasks, listed, reverted to and deleted — on libvirt's test
driver for the REST behaviour, and on a real libvirtd where a revert brings back a
disk's content (qemu-img reads it) as it was when the snapshot was taken."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import libvirt
import pytest
import requests

from tests.conftest import Kimchi, RedisServer, wait_for


def take(k: Kimchi, vm: str, body: dict[str, Any]) -> dict[str, Any]:
    r = k.post(f"/vms/{vm}/snapshots", body)
    assert r.status_code == 202, r.text
    task = r.json()
    assert task["kind"] == "vm.snapshot" and r.headers["Location"] == f"/tasks/{task['id']}"
    done = k.wait_task(task["id"], timeout=60)
    return done


def test_snapshots_of_a_running_vm(kimchi: Kimchi, pam_users: Any) -> None:
    k = kimchi  # the driver's "test" VM, running
    assert k.get("/vms/test/snapshots").json() == []
    assert k.get("/vms/test/snapshots/current").json()["errcode"] == "KCHSNAP0003E"
    done = take(k, "test", {"name": "before-upgrade", "description": "known good"})
    assert done["status"] == "finished", done
    assert done["result"]["name"] == "before-upgrade" and done["result"]["state"] == "running"
    unnamed = take(k, "test", {})
    assert unnamed["status"] == "finished" and unnamed["result"]["name"].startswith("snap-")
    snaps = k.get("/vms/test/snapshots").json()
    assert [s["name"] for s in snaps] == ["before-upgrade", unnamed["result"]["name"]]
    assert snaps[1]["parent"] == "before-upgrade" and snaps[1]["current"]
    assert snaps[0]["description"] == "known good"

    # going back: the VM's state and the current snapshot follow
    assert k.post("/vms/test/poweroff").status_code == 200
    r = k.post("/vms/test/snapshots/before-upgrade/revert")
    assert r.status_code == 200 and r.json()["current"], r.text
    wait_for(lambda: k.get("/vms/test").json()["state"] == "running",
             what="the VM running again, as it was in the snapshot")
    assert k.get("/vms/test/snapshots/current").json()["name"] == "before-upgrade"

    # bad requests: clear errors, nothing taken
    for body in ({"name": "../x"}, {"name": "current"}, {"name": "a b"}, {"nam": "x"}):
        r = k.post("/vms/test/snapshots", body)
        assert r.status_code == 400, (body, r.text)
    r = k.post("/vms/test/snapshots", {"name": "before-upgrade"})
    assert r.json()["errcode"] == "KCHSNAP0001E"
    assert k.get("/vms/test/snapshots/nosuch").json()["errcode"] == "KCHSNAP0002E"
    assert k.post("/vms/nosuch/snapshots", {}).status_code == 404
    assert len(k.get("/vms/test/snapshots").json()) == 2

    # a user sees the snapshots of their VM (and their events), and may not take, revert
    # or delete them; the snapshots of other VMs are not theirs to hear of
    user = (pam_users.user.name, pam_users.user.password)
    events = k.url + "/events?since=0&types=snapshot.*"
    assert requests.get(events, auth=user, timeout=20).json() == []
    assert k.http.put(k.url + "/vms/test", json={"users": [pam_users.user.name]}).ok
    assert [e["data"]["name"] for e in requests.get(events, auth=user, timeout=20).json()][
        0] == "before-upgrade"
    assert len(requests.get(k.url + "/vms/test/snapshots", auth=user, timeout=20).json()) == 2
    for method, path in (("POST", "/vms/test/snapshots"),
                         ("POST", "/vms/test/snapshots/before-upgrade/revert"),
                         ("DELETE", "/vms/test/snapshots/before-upgrade")):
        r = requests.request(method, k.url + path, auth=user, json={} if method == "POST"
                             else None, timeout=20)
        assert r.status_code == 403, (method, path, r.text)

    assert k.delete("/vms/test/snapshots/before-upgrade").status_code == 204
    left = k.get("/vms/test/snapshots").json()
    assert [s["name"] for s in left] == [unnamed["result"]["name"]]
    kinds = [e["type"] for e in k.get("/events?since=0&types=snapshot.*").json()]
    assert kinds == ["snapshot.created", "snapshot.created", "snapshot.reverted",
                     "snapshot.deleted"]


URI = "qemu:///system"


@pytest.fixture
def shut_vm(libvirtd: Any, qemu_pool: Any) -> Any:
    """A shut-off plain-QEMU domain with one qcow2 disk in the test's pool."""
    conn = libvirt.open(URI)
    name = f"kimchi-test-{qemu_pool.tag}-snap"
    disk = Path(qemu_pool.folder) / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    dom = conn.defineXML(f"""<domain type='qemu'><name>{name}</name>
      <memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>
      <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>""")
    dom.name_, dom.disk = name, disk
    yield dom
    try:
        for s in dom.listAllSnapshots(0):
            s.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
    except libvirt.libvirtError:
        pass


def read_at(disk: Path, offset: int, size: int) -> bytes:
    out = subprocess.run(["qemu-io", "-r", "-f", "qcow2", "-c",
                          f"read -v {offset} {size}", str(disk)],
                         capture_output=True, text=True, check=True).stdout
    hexes = []
    for line in out.splitlines():
        if ":" in line and line[:8].strip("0123456789abcdef") == "":
            hexes += line.split(":", 1)[1].split()[:16]
    return bytes(int(h, 16) for h in hexes[:size])


def write_at(disk: Path, offset: int, byte: int) -> None:
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {byte} {offset} 512",
                    str(disk)], capture_output=True, check=True)


def test_on_libvirtd_a_revert_brings_the_disk_back(kimchi_factory: Any, redis_db: RedisServer,
                                                   shut_vm: Any) -> None:
    k = kimchi_factory(redis_url=redis_db.url, workers=0, extra={"libvirt": {"uri": URI}})
    name, disk = shut_vm.name_, shut_vm.disk
    wait_for(lambda: k.get(f"/vms/{name}").status_code == 200, what="the VM listed")
    write_at(disk, 0, 0x41)  # the disk says "A..."
    done = take(k, name, {"name": f"s-{uuid.uuid4().hex[:4]}"})
    assert done["status"] == "finished", done
    snap = done["result"]["name"]
    assert done["result"]["state"] == "shutoff"
    info = subprocess.run(["qemu-img", "snapshot", "-l", str(disk)], capture_output=True,
                          text=True, check=True).stdout
    assert snap in info  # an internal snapshot inside the qcow2 file
    write_at(disk, 0, 0x42)  # then "B..."
    assert read_at(disk, 0, 4) == b"BBBB"
    r = k.post(f"/vms/{name}/snapshots/{snap}/revert")
    assert r.status_code == 200, r.text
    assert read_at(disk, 0, 4) == b"AAAA"  # back as it was
    assert k.delete(f"/vms/{name}/snapshots/{snap}").status_code == 204
    info = subprocess.run(["qemu-img", "snapshot", "-l", str(disk)], capture_output=True,
                          text=True, check=True).stdout
    assert snap not in info
