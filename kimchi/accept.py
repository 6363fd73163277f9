"""The lists of weighted values that ``Accept``, ``Accept-Encoding`` and
``Accept-Language`` carry (RFC 9110 §12.4.2): ``gzip;q=0.5, *;q=0``."""

from __future__ import annotations


def weighted(value: str | None) -> list[tuple[str, float]]:
    """Each item of the header's ``value`` with its q-value, in the order sent: names
    stripped, ``q`` 1 when not given and 0 when unreadable; empty items left out."""
    out: list[tuple[str, float]] = []
    for item in (value or "").split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if name.strip():
            out.append((name.strip(), q))
    return out
