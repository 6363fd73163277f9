"""Chaos: a steady load on a real kimchid while its parts are killed, then every account kept.

kimchid runs as ``kimchi.sh up`` runs it: HTTPS with its own certificate, logins
on, its embedded Redis, two workers, and libvirt behind a libvirtd of the test's
own (never the machine's).  Threads keep scanning a tree of ISOs, creating VMs
from a template, deleting VMs and cancelling tasks, and a WebSocket follows the
event stream, resuming after every drop.  Meanwhile, in rounds: ``kill -9`` of a
worker, of Redis, of kimchid (then started again) and of the libvirtd (then
started again).  Afterwards every task the load was given has ended and says
how, every ISO and VM is listed once and matches libvirt, failed creations left
nothing behind, the followed stream equals the server's with no gap and no
duplicate, and no answer was a 5xx other than 503.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import libvirt
import psutil
import pytest
import requests
import websocket

from tests.conftest import Kimchi, wait_for
from tests.isofactory import make_iso
from tests.libvirtd_private import PrivateLibvirtd, own_libvirtd  # noqa: F401  (a fixture)
from tests.loadthreads import LoadThreads

pytestmark = pytest.mark.slow

ROUNDS = 3
PAUSE = 5.0  # seconds of load between two faults
N_ISOS = 10
TEMPLATE = "chaos"
ENDINGS = ("task.finished", "task.failed", "task.cancelled")


@dataclass
class Answer:
    method: str
    path: str
    status: int
    errcode: str
    at: float


@dataclass
class Record:
    """Everything the load was told, kept for the accounts at the end."""

    answers: list[Answer] = field(default_factory=list)
    unanswered: Counter[str] = field(default_factory=Counter)  # no answer: kimchid away
    tasks: dict[str, str] = field(default_factory=dict)  # task id -> kind, from 202s
    creating: dict[str, str] = field(default_factory=dict)  # task id -> VM name
    deleted: set[str] = field(default_factory=set)  # VMs whose DELETE answered 204
    maybe_deleted: set[str] = field(default_factory=set)  # DELETE sent, no answer
    cancels: Counter[int] = field(default_factory=Counter)  # DELETE /tasks/<id>: statuses
    lock: threading.Lock = field(default_factory=threading.Lock)

    def statuses(self) -> Counter[int]:
        with self.lock:
            return Counter(a.status for a in self.answers)


class Load(LoadThreads):
    """Threads that keep kimchid busy: ISO scans, VM creates and deletes, task cancels."""

    join_seconds = 30.0

    def __init__(self, k: Kimchi, tree: Path) -> None:
        super().__init__()
        self.k = k
        self.tree = tree
        self.rec = Record()
        self.names = (f"chaos-{n}" for n in range(1, 1_000_000))
        self.threads = [threading.Thread(target=self._loop, args=(f, pause), daemon=True,
                                         name=f.__name__)
                        for f, pause in ((self._scan, 0.4), (self._create, 0.25),
                                         (self._delete, 0.5), (self._cancel, 0.3))]

    def _loop(self, step: Callable[[requests.Session], None], pause: float) -> None:
        http = requests.Session()
        http.trust_env, http.verify, http.auth = False, str(self.k.cert), self.k.auth
        while not self.stop.is_set():
            step(http)
            self.stop.wait(pause)

    def _call(self, http: requests.Session, method: str, path: str,
              body: Any = None) -> requests.Response | None:
        """One request; its answer recorded, or None when kimchid did not answer."""
        try:
            r = http.request(method, self.k.url + path, json=body, timeout=15)
        except requests.RequestException as e:
            with self.rec.lock:
                self.rec.unanswered[f"{method} {path.split('/')[1]}: {type(e).__name__}"] += 1
            return None
        code = ""
        if r.status_code >= 400:
            try:
                code = r.json().get("errcode", "")
            except ValueError:
                code = f"not JSON: {r.text[:80]!r}"
        with self.rec.lock:
            self.rec.answers.append(Answer(method, path, r.status_code, code, time.time()))
        return r

    def _scan(self, http: requests.Session) -> None:
        r = self._call(http, "POST", "/isos/scan", {"path": str(self.tree)})
        if r is not None and r.status_code == 202:
            with self.rec.lock:
                self.rec.tasks[r.json()["id"]] = "iso.scan"

    def _create(self, http: requests.Session) -> None:
        name = next(self.names)  # never used twice: a name tells its creation apart
        r = self._call(http, "POST", "/vms", {"template": TEMPLATE, "name": name})
        if r is not None and r.status_code == 202:
            with self.rec.lock:
                self.rec.tasks[r.json()["id"]] = "vm.create"
                self.rec.creating[r.json()["id"]] = name

    def _delete(self, http: requests.Session) -> None:
        r = self._call(http, "GET", "/vms")
        if r is None or r.status_code != 200:
            return
        ours = [vm["name"] for vm in r.json() if vm["name"].startswith("chaos-")]
        if not ours:
            return
        name = random.choice(ours)
        r = self._call(http, "DELETE", f"/vms/{name}")
        with self.rec.lock:
            if r is None:
                self.rec.maybe_deleted.add(name)
            elif r.status_code == 204:
                self.rec.deleted.add(name)

    def _cancel(self, http: requests.Session) -> None:
        with self.rec.lock:
            recent = list(self.rec.tasks)[-6:]
        if not recent:
            return
        r = self._call(http, "DELETE", f"/tasks/{random.choice(recent)}")
        if r is not None:
            with self.rec.lock:
                self.rec.cancels[r.status_code] += 1


class Follower:
    """A WebSocket on /events that resumes (``since``) after every drop; keeps every id."""

    def __init__(self, k: Kimchi) -> None:
        self.k = k
        self.ids: list[str] = []
        self.resets = 0
        self.connects = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="follower")

    def __enter__(self) -> Follower:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(15)

    def _run(self) -> None:
        while not self.stop.is_set():
            since = self.ids[-1] if self.ids else "0"
            try:
                ws = websocket.create_connection(
                    f"{self.k.ws_url}/events?since={since}", timeout=3,
                    header=self.k.ws_headers, sslopt={"ca_certs": str(self.k.cert)})
            except Exception:  # kimchid away, or refusing while Redis is
                self.stop.wait(0.2)
                continue
            self.connects += 1
            try:
                while not self.stop.is_set():
                    ev = json.loads(ws.recv())
                    if ev["type"] == "reset":
                        self.resets += 1
                    elif ev["id"] is not None:  # notices outside the stream have no id
                        self.ids.append(ev["id"])
            except Exception:  # dropped, or quiet for a while: resume from the last id
                pass
            finally:
                ws.close()


def event_key(event_id: str) -> tuple[int, int]:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


def server_events(k: Kimchi) -> list[dict[str, Any]]:
    """Every event the server keeps, oldest first (paged)."""
    out: list[dict[str, Any]] = []
    since = "0"
    while True:
        page = k.get(f"/events?since={since}&limit=10000").json()
        assert not any(e["type"] == "reset" for e in page), "the stream was trimmed"
        out += page
        if len(page) < 10000:
            return out
        since = out[-1]["id"]


def libvirt_state(uri: str) -> tuple[list[str], list[str]]:
    """The domains' names and the volumes' names on the libvirtd (asked directly)."""
    conn = libvirt.open(uri)
    try:
        domains = [d.name() for d in conn.listAllDomains(0)]
        volumes = [v.name() for p in conn.listAllStoragePools(0) if p.isActive()
                   for v in p.listAllVolumes(0)]
        return domains, volumes
    finally:
        conn.close()


def when(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class Faults:
    """The faults, each with when it struck; libvirtd restarts are remembered for the VMs."""

    def __init__(self, k: Kimchi, lvd: PrivateLibvirtd) -> None:
        self.k = k
        self.lvd = lvd
        self.done: list[tuple[str, float]] = []
        self.libvirtd_killed = 0.0  # the last time the libvirtd lost its state

    def _kill(self, proc: psutil.Process) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def worker(self) -> None:
        workers = wait_for(lambda: len(self.k.workers()) == 2 and self.k.workers(),
                           timeout=20, what="two workers")
        self._kill(random.choice(workers))
        self.done.append(("worker", time.time()))

    def redis(self) -> None:
        (redis,) = wait_for(lambda: self.k.children("redis-server"), what="the embedded Redis")
        self._kill(redis)
        self.done.append(("redis", time.time()))

    def kimchid(self) -> None:
        children = self.k.children("redis-server") + self.k.workers()
        self.k.stop(signal.SIGKILL)
        self.done.append(("kimchid", time.time()))

        def alive() -> list[str]:
            out = []
            for p in children:
                try:
                    if p.status() != psutil.STATUS_ZOMBIE:
                        out.append(f"{p.pid} {' '.join(p.cmdline()[-3:])}")
                except psutil.NoSuchProcess:
                    pass
            return out

        # as systemd would before a restart: the old children have gone with it
        wait_for(lambda: not alive(), timeout=30,
                 what=f"kimchid's children to exit with it: {alive()}")
        self.k.start()

    def libvirtd(self) -> None:
        self.lvd.kill()
        self.libvirtd_killed = time.time()
        self.done.append(("libvirtd", self.libvirtd_killed))
        time.sleep(0.5)
        self.lvd.start()


def test_chaos_every_task_event_iso_and_vm_is_accounted_for(
        kimchi_factory: Any, own_libvirtd: PrivateLibvirtd,  # noqa: F811 (the fixture)
        tmp_path: Path) -> None:
    tree = tmp_path / "isos"
    isos = [make_iso(tree / f"d{i % 3}" / f"fedora-{30 + i}.iso", f"Fedora-S-dvd-x86_64-{30 + i}")
            for i in range(N_ISOS)]
    # A delay before each reported step, so that faults strike jobs in the middle.  The
    # embedded Redis as installed: appendfsync always (with everysec Redis may answer
    # before its append-only file has the write, and a kill -9 loses it: seen here, an
    # event a WebSocket had been sent was gone from the stream after the restart).
    k: Kimchi = kimchi_factory(redis_url="", tls=True, env={"KIMCHI_FAULT_SLOW_REPORTS": "0.05"},
                               extra={"libvirt": {"uri": own_libvirtd.uri}})
    assert k.url.startswith("https://") and k.get("/vms").status_code == 200
    wait_for(lambda: k.get("/health").json()["status"] == "ok", timeout=20,
             what="kimchid connected to all, its default pool made")
    r = k.post("/templates", {"name": TEMPLATE,
                              "source_media": {"type": "disk", "path": str(isos[0])}})
    assert r.status_code == 201, r.text
    wait_for(lambda: k.get(f"/templates/{TEMPLATE}").json()["invalid"] == {},
             what="the template's pool and network")

    faults = Faults(k, own_libvirtd)
    started = time.monotonic()
    with Follower(k) as follower, Load(k, tree) as load:
        for _round in range(ROUNDS):
            for fault in (faults.worker, faults.redis, faults.kimchid, faults.libvirtd):
                time.sleep(PAUSE)
                fault()
        time.sleep(PAUSE)
        load.stop.set()  # the load ends; what it started settles
        for thread in load.threads:
            thread.join(30)
        rec = load.rec
        loaded = time.monotonic() - started

        # -- every task the load was given has ended, and says how -----------------
        tasks: dict[str, dict[str, Any]] = {}
        lost: dict[str, str] = {}

        def all_ended() -> bool:
            for tid in rec.tasks:
                if tid not in lost and tasks.get(tid, {}).get("status", "running") == "running":
                    r = k.get(f"/tasks/{tid}")
                    if r.status_code == 200:
                        tasks[tid] = r.json()
                    elif r.status_code != 503:
                        lost[tid] = r.text
            return len(tasks) + len(lost) == len(rec.tasks) and all(
                t["status"] != "running" for t in tasks.values())

        wait_for(all_ended, timeout=60, interval=0.5,
                 what="every task to end: still running "
                      f"{[t for t in tasks.values() if t['status'] == 'running']}")
        assert not lost, f"tasks lost: {lost}"
        for t in tasks.values():
            assert t["status"] in ("finished", "failed", "cancelled"), t
            if t["status"] == "failed":
                assert t["message"], t

        # -- the follower has everything the server kept, once, in order ------------
        newest = server_events(k)[-1]["id"]
        wait_for(lambda: follower.ids and follower.ids[-1] == newest, timeout=20,
                 what="the follower to catch up with the stream")
    events = server_events(k)
    kept = [e["id"] for e in events]
    seen = follower.ids
    assert len(seen) == len(set(seen)), [i for i, n in Counter(seen).items() if n > 1][:10]
    assert all(event_key(a) < event_key(b) for a, b in zip(seen, seen[1:], strict=False))
    assert follower.resets == 0  # nothing was trimmed (far below [events] max_len)
    missing = sorted(set(kept) - set(seen), key=event_key)
    assert not missing, f"{len(missing)} events never reached the follower: {missing[:10]}"
    assert seen == kept[:len(seen)]

    # each task told once that it was made and once, last, how it ended, as it did end
    told: dict[str, list[str]] = {tid: [] for tid in tasks}
    for e in events:
        if e["type"] in ("task.created", *ENDINGS):
            told.get(e["data"]["id"], []).append(e["type"])
    for tid, t in tasks.items():
        assert told[tid] == ["task.created", f"task.{t['status']}"], (t, told[tid])
    # each scan that finished reported each ISO once, whatever struck it on the way
    found: dict[str, Counter[str]] = {tid: Counter() for tid in tasks}
    for e in events:
        if e["type"] == "iso.found" and e["data"].get("task") in found:
            found[e["data"]["task"]][e["data"]["path"]] += 1
    for tid, paths in found.items():
        assert not paths or max(paths.values()) == 1, (tasks[tid], paths)
        if tasks[tid]["kind"] == "iso.scan" and tasks[tid]["status"] == "finished":
            assert len(paths) == N_ISOS, (tasks[tid], paths)

    # -- every ISO once -----------------------------------------------------------------
    listed = Counter(i["path"] for i in k.get("/isos").json())
    assert {str(p) for p in isos} <= set(listed), listed
    assert max(listed.values()) == 1, [p for p, n in listed.items() if n > 1]

    # -- every VM once, as libvirt has it; failed creations left nothing ----------------
    def vms_as_libvirt_has_them() -> bool:
        r = k.get("/vms")
        return r.status_code == 200 and Counter(v["name"] for v in r.json()) == Counter(
            libvirt_state(own_libvirtd.uri)[0])

    wait_for(vms_as_libvirt_has_them, timeout=20, what="GET /vms to list what libvirt has")
    domains, volumes = libvirt_state(own_libvirtd.uri)
    vm_names = [v["name"] for v in k.get("/vms").json()]
    assert len(vm_names) == len(set(vm_names)) and sorted(vm_names) == sorted(domains)
    for tid, name in rec.creating.items():
        t = tasks[tid]
        mine = [v for v in volumes if v.startswith(f"{name}-")]
        if t["status"] != "finished":
            assert name not in domains and not mine, (t, mine)
        elif name in rec.deleted:
            assert name not in domains and not mine, (t, mine)
        elif when(t["updated"]) > faults.libvirtd_killed + 1.0 and name not in rec.maybe_deleted:
            assert name in domains, t  # made after the last libvirtd restart, never deleted
    made_by_load = set(rec.creating.values())
    orphans = [v for v in volumes if v.rsplit("-", 1)[0] in made_by_load
               and v.rsplit("-", 1)[0] not in domains]
    assert not orphans, f"volumes of no VM: {orphans}"

    # -- no 5xx other than 503 ------------------------------------------------------------
    statuses = rec.statuses()
    bad = [a for a in rec.answers if a.status >= 500 and a.status != 503]
    assert not bad, f"5xx other than 503: {Counter((a.method, a.path, a.status) for a in bad)}"
    assert not [a for a in rec.answers if a.status == 503 and not a.errcode.startswith("KCH")]

    kinds = Counter((t["kind"], t["status"]) for t in tasks.values())
    print(f"\nchaos: {loaded:.0f}s of load, faults {[f for f, _ in faults.done]}\n"
          f"  tasks {len(tasks)}: {dict(sorted(kinds.items()))}\n"
          f"  answers {len(rec.answers)}: {dict(sorted(statuses.items()))}; "
          f"errors {dict(Counter((a.status, a.errcode) for a in rec.answers if a.status >= 400))}\n"
          f"  no answer: {dict(rec.unanswered)}\n"
          f"  cancels {dict(rec.cancels)}; VMs deleted {len(rec.deleted)}, listed at the end "
          f"{len(vm_names)}\n"
          f"  events {len(seen)} followed over {follower.connects} connections")
    assert statuses[202] > 0 and rec.cancels[202] > 0 and rec.deleted
    assert len(faults.done) == 4 * ROUNDS
