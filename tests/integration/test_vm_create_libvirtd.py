"""Creating VMs on a real libvirtd: failures roll back, a daemon crash loses nothing."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conftest import Kimchi, wait_for
from tests.isofactory import make_iso

URI = "qemu:///system"


@pytest.fixture
def pools(libvirtd, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two throw-away directory pools, removed with whatever is left in them."""
    conn = libvirt.open(URI)
    tag = uuid.uuid4().hex[:8]
    made = {}
    for which in ("a", "b"):
        d = tmp_path / f"pool-{which}"
        d.mkdir()
        made[which] = conn.storagePoolCreateXML(
            f"<pool type='dir'><name>kimchi-test-{which}-{tag}</name><target><path>{d}</path>"
            "</target></pool>", 0)
    yield {"conn": conn, "tag": tag, **made}
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(f"kt-{tag}"):
            dom.undefine()
    for pool in made.values():
        try:
            pool.destroy()
        except libvirt.libvirtError:
            pass


def _volumes(pool: Any) -> list[str]:
    if not pool.isActive():
        return []
    pool.refresh(0)
    return sorted(pool.listVolumes())


def _template(k: Kimchi, iso: Path, disks: list[dict[str, Any]]) -> None:
    r = k.post("/templates", {"name": "t", "source_media": {"type": "disk", "path": str(iso)},
                              "disks": disks, "networks": []})
    assert r.status_code == 201, r.text
    wait_for(lambda: k.get("/templates/t").json()["invalid"] == {}, what="a valid template")


def test_a_failed_creation_removes_the_disks_it_made(kimchi_factory, redis_db, pools,
                                                     tmp_path: Path):
    k = kimchi_factory(redis_url=redis_db.url, extra={"libvirt": {"uri": URI}},
                       env={"KIMCHI_FAULT_SLOW_REPORTS": "1.0"})
    iso = make_iso(tmp_path / "f.iso", "Fedora-WS-Live-39-1-5")
    a, b = pools["a"], pools["b"]
    _template(k, iso, [{"index": 0, "size": 1, "pool": {"name": a.name()}},
                       {"index": 1, "size": 1, "pool": {"name": b.name()}}])
    name = f"kt-{pools['tag']}"
    task = k.post("/vms", {"template": "t", "name": name}).json()
    wait_for(lambda: _volumes(a) == [f"{name}-0.qcow2"], what="the first disk")
    b.destroy()  # the second pool goes away under the job's feet
    done = k.wait_task(task["id"])
    assert done["status"] == "failed" and done["message"].startswith("KCHVM0008E"), done
    assert _volumes(a) == []  # the first disk went again
    with pytest.raises(libvirt.libvirtError):
        pools["conn"].lookupByName(name)
    assert k.get(f"/vms/{name}").status_code == 404
    # a volume in the way is refused up front, with its name
    r = k.http.put(k.url + "/templates/t", json={
        "disks": [{"index": 0, "size": 1, "pool": {"name": a.name()}}]})
    assert r.status_code == 200, r.text
    a.createXML(f"<volume><name>{name}-0.qcow2</name><capacity unit='M'>1</capacity>"
                "<target><format type='qcow2'/></target></volume>", 0)
    r = k.post("/vms", {"template": "t", "name": name})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0007E", r.text
    assert f"{name}-0.qcow2" in r.json()["reason"]


def test_a_creation_survives_a_daemon_crash(kimchi_factory, redis_db, pools, tmp_path: Path):
    k = kimchi_factory(redis_url=redis_db.url, extra={"libvirt": {"uri": URI}},
                       env={"KIMCHI_FAULT_SLOW_REPORTS": "1.0"})
    iso = make_iso(tmp_path / "f.iso", "Fedora-WS-Live-39-1-5")
    a = pools["a"]
    _template(k, iso, [{"index": i, "size": 1, "pool": {"name": a.name()}} for i in range(3)])
    name = f"kt-{pools['tag']}"
    task = k.post("/vms", {"template": "t", "name": name}).json()
    wait_for(lambda: len(_volumes(a)) >= 1, what="a disk made")
    k.stop(signal.SIGKILL)  # mid-way: some disks made, no domain yet
    assert len(_volumes(a)) < 3
    k.start()
    done = k.wait_task(task["id"], timeout=60)
    assert done["status"] == "finished" and done["attempt"] == 2, done
    assert _volumes(a) == [f"{name}-{i}.qcow2" for i in range(3)]  # each once
    vm = k.get(f"/vms/{name}").json()
    assert sorted(Path(d["path"]).name for d in vm["disks"] if d["device"] == "disk") == \
        [f"{name}-{i}.qcow2" for i in range(3)]
    assert [v["name"] for v in k.get("/vms").json()].count(name) == 1
