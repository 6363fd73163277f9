"""Storage pools and volumes: the REST behaviour on libvirt's test driver, then the real
thing on libvirtd (folders made, qcow2 files written, grown and removed, rollback)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi, RedisServer, wait_for
from tests.isofactory import make_iso

GiB = 1 << 30


def put(k: Kimchi, path: str, body: Any) -> Any:
    return k.http.put(k.url + path, json=body, allow_redirects=False, timeout=10)


def test_pools_are_listed_made_used_and_forgotten(kimchi: Kimchi, tmp_path: Path) -> None:
    k = kimchi
    pools = {p["name"]: p for p in k.get("/storagepools").json()}
    assert {"default", "default-pool"} <= set(pools)  # kimchid's own, the driver's own
    dp = pools["default-pool"]
    assert dp["state"] == "active" and dp["type"] == "dir" and dp["path"] == "/default-pool"
    assert dp["capacity"] == dp["allocated"] + dp["available"] > 0

    r = k.post("/storagepools", {"name": "fast", "type": "dir", "path": str(tmp_path / "fast")})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == "/storagepools/fast"
    p = r.json()
    assert p["state"] == "active" and p["autostart"] is True and p["in_use"] is False
    assert k.get("/storagepools?state=active&type=dir").status_code == 200
    assert "fast" in [x["name"] for x in k.get("/storagepools?state=active").json()]

    vol = k.post("/storagepools/fast/storagevolumes",
                 {"name": "data.qcow2", "capacity": GiB, "format": "qcow2"})
    assert vol.status_code == 201, vol.text
    assert vol.headers["Location"] == "/storagepools/fast/storagevolumes/data.qcow2"
    v = vol.json()
    assert v["capacity"] == GiB and v["used_by"] == []
    assert [x["name"] for x in k.get("/storagepools/fast/storagevolumes").json()] == [
        "data.qcow2"]
    small = k.post("/storagepools/fast/storagevolumes/data.qcow2/resize", {"size": GiB // 2})
    assert small.status_code == 400 and small.json()["errcode"] == "KCHVOL0007E"
    # the test driver cannot grow a volume (libvirtd can: below); that is a 400 that says so
    grown = k.post("/storagepools/fast/storagevolumes/data.qcow2/resize", {"size": 2 * GiB})
    assert grown.status_code == 400 and "not supported" in grown.json()["reason"], grown.text

    # an active pool is not forgotten; an inactive one shows no volumes
    assert k.delete("/storagepools/fast").json()["errcode"] == "KCHPOOL0005E"
    assert put(k, "/storagepools/fast", {"autostart": False}).json()["autostart"] is False
    off = k.post("/storagepools/fast/deactivate")
    assert off.status_code == 200 and off.json()["state"] == "inactive", off.text
    assert k.post("/storagepools/fast/deactivate").json()["errcode"] == "KCHPOOL0008E"
    assert k.get("/storagepools/fast/storagevolumes").json()["errcode"] == "KCHVOL0004E"
    assert k.post("/storagepools/fast/activate").json()["state"] == "active"
    assert k.post("/storagepools/fast/deactivate").status_code == 200
    assert k.delete("/storagepools/fast").status_code == 204
    assert k.get("/storagepools/fast").status_code == 404

    kinds = [e["type"] for e in k.get("/events?since=0&types=storage*").json()]
    assert kinds[0] == "storagepool.created" and kinds[-1] == "storagepool.deleted"
    assert "storagevolume.created" in kinds


def test_what_is_in_use_is_protected(kimchi: Kimchi, tmp_path: Path) -> None:
    k = kimchi
    iso = make_iso(tmp_path / "iso" / "f.iso", "Fedora-WS-Live-39-1-5")
    assert k.post("/templates", {"name": "t", "source_media": {"type": "disk",
                                                                "path": str(iso)}}).status_code == 201
    wait_for(lambda: k.get("/templates/t").json()["invalid"] == {}, what="a valid template")
    task = k.post("/vms", {"template": "t", "name": "guest"}).json()
    assert k.wait_task(task["id"])["status"] == "finished"
    disk = next(d for d in k.get("/vms/guest").json()["disks"] if d["device"] == "disk")
    vols = {v["path"]: v for v in k.get("/storagepools/default/storagevolumes").json()}
    assert vols[disk["path"]]["used_by"] == ["guest"]
    name = vols[disk["path"]]["name"]
    pool = k.get("/storagepools/default").json()
    assert pool["used_by"] == {"templates": ["t"], "vms": ["guest"]} and pool["in_use"]

    r = k.delete(f"/storagepools/default/storagevolumes/{name}")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVOL0005E", r.text
    assert "guest" in r.json()["reason"]
    assert k.post("/vms/guest/start").status_code == 200
    r = k.post("/storagepools/default/deactivate")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHPOOL0007E", r.text
    r = k.post(f"/storagepools/default/storagevolumes/{name}/resize", {"size": 100 * GiB})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVOL0005E"
    assert k.post("/vms/guest/poweroff").status_code == 200
    assert k.post("/storagepools/default/deactivate").status_code == 200
    r = k.delete("/storagepools/default")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHPOOL0006E", r.text
    assert "t" in r.json()["reason"]
    assert k.post("/storagepools/default/activate").status_code == 200
    # nothing went: the VM's disk is still there
    assert disk["path"] in {v["path"] for v in k.get(
        "/storagepools/default/storagevolumes").json()}


def test_bad_requests_get_clear_errors(kimchi: Kimchi, tmp_path: Path) -> None:
    k = kimchi
    before = k.get("/storagepools").json()
    cases = [
        ({"name": "x", "type": "dir"}, "KCHPOOL0004E"),  # no path
        ({"name": "x", "type": "dir", "path": "/proc/x"}, "KCHPOOL0010E"),
        ({"name": "x", "type": "dir", "path": "relative"}, "KCHPOOL0004E"),
        ({"name": "x", "type": "netfs", "source": {"host": "nfs.example"}}, "KCHPOOL0004E"),
        ({"name": "x", "type": "logical", "source": {"devices": ["/etc/passwd"]}}, None),
        ({"name": "x", "type": "zfs", "path": "/srv"}, None),
        ({"name": "../x", "type": "dir", "path": "/srv/x"}, None),
        ({"name": "x", "type": "dir", "path": "/srv/x", "extra": 1}, None),
        ({"name": "default", "type": "dir", "path": str(tmp_path)}, "KCHPOOL0001E"),
    ]
    for body, code in cases:
        r = k.post("/storagepools", body)
        assert r.status_code == 400, (body, r.text)
        if code:
            assert r.json()["errcode"] == code, (body, r.text)
    assert k.get("/storagepools").json() == before  # nothing made on the way

    for body in ({"name": "v", "capacity": 10}, {"name": "v", "capacity": GiB, "format": "vmdk"},
                 {"name": "v/../w", "capacity": GiB}, {"capacity": GiB}):
        r = k.post("/storagepools/default-pool/storagevolumes", body)
        assert r.status_code == 400, (body, r.text)
    r = k.post("/storagepools/default-pool/storagevolumes",
               {"name": "huge.img", "capacity": 2 ** 49, "format": "raw"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVOL0003E", r.text
    assert k.post("/storagepools/default-pool/storagevolumes",
                  {"name": "a.img", "capacity": GiB, "format": "raw"}).status_code == 201
    again = k.post("/storagepools/default-pool/storagevolumes",
                   {"name": "a.img", "capacity": GiB, "format": "raw"})
    assert again.json()["errcode"] == "KCHVOL0001E"
    assert k.get("/storagepools/nosuch").json()["errcode"] == "KCHPOOL0002E"
    assert k.get("/storagepools/default-pool/storagevolumes/nosuch").json()[
        "errcode"] == "KCHVOL0002E"


@pytest.fixture
def system(kimchi_factory: Any, redis_db: RedisServer, libvirtd: Any) -> Kimchi:
    return kimchi_factory(redis_url=redis_db.url, workers=0,
                          extra={"libvirt": {"uri": "qemu:///system"}})


def test_on_libvirtd_pools_and_volumes_are_real_files(system: Kimchi, tmp_path: Path) -> None:
    import libvirt

    k = system
    name = f"kimchi-st-{os.getpid()}"
    folder = tmp_path / "pool"
    conn = libvirt.open("qemu:///system")
    try:
        r = k.post("/storagepools", {"name": name, "type": "dir", "path": str(folder)})
        assert r.status_code == 201, r.text
        assert folder.is_dir()  # built: the folder made
        assert conn.storagePoolLookupByName(name).autostart() == 1
        r = k.post(f"/storagepools/{name}/storagevolumes",
                   {"name": "disk.qcow2", "capacity": 3 * GiB})
        assert r.status_code == 201, r.text
        path = folder / "disk.qcow2"
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                                         capture_output=True, check=True).stdout)
        assert info["format"] == "qcow2" and info["virtual-size"] == 3 * GiB
        assert path.stat().st_blocks * 512 < 10 << 20  # sparse: not 3 GiB written
        r = k.post(f"/storagepools/{name}/storagevolumes/disk.qcow2/resize", {"size": 4 * GiB})
        assert r.status_code == 200, r.text
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                                         capture_output=True, check=True).stdout)
        assert info["virtual-size"] == 4 * GiB
        # a file copied in by hand shows after a refresh
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(folder / "hand.img"),
                        "1M"], check=True)
        assert k.post(f"/storagepools/{name}/refresh").json()["nr_volumes"] == 2
        assert k.delete(f"/storagepools/{name}/storagevolumes/disk.qcow2").status_code == 204
        assert not path.exists()
        assert k.post(f"/storagepools/{name}/deactivate").status_code == 200
        assert k.delete(f"/storagepools/{name}").status_code == 204
        assert name not in [p.name() for p in conn.listAllStoragePools(0)]
        assert (folder / "hand.img").exists()  # forgetting a pool leaves its files
    finally:
        try:
            p = conn.storagePoolLookupByName(name)
            if p.isActive():
                p.destroy()
            p.undefine()
        except libvirt.libvirtError:
            pass


def test_on_libvirtd_a_pool_that_cannot_start_is_undone(system: Kimchi, tmp_path: Path) -> None:
    import libvirt

    k = system
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    name = f"kimchi-bad-{os.getpid()}"
    r = k.post("/storagepools", {"name": name, "type": "dir", "path": str(blocker / "sub")})
    assert r.status_code in (400, 500) and r.json()["errcode"] == "KCHPOOL0009E", r.text
    conn = libvirt.open("qemu:///system")
    assert name not in [p.name() for p in conn.listAllStoragePools(0)]  # undefined again
    assert k.get(f"/storagepools/{name}").status_code == 404
