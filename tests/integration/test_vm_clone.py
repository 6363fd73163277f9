"""Cloning VMs on a real libvirtd: disks copied by a worker with qemu-img, then a new domain."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt

from tests.conftest import Kimchi, wait_for
from tests.isofactory import make_iso

URI = "qemu:///system"
# KVM guests do not start on every machine (nested hosts): plain emulation is enough here
PLAIN_QEMU = {"libvirt": {"uri": URI}, "features": {"kvm": "off"}}


def _vm(k: Kimchi, pool: Any) -> str:
    """A shut-off VM from a template, with data written into its disk."""
    iso = make_iso(pool.iso_dir / "f.iso", "Fedora-WS-Live-39-1-5")
    r = k.post("/templates", {"name": "t", "source_media": {"type": "disk", "path": str(iso)},
                              "disks": [{"index": 0, "size": 1, "pool": {"name": pool.name()}}]})
    assert r.status_code == 201, r.text
    wait_for(lambda: k.get("/templates/t").json()["invalid"] == {}, what="a valid template")
    name = f"kc-{pool.tag}"
    task = k.post("/vms", {"template": "t", "name": name}).json()
    assert k.wait_task(task["id"])["status"] == "finished"
    disk = _disks(k, name)[0]
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 1M 24M", disk], check=True,
                   capture_output=True)
    return name


def _disks(k: Kimchi, name: str) -> list[str]:
    return [d["path"] for d in k.get(f"/vms/{name}").json()["disks"] if d["device"] == "disk"]


def _macs(name: str) -> list[str]:
    root = ET.fromstring(libvirt.open(URI).lookupByName(name).XMLDesc(0))
    return [m.get("address", "") for m in root.findall("./devices/interface/mac")]


def test_a_clone_copies_the_disks_and_is_a_vm_of_its_own(kimchi_factory, redis_db,
                                                         qemu_pool):
    k = kimchi_factory(redis_url=redis_db.url, extra=PLAIN_QEMU)
    pool = qemu_pool
    src = _vm(k, pool)
    r = k.post(f"/vms/{src}/clone")
    assert r.status_code == 202, r.text
    task = r.json()
    assert task["kind"] == "vm.clone" and task["target_uri"] == f"/vms/{src}-clone-1"
    done = k.wait_task(task["id"], timeout=60)
    assert done["status"] == "finished", done
    clone = k.get(f"/vms/{src}-clone-1").json()
    assert clone["state"] == "shutoff" and clone["uuid"] != k.get(f"/vms/{src}").json()["uuid"]
    (a,), (b,) = _disks(k, src), _disks(k, clone["name"])
    assert a != b and Path(b).name == f"{src}-clone-1-0.qcow2"
    same = subprocess.run(["qemu-img", "compare", a, b], capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr  # the data came along
    assert not list(Path(b).parent.glob("*.part"))
    assert _macs(clone["name"]) and set(_macs(clone["name"])).isdisjoint(_macs(src))
    # the copy was a worker's job, and its progress reached the clone's task
    copy = [t for t in k.get("/tasks?kind=vm.clone.disks").json()
            if t["params"]["parent"] == task["id"]]
    assert len(copy) == 1 and copy[0]["status"] == "finished" and copy[0]["worker"]
    copying = [e["data"].get("message", "") for e in
               k.get(f"/events?since=0&task={copy[0]['id']}").json()]
    assert any(m.startswith(f"Copying {src}-clone-1-0.qcow2") for m in copying), copying
    steps = [e["data"].get("message", "") for e in
             k.get(f"/events?since=0&task={task['id']}").json()]
    assert f"Defining virtual machine {src}-clone-1" in steps, steps
    # a named clone, and the refusals
    assert k.wait_task(k.post(f"/vms/{src}/clone", {"name": f"{src}-b"}).json()["id"],
                       timeout=60)["status"] == "finished"
    r = k.post(f"/vms/{src}/clone", {"name": f"{src}-b"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0001E"
    assert k.post(f"/vms/{src}/start").status_code == 200
    r = k.post(f"/vms/{src}/clone")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0016E"
    # the clone deletes with its own disks, the source keeps its own
    assert k.delete(f"/vms/{clone['name']}").status_code == 204
    assert not Path(b).exists() and Path(a).exists()


def test_a_cancelled_clone_leaves_nothing_and_frees_the_source(kimchi_factory, redis_db,
                                                               qemu_pool):
    # no workers: the copy job waits in the queue, so the clone is caught mid-way
    k = kimchi_factory(redis_url=redis_db.url, workers=0, extra=PLAIN_QEMU)
    pool = qemu_pool
    src = _vm(k, pool)
    task = k.post(f"/vms/{src}/clone").json()
    wait_for(lambda: k.get("/tasks?kind=vm.clone.disks").json(), what="the copy job")
    r = k.post(f"/vms/{src}/start")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0019E"
    assert k.delete(f"/tasks/{task['id']}").status_code == 202
    assert k.wait_task(task["id"])["status"] == "cancelled"
    (child,) = k.get("/tasks?kind=vm.clone.disks").json()
    assert child["status"] == "cancelled"
    assert k.get(f"/vms/{src}-clone-1").status_code == 404
    assert sorted(p.name for p in Path(_disks(k, src)[0]).parent.iterdir()) == [f"{src}-0.qcow2"]
    assert k.post(f"/vms/{src}/start").status_code == 200


def test_a_clone_survives_a_daemon_crash(kimchi_factory, redis_db, qemu_pool):
    k = kimchi_factory(redis_url=redis_db.url, workers=0, extra=PLAIN_QEMU)
    pool = qemu_pool
    src = _vm(k, pool)
    task = k.post(f"/vms/{src}/clone").json()
    wait_for(lambda: k.get("/tasks?kind=vm.clone.disks").json(), what="the copy job")
    k.stop(signal.SIGKILL)
    k2 = kimchi_factory("again", redis_url=redis_db.url, workers=2,
                        extra=PLAIN_QEMU)
    done = k2.wait_task(task["id"], timeout=90)
    assert done["status"] == "finished" and done["attempt"] == 2, done
    # the lost attempt's copy ended (stopped, or done by a new worker and then removed)
    # before the second attempt copied again: one clone disk, no half-written part
    children = [t["status"] for t in k2.get("/tasks?kind=vm.clone.disks").json()]
    assert len(children) == 2 and set(children) <= {"cancelled", "finished"}, children
    (copy,) = _disks(k2, f"{src}-clone-1")
    assert sorted(p.name for p in Path(copy).parent.iterdir()) == sorted(
        [f"{src}-0.qcow2", f"{src}-clone-1-0.qcow2"])
    same = subprocess.run(["qemu-img", "compare", _disks(k2, src)[0], copy],
                          capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr
    assert [v["name"] for v in k2.get("/vms").json()].count(f"{src}-clone-1") == 1


def test_cancelling_mid_copy_stops_qemu_img_and_removes_the_part(kimchi_factory, redis_db,
                                                                  qemu_pool):
    # 24 MiB of data at 4 MiB/s ([workers] copy_limit_mib): the copy takes ~6 s
    k = kimchi_factory(redis_url=redis_db.url,
                       extra={**PLAIN_QEMU, "workers": {"copy_limit_mib": 4}})
    pool = qemu_pool
    src = _vm(k, pool)
    task = k.post(f"/vms/{src}/clone").json()
    folder = Path(_disks(k, src)[0]).parent
    wait_for(lambda: list(folder.glob("*.part")), what="the copy under way")
    wait_for(lambda: subprocess.run(["pgrep", "-f", "qemu-img convert"],
                                    capture_output=True).returncode == 0, what="qemu-img")
    t0 = time.monotonic()
    assert k.delete(f"/tasks/{task['id']}").status_code == 202
    assert k.wait_task(task["id"])["status"] == "cancelled"
    assert time.monotonic() - t0 < 5
    (child,) = k.get("/tasks?kind=vm.clone.disks").json()
    assert child["status"] == "cancelled" and (child["progress"] or 0) < 100
    wait_for(lambda: subprocess.run(["pgrep", "-f", f"qemu-img convert.*{src}-clone"],
                                    capture_output=True).returncode == 1, what="qemu-img gone")
    assert sorted(p.name for p in folder.iterdir()) == [f"{src}-0.qcow2"]


def test_the_clone_task_carries_no_domain_xml(kimchi_factory, redis_db, qemu_pool):
    """Users may read tasks of their VMs: the source's XML (VNC passwords) stays inside."""
    k = kimchi_factory(redis_url=redis_db.url, workers=0, extra=PLAIN_QEMU)
    pool = qemu_pool
    src = _vm(k, pool)
    r = k.http.put(k.url + f"/vms/{src}", json={"graphics": {"type": "vnc"}})
    assert r.status_code == 200, r.text
    task = k.post(f"/vms/{src}/clone").json()
    assert "<domain" not in json.dumps(k.get(f"/tasks/{task['id']}").json())
    assert k.delete(f"/tasks/{task['id']}").status_code == 202
