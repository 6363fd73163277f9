"""Several hosts in one kimchi, on a simulated cluster (tests/cluster.py: each host a
libvirtd of its own serving the test driver, with its own host_uuid).

The local host is the one of ``[libvirt] uri`` (here the first simulated host, so that
killing it is safe); h2 and h3 are added with ``POST /hosts`` or dropped in as files."""

from __future__ import annotations

import json
from typing import Any

import requests
import websocket

from tests.cluster import Cluster, add_host, cluster3, host_worker, multi  # noqa: F401  (fixtures)
from tests.conftest import Kimchi, wait_for


def _names(vms: list[dict]) -> list[tuple[str, str]]:
    return [(v["host"], v["name"]) for v in vms]


def test_hosts_are_added_listed_merged_filtered_and_removed(
        multi: Kimchi, cluster3: Cluster, pam_users):  # noqa: F811
    k = multi
    hosts = k.get("/hosts").json()
    assert [(h["name"], h["local"], h["state"]) for h in hosts] == [("local", True, "connected")]

    cluster3["h2"].define_vm("web1", running=True)
    cluster3["h3"].define_vm("web1")
    cluster3["h3"].define_vm("db1")
    ws = websocket.create_connection(f"{k.ws_url}/events?types=host.*,vm.*", timeout=20,
                                     header=k.ws_headers)
    try:
        for name in ("h2", "h3"):
            r = k.post("/hosts", json={"name": name, "uri": cluster3[name].uri})
            assert r.status_code == 201, r.text
            body = r.json()
            assert r.headers["Location"] == f"/hosts/{name}"
            assert body["state"] == "connected" and body["local"] is False
            assert body["cpus"] > 0 and body["memory"] > 0
        seen: list[dict[str, Any]] = []
        while not any(e["type"] == "host.created" and e["data"]["name"] == "h3" for e in seen):
            seen.append(json.loads(ws.recv()))
    finally:
        ws.close()
    assert [h["name"] for h in k.get("/hosts").json()] == ["local", "h2", "h3"]
    # kept as files in objects_dir, like templates
    saved = json.loads((k.dir / "objects" / "hosts" / "h2.json").read_text())
    assert saved == {"name": "h2", "uri": cluster3["h2"].uri}

    def listed():
        vms = k.get("/vms").json()
        return ("h3", "db1") in _names(vms) and vms
    vms = wait_for(listed, what="the VMs of every host")
    # the local host's first (the test driver's own "test" VM), then by host and name
    assert _names(vms) == [("local", "test"), ("h2", "test"), ("h2", "web1"),
                           ("h3", "db1"), ("h3", "test"), ("h3", "web1")]
    assert _names(k.get("/vms?host=h3").json()) == [("h3", "db1"), ("h3", "test"),
                                                    ("h3", "web1")]
    assert k.get("/hosts/h2").json()["vms"] == {"running": 2, "total": 2}

    # a root item path: the local host's when it has one, else the only one, else 409
    assert k.get("/vms/db1").json()["host"] == "h3"
    assert k.get("/vms/test").json()["host"] == "local"
    assert k.get("/hosts/local/vms/test").json()["host"] == "local"
    r = k.get("/vms/web1")
    assert r.status_code == 409 and r.json()["errcode"] == "KCHHOST0007E"
    assert "/hosts/h2/vms/web1" in r.json()["reason"] and "/hosts/h3/vms/web1" in r.json()["reason"]
    # the canonical address names one
    assert k.get("/hosts/h3/vms/web1").json()["state"] == "shutoff"
    r = k.post("/hosts/h3/vms/web1/start")
    assert r.status_code == 200 and r.json()["state"] == "running" and r.json()["host"] == "h3"
    assert cluster3["h3"].keep.lookupByName("web1").isActive()
    assert not cluster3["h1"].keep.listAllDomains() or \
        "web1" not in [d.name() for d in cluster3["h1"].keep.listAllDomains()]
    assert k.post("/vms/db1/start").json()["host"] == "h3"  # a root path acts on its host
    # changed and deleted at either address, on its host
    r = k.http.put(f"{k.url}/hosts/h3/vms/db1", json={"groups": ["ops"]}, timeout=10)
    assert r.status_code == 200 and r.json()["groups"] == ["ops"] and r.json()["host"] == "h3"
    assert k.post("/vms/db1/poweroff").json()["state"] == "shutoff"
    r = k.http.put(f"{k.url}/hosts/h3/vms/db1", json={"name": "db2"}, timeout=10,
                   allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/hosts/h3/vms/db2"
    assert "db2" in [d.name() for d in cluster3["h3"].keep.listAllDomains()]
    assert k.delete("/vms/db2").status_code == 204
    assert "db2" not in [d.name() for d in cluster3["h3"].keep.listAllDomains()]
    assert k.get("/hosts/h3/vms/db2").status_code == 404
    assert k.get("/hosts/h9/vms").status_code == 404

    # pools and networks: every host's in the root lists, each host's at its own address
    pools = k.get("/storagepools").json()
    # (kimchid makes the pool "default" on its own host only)
    assert sorted((p["host"], p["name"]) for p in pools) == [
        ("h2", "default-pool"), ("h3", "default-pool"), ("local", "default"),
        ("local", "default-pool")]
    assert k.get("/storagepools/default").json()["host"] == "local"
    assert [p["host"] for p in k.get("/storagepools?host=h2").json()] == ["h2"]
    assert k.get("/storagepools/default-pool").json()["host"] == "local"  # several: local's
    r = k.post("/hosts/h2/storagepools/default-pool/storagevolumes",
               {"name": "data.qcow2", "capacity": 1048576})
    assert r.status_code == 201 and r.json()["host"] == "h2", r.text
    assert r.headers["Location"] == \
        "/hosts/h2/storagepools/default-pool/storagevolumes/data.qcow2"
    h2_pool = cluster3["h2"].keep.storagePoolLookupByName("default-pool")
    assert "data.qcow2" in h2_pool.listVolumes()
    assert "data.qcow2" not in cluster3["h1"].keep.storagePoolLookupByName(
        "default-pool").listVolumes()
    vols = k.get("/hosts/h2/storagepools/default-pool/storagevolumes").json()
    assert "data.qcow2" in [v["name"] for v in vols] and {v["host"] for v in vols} == {"h2"}
    made = k.get("/events?since=0&types=storagevolume.created").json()
    assert [e["data"]["host"] for e in made if e["data"]["name"] == "data.qcow2"] == ["h2"]
    nets = k.get("/networks").json()
    assert sorted((n["host"], n["name"]) for n in nets) == [
        ("h2", "default"), ("h3", "default"), ("local", "default")]
    r = k.post("/hosts/h3/networks/default/deactivate")  # h3's own VMs are what counts
    assert r.status_code == 400 and r.json()["errcode"] == "KCHNET0007E"
    assert r.json()["reason"].endswith("running VMs test")
    assert k.post("/hosts/h3/vms/test/poweroff").status_code == 200
    r = k.post("/hosts/h3/networks/default/deactivate")
    assert r.status_code == 200 and r.json()["state"] == "inactive" and r.json()["host"] == "h3"
    assert not cluster3["h3"].keep.networkLookupByName("default").isActive()
    assert cluster3["h1"].keep.networkLookupByName("default").isActive()
    assert k.get("/hosts/h9/storagepools").status_code == 404

    # refusals: a name or a URI taken, an unreachable host (nothing kept), the local host
    r = k.post("/hosts", json={"name": "h2", "uri": "test+unix:///default?socket=/nowhere"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHHOST0002E"
    r = k.post("/hosts", json={"name": "again", "uri": cluster3["h2"].uri})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHHOST0003E"
    r = k.post("/hosts", json={"name": "gone", "uri": "test+unix:///default?socket=/nowhere"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHHOST0004E"
    assert "/nowhere" in r.json()["reason"]
    assert not (k.dir / "objects" / "hosts" / "gone.json").exists()
    assert [h["name"] for h in k.get("/hosts").json()] == ["local", "h2", "h3"]
    r = k.post("/hosts", json={"name": "bad", "uri": "not a uri"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHAPI0006E"
    r = k.delete("/hosts/local")
    assert r.status_code == 400 and r.json()["errcode"] == "KCHHOST0005E"

    # a user who is not an admin may look, not add or remove
    user = (pam_users.user.name, pam_users.user.password)
    assert requests.get(f"{k.url}/hosts", auth=user, timeout=10).status_code == 200
    r = requests.post(f"{k.url}/hosts", json={"name": "h4", "uri": "test:///default"},
                      auth=user, timeout=10)
    assert r.status_code == 403
    assert requests.delete(f"{k.url}/hosts/h2", auth=user, timeout=10).status_code == 403

    # removed: forgotten (file and all), its VMs keep running
    assert k.delete("/hosts/h2").status_code == 204
    assert not (k.dir / "objects" / "hosts" / "h2.json").exists()
    assert k.get("/hosts/h2").status_code == 404
    assert "h2" not in {v["host"] for v in k.get("/vms").json()}
    assert cluster3["h2"].keep.lookupByName("web1").isActive()
    assert k.get("/vms/web1").json()["host"] == "h3"  # the only one left


def test_a_host_dropped_in_as_a_file_is_picked_up_and_one_host_down_degrades_it_alone(
        multi: Kimchi, cluster3: Cluster):  # noqa: F811
    k = multi
    hosts_dir = k.dir / "objects" / "hosts"
    hosts_dir.mkdir(parents=True, exist_ok=True)
    (hosts_dir / "h2.json").write_text(json.dumps({"name": "h2", "uri": cluster3["h2"].uri}))
    (hosts_dir / "h3.json").write_text(json.dumps({"name": "h3", "uri": cluster3["h3"].uri}))
    cluster3["h3"].define_vm("app1", running=True)

    def connected():
        hs = k.get("/hosts").json()
        return len(hs) == 3 and all(h["state"] == "connected" for h in hs) and hs
    wait_for(connected, timeout=30, what="the dropped-in hosts to connect")
    wait_for(lambda: ("h3", "app1") in _names(k.get("/vms").json()), what="h3's VMs")

    ws = websocket.create_connection(f"{k.ws_url}/events?types=host.state", timeout=30,
                                     header=k.ws_headers)
    try:
        cluster3["h3"].kill()
        ev = json.loads(ws.recv())
        assert ev["data"]["host"] == "h3" and ev["data"]["state"] in ("unreachable",
                                                                      "connecting")
        h3 = wait_for(lambda: (lambda h: h["state"] == "unreachable" and h)(
            k.get("/hosts/h3").json()), timeout=30, what="h3 unreachable")
        assert h3["reason"]  # libvirt's reason
        # the others keep working: h3 is left out of the merged list, the rest answer
        vms = k.get("/vms")
        assert vms.status_code == 200 and {v["host"] for v in vms.json()} == {"local", "h2"}
        assert k.get("/hosts/h2").json()["state"] == "connected"
        r = k.get("/hosts/h3/vms")
        assert r.status_code == 503 and r.json()["errcode"] == "KCHSVC0002E"
        assert k.get("/health").json()["libvirt"] == "up"  # the local host's libvirt

        cluster3["h3"].start()  # it comes back by itself (a fresh test driver)
        wait_for(lambda: k.get("/hosts/h3").json()["state"] == "connected", timeout=30,
                 what="h3 to come back")
        states: list[dict[str, Any]] = []
        while not states or states[-1]["data"]["state"] != "connected":
            states.append(json.loads(ws.recv()))
        assert all(e["data"]["host"] == "h3" for e in states)
        wait_for(lambda: "h3" in {v["host"] for v in k.get("/vms").json()}, what="h3 listed")
    finally:
        ws.close()

    (hosts_dir / "h2.json").unlink()
    wait_for(lambda: k.get("/hosts/h2").status_code == 404, what="h2 forgotten")


def test_a_scan_runs_on_a_worker_of_its_host_and_waits_then_fails_when_none_serves_it(
        kimchi_factory, redis_db, cluster3: Cluster, iso_tree, tmp_path):  # noqa: F811
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, workers=1,
                               extra={"libvirt": {"uri": cluster3["h1"].uri},
                                      "workers": {"host_wait_seconds": 4.0}})
    for name in ("h2", "h3"):
        assert k.post("/hosts", json={"name": name, "uri": cluster3[name].uri}).status_code == 201
    wait_for(lambda: k.get("/hosts/local").json()["workers"] == 1, what="the local worker")
    assert k.get("/hosts/h2").json()["workers"] == 0

    # h2's worker: the scan for h2 runs there, and only there
    worker = host_worker(tmp_path, redis_db.url, ["h2"], "worker-of-h2")
    try:
        wait_for(lambda: k.get("/hosts/h2").json()["workers"] == 1, what="h2's worker")
        task = k.post("/isos/scan", {"path": str(iso_tree), "host": "h2"}).json()
        assert task["host"] == "h2"
        done = k.wait_task(task["id"])
        assert done["status"] == "finished" and done["worker"] == "worker-of-h2"
        assert done["result"]["isos"] == 4
        found = [i for i in k.get("/isos?host=h2").json()]
        assert len(found) == 4 and all(i["host"] == "h2" for i in found)
        # the local host's library is its own: a local scan of the same folder adds its own
        local = k.wait_task(k.post("/isos/scan", {"path": str(iso_tree)}).json()["id"])
        assert local["status"] == "finished" and local["worker"] != "worker-of-h2"
        assert local["host"] == "local"
        assert len(k.get("/isos?host=local&found_by=scan").json()) == 4
        assert len(k.get("/isos?host=h2").json()) == 4

        # a folder that is not there is refused by the job, on the host, as the daemon would
        gone = k.post("/isos/scan", {"path": "/nowhere/at/all", "host": "h2"})
        assert gone.status_code == 202
        failed = k.wait_task(gone.json()["id"])
        assert failed["status"] == "failed" and failed["message"].startswith("KCHISO0002E")
        r = k.post("/isos/scan", {"path": "/nowhere/at/all"})  # the local host: at once
        assert r.status_code == 400 and r.json()["errcode"] == "KCHISO0002E"
    finally:
        worker.terminate()
        assert worker.wait(15) == 0
    wait_for(lambda: k.get("/hosts/h2").json()["workers"] == 0, what="h2's worker gone")

    # no worker serves h3: the task says so, then fails with that reason
    task = k.post("/isos/scan", {"path": str(iso_tree), "host": "h3"}).json()
    assert task["status"] == "running" and task["message"].startswith("KCHTASK0008E")
    assert "h3" in task["message"]
    done = k.wait_task(task["id"], timeout=15)
    assert done["status"] == "failed" and done["message"].startswith("KCHTASK0009E")
    assert "h3" in done["message"] and done["attempt"] == 0
    # a host kimchi does not manage is refused
    r = k.post("/isos/scan", {"path": str(iso_tree), "host": "h9"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHHOST0008E"


def test_a_vm_is_made_on_the_host_the_request_names(
        multi: Kimchi, cluster3: Cluster, tmp_path):  # noqa: F811
    from tests.isofactory import make_iso

    k = multi
    iso = make_iso(tmp_path / "iso" / "fedora.iso", "Fedora-WS-Live-39-1-5")
    assert k.post("/hosts", json={"name": "h2", "uri": cluster3["h2"].uri}).status_code == 201
    assert k.post("/templates", {"name": "f39", "source_media": {"type": "disk",
                                                                  "path": str(iso)}}
                  ).status_code == 201
    wait_for(lambda: k.get("/templates/f39").json()["invalid"] == {}, what="the template")
    # h2 has no pool "default" (the template's): refused before any task, naming it
    r = k.post("/vms", {"template": "f39", "host": "h2"})
    assert r.status_code == 400 and r.json()["errcode"].startswith("KCHVM"), r.text
    assert "default" in r.json()["reason"]
    r = k.post("/vms", {"template": "f39", "host": "h2", "storagepool": "default-pool"})
    assert r.status_code == 202, r.text
    task = r.json()
    assert task["host"] == "h2" and task["target_uri"] == "/hosts/h2/vms/f39-vm-1"
    done = k.wait_task(task["id"])
    assert done["status"] == "finished", done
    vm = k.get("/hosts/h2/vms/f39-vm-1").json()
    assert vm["host"] == "h2" and vm["template"] == "f39"
    assert "f39-vm-1" in [d.name() for d in cluster3["h2"].keep.listAllDomains()]
    # the VM says its OS as libosinfo names it (virt-manager and Cockpit show it)
    assert "<libosinfo:os id='http://fedoraproject.org/fedora/39'/>" in \
        cluster3["h2"].keep.lookupByName("f39-vm-1").XMLDesc(0).replace('"', "'")
    assert "f39-vm-1" not in [d.name() for d in cluster3["h1"].keep.listAllDomains()]
    vols = cluster3["h2"].keep.storagePoolLookupByName("default-pool").listVolumes()
    assert "f39-vm-1-0.qcow2" in vols
    # the local host's next one is its own f39-vm-1 (names are per host)
    local = k.wait_task(k.post("/vms", {"template": "f39"}).json()["id"])
    assert local["status"] == "finished" and local["target_uri"] == "/vms/f39-vm-1"
    r = k.post("/vms", {"template": "f39", "host": "h9"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHHOST0008E"


def test_another_hosts_vms_have_live_figures_in_notices_naming_the_host(
        kimchi_factory, redis_db, cluster3: Cluster):  # noqa: F811
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, workers=0,
                               extra={"libvirt": {"uri": cluster3["h1"].uri,
                                                  "stats_interval": 0.5}})
    cluster3["h2"].define_vm("busy", running=True)
    ws = websocket.create_connection(f"{k.ws_url}/events?types=vm.stats", timeout=20,
                                     header=k.ws_headers)
    try:
        assert k.post("/hosts", json={"name": "h2", "uri": cluster3["h2"].uri}).status_code == 201
        hosts_seen: dict[str, dict] = {}
        while "h2" not in hosts_seen or "local" not in hosts_seen:
            d = json.loads(ws.recv())["data"]
            hosts_seen[d["host"]] = d["vms"]
        assert "busy" in hosts_seen["h2"] and "busy" not in hosts_seen["local"]
        assert set(hosts_seen["h2"]["busy"]) >= {"cpu_utilization", "io_throughput"}
    finally:
        ws.close()
    stats = wait_for(lambda: k.get("/hosts/h2/vms/busy").json().get("stats"), what="stats")
    assert "cpu_utilization" in stats
    assert k.delete("/hosts/h2").status_code == 204  # its sampling stops with it
