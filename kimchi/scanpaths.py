"""What a folder to scan for ISO images must be: checked on the host whose folder it is
(by the daemon for its own host, as the request comes; by the scan job on the others)."""

from __future__ import annotations

import os

from kimchi.errors import InvalidOperation, InvalidRequest

FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev")


def check_scan_path(path: str) -> None:
    """An absolute, existing, readable directory outside the pseudo file systems."""
    if not os.path.isabs(path) or "\x00" in path:
        raise InvalidRequest("KCHISO0001E", path=path)
    norm = os.path.normpath(path)
    real = os.path.realpath(norm)
    for root in FORBIDDEN_ROOTS:
        if real == root or real.startswith(root + "/"):
            raise InvalidOperation("KCHISO0004E", path=path, reason=f"{root} is not a disk")
    if not os.path.isdir(norm):
        raise InvalidOperation("KCHISO0002E", path=path)
    if not os.access(norm, os.R_OK | os.X_OK):
        raise InvalidOperation("KCHISO0003E", path=path)
