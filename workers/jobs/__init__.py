"""The worker processes' jobs: each module registers its kinds in
:mod:`kimchi.bus.jobs`."""

from __future__ import annotations

from kimchi.bus.jobs import JOBS, Job


def load_all() -> dict[str, Job]:
    """Import every job module so each registers itself."""
    from workers.jobs import (  # noqa: F401
        bases,
        debugreport,
        diagnostics,
        disks,
        iso_scan,
        volumes,
    )

    return JOBS
