"""Threads that load a daemon for as long as a ``with`` block lasts."""

from __future__ import annotations

import threading
from typing import Any, Self


class LoadThreads:
    """Subclasses fill ``threads`` (each looping until ``stop`` is set); ``with`` starts
    them, and at the end sets ``stop`` and waits ``join_seconds`` for each."""

    join_seconds = 15.0

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(self.join_seconds)
