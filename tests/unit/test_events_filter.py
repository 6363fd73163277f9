"""Event filters and ids, and the watcher's no-gap/no-duplicate bookkeeping."""

from __future__ import annotations

import pytest

from kimchi import bus
from kimchi.errors import InvalidRequest
from kimchid.model.events import Batch, Event, EventFilter, Watcher


def ev(eid: str, etype: str = "task.progress", task: str = "t1") -> Event:
    return Event(eid, {"type": etype, "time": "2026-01-01T00:00:00.000Z", "data": "{}",
                       "task": task})


def test_type_patterns_and_task():
    f = EventFilter("task.*,vm.state", "t1")
    assert f(ev("1-0", "task.finished"))
    assert f(ev("1-0", "vm.state"))
    assert not f(ev("1-0", "vm.created"))
    assert not f(ev("1-0", "task.finished", task="t2"))
    assert EventFilter()(ev("1-0", "anything"))
    with pytest.raises(InvalidRequest):
        EventFilter("task.<x>")


@pytest.mark.parametrize("value", ["0", "5", "1700000000000-3"])
def test_event_ids_parse(value):
    assert bus.parse_event_id(value)[0] >= 0


@pytest.mark.parametrize("value", ["", "-", "a-1", "1-b", "1-2-3", "9" * 50])
def test_bad_event_ids_are_refused(value):
    with pytest.raises(ValueError):
        bus.parse_event_id(value)


class Recorder(Watcher):
    def __init__(self, limit: int = 100) -> None:
        super().__init__(EventFilter(), limit)
        self.got: list[str] = []
        self.dropped_reason = ""

    def write(self, e: Event) -> None:
        self.got.append(e.id)

    def write_reset(self) -> None:
        self.got.append("reset")

    def drop(self, reason: str) -> None:
        self.dropped_reason = reason


def test_live_events_held_during_backfill_are_released_once_in_order():
    w = Recorder()
    w.offer(ev("5-0"))  # arrives live while the back-fill runs
    w.offer(ev("6-0"))
    for e in (ev("4-0"), ev("5-0")):  # the back-fill, overlapping the live ones
        w.last = e.key
        w.write(e)
    w.ready = True
    w.release()
    assert w.got == ["4-0", "5-0", "6-0"]


def test_a_paused_client_is_held_then_dropped_when_too_far_behind():
    w = Recorder(limit=3)
    w.ready = True
    w.pauseProducing()
    for i in range(3):
        w.offer(ev(f"{i + 1}-0"))
    assert w.got == [] and not w.dropped
    w.resumeProducing()
    assert w.got == ["1-0", "2-0", "3-0"]
    w.pauseProducing()
    for i in range(5):
        w.offer(ev(f"{i + 10}-0"))
    assert w.dropped and "since" in w.dropped_reason


class Batcher(Recorder):
    """Writes what :meth:`Watcher.fresh` gives, as the socket and stream watchers do."""

    def __init__(self, wants: EventFilter) -> None:
        super().__init__()
        self.wants = wants
        self.ready = True
        self.shared_with: list[bool] = []

    def offer_many(self, events: list[Event], batch: Batch) -> None:
        got, same = self.fresh(events, batch)
        self.shared_with.append(same)
        self.got.extend(e.id for e in got)


def test_a_batch_is_filtered_once_per_filter_and_each_watcher_gets_only_what_is_new():
    batch = [ev("5-0", "task.progress"), ev("6-0", "vm.state"), ev("7-0", "task.finished")]
    tasks_a, tasks_b = Batcher(EventFilter("task.*")), Batcher(EventFilter("task.*"))
    everything = Batcher(EventFilter())
    behind = Batcher(EventFilter("task.*"))
    behind.last = bus.parse_event_id("5-0")  # its back-fill already sent 5-0
    per_user = Batcher(EventFilter(access=lambda e: e.type != "vm.state"))
    shared = Batch()
    for w in (tasks_a, everything, behind, tasks_b, per_user):
        w.offer_many(batch, shared)
    assert tasks_a.got == tasks_b.got == ["5-0", "7-0"]
    assert everything.got == ["5-0", "6-0", "7-0"]
    assert behind.got == ["7-0"]  # nothing twice
    assert per_user.got == ["5-0", "7-0"]
    # the two task.* watchers share one list; the one behind and the per-user one do not
    assert tasks_a.shared_with == tasks_b.shared_with == everything.shared_with == [True]
    assert behind.shared_with == per_user.shared_with == [False]
    assert len(shared.shared) == 2
    # a next batch moves on from where each one is
    nxt = [ev("8-0", "task.progress")]
    shared = Batch()
    for w in (tasks_a, behind, per_user):
        w.offer_many(nxt, shared)
    assert tasks_a.got[-1] == behind.got[-1] == per_user.got[-1] == "8-0"
    assert behind.shared_with[-1] is True
