"""POST /vms and PUT /vms on libvirt's test driver: a VM from a template, as a task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kimchi, wait_for
from tests.isofactory import make_iso


@pytest.fixture
def iso(tmp_path: Path) -> Path:
    return make_iso(tmp_path / "iso" / "fedora.iso", "Fedora-WS-Live-39-1-5")


def _template(k: Kimchi, iso: Path, name: str = "f39", valid: bool = True,
              **fields: Any) -> dict[str, Any]:
    r = k.post("/templates", {"name": name, "source_media": {"type": "disk", "path": str(iso)},
                              **fields})
    assert r.status_code == 201, r.text
    if valid:
            wait_for(lambda: k.get(f"/templates/{name}").json()["invalid"] == {},
                 what="the template's pool and network")
    return r.json()


def _create(k: Kimchi, body: dict[str, Any]) -> dict[str, Any]:
    r = k.post("/vms", body)
    assert r.status_code == 202, r.text
    task = r.json()
    assert r.headers["Location"] == f"/tasks/{task['id']}"
    assert task["kind"] == "vm.create"
    return k.wait_task(task["id"])


def test_a_vm_from_a_template_is_made_by_a_task_and_named_after_it(kimchi: Kimchi, iso):
    _template(kimchi, iso, memory={"current": 1024}, cpu_info={"vcpus": 2})
    done = _create(kimchi, {"template": "f39"})
    assert done["status"] == "finished", done
    assert done["target_uri"] == "/vms/f39-vm-1" and done["progress"] == 100
    vm = kimchi.get("/vms/f39-vm-1").json()
    assert vm["state"] == "shutoff" and vm["template"] == "f39"
    assert vm["cpus"] == 2 and vm["memory"]["current"] == 1024
    disks = [d for d in vm["disks"] if d["device"] == "disk"]
    cdroms = [d for d in vm["disks"] if d["device"] == "cdrom"]
    assert [Path(d["path"]).name for d in disks] == ["f39-vm-1-0.qcow2"]
    assert [d["path"] for d in cdroms] == [str(iso)]
    assert done["result"]["disks"] == [d["path"] for d in disks]
    # the next unnamed one takes the next number; a named one its name
    assert _create(kimchi, {"template": "f39"})["target_uri"] == "/vms/f39-vm-2"
    assert _create(kimchi, {"template": "f39", "name": "web"})["status"] == "finished"
    names = [v["name"] for v in kimchi.get("/vms").json()]
    assert {"f39-vm-1", "f39-vm-2", "web"} <= set(names)
    # each step was reported, and the VM's arrival too
    progress = kimchi.get(f"/events?since=0&task={done['id']}").json()
    messages = [e["data"].get("message", "") for e in progress]
    assert any("Creating disk f39-vm-1-0.qcow2" in m for m in messages), messages
    created = kimchi.get("/events?since=0&types=vm.created").json()
    assert "f39-vm-1" in [e["data"]["name"] for e in created]
    # it can be started and deleted like any other
    assert kimchi.post("/vms/f39-vm-1/start").json()["state"] == "running"
    assert kimchi.delete("/vms/f39-vm-1").status_code == 204


def test_bad_requests_are_refused_before_any_task(kimchi: Kimchi, iso):
    _template(kimchi, iso)
    _create(kimchi, {"template": "f39", "name": "taken"})
    cases = [
        ({"template": "nosuch"}, "KCHVM0003E"),
        ({"template": "f39", "name": "taken"}, "KCHVM0001E"),
        ({"template": "f39", "name": "../etc"}, "KCHAPI0006E"),
        ({"template": "f39", "cpus": 2}, "KCHAPI0007E"),
        ({}, "KCHAPI0006E"),
    ]
    before = len(kimchi.get("/tasks?kind=vm.create").json())
    for body, code in cases:
        r = kimchi.post("/vms", body)
        assert r.status_code == 400 and r.json()["errcode"] == code, (body, r.text)
    assert len(kimchi.get("/tasks?kind=vm.create").json()) == before
    # a template whose pool is gone says so
    _template(kimchi, iso, name="nopool", valid=False,
              disks=[{"size": 1, "pool": {"name": "nosuch"}}])
    r = kimchi.post("/vms", {"template": "nopool"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0004E", r.text
    assert "nosuch" in r.json()["reason"]


def test_cancelling_a_creation_removes_what_it_made(kimchi_factory, redis_db, iso):
    k = kimchi_factory(redis_url=redis_db.url, env={"KIMCHI_FAULT_SLOW_REPORTS": "0.5"})
    _template(k, iso, disks=[{"index": i, "size": 1} for i in range(3)])
    r = k.post("/vms", {"template": "f39", "name": "halfway"})
    task = r.json()
    wait_for(lambda: "Creating disk" in k.get(f"/tasks/{task['id']}").json()["message"],
             what="the first disk")
    assert k.delete(f"/tasks/{task['id']}").status_code == 202
    assert k.wait_task(task["id"])["status"] == "cancelled"
    assert k.get("/vms/halfway").status_code == 404
    # nothing left: the same name and volumes can be made again
    assert _create(k, {"template": "f39", "name": "halfway"})["status"] == "finished"


def test_put_renames_only_when_shut_off_and_changes_resources(kimchi: Kimchi, iso):
    _template(kimchi, iso)
    _create(kimchi, {"template": "f39", "name": "a"})
    put = kimchi.http.put
    r = put(kimchi.url + "/vms/a", json={"memory": {"current": 512, "maxmemory": 1024},
                                         "cpus": 2}, allow_redirects=False)
    assert r.status_code == 200, r.text
    assert r.json()["memory"] == {"current": 512, "maxmemory": 1024} and r.json()["cpus"] == 2
    r = put(kimchi.url + "/vms/a", json={"memory": {"current": 4096, "maxmemory": 1024}})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0015E"
    r = put(kimchi.url + "/vms/a", json={"name": "b"}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/vms/b"
    assert kimchi.get("/vms/a").status_code == 404
    assert kimchi.get("/vms/b").json()["memory"]["current"] == 512
    updated = kimchi.get("/events?since=0&types=vm.updated").json()
    assert any(e["data"].get("previous") == "a" and e["data"]["name"] == "b" for e in updated)
    r = put(kimchi.url + "/vms/b", json={"users": ["alice"], "groups": ["ops"]})
    assert (r.json()["users"], r.json()["groups"]) == (["alice"], ["ops"])
    assert kimchi.post("/vms/b/start").status_code == 200
    for body, code in (({"name": "c"}, "KCHVM0013E"), ({"cpus": 1}, "KCHVM0014E")):
        r = put(kimchi.url + "/vms/b", json=body, allow_redirects=False)
        assert r.status_code == 400 and r.json()["errcode"] == code, r.text
    r = put(kimchi.url + "/vms/b", json={"users": []})  # access changes any time
    assert r.status_code == 200 and r.json()["users"] == []
    assert put(kimchi.url + "/vms/b", json={}).status_code == 400
    assert put(kimchi.url + "/vms/nosuch", json={"cpus": 1}).status_code == 404


def test_running_vms_have_live_figures(kimchi_factory, redis_db):
    import json

    import websocket

    k = kimchi_factory(redis_url=redis_db.url, extra={"libvirt": {"stats_interval": 0.3}})
    wait_for(lambda: k.get("/vms/test").status_code == 200, what="the VM list")
    ws = websocket.create_connection(f"{k.ws_url}/events?types=vm.stats", timeout=10,
                                     header=k.ws_headers)
    try:
        ev = json.loads(ws.recv())
        assert ev["type"] == "vm.stats" and ev["id"] is None  # a notice, not kept
        figures = ev["data"]["vms"]["test"]
        assert set(figures) >= {"cpu_utilization", "mem_utilization", "io_throughput",
                                "net_throughput"}
    finally:
        ws.close()
    stats = k.get("/vms/test").json()["stats"]
    assert all(isinstance(v, float) for v in stats.values())
    # not kept in the stream: a client resuming gets no stale figures
    assert k.get("/events?since=0&types=vm.stats").json() == []
    k.post("/vms/test/poweroff")
    wait_for(lambda: k.get("/vms/test").json()["stats"]["cpu_utilization"] == 0.0,
             what="a stopped VM's figures at zero")


def test_clone_is_refused_while_running_or_without_disk_files(kimchi: Kimchi):
    wait_for(lambda: kimchi.get("/vms/test").status_code == 200, what="the VM list")
    r = kimchi.post("/vms/test/clone")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0016E"
    kimchi.post("/vms/test/poweroff")
    r = kimchi.post("/vms/test/clone")  # the test driver's disk is not a real file
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0017E", r.text
    assert kimchi.post("/vms/nosuch/clone").status_code == 404
    assert kimchi.get("/tasks?kind=vm.clone").json() == []


def test_kimchi_clients_uris_and_pool_override_are_understood(kimchi: Kimchi, iso):
    _template(kimchi, iso)
    done = _create(kimchi, {"template": "/templates/f39", "name": "by-uri"})  # Kimchi 1.x
    assert done["status"] == "finished", done
    assert kimchi.get("/vms/by-uri").json()["template"] == "f39"
    # every disk in another pool: the test driver's own "default-pool"
    done = _create(kimchi, {"template": "f39", "name": "elsewhere",
                            "storagepool": "/storagepools/default-pool"})
    assert done["status"] == "finished", done
    disks = [d["path"] for d in kimchi.get("/vms/elsewhere").json()["disks"]
             if d["device"] == "disk"]
    assert disks and all(p.startswith("/default-pool/") for p in disks), disks
    r = kimchi.post("/vms", {"template": "f39", "storagepool": "nosuch"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHVM0006E"
