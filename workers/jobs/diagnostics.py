"""Jobs that exercise the queue itself: used by the benchmarks and the fault-injection tests."""

from __future__ import annotations

import time
from typing import Any

from kimchi.bus.context import JobContext
from kimchi.bus.jobs import job
from kimchi.bus.text import TaskText


@job("diag.noop")
def noop(ctx: JobContext) -> dict[str, Any]:
    """Does nothing: measures the queue's own cost."""
    return {}


@job("diag.sleep")
def sleep(ctx: JobContext) -> dict[str, Any]:
    """Sleeps ``seconds`` in small steps, reporting progress and honouring cancellation."""
    seconds = float(ctx.params.get("seconds", 1.0))
    steps = max(1, int(ctx.params.get("steps", seconds / 0.05)))
    for i in range(steps):
        ctx.check()
        time.sleep(seconds / steps)
        ctx.progress(100.0 * (i + 1) / steps, TaskText("step {step} of {steps}", step=i + 1,
                                                       steps=steps), step=i + 1, t=time.time())
    return {"steps": steps}


@job("diag.progress")
def progress(ctx: JobContext) -> dict[str, Any]:
    """Emits ``count`` progress updates ``every`` seconds apart, each stamped with its send time."""
    count = int(ctx.params.get("count", 100))
    every = float(ctx.params.get("every", 0.01))
    for i in range(count):
        ctx.progress(100.0 * (i + 1) / count, TaskText("tick"), i=i, t=time.time())
        ctx.flush()
        time.sleep(every)
    return {"count": count}


@job("diag.fail")
def fail(ctx: JobContext) -> dict[str, Any]:
    """Always fails: checks the failure path."""
    raise RuntimeError(ctx.params.get("error", "asked to fail"))
