"""Task listings by status and kind read an index kept by the bus scripts.

The cost of ``GET /tasks?status=running`` is that of what matches, not of every
kept task; the indexes stay true to the task records through every change a
script makes (submit, start, reclaim, finish, fail, cancel, trim), are built
once for data from before them, and a client that goes away mid-request is no
error in the log.
"""

from __future__ import annotations

import socket
import statistics
import time
from typing import Any

from kimchi import bus
from kimchi.bus.sync import SyncBus, connect
from tests.conftest import Kimchi, RedisServer, wait_for

STATUSES = ("running", "finished", "failed", "cancelled")


def assert_indexes_match(client: Any, keys: bus.Keys) -> None:
    """Every index holds exactly the kept tasks of its status and/or kind, at their
    creation time."""
    created = dict(client.zrange(keys.tasks, 0, -1, withscores=True))
    truth: dict[str, tuple[str, str]] = {}
    for task_id in created:
        status, kind = client.hmget(keys.task(task_id), "status", "kind")
        if status is not None:
            truth[task_id] = (status, kind)
    kinds = {kind for _s, kind in truth.values()}
    assert kinds <= client.smembers(keys.task_kinds)
    for status in STATUSES:
        for kind in (None, *kinds):
            index = dict(client.zrange(keys.task_index(status, kind), 0, -1, withscores=True))
            want = {i for i, (s, k) in truth.items()
                    if s == status and (kind is None or k == kind)}
            # an index may keep an id whose record has gone (a page drops it), never a
            # kept task under the wrong status or kind
            assert {i for i in index if i in truth} == want, (status, kind)
            assert all(index[i] == created[i] for i in want), (status, kind)
    for kind in kinds:
        kept = set(client.zrange(keys.task_index(kind=kind), 0, -1))
        assert {i for i in kept if i in truth} == {i for i, (_s, k) in truth.items()
                                                    if k == kind}


def _now() -> str:
    return bus.now_iso(time.time())


def _start(b: SyncBus, task_id: str, entry: str, worker: str = "w1",
           max_attempts: int = 3) -> list[str]:
    k = b.keys
    return b.scripts["start"](keys=[k.task(task_id), k.jobs, k.events, k.dead],
                              args=[entry, worker, _now(), max_attempts, b.maxlen, "lost",
                                    "cancelled before it started"])


def _finish(b: SyncBus, task_id: str, entry: str, attempt: str, status: str) -> int:
    k = b.keys
    return b.scripts["finish"](keys=[k.task(task_id), k.jobs, k.events, k.found(task_id)],
                               args=[attempt, status, _now(), status, "", entry, 3600,
                                     b.maxlen, ""])


def _entry_of(b: SyncBus, task_id: str) -> str:
    for eid, fields in b.client.xrange(b.keys.jobs):
        if fields["task"] == task_id:
            return str(eid)
    raise AssertionError(f"no job for {task_id}")


def make_ended_tasks(b: SyncBus, n: int, kind: str = "diag.noop",
                     status: str = "finished") -> list[str]:
    """``n`` tasks taken through submit, start and finish by the bus scripts, in pipelines."""
    k = b.keys
    b.ensure_group()
    ids: list[str] = []
    for first in range(0, n, 1000):
        pipe = b.client.pipeline(transaction=False)
        batch = [b.submit(kind, {}, pipe=pipe) for _ in range(min(1000, n - first))]
        b.execute(pipe)
        entries = {f["task"]: eid for _s, es in b.client.xreadgroup(
            bus.GROUP, "filler", {k.jobs: ">"}, count=len(batch)) for eid, f in es}
        pipe = b.client.pipeline(transaction=False)
        for task_id in batch:
            b.scripts["start"](keys=[k.task(task_id), k.jobs, k.events, k.dead],
                               args=[entries[task_id], "filler", _now(), 3, b.maxlen, "lost",
                                     "cancelled"], client=pipe)
        assert all(r[0] == "run" for r in b.execute(pipe))
        pipe = b.client.pipeline(transaction=False)
        for task_id in batch:
            b.scripts["finish"](keys=[k.task(task_id), k.jobs, k.events, k.found(task_id)],
                                args=["1", status, _now(), "OK", "", entries[task_id], 3600,
                                      b.maxlen, ""], client=pipe)
        assert b.execute(pipe) == [1] * len(batch)
        ids += batch
    return ids


def _commands(client: Any, name: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


def test_running_tasks_are_listed_at_the_cost_of_what_runs(kimchi_factory: Any,
                                                           redis_db: RedisServer) -> None:
    k = kimchi_factory(redis_url=redis_db.url, workers=0)  # nothing takes the jobs
    b = SyncBus(connect(redis_db.url))
    make_ended_tasks(b, 3000)
    running = {b.submit("diag.sleep", {"seconds": 60}, target_uri="/vms/a") for _ in range(2)}
    client = redis_db.client()
    assert client.zcard(b.keys.tasks) == 3002

    def listing() -> list[dict[str, Any]]:
        r = k.get("/tasks?status=running")
        assert r.status_code == 200, r.text
        return list(r.json())

    wait_for(lambda: len(listing()) == 2, what="the 2 running tasks")  # events read by now
    hgetall = _commands(client, "hgetall")
    took = []
    for _ in range(20):
        t0 = time.perf_counter()
        found = listing()
        took.append(time.perf_counter() - t0)
        assert {t["id"] for t in found} == running
        assert all(t["status"] == "running" and t["kind"] == "diag.sleep" for t in found)
    per_request = (_commands(client, "hgetall") - hgetall) / 20
    assert per_request <= 5, f"{per_request} records read per listing of 2 running tasks"
    assert statistics.median(took) < 0.05, f"median {statistics.median(took) * 1000:.0f} ms"

    # the other filters read their index too, newest first
    both = k.get("/tasks?status=running&kind=diag.sleep&target_uri=^/vms/a$").json()
    assert {t["id"] for t in both} == running
    assert k.get("/tasks?status=running&kind=diag.noop").json() == []
    five = k.get("/tasks?status=finished&limit=5").json()
    assert len(five) == 5 and all(t["status"] == "finished" for t in five)
    assert [t["created"] for t in five] == sorted((t["created"] for t in five), reverse=True)
    assert len(k.get("/tasks?kind=diag.noop&limit=3000").json()) == 3000
    assert len(k.get("/tasks?limit=10000").json()) == 3002
    assert_indexes_match(b.client, b.keys)

    # a debug report's name is looked up among the reports being made, not every task
    hgetall = _commands(client, "hgetall")
    made = k.post("/debugreports", {"name": "busy"})
    assert made.status_code == 202, made.text
    again = k.post("/debugreports", {"name": "busy"})
    assert again.status_code == 400 and again.json()["errcode"] == "KCHDR0004E", again.text
    assert _commands(client, "hgetall") - hgetall <= 10


def test_the_indexes_follow_every_change_of_a_task(redis_db: RedisServer) -> None:
    b = SyncBus(connect(redis_db.url))
    b.ensure_group()
    k, c = b.keys, b.client
    c.set(k.task_keep, 3600)  # as the daemon sets it

    def status_ids(status: str, kind: str | None = None) -> set[str]:
        return set(c.zrange(k.task_index(status, kind), 0, -1))

    done, broken, queued, asked, flaky, reclaimed = (
        b.submit(kind) for kind in ("diag.fail", "diag.fail", "diag.progress", "diag.progress", "diag.fail", "diag.progress"))
    assert_indexes_match(c, k)
    assert status_ids("running") == {done, broken, queued, asked, flaky, reclaimed}
    assert status_ids("running", "diag.fail") == {done, broken, flaky}
    assert set(c.zrange(k.task_index(kind="diag.progress"), 0, -1)) == {queued, asked, reclaimed}

    # start, then finish and fail
    for task_id, status in ((done, "finished"), (broken, "failed")):
        entry = _entry_of(b, task_id)
        res = _start(b, task_id, entry)
        assert _finish(b, task_id, entry, res[1], status) == 1
        assert_indexes_match(c, k)
    assert status_ids("finished") == {done} and status_ids("failed", "diag.fail") == {broken}

    # cancelled before it started
    assert b.cancel(queued) == ["cancelled"]
    assert status_ids("cancelled", "diag.progress") == {queued}
    assert_indexes_match(c, k)

    # a cancel asked of a running job, then its worker lost: the reclaim ends it
    entry = _entry_of(b, asked)
    _start(b, asked, entry)
    assert b.cancel(asked) == ["requested"]
    assert asked in status_ids("running")
    assert _start(b, asked, entry, worker="w2") == ["skip", "cancelled"]
    assert asked in status_ids("cancelled") and asked not in status_ids("running")
    assert_indexes_match(c, k)

    # reclaimed once: still running; reclaimed past max_attempts: failed
    entry = _entry_of(b, reclaimed)
    _start(b, reclaimed, entry)
    assert _start(b, reclaimed, entry, worker="w2")[0] == "run"
    assert reclaimed in status_ids("running", "diag.progress")
    entry = _entry_of(b, flaky)
    for worker in ("w1", "w2"):
        assert _start(b, flaky, entry, worker=worker, max_attempts=2)[0] == "run"
    assert _start(b, flaky, entry, worker="w3", max_attempts=2) == ["skip", "failed"]
    assert status_ids("failed", "diag.fail") == {broken, flaky}
    assert_indexes_match(c, k)
    # ended without a worker's end, these records expire all the same
    for task_id in (done, broken, queued, asked, flaky):
        assert 0 < c.ttl(k.task(task_id)) <= 3600, task_id
    assert c.ttl(k.task(reclaimed)) == -1

    # a late end of a superseded attempt changes nothing
    assert _finish(b, reclaimed, entry, "1", "finished") == 0
    assert reclaimed in status_ids("running")

    # the trim forgets ended tasks created before the cutoff, everywhere, but a task
    # still running stays listed whatever its age
    cutoff = int(time.time() * 1000) + 1000
    b.scripts["trim_tasks"](keys=[k.tasks], args=[cutoff])
    assert set(c.zrange(k.tasks, 0, -1)) == {reclaimed}
    assert set(c.zrange(k.task_index(kind="diag.progress"), 0, -1)) == {reclaimed}
    assert status_ids("running") == {reclaimed} == status_ids("running", "diag.progress")
    for status in ("finished", "failed", "cancelled"):
        assert status_ids(status) == set()
        for kind in ("diag.fail", "diag.progress"):
            assert status_ids(status, kind) == set()
    assert_indexes_match(c, k)

    # a record gone (expired) leaves the index the first time a page meets it
    c.delete(k.task(reclaimed))
    read, dropped, *found = b.scripts["task_page"](
        keys=[k.task_index("running"), k.tasks], args=[0, 10, "running", ""])
    assert (read, dropped, found) == (1, 1, [])
    assert c.zcard(k.task_index("running")) == 0 and c.zcard(k.tasks) == 0


def test_tasks_kept_from_before_the_indexes_are_indexed_once_at_start(
        kimchi_factory: Any, redis_db: RedisServer) -> None:
    b = SyncBus(connect(redis_db.url))
    ended = set(make_ended_tasks(b, 30, kind="diag.fail", status="failed"))
    running = {b.submit("diag.progress") for _ in range(3)}
    client = redis_db.client()
    # as an older kimchi left them: the records and {p}tasks, no index
    stale = [key for key in client.scan_iter(b.keys.tasks + ":*")]
    client.delete(*stale)
    assert not client.exists(b.keys.task_index_version)

    k = kimchi_factory(redis_url=redis_db.url, workers=0)
    assert {t["id"] for t in k.get("/tasks?status=running").json()} == running
    assert {t["id"] for t in k.get("/tasks?status=failed&kind=diag.fail").json()} == ended
    assert client.get(b.keys.task_index_version) == bus.TASK_INDEX_VERSION
    assert "task indexes built for 33 kept task(s)" in k.log_text()
    assert_indexes_match(b.client, b.keys)

    k.restart()  # built once: a second start finds them
    assert k.log_text().count("task indexes built") == 1
    assert {t["id"] for t in k.get("/tasks?status=running").json()} == running


def test_a_client_that_goes_away_mid_request_is_no_error(kimchi: Kimchi,
                                                          redis_db: RedisServer) -> None:
    assert kimchi.get("/tasks").status_code == 200  # signed in once: the password is known
    assert kimchi.auth is not None
    import base64

    token = base64.b64encode(f"{kimchi.auth[0]}:{kimchi.auth[1]}".encode()).decode()
    request = (f"GET /tasks?status=running HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Basic {token}\r\n\r\n").encode()
    pauser = redis_db.client()
    for _ in range(3):
        pauser.execute_command("CLIENT", "PAUSE", "1000", "ALL")  # the answer waits on Redis
        with socket.create_connection(("127.0.0.1", kimchi.port)) as s:
            s.sendall(request)
            time.sleep(0.3)  # the request is in the handler: then the client goes away
        time.sleep(1.0)
    wait_for(lambda: kimchi.get("/tasks?status=running").status_code == 200,
             what="kimchid answering again")
    log = kimchi.log_text()
    assert '"level": "critical"' not in log and "CancelledError" not in log, log[-3000:]
