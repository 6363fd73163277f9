"""``GET /metrics`` from a real kimchid: Prometheus' parser reads it, and its figures move
when work happens (VMs made and started, tasks run, a worker killed mid-job, a login
failed, watchers connected), for an admin or an address of ``[metrics] allow`` only.

One daemon for the module (two workers of one job each, so three jobs make a queue),
``[metrics] allow = ["127.0.0.1"]``: the tests read it from 127.0.0.1 without a login,
and come from 127.0.0.2 (another loopback address, not allowed) to be refused.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from prometheus_client.parser import text_string_to_metric_families

from kimchi.bus.sync import SyncBus, connect
from tests.conftest import Kimchi, RedisServer, wait_for
from tests.isofactory import make_iso

DOCS = Path(__file__).resolve().parents[2] / "docs"
OTHER = "127.0.0.2"  # a loopback address that is not in [metrics] allow
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this module's alone: the figures count every worker heartbeating into
    it, and a worker another test left behind must not be among them."""
    server = RedisServer(tmp_path_factory.mktemp("metrics-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def k(tmp_path_factory: pytest.TempPathFactory, own_redis: RedisServer,
      pam_users: Any) -> Iterator[Kimchi]:
    daemon = Kimchi(tmp_path_factory.mktemp("metrics"), redis_url=own_redis.url,
                    auth=(pam_users.admin.name, pam_users.admin.password),
                    extra={"metrics": {"allow": ["127.0.0.1"]},
                           "workers": {"concurrency": 1}})
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def bus(k: Kimchi, own_redis: RedisServer) -> SyncBus:
    return SyncBus(connect(own_redis.url))


def scrape(k: Kimchi, **kw: Any) -> Samples:
    """Every sample of an anonymous scrape from 127.0.0.1, parsed by prometheus_client."""
    r = requests.get(k.url + "/metrics", timeout=10, **kw)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a series not there (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def get_from(k: Kimchi, source: str, path: str, headers: dict[str, str] | None = None
             ) -> tuple[int, dict[str, str], bytes]:
    """A GET to kimchid from another of this machine's addresses."""
    conn = http.client.HTTPConnection("127.0.0.1", k.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {h.lower(): v for h, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_access_is_for_admins_and_the_allowed_addresses(k: Kimchi, pam_users: Any) -> None:
    # from an address not allowed: a login is needed, and it must be an admin's
    status, headers, body = get_from(k, OTHER, "/metrics")
    assert status == 401 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["errcode"] == "KCHAUTH0002E"
    tokens = {}
    for who in (pam_users.user, pam_users.admin):
        r = k.post("/tokens", {"name": "prometheus", "username": who.name})
        assert r.status_code == 201, r.text
        tokens[who.name] = r.json()["token"]
    status, _h, body = get_from(k, OTHER, "/metrics", {
        "Authorization": f"Bearer {tokens[pam_users.user.name]}"})
    assert status == 403 and json.loads(body)["errcode"] == "KCHAUTH0005E"
    status, headers, body = get_from(k, OTHER, "/metrics", {
        "Authorization": f"Bearer {tokens[pam_users.admin.name]}"})
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"kimchi_build_info" in body
    status, _h, body = get_from(k, OTHER, "/metrics", {"Authorization": "Bearer kch_nope"})
    assert status == 401 and json.loads(body)["errcode"] == "KCHAUTH0004E"
    # from 127.0.0.1 ([metrics] allow): no login at all
    assert value(scrape(k), "kimchi_build_info", version="0.1.0") == 1
    # what Prometheus 3 asks for (OpenMetrics first) gets the text format
    prometheus = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
                  "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;"
                  "escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
    assert value(scrape(k, headers={"Accept": prometheus}), "kimchi_redis_up") == 1
    # Prometheus' format or nothing
    r = requests.get(k.url + "/metrics", headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 406 and r.json()["errcode"] == "KCHAPI0003E"
    # the spec says all this
    op = k.get("/openapi.json").json()["paths"]["/metrics"]["get"]
    assert list(op["responses"]["200"]["content"]) == ["text/plain; version=0.0.4"]
    assert "401" in op["responses"] and "security" not in op


def test_hosts_vms_and_tasks_move_with_the_work(k: Kimchi, tmp_path: Path) -> None:
    before = scrape(k)
    assert value(before, "kimchi_redis_up") == 1
    assert value(before, "kimchi_libvirt_up", host="local") == 1
    assert value(before, "kimchi_host_state", host="local", state="connected") == 1
    assert value(before, "kimchi_host_state", host="local", state="unreachable") == 0
    listed = [v for v in k.get("/vms").json() if v["host"] == "local"]
    for state in ("running", "shutoff"):
        assert value(before, "kimchi_vms", host="local", state=state) == sum(
            v["state"] == state for v in listed)
    iso = make_iso(tmp_path / "f39.iso", "Fedora-WS-Live-39-1-5")
    r = k.post("/templates", {"name": "metrics",
                              "source_media": {"type": "disk", "path": str(iso)}})
    assert r.status_code == 201, r.text
    wait_for(lambda: k.get("/templates/metrics").json()["invalid"] == {},
             what="the template's pool and network")
    r = k.post("/vms", {"template": "metrics", "name": "measured"})
    assert r.status_code == 202, r.text
    assert k.wait_task(r.json()["id"])["status"] == "finished"
    after = wait_for(lambda: (s := scrape(k)) and value(
        s, "kimchi_vms", host="local", state="shutoff") == value(
        before, "kimchi_vms", host="local", state="shutoff") + 1 and s,
        what="the new VM counted as shut off")
    assert value(after, "kimchi_tasks", kind="vm.create", status="finished") == value(
        before, "kimchi_tasks", kind="vm.create", status="finished") + 1
    ended = value(after, "kimchi_task_duration_seconds_count", kind="vm.create",
                  status="finished")
    assert ended == value(before, "kimchi_task_duration_seconds_count", kind="vm.create",
                          status="finished") + 1
    assert value(after, "kimchi_task_duration_seconds_sum", kind="vm.create",
                 status="finished") > 0
    assert value(after, "kimchi_event_stream_length") > value(
        before, "kimchi_event_stream_length")
    assert k.post("/vms/measured/start").status_code == 200
    running = wait_for(lambda: (s := scrape(k)) and value(
        s, "kimchi_vms", host="local", state="running") == value(
        before, "kimchi_vms", host="local", state="running") + 1 and s,
        what="the VM counted as running")
    assert value(running, "kimchi_vms", host="local", state="shutoff") == value(
        before, "kimchi_vms", host="local", state="shutoff")
    assert k.delete("/vms/measured").status_code == 204


def test_queues_workers_and_lost_leases(k: Kimchi, bus: SyncBus) -> None:
    start = wait_for(lambda: (s := scrape(k)) and value(s, "kimchi_workers_alive") == 2 and s,
                     what="both workers' heartbeats")
    assert value(start, "kimchi_host_workers_alive", host="local") == 2
    for queue, host in (("shared", ""), ("daemon", ""), ("host", "local")):
        assert ("kimchi_queue_depth", frozenset({("queue", queue), ("host", host)})) in start
    # two workers of one job each: the third job waits on the shared queue
    jobs = [bus.submit("diag.sleep", {"seconds": 1.5, "steps": 3}) for _ in range(3)]
    queued = wait_for(lambda: (s := scrape(k)) and value(
        s, "kimchi_queue_in_progress", queue="shared", host="") == 2 and s,
        what="both workers busy")
    assert value(queued, "kimchi_queue_depth", queue="shared", host="") == 1
    assert value(queued, "kimchi_tasks", kind="diag.sleep", status="running") == 3
    for job in jobs:
        assert bus.wait(job, timeout=20)["status"] == "finished"
    done = wait_for(lambda: (s := scrape(k)) and value(
        s, "kimchi_task_duration_seconds_count", kind="diag.sleep",
        status="finished") == 3 and s, what="the three durations")
    assert value(done, "kimchi_queue_depth", queue="shared", host="") == 0
    assert value(done, "kimchi_queue_in_progress", queue="shared", host="") == 0
    assert value(done, "kimchi_tasks", kind="diag.sleep", status="finished") == 3
    assert value(done, "kimchi_task_duration_seconds_sum", kind="diag.sleep",
                 status="finished") >= 3 * 1.5
    # the job at least 1.5 s, at most 30 s
    assert value(done, "kimchi_task_duration_seconds_bucket", kind="diag.sleep",
                 status="finished", le="1.0") == 0
    assert value(done, "kimchi_task_duration_seconds_bucket", kind="diag.sleep",
                 status="finished", le="30.0") == 3
    # a worker killed mid-job: the other takes the job over once its lease has expired
    lost = value(done, "kimchi_leases_lost_total")
    job = bus.submit("diag.sleep", {"seconds": 4, "steps": 4})
    taker = wait_for(lambda: (bus.task(job) or {}).get("worker"), what="a worker on the job")
    pid = int(taker.rsplit("-", 1)[1])
    assert pid in {p.pid for p in k.workers()}  # one of this daemon's own
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: value(scrape(k), "kimchi_leases_lost_total") == lost + 1, timeout=20,
             what="the lease counted as lost")
    assert bus.wait(job, timeout=30)["attempt"] == 2


def test_http_requests_logins_and_watchers(k: Kimchi, pam_users: Any) -> None:
    before = scrape(k)
    for _ in range(3):
        assert k.get("/vms").status_code == 200
    assert k.get("/vms/no-such-vm").status_code == 404
    assert k.get("/no/such/path").status_code == 404
    r = requests.post(k.url + "/login", json={"username": pam_users.user.name,
                                              "password": "wrong"}, timeout=20)
    assert r.status_code == 401
    after = scrape(k)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("kimchi_http_requests_total", route="/vms", method="GET", status="200") == 3
    assert moved("kimchi_http_request_duration_seconds_count", route="/vms",
                 method="GET") == 3
    # by the route's template, never the path
    assert moved("kimchi_http_requests_total", route="/vms/<name>", method="GET",
                 status="404") == 1
    assert moved("kimchi_http_requests_total", route="none", method="GET", status="404") == 1
    assert not any("no-such-vm" in str(labels) or "/no/such" in str(labels)
                   for _n, labels in after)
    assert moved("kimchi_failed_logins_total", reason="password") == 1
    assert moved("kimchi_failed_logins_total", reason="throttled") == 0
    # live watchers, by transport, counted while connected
    ws = websocket.create_connection(f"{k.ws_url}/events", timeout=10, header=k.ws_headers)
    sse = requests.get(k.url + "/events", headers={"Accept": "text/event-stream"},
                       auth=k.auth, stream=True, timeout=10)
    try:
        assert sse.status_code == 200
        watching = wait_for(lambda: (s := scrape(k)) and value(
            s, "kimchi_event_watchers", transport="sse") == 1 and s, what="the SSE watcher")
        assert value(watching, "kimchi_event_watchers", transport="websocket") == 1
    finally:
        ws.close()
        sse.close()
    wait_for(lambda: (s := scrape(k)) and value(
        s, "kimchi_event_watchers", transport="sse") == 0 and value(
        s, "kimchi_event_watchers", transport="websocket") == 0, what="the watchers gone")


def test_a_scrape_is_fast_and_documented(k: Kimchi) -> None:
    text = requests.get(k.url + "/metrics", timeout=10).text
    # every series name each family may have (a family with no series yet included)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    families = {f.name: f.type for f in text_string_to_metric_families(text)
                if f.name.startswith("kimchi_")}
    names = {f + s for f, t in families.items() for s in suffixes.get(t, ("",))}
    # every metric is in docs/metrics.md under the name a query uses, and the dashboard
    # asks for no other
    documented = set(re.findall(r"`(kimchi_\w+)`", (DOCS / "metrics.md").read_text()))
    assert {n for n in names if not n.endswith(("_bucket", "_count", "_sum"))} | {
        f for f, t in families.items() if t == "histogram"} <= documented
    dashboard = json.loads((DOCS / "grafana" / "kimchi.json").read_text())
    asked = {m for p in dashboard["panels"] for t in p.get("targets", ())
             for m in re.findall(r"kimchi_\w+", t["expr"])}
    assert asked and asked - names == set()
    took = []
    for _ in range(10):
        t0 = time.perf_counter()
        scrape(k)
        took.append(time.perf_counter() - t0)
    took.sort()
    assert took[5] < 0.05, f"median scrape {took[5] * 1000:.1f} ms"
