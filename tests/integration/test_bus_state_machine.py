"""The bus scripts as a state machine, driven by random interleavings: the contract that
the real bus (the Lua scripts on a real Redis) and the in-memory one
(:mod:`kimchi.bus.memory`) both keep.

Two workers race for one task: starts (deliveries and reclaims), progress,
heartbeats, hand-backs, endings and cancellations in any order.  Whatever
happens: a task ends at most once, an ended task never changes, a superseded
attempt can write nothing, and ``GET`` shows what the last event said.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kimchi.bus.memory import MemoryBus
from kimchi.bus.sync import SyncBus, connect
from kimchi.bus.text import TaskText
from tests.integration.test_task_index import assert_indexes_match

TERMINAL_EVENTS = {"task.finished", "task.failed", "task.cancelled"}
LOST = TaskText.error("KCHTASK0003E", attempts=3)  # a message that is an error's
CANCELLED = TaskText("Cancelled before it started")

op = st.one_of(
    st.tuples(st.just("start"), st.sampled_from("AB")),
    st.tuples(st.just("progress"), st.sampled_from("AB")),
    st.tuples(st.just("heartbeat"), st.sampled_from("AB")),
    st.tuples(st.just("finish"), st.sampled_from("AB"),
              st.sampled_from(["finished", "failed", "cancelled"])),
    st.tuples(st.just("handback"), st.sampled_from("AB")),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("expire")),
)


class Race:
    def __init__(self, b: Any, max_attempts: int = 3) -> None:
        self.b = b
        self.max_attempts = max_attempts
        self.task = b.submit("diag.noop")
        self.attempt: dict[str, str | None] = {"A": None, "B": None}
        self.entry: str | None = None

    def current_entry(self) -> str | None:
        entries = self.b.queued()
        return entries[-1][0] if entries else None

    def run(self, step: tuple[Any, ...]) -> None:
        name = step[0]
        who: Any = step[1] if len(step) > 1 else None
        b, t = self.b, self.task
        if name == "start":
            entry = self.current_entry()
            if entry is None:
                return
            self.entry = entry
            res = b.start(entry, t, who, self.max_attempts, LOST, CANCELLED)
            assert res[0] == "run" or b.task(t)["status"] != "running"
            self.attempt[who] = res[1] if res[0] == "run" else None
            if res[0] == "run":  # the other worker's attempt is now superseded
                other = "B" if who == "A" else "A"
                if self.attempt[other] == res[1]:
                    self.attempt[other] = None
        elif name == "cancel":
            b.cancel(t)
        elif name == "expire":  # no worker for its host: fails only before any start
            before = b.task(t)
            res = b.expire(t, TaskText("no worker"))
            unstarted = before["status"] == "running" and before["attempt"] == 0
            assert (res == ["failed"]) == unstarted, (res, before)
            if unstarted:
                assert b.task(t)["message"] == "no worker"
        else:
            attempt = self.attempt[who] or "0"
            now = b.task(t)
            owns = (self.attempt[who] is not None and str(now["attempt"]) == attempt
                    and now["status"] == "running" and bool(now["worker"]))
            if name == "progress":
                code = b.progress(t, attempt, 50, TaskText("m"))
            elif name == "heartbeat":
                code = b.heartbeat(t, attempt, self.entry or "0-0", who)
            elif name == "handback":
                code = b.handback(t, attempt, self.entry or "0-0", TaskText("hb"))
                if code:
                    self.attempt[who] = None
            else:
                code = b.finish(t, attempt, step[2], TaskText("done"), None,
                                self.entry or "0-0", 3600)
            assert (code != 0) == owns, (step, code, owns)


def check(b: Any, steps: list[tuple[Any, ...]], client: Any = None) -> None:
    b.ensure_group()
    race = Race(b)
    statuses = []
    for step in steps:
        race.run(step)
        statuses.append(b.task(race.task)["status"])
        if client is not None:
            assert_indexes_match(client, b.keys)  # the listing indexes follow every script

    # an ended task never changes again
    for before, after in zip(statuses, statuses[1:], strict=False):
        if before != "running":
            assert after == before
    events = [e for e in b.events("0", 100000) if e["data"].get("id") == race.task]
    ends = [e for e in events if e["type"] in TERMINAL_EVENTS]
    final = b.task(race.task)
    assert len(ends) == (0 if final["status"] == "running" else 1)
    if ends:
        assert ends[0]["type"] == f"task.{final['status']}"
        assert ends[0]["data"] == final  # GET shows what the last event said
    assert int(final["attempt"]) - b.handbacks(race.task) <= race.max_attempts  # free
    # the job stays queued exactly while the task runs
    pending = len(b.queued())
    if final["status"] != "running":
        assert json.dumps(final)  # serialisable
        assert pending <= 1


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(op, max_size=25))
def test_any_interleaving_ends_a_task_at_most_once(redis_db, steps):
    client = connect(redis_db.url)
    client.flushall()
    check(SyncBus(client), steps, client)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(op, max_size=25))
def test_the_memory_bus_keeps_the_same_contract(steps):
    check(MemoryBus(), steps)


def test_the_memory_bus_answers_as_redis_does_step_by_step(redis_db):
    """Beyond the invariants: the same steps give the same answers and the same task."""
    client = connect(redis_db.url)
    steps = [("start", "A"), ("progress", "A"), ("cancel",), ("heartbeat", "A"),
             ("handback", "A"), ("start", "B"), ("progress", "A"), ("finish", "B", "failed"),
             ("finish", "B", "finished"), ("cancel",)]
    seen = []
    for b in (SyncBus(client), MemoryBus()):
        if isinstance(b, SyncBus):
            client.flushall()
        b.ensure_group()
        race = Race(b)
        answers = []
        for step in steps:
            race.run(step)
            t = b.task(race.task)
            answers.append((t["status"], t["attempt"], t["worker"], t["message"],
                            t["message_id"], t["message_args"], t["errcode"], t["progress"]))
        types = [e["type"] for e in b.events("0", 1000)]
        seen.append((answers, types, b.handbacks(race.task), len(b.queued())))
    assert seen[0] == seen[1]


def test_finds_are_reported_once_per_task_by_both(redis_db):
    """``found``: once per task whatever the attempts, never by a superseded attempt, and
    the record kept in the job's library."""
    from kimchi import bus

    client = connect(redis_db.url)
    seen = []
    for b in (SyncBus(client), MemoryBus()):
        if isinstance(b, SyncBus):
            client.flushall()
        b.ensure_group()
        t = b.submit("iso.scan", host="h2")  # a host's job: on that host's queue
        assert b.queued() == [] and b.task(t)["host"] == "h2"
        entry = b.queued(b.keys.host_jobs("h2"))[-1][0]
        attempt = b.start(entry, t, "A", 3, LOST, CANCELLED)[1]
        codes = [b.found(t, attempt, "/a.iso", "iso.found", '{"path": "/a.iso"}', bus.ISOS,
                         "/a.iso", {"size": 1}),
                 b.found(t, attempt, "/a.iso", "iso.found", '{"path": "/a.iso"}', bus.ISOS,
                         "/a.iso", {"size": 1}),
                 b.found(t, "9", "/b.iso", "iso.found", '{"path": "/b.iso"}', bus.ISOS,
                         "/b.iso", {"size": 2})]
        if isinstance(b, SyncBus):
            library = {k: json.loads(v) for k, v in
                       client.hgetall(b.keys.library(bus.ISOS)).items()}
        else:
            library = b.library(bus.ISOS)
        found = [e["data"] for e in b.events("0", 1000) if e["type"] == "iso.found"]
        seen.append((codes, library, found))
    assert seen[0] == seen[1] == ([1, 2, 0], {"/a.iso": {"size": 1}}, [{"path": "/a.iso"}])
