"""The bus scripts as a state machine, driven by random interleavings against a real Redis.

Two workers race for one task: starts (deliveries and reclaims), progress,
heartbeats, hand-backs, endings and cancellations in any order.  Whatever
happens: a task ends at most once, an ended task never changes, a superseded
attempt can write nothing, and ``GET`` shows what the last event said.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kimchi import bus
from kimchi.bus.sync import SyncBus, connect
from tests.integration.test_task_index import assert_indexes_match

TERMINAL_EVENTS = {"task.finished", "task.failed", "task.cancelled"}

op = st.one_of(
    st.tuples(st.just("start"), st.sampled_from("AB")),
    st.tuples(st.just("progress"), st.sampled_from("AB")),
    st.tuples(st.just("heartbeat"), st.sampled_from("AB")),
    st.tuples(st.just("finish"), st.sampled_from("AB"),
              st.sampled_from(["finished", "failed", "cancelled"])),
    st.tuples(st.just("handback"), st.sampled_from("AB")),
    st.tuples(st.just("cancel")),
)


class Race:
    def __init__(self, b: SyncBus, max_attempts: int = 3) -> None:
        self.b = b
        self.k = b.keys
        self.s = b.scripts
        self.max_attempts = max_attempts
        self.task = b.submit("diag.noop")
        self.attempt: dict[str, str | None] = {"A": None, "B": None}
        self.entry: str | None = None

    def now(self) -> str:
        return bus.now_iso(time.time())

    def current_entry(self) -> str | None:
        entries = self.b.client.xrange(self.k.jobs)
        return entries[-1][0] if entries else None

    def run(self, step: tuple[Any, ...]) -> None:
        name, who = step[0], (step[1] if len(step) > 1 else None)
        k, t = self.k, self.task
        if name == "start":
            entry = self.current_entry()
            if entry is None:
                return
            self.entry = entry
            res = self.s["start"](keys=[k.task(t), k.jobs, k.events, k.dead],
                                  args=[entry, who, self.now(), self.max_attempts, 1000,
                                        "lost", "cancelled"])
            self.attempt[who] = res[1] if res[0] == "run" else None
            if res[0] == "run":  # the other worker's attempt is now superseded
                other = "B" if who == "A" else "A"
                if self.attempt[other] == res[1]:
                    self.attempt[other] = None
        elif name == "cancel":
            self.s["cancel"](keys=[k.task(t), k.events], args=[self.now(), 1000, "cancelled"])
        else:
            attempt = self.attempt[who] or "0"
            before = self.b.client.hget(k.task(t), "attempt")
            h = self.b.client.hmget(k.task(t), "status", "worker")
            owns = self.attempt[who] is not None and before == attempt and \
                h[0] == "running" and bool(h[1])
            if name == "progress":
                code = self.s["progress"](keys=[k.task(t), k.events],
                                          args=[attempt, self.now(), 50, "m", "", 1000])
            elif name == "heartbeat":
                code = self.s["heartbeat"](keys=[k.task(t), k.jobs],
                                           args=[attempt, self.entry or "0-0", who])
            elif name == "handback":
                code = self.s["handback"](keys=[k.task(t), k.jobs, k.events],
                                          args=[attempt, self.entry or "0-0", self.now(), "hb",
                                                1000])
                if code:
                    self.attempt[who] = None
            else:
                code = self.s["finish"](keys=[k.task(t), k.jobs, k.events, k.found(t)],
                                        args=[attempt, step[2], self.now(), "done", "",
                                              self.entry or "0-0", 3600, 1000, ""])
            assert (code != 0) == owns, (step, code, owns)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(op, max_size=25))
def test_any_interleaving_ends_a_task_at_most_once(redis_db, steps):
    client = connect(redis_db.url)
    client.flushall()
    b = SyncBus(client)
    b.ensure_group()
    race = Race(b)
    statuses = []
    for step in steps:
        race.run(step)
        statuses.append(b.task(race.task)["status"])
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
    handbacks = int(client.hget(b.keys.task(race.task), "handbacks") or 0)
    assert int(final["attempt"]) - handbacks <= race.max_attempts  # hand-backs are free
    # the job stays queued exactly while the task runs
    pending = client.xlen(b.keys.jobs)
    if final["status"] != "running":
        assert json.dumps(final)  # serialisable
        assert pending <= 1
