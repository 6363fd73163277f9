"""The job registry: kind -> function of a :class:`~workers.context.JobContext`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workers.context import JobContext

Job = Callable[[JobContext], dict[str, Any] | None]

JOBS: dict[str, Job] = {}


def job(kind: str) -> Callable[[Job], Job]:
    """Register a job function under ``kind``."""

    def register(fn: Job) -> Job:
        if kind in JOBS:
            raise ValueError(f"job kind {kind} registered twice")
        JOBS[kind] = fn
        return fn

    return register


def load_all() -> dict[str, Job]:
    """Import every job module so each registers itself."""
    from workers.jobs import debugreport, diagnostics, disks, iso_scan  # noqa: F401

    return JOBS
