"""Debug-report files, as the daemon lists them and the worker's job makes them."""

from __future__ import annotations

import re
from pathlib import Path

KIND = "debugreport.collect"  # the job that collects one
FETCH = "debugreport.fetch"  # the daemon's job that has another host's collected and kept
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: archive suffixes sos may write, the final file keeps the same one
SUFFIXES = (".tar.xz", ".tar.gz", ".tar.bz2", ".tar")


def report_file(reports: Path, name: str) -> Path | None:
    """The finished report called ``name`` in ``reports``, if there is one."""
    for suffix in SUFFIXES:
        path = reports / f"{name}{suffix}"
        if path.is_file():
            return path
    return None
