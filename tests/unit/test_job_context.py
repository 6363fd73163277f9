"""A job's progress: throttled, never decreasing, the last one always sent; cancellation."""

from __future__ import annotations

import pytest

from kimchi.bus.context import JobContext, Progress, Stop
from kimchi.bus.text import TaskText


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, sent: list[Progress], code: int = 1) -> JobContext:
    def send_progress(ctx: JobContext, p: Progress) -> int:
        sent.append(p)
        return code

    return JobContext(task_id="t", entry_id="1-0", attempt="1", kind="k", params={},
                      send_progress=send_progress,
                      send_found=lambda ctx, finds: True, progress_interval=0.2, clock=clock)


def test_progress_is_throttled_and_the_last_is_flushed():
    clock, sent = Clock(), []
    ctx = make(clock, sent)
    for i in range(100):
        clock.now = i * 0.01  # 1 s of updates every 10 ms
        ctx.progress(i, TaskText("step {i}", i=i))
    assert 5 <= len(sent) <= 6
    ctx.flush()
    assert sent[-1].percent == 99 and str(sent[-1].message) == "step 99"


def test_progress_never_goes_down_within_an_attempt():
    clock, sent = Clock(), []
    ctx = make(clock, sent)
    for pct in (10, 50, 30, 60):
        clock.now += 1
        ctx.progress(pct, TaskText("x"))
    assert [p.percent for p in sent] == [10, 50, 50, 60]


@pytest.mark.parametrize("code, why", [(2, "cancelled"), (0, "lost")])
def test_a_cancel_or_a_lost_lease_stops_the_job(code, why):
    clock, sent = Clock(), []
    ctx = make(clock, sent, code)
    ctx.progress(1, TaskText("x"))
    with pytest.raises(Stop) as e:
        ctx.check()
    assert e.value.why == why
