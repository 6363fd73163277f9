"""The deep ISO scan end to end: REST, the task, the library, and the events."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Kimchi


def test_scan_finds_each_iso_once_and_names_its_distribution(kimchi: Kimchi, iso_tree: Path):
    r = kimchi.post("/isos/scan", {"path": str(iso_tree)})
    assert r.status_code == 202
    task = r.json()
    assert r.headers["Location"] == f"/tasks/{task['id']}"
    assert task["kind"] == "iso.scan" and task["status"] == "running"
    assert task["target_uri"] == "/isos"

    done = kimchi.wait_task(task["id"])
    assert done["status"] == "finished", done
    assert done["progress"] == 100
    assert done["result"]["isos"] == 4
    assert done["result"]["skipped"] == 2  # notes.iso (not an ISO), broken.iso (truncated)

    isos = {i["name"]: i for i in kimchi.get("/isos").json()}
    assert (isos["Fedora-39.iso"]["os_distro"], isos["Fedora-39.iso"]["os_version"]) == ("fedora", "39")
    assert (isos["ubuntu-22.04.iso"]["os_distro"], isos["ubuntu-22.04.iso"]["os_version"]) == ("ubuntu", "22.04")
    assert isos["debian-12.iso"]["os_distro"] == "debian"
    assert isos["UNKNOWN.ISO"]["os_distro"] == "unknown"
    assert isos["UNKNOWN.ISO"]["bootable"] is False
    assert isos["Fedora-39.iso"]["bootable"] is True
    assert all(i["found_by"] == "scan" for i in isos.values())
    assert "notes.iso" not in isos and "broken.iso" not in isos

    found = kimchi.get(f"/events?since=0&types=iso.found&task={task['id']}").json()
    assert sorted(e["data"]["name"] for e in found) == sorted(isos)


def test_isos_in_active_storage_pools_appear_without_a_scan(kimchi_factory, redis_db,
                                                           tmp_path: Path):
    from tests.isofactory import make_iso

    pool = tmp_path / "pool"
    make_iso(pool / "alpine.iso", "alpine-virt 3.18.4 x86_64")
    # libvirt's test driver, loaded from a node description: an active dir pool holding it.
    node = tmp_path / "node.xml"
    node.write_text(f"""<node>
      <pool type='dir'><name>isos</name><uuid>35bb2ad9-388a-cdfe-461a-b8907f6e5301</uuid>
        <source/><target><path>{pool}</path></target>
        <volume type='file'><name>alpine.iso</name><capacity>49152</capacity>
          <target><path>{pool}/alpine.iso</path><format type='iso'/></target></volume>
      </pool>
    </node>""")
    k = kimchi_factory(redis_url=redis_db.url, extra={"libvirt": {"uri": f"test://{node}"}})
    isos = k.get("/isos").json()
    assert [(i["name"], i["os_distro"], i["os_version"], i["found_by"], i["pool"])
            for i in isos] == [("alpine.iso", "alpine", "3.18", "pool", "isos")]
    assert k.get("/tasks").json() == []  # no task was needed
    assert k.get("/isos?found_by=scan").json() == []


def test_with_a_redis_url_no_redis_is_started_and_outside_workers_join(
        kimchi_factory, redis_db, iso_tree: Path, tmp_path: Path):
    import os
    import subprocess
    import sys

    from tests.conftest import wait_for

    k = kimchi_factory(redis_url=redis_db.url, workers=0)
    assert k.children("redis-server") == [] and k.workers() == []
    task = k.post("/isos/scan", {"path": str(iso_tree)}).json()
    # A worker started on its own (as on another host, by kimchi-worker@.service).
    cfg = tmp_path / "worker.toml"
    cfg.write_text(f'[redis]\nurl = "{redis_db.url}"\n')
    env = {key: v for key, v in os.environ.items() if not key.startswith("KIMCHI_")}
    worker = subprocess.Popen([sys.executable, "-m", "workers.main", "--config", str(cfg)],
                              env=env)
    try:
        done = k.wait_task(task["id"])
        assert done["status"] == "finished" and done["result"]["isos"] == 4
        wait_for(lambda: k.get("/health").json()["workers"] == 1, what="the worker in /health")
    finally:
        worker.terminate()
        assert worker.wait(15) == 0


def test_library_filters_by_field(kimchi: Kimchi, iso_tree: Path):
    kimchi.wait_task(kimchi.post("/isos/scan", {"path": str(iso_tree)}).json()["id"])
    assert {i["name"] for i in kimchi.get("/isos?bootable=false").json()} == {"UNKNOWN.ISO"}
    assert len(kimchi.get("/isos?bootable=true").json()) == 3
    assert [i["name"] for i in kimchi.get("/isos?os_distro=ubuntu").json()] == ["ubuntu-22.04.iso"]


def test_cancelled_scan_stops_and_keeps_counts_of_what_it_reported(kimchi_factory, redis_db,
                                                                    tmp_path: Path):
    from tests.conftest import wait_for
    from tests.isofactory import make_iso

    root = tmp_path / "many"
    for i in range(20):
        make_iso(root / f"d{i}" / f"img-{i}.iso", f"Fedora-S-dvd-x86_64-{20 + i}")
    k = kimchi_factory(redis_url=redis_db.url, env={"KIMCHI_FAULT_SLOW_REPORTS": "0.2"})
    task = k.post("/isos/scan", {"path": str(root)}).json()
    wait_for(lambda: k.get(f"/events?since=0&types=iso.found&task={task['id']}").json(),
             what="a first find")
    assert k.delete(f"/tasks/{task['id']}").status_code == 202
    done = k.wait_task(task["id"], timeout=5)
    assert done["status"] == "cancelled"
    found = k.get(f"/events?since=0&types=iso.found&task={task['id']}").json()
    assert 0 < len(found) < 20
    assert done["details"]["isos"] == len(found)
    assert len(k.get("/isos").json()) == len(found)


def test_find_walk_and_python_walk_agree_on_links_fifos_and_loops(kimchi, redis_db, iso_tree,
                                                                  tmp_path: Path):
    import os

    from kimchi.bus.sync import SyncBus, connect
    from tests.isofactory import make_iso

    outside = tmp_path / "elsewhere"
    make_iso(outside / "alpine.iso", "alpine-std 3.19.0 x86_64")
    (iso_tree / "linked").symlink_to(outside)  # a folder behind a link: followed once
    (iso_tree / "linked-again").symlink_to(outside)
    (iso_tree / "fedora" / "link-to.iso").symlink_to(iso_tree / "fedora" / "Fedora-39.iso")
    os.mkfifo(iso_tree / "misc" / "pipe.iso")  # must never be opened (it would hang)
    bus = SyncBus(connect(redis_db.url))
    results = []
    for params in ({"path": str(iso_tree)}, {"path": str(iso_tree), "python_walk": True}):
        done = bus.wait(bus.submit("iso.scan", params), timeout=30)
        assert done["status"] == "finished", done
        results.append(done["result"])
    by_find, by_python = results
    for r in results:
        assert r["isos"] == 5, results  # 4 of the tree + alpine (once, though linked twice)
    for key in ("files", "dirs", "isos", "skipped"):
        assert by_find[key] == by_python[key], (key, by_find, by_python)
    names = sorted(i["name"] for i in kimchi.get("/isos").json())
    assert "alpine.iso" in names and "pipe.iso" not in names
