"""The job registry: kind -> function of a :class:`~kimchi.bus.context.JobContext`.

A job module registers its functions with :func:`job`; the processes that run jobs (the
workers, and the daemon's own runner for the kinds it keeps) import the modules whose
kinds they run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kimchi.bus import kinds
from kimchi.bus.context import JobContext

Job = Callable[[JobContext], dict[str, Any] | None]

JOBS: dict[str, Job] = {}


def job(kind: str) -> Callable[[Job], Job]:
    """Register a job function under ``kind``."""

    kinds.kind(kind)  # declared there, with where it runs, or refused

    def register(fn: Job) -> Job:
        if kind in JOBS:
            raise ValueError(f"job kind {kind} registered twice")
        JOBS[kind] = fn
        return fn

    return register
