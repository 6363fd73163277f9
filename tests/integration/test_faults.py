"""Crash any one process mid-job: no task hangs in ``running``, no find is reported twice.

Each test slows the worker's reports (``KIMCHI_FAULT_SLOW_REPORTS``, a delay
before each find) so that a scan is reliably in the middle when the fault hits.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from kimchi.bus.sync import SyncBus, connect
from tests.conftest import Kimchi, RedisServer, wait_for
from tests.isofactory import make_iso

pytestmark = pytest.mark.slow

SLOW = {"KIMCHI_FAULT_SLOW_REPORTS": "0.15"}
N_ISOS = 12


@pytest.fixture
def many_isos(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    for i in range(N_ISOS):
        make_iso(root / f"d{i % 3}" / f"fedora-{30 + i}.iso", f"Fedora-S-dvd-x86_64-{30 + i}")
    return root


def _scan(k: Kimchi, path: Path) -> str:
    r = k.post("/isos/scan", {"path": str(path)})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _found(k: Kimchi, task_id: str) -> list[str]:
    events = k.get(f"/events?since=0&types=iso.found&task={task_id}&limit=10000").json()
    return [e["data"]["path"] for e in events]


def _worker_pid(task: dict[str, Any]) -> int:
    return int(task["worker"].rsplit("-", 1)[1])


def _running_with_finds(k: Kimchi, task_id: str, n: int = 1) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        t = k.get(f"/tasks/{task_id}").json()
        return t if t["worker"] and len(_found(k, task_id)) >= n else None

    return wait_for(ready, timeout=15, what="the scan to report its first ISO")


def _assert_each_iso_reported_once(k: Kimchi, task_id: str) -> None:
    counts = Counter(_found(k, task_id))
    assert len(counts) == N_ISOS, counts
    assert max(counts.values()) == 1, [p for p, c in counts.items() if c > 1]
    names = {i["name"] for i in k.get("/isos").json()}
    assert len({n for n in names if n.startswith("fedora-")}) == N_ISOS


def test_worker_killed_mid_scan_another_worker_finishes_it(kimchi_factory, redis_db, many_isos):
    k = kimchi_factory(redis_url=redis_db.url, env=SLOW)
    task_id = _scan(k, many_isos)
    running = _running_with_finds(k, task_id, 2)
    victim = _worker_pid(running)
    os.kill(victim, signal.SIGKILL)

    done = k.wait_task(task_id, timeout=30)
    assert done["status"] == "finished", done
    assert done["attempt"] == 2  # the lease expired and another worker took it over
    assert done["worker"] != running["worker"]
    _assert_each_iso_reported_once(k, task_id)


def test_job_whose_workers_keep_dying_ends_failed_with_the_reason(kimchi_factory, redis_db):
    k = kimchi_factory(redis_url=redis_db.url, extra={"workers": {"max_attempts": 2}})
    bus = SyncBus(connect(redis_db.url))
    task_id = bus.submit("diag.sleep", {"seconds": 60})
    killed = set()
    def running_attempt(a: int) -> dict | None:
        task = bus.task(task_id)
        return task if task["attempt"] == a and task["worker"] else None

    for attempt in (1, 2):
        pid = _worker_pid(wait_for(lambda a=attempt: running_attempt(a), timeout=20,
                                   what=f"attempt {attempt}"))
        killed.add(pid)
        os.kill(pid, signal.SIGKILL)
    done = bus.wait(task_id, timeout=30)
    assert done["status"] == "failed"
    assert "KCHTASK0003E" in done["message"] and "2 times" in done["message"]
    assert len(killed) == 2
    # the supervisor replaced the killed workers
    wait_for(lambda: len(k.workers()) == 2 and not killed & {p.pid for p in k.workers()},
             what="replacement workers")


def test_sigterm_worker_hands_its_job_back_at_once(kimchi_factory, redis_db, many_isos):
    # 12 finds x 0.4 s outlast the worker's 2 s grace: it must hand the job back.
    k = kimchi_factory(redis_url=redis_db.url, env={"KIMCHI_FAULT_SLOW_REPORTS": "0.4"},
                       extra={"workers": {"lease_seconds": 30.0}})
    task_id = _scan(k, many_isos)
    running = _running_with_finds(k, task_id)
    os.kill(_worker_pid(running), signal.SIGTERM)
    # With a 30 s lease, only a hand-back lets another worker continue this soon.
    done = k.wait_task(task_id, timeout=20)
    assert done["status"] == "finished", done
    assert done["worker"] != running["worker"]
    assert done["attempt"] == 2  # handed back after attempt 1, finished by attempt 2
    progress = k.get(f"/events?since=0&types=task.progress&task={task_id}&limit=10000").json()
    assert any("Handed back" in e["data"]["message"] for e in progress)
    _assert_each_iso_reported_once(k, task_id)


def test_redis_restarted_mid_scan_the_scan_finishes(kimchi_factory, redis_db: RedisServer,
                                                    many_isos):
    k = kimchi_factory(redis_url=redis_db.url, env=SLOW)
    task_id = _scan(k, many_isos)
    _running_with_finds(k, task_id, 2)
    redis_db.stop()
    # While Redis is away: honest health, and new work is refused with 503, not queued.
    down = wait_for(lambda: (lambda h: h["redis"] == "down" and h)(k.get("/health").json()),
                    what="health to say redis down")
    assert k.get("/health").status_code == 503 and down["status"] == "degraded"
    assert [p["id"] for p in down["problems"]] == ["redis"]
    (problem,) = down["problems"]
    assert problem["component"] == "redis" and problem["what"]
    assert problem["reason"] and "reconnects by itself" in problem["fix"]  # the client's error
    r = k.post("/isos/scan", {"path": str(many_isos)})
    assert r.status_code == 503
    assert r.json()["errcode"] == "KCHSVC0001E"
    time.sleep(1.0)
    redis_db.start()

    wait_for(lambda: k.get("/health").status_code == 200, timeout=15, what="recovery")
    done = k.wait_task(task_id, timeout=40)
    assert done["status"] == "finished", done
    _assert_each_iso_reported_once(k, task_id)
    recovered = k.get("/events?since=0&types=service.recovered").json()
    assert recovered and recovered[-1]["data"]["component"] == "redis"


def test_redis_away_while_a_scan_prunes_the_library_the_scan_finishes(
        kimchi_factory, redis_db: RedisServer, many_isos):
    # A pause before each prune (KIMCHI_FAULT_SLOW_PRUNE) lets Redis go away right there.
    # A 30 s lease: the job stays with its worker across the outage.
    k = kimchi_factory(redis_url=redis_db.url, env={"KIMCHI_FAULT_SLOW_PRUNE": "1.0"},
                       extra={"workers": {"lease_seconds": 30.0}})
    first = k.wait_task(_scan(k, many_isos), timeout=30)
    assert first["status"] == "finished", first
    vanished = sorted(many_isos.glob("d0/*.iso"))
    assert vanished
    for iso in vanished:
        iso.unlink()

    task_id = _scan(k, many_isos)
    wait_for(lambda: "removing" in k.get(f"/tasks/{task_id}").json()["message"],
             timeout=20, what="the scan to start pruning")
    redis_db.stop()
    # Longer than redis-py's own retries of one command (3, backing off up to 7 s in all):
    # the prune itself must wait Redis out.
    time.sleep(9.0)
    redis_db.start()

    wait_for(lambda: k.get("/health").status_code == 200, timeout=15, what="recovery")
    done = k.wait_task(task_id, timeout=40)
    assert done["status"] == "finished", done
    assert done["result"]["removed"] == len(vanished)
    listed = {i["path"] for i in k.get("/isos").json()}
    assert not listed & {str(p) for p in vanished}
    assert len(listed) == N_ISOS - len(vanished)
    removed = k.get(f"/events?since=0&types=iso.removed&task={task_id}").json()
    assert sorted(e["data"]["path"] for e in removed) == sorted(str(p) for p in vanished)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_daemon_restarted_mid_scan_the_scan_finishes_and_stays_visible(
        kimchi_factory, many_isos, how):
    # Embedded Redis: the daemon owns Redis and the workers, so all of them go down.
    k = kimchi_factory(redis_url="", env=SLOW)
    task_id = _scan(k, many_isos)
    _running_with_finds(k, task_id, 2)
    # the supervised children (short-lived probes such as qemu-img may come and go)
    children = [p.pid for p in k.children("redis-server") + k.workers()]
    assert len(children) == 3, children  # redis + 2 workers
    k.stop(how)
    # No orphan keeps running: the guard makes children die with the daemon.
    wait_for(lambda: not [p for p in children if psutil.pid_exists(p)
                          and psutil.Process(p).status() != psutil.STATUS_ZOMBIE],
             timeout=30, what="children to exit with the daemon")
    k.start()

    done = k.wait_task(task_id, timeout=40)
    assert done["status"] == "finished", done
    _assert_each_iso_reported_once(k, task_id)
    assert any(t["id"] == task_id for t in k.get("/tasks").json())


def test_worker_stopping_while_redis_is_away_exits_though_its_job_was_cancelled(redis_db):
    # The cancel reaches the job while it sleeps before a find (its check passed); Redis
    # goes away before the find can be recorded; then the worker is told to stop, as when
    # kimchid dies with its embedded Redis.  It must not wait for a Redis that is gone.
    from kimchi.bus.worker import Worker
    from kimchi.config import Config, WorkersConfig

    def find_then_check(ctx):
        ctx.found("/lost/a.iso", "iso.found", {"path": "/lost/a.iso"})
        ctx.check()

    cfg = Config(workers=WorkersConfig(lease_seconds=2.0))
    worker = Worker(cfg, redis_db.url, {"diag.noop": find_then_check})
    worker.fault_delay = 2.0  # the pause inside ctx.found, after its check
    runs = threading.Thread(target=worker.run, daemon=True)
    runs.start()
    bus = SyncBus(connect(redis_db.url))
    task_id = bus.submit("diag.noop")
    ctx = wait_for(lambda: worker.running.get(task_id), what="the job to start")
    bus.cancel(task_id)
    wait_for(lambda: ctx.stopping == "cancelled", what="the heartbeat to tell the job")
    redis_db.kill()
    worker.request_stop()
    runs.join(15)
    stuck = runs.is_alive()
    redis_db.start()  # lets a stuck worker end, so the test process can exit
    assert not stuck, "the worker still waits for Redis to record a find"
    # Redis back, the next worker takes the job over once its lease has expired
    successor = Worker(cfg, redis_db.url, {"diag.noop": find_then_check})
    threading.Thread(target=successor.run, daemon=True).start()
    try:
        done = bus.wait(task_id, timeout=20)
    finally:
        successor.request_stop()
    assert done["status"] == "cancelled", done


def test_a_worker_whose_queue_is_deleted_while_it_waits_makes_it_again(redis_db):
    # FLUSHALL, or a DEL by hand, while the worker is blocked reading its queue: Redis
    # answers the read "UNBLOCKED the stream key no longer exists".  The worker must not
    # die of it (the daemon's own runner is a thread: nothing would start it again).
    from kimchi.bus.worker import Worker
    from kimchi.config import Config

    worker = Worker(Config(), redis_db.url, {"diag.noop": lambda ctx: {"ok": True}})
    runs = threading.Thread(target=worker.run, daemon=True)
    runs.start()
    client = connect(redis_db.url)
    try:
        wait_for(lambda: any(c.get("cmd") == "xreadgroup"
                             for c in client.client_list()), what="the worker to wait")
        client.flushall()
        time.sleep(0.5)
        assert runs.is_alive()
        bus = SyncBus(client)
        task_id = bus.submit("diag.noop")
        wait_for(lambda: bus.task(task_id)["status"] == "finished", timeout=20,
                 what="the job to run on the queue made again")
    finally:
        worker.request_stop()
        runs.join(15)
