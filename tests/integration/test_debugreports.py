"""Debug reports end to end: a real ``sos report`` run by a real worker process.

The quick tests collect two sos plugins (about a second); the cancel and crash
tests use sos's whole default set (several seconds), so there is time to act
while the tool runs.
"""

from __future__ import annotations

import io
import os
import signal
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.cluster import Cluster, add_host, cluster3, host_worker  # noqa: F401  (fixtures)
from tests.conftest import Kimchi, RedisServer, wait_for

QUICK = {"debugreports": {"plugins": ["host", "kernel"]}}


def reports_dir(k: Kimchi) -> Path:
    return k.dir / "state" / "debugreports"


def sos_processes(folder: Path) -> list[psutil.Process]:
    """Report tools writing under ``folder`` (any attempt)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            line = " ".join(p.info["cmdline"] or [])
        except psutil.NoSuchProcess:
            continue
        if "--tmp-dir" in line and str(folder) in line and p.status() != psutil.STATUS_ZOMBIE:
            out.append(p)
    return out


def leftovers(folder: Path) -> list[str]:
    """Every file or folder under ``folder`` but finished reports."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.relative_to(folder).parts[0] == ".work" and p.name != ".work")


def make(k: Kimchi, name: str | None = None) -> dict[str, Any]:
    r = k.post("/debugreports", {"name": name} if name else {})
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == f"/tasks/{r.json()['id']}"
    return dict(r.json())


def wait_collecting(k: Kimchi, task_id: str) -> dict[str, Any]:
    """Until the tool is running its plugins (a progress message names one)."""
    return dict(wait_for(lambda: (lambda t: t if (t["message"] or "").startswith("Collecting")
                                  else None)(k.get(f"/tasks/{task_id}").json()),
                         timeout=60, what="the report tool to run its plugins"))


@pytest.fixture
def quick(kimchi_factory: Any, redis_db: RedisServer) -> Kimchi:
    return kimchi_factory(redis_url=redis_db.url, extra=QUICK)


def test_a_report_is_made_listed_downloaded_renamed_and_deleted(quick: Kimchi) -> None:
    k = quick
    task = make(k, "before-upgrade")
    assert task["kind"] == "debugreport.collect"
    assert task["target_uri"] == "/debugreports/before-upgrade"
    done = k.wait_task(task["id"], timeout=120)
    assert done["status"] == "finished", done
    assert done["result"]["name"] == "before-upgrade"
    # the plugins' progress reached the watchers
    said = [e["data"].get("message", "") for e in
            k.get(f"/events?since=0&task={task['id']}").json()]
    # (progress is sent at most every 0.2 s, the last always: one plugin may be passed over)
    assert any(m.startswith("Collecting ") and m.endswith(" of 2)") for m in said), said
    assert "Compressing the report" in said, said

    listed = k.get("/debugreports").json()
    assert [r["name"] for r in listed] == ["before-upgrade"]
    report = k.get("/debugreports/before-upgrade").json()
    assert report == listed[0]
    assert report["file"] == "before-upgrade.tar.xz"
    assert report["uri"] == "/debugreports/before-upgrade/content"
    assert report["time"].endswith("Z")
    path = reports_dir(k) / report["file"]
    assert report["size"] == path.stat().st_size > 10_000
    # the host's secrets are in there: only root reads it
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(reports_dir(k).stat().st_mode) == 0o700

    got = k.get(report["uri"], headers={"Accept": "*/*"})
    assert got.status_code == 200
    assert got.headers["Content-Type"] == "application/x-xz"
    assert got.headers["Content-Disposition"] == 'attachment; filename="before-upgrade.tar.xz"'
    assert got.content == path.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(got.content), mode="r:xz") as tar:
        names = tar.getnames()
    assert any(n.endswith("/hostname") for n in names), names[:20]
    assert any("/sos_commands/kernel/" in n for n in names), names[:20]
    ranged = k.get(report["uri"], headers={"Range": "bytes=0-5"})
    assert ranged.status_code == 206 and ranged.content == b"\xfd7zXZ\x00"

    r = k.http.put(k.url + "/debugreports/before-upgrade", json={"name": "ticket-4711"},
                   allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    assert r.headers["Location"] == "/debugreports/ticket-4711"
    assert k.get("/debugreports/before-upgrade").status_code == 404
    assert k.get("/debugreports/ticket-4711").json()["size"] == report["size"]
    events = k.get("/events?since=0&types=debugreport.*").json()
    assert events[-1]["type"] == "debugreport.updated"
    assert events[-1]["data"]["previous"] == "before-upgrade"

    assert k.delete("/debugreports/ticket-4711").status_code == 204
    assert k.get("/debugreports").json() == []
    assert not list(reports_dir(k).glob("*.tar*"))
    assert leftovers(reports_dir(k)) == []
    assert k.get("/events?since=0&types=debugreport.deleted").json()[-1]["data"] == {
        "name": "ticket-4711"}


def test_bad_requests_get_clear_errors_and_change_nothing(quick: Kimchi) -> None:
    k = quick
    for body in ({"name": "../etc"}, {"name": "a b"}, {"name": "x.tar"}, {"name": ""},
                 {"name": "a" * 65}, {"name": 7}, {"nme": "typo"}):
        r = k.post("/debugreports", body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["errcode"].startswith("KCH"), r.text
    assert k.get("/tasks?kind=debugreport.collect").json() == []

    assert k.get("/debugreports/nothing").json()["errcode"] == "KCHDR0001E"
    assert k.get("/debugreports/nothing/content").status_code == 404
    assert k.delete("/debugreports/nothing").status_code == 404

    first = make(k, "one")
    # the same name while it is being made, and once it exists
    again = k.post("/debugreports", {"name": "one"})
    assert again.status_code == 400
    assert again.json()["errcode"] in ("KCHDR0004E", "KCHDR0003E")
    assert k.wait_task(first["id"], timeout=120)["status"] == "finished"
    assert k.post("/debugreports", {"name": "one"}).json()["errcode"] == "KCHDR0003E"
    second = make(k, "two")
    assert k.wait_task(second["id"], timeout=120)["status"] == "finished"
    clash = k.http.put(k.url + "/debugreports/two", json={"name": "one"},
                       allow_redirects=False, timeout=10)
    assert clash.status_code == 400 and clash.json()["errcode"] == "KCHDR0003E"
    assert k.http.put(k.url + "/debugreports/two", json={"name": "../one"},
                      timeout=10).status_code == 400
    assert sorted(r["name"] for r in k.get("/debugreports").json()) == ["one", "two"]


def test_an_unnamed_report_is_named_by_its_time(quick: Kimchi) -> None:
    task = make(quick)
    name = task["params"]["name"]
    assert name.startswith("report-") and len(name) == len("report-20261124-075500"), name
    assert quick.wait_task(task["id"], timeout=120)["status"] == "finished"
    assert [r["name"] for r in quick.get("/debugreports").json()] == [name]


def test_a_cancel_stops_the_tool_and_leaves_no_file(kimchi: Kimchi) -> None:
    k = kimchi  # sos's default plugin set: several seconds of work
    task = make(k, "cancelled")
    wait_collecting(k, task["id"])
    assert sos_processes(reports_dir(k))
    assert k.delete(f"/tasks/{task['id']}").status_code == 202
    ended = k.wait_task(task["id"], timeout=10)
    assert ended["status"] == "cancelled", ended
    wait_for(lambda: not sos_processes(reports_dir(k)), timeout=5,
             what="the report tool to be stopped")
    assert k.get("/debugreports").json() == []
    assert not list(reports_dir(k).glob("*.tar*"))
    assert leftovers(reports_dir(k)) == []


def test_a_worker_killed_mid_report_hands_it_to_another(kimchi: Kimchi) -> None:
    k = kimchi
    task = make(k, "survivor")
    wait_collecting(k, task["id"])
    tools = sos_processes(reports_dir(k))
    assert tools
    owner = next(w for w in k.workers()
                 if any(t.pid in {c.pid for c in w.children(recursive=True)} for t in tools))
    os.kill(owner.pid, signal.SIGKILL)
    # the lost attempt's tool does not run on unsupervised
    psutil.wait_procs(tools, timeout=15)
    assert not any(t.is_running() and t.status() != psutil.STATUS_ZOMBIE for t in tools)
    done = k.wait_task(task["id"], timeout=180)
    assert done["status"] == "finished", done
    assert int(done.get("attempt") or k.get(f"/tasks/{task['id']}").json()["attempt"]) >= 2
    assert [r["name"] for r in k.get("/debugreports").json()] == ["survivor"]
    assert [p.name for p in reports_dir(k).glob("*.tar*")] == ["survivor.tar.xz"]
    assert leftovers(reports_dir(k)) == []
    with tarfile.open(reports_dir(k) / "survivor.tar.xz", mode="r:xz") as tar:
        assert any(n.endswith("/hostname") for n in tar.getnames())


def test_without_a_report_tool_the_request_is_refused(kimchi_factory: Any,
                                                      redis_db: RedisServer,
                                                      tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH with no sos, and nothing else kimchid needs here
    bare.mkdir()
    k = kimchi_factory(redis_url=redis_db.url, env={"PATH": str(bare)})
    wait_for(lambda: k.get("/config/capabilities").json().get("system_report_tool") is False,
             what="the capability probe")
    r = k.post("/debugreports", {"name": "nope"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHDR0005E", r.text
    assert "sos" in r.json()["reason"]
    assert k.get("/tasks?kind=debugreport.collect").json() == []


def test_reports_are_for_admins_only(quick: Kimchi, pam_users: Any) -> None:
    user = (pam_users.user.name, pam_users.user.password)
    for method, path in (("GET", "/debugreports"), ("POST", "/debugreports"),
                         ("GET", "/debugreports/x"), ("GET", "/debugreports/x/content"),
                         ("DELETE", "/debugreports/x")):
        r = requests.request(method, quick.url + path, auth=user, timeout=20,
                             json={} if method == "POST" else None)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["errcode"] == "KCHAUTH0005E"


def test_another_hosts_report_is_made_by_its_worker_and_kept_here(
        kimchi_factory: Any, redis_db: RedisServer, tmp_path: Path,
        cluster3: Cluster) -> None:  # noqa: F811
    k = kimchi_factory(redis_url=redis_db.url, workers=0,
                       extra={**QUICK, "libvirt": {"uri": cluster3["h1"].uri}})
    add_host(k, cluster3, "h2")
    r = k.post("/debugreports", {"name": "x", "host": "h9"})
    assert r.status_code == 400 and r.json()["errcode"] == "KCHHOST0008E"
    worker = host_worker(tmp_path, redis_db.url, ["h2"], "worker-of-h2")
    try:
        wait_for(lambda: k.get("/hosts/h2").json()["workers"] == 1, what="h2's worker")
        r = k.post("/debugreports", {"host": "h2"})
        assert r.status_code == 202, r.text
        task = r.json()
        assert task["kind"] == "debugreport.fetch" and task["host"] == "h2"
        name = task["target_uri"].rsplit("/", 1)[1]
        assert name.startswith("report-h2-")
        done = k.wait_task(task["id"], timeout=120)
        assert done["status"] == "finished", done
        assert done["result"]["host"] == "h2"
        # made by h2's worker (its plugins' progress passed on), kept here
        [child] = k.get("/tasks?kind=debugreport.collect").json()
        assert child["worker"] == "worker-of-h2" and child["host"] == "h2"
        assert child["status"] == "finished" and child["params"]["upload"] is True
        said = [e["data"].get("message", "") for e in
                k.get(f"/events?since=0&task={task['id']}").json()]
        assert any(m.startswith("Collecting ") for m in said), said
        report = k.get(f"/debugreports/{name}").json()
        path = reports_dir(k) / report["file"]
        assert report["size"] == path.stat().st_size > 10_000
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        got = k.get(report["uri"], headers={"Accept": "*/*"}).content
        with tarfile.open(fileobj=io.BytesIO(got), mode="r:xz") as tar:
            assert any(n.endswith("/hostname") for n in tar.getnames())
        # nothing left behind: not on the bus, not in the worker's folder, not here
        assert not list(redis_db.client().scan_iter("*upload:*"))
        assert leftovers(reports_dir(k)) == []
        assert not list(Path(tempfile.gettempdir()).glob(f"kimchi-debugreports-*/{name}*"))
    finally:
        worker.terminate()
        assert worker.wait(15) == 0
