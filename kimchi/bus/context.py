"""What a running job sees: its parameters, progress reporting and cancellation.

A job is a plain function ``job(ctx) -> result dict`` registered by kind in
:mod:`workers.jobs`.  It reports through ``ctx.progress`` / ``ctx.found`` and
calls ``ctx.check()`` between steps; both raise :class:`Stop` once the task is
cancelled, timed out, lost to another worker or handed back.

Its messages (progress, and its result's ``"message"``) are :class:`TaskText`: an
English template and its values, which the task keeps so that each reader gets them in
its language (kimchi/bus/text.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kimchi.bus import Library
from kimchi.bus.text import TaskText

# a find's record for a library: (the library, its field, the value stored there)
Stored = tuple[Library, str, dict[str, Any]]


class Stop(Exception):
    """Raised inside a job to unwind it; ``why`` is cancelled | lost | handback | timeout."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass
class Progress:
    percent: float | None
    message: TaskText
    details: dict[str, Any] = field(default_factory=dict)


class JobContext:
    """One attempt at one job, shared by the job's thread and the worker's heartbeat."""

    def __init__(
        self,
        *,
        task_id: str,
        entry_id: str,
        attempt: str,
        kind: str,
        params: dict[str, Any],
        send_progress: Callable[[JobContext, Progress], int],
        send_found: Callable[..., bool],
        prune: Callable[..., list[str]] | None = None,
        progress_interval: float,
        clock: Callable[[], float] = time.monotonic,
        fault_delay: float = 0.0,
        stream: str = "",
        upload: Callable[[JobContext, str], dict[str, Any]] | None = None,
    ) -> None:
        self.task_id = task_id
        self.stream = stream  # the queue the job came from
        self.entry_id = entry_id
        self.attempt = attempt
        self.kind = kind
        self.params = params
        self._send_progress = send_progress
        self._send_found = send_found
        self._prune = prune or (lambda _ctx, _library, _root, _keep: [])
        self._finds: list[tuple[str, str, str, Stored | None]] = []
        self._finds_since = 0.0
        self._interval = progress_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: Progress | None = None
        self._last_sent = float("-inf")
        self._last_percent: float | None = None
        self._stop: str | None = None
        self.started = clock()
        self.fault_delay = fault_delay
        self._upload = upload

    # -- called by the job -------------------------------------------------

    def upload(self, path: str) -> dict[str, Any]:
        """Send the file ``path`` over the bus for the task's reader (a job on one host
        handing a file to the daemon on another); returns what the reader needs, to be put
        in the job's result: ``{"key", "size", "sha256"}``."""
        if self._upload is None:
            raise RuntimeError("this job runs where files cannot be sent")
        return self._upload(self, path)

    def check(self) -> None:
        """Raise :class:`Stop` if the job must end now."""
        if self._stop is not None:
            raise Stop(self._stop)

    def progress(self, percent: float | None, message: TaskText, **details: Any) -> None:
        """Report progress; sent at most every ``progress_interval``, the last one always.

        ``message``: ``TaskText("Copying {name}", name=...)``; ``details``: the job's
        counters, kept as the task's ``details``.  The percentage never goes down within
        one attempt.
        """
        self.check()
        if percent is not None:
            percent = round(min(100.0, max(0.0, percent)), 1)
            if self._last_percent is not None and percent < self._last_percent:
                percent = self._last_percent
            self._last_percent = percent
        with self._lock:
            self._pending = Progress(percent, message, details)
            due = self._clock() - self._last_sent >= self._interval
        if due:
            self.flush()

    def note(self, percent: float | None, message: TaskText, **details: Any) -> None:
        """Leave a last progress to send, even while the job is stopping."""
        with self._lock:
            if percent is not None and self._last_percent is not None:
                percent = max(percent, self._last_percent)
            self._pending = Progress(percent, message, details)

    def found(
        self,
        item_key: str,
        event_type: str,
        data: dict[str, Any],
        library: Stored | None = None,
    ) -> None:
        """Report a find, once per task: a re-run skips what an earlier attempt reported.

        Finds are sent in small batches; ``library`` is (library, field, value): the
        record to store in that library with the find.
        """
        self.check()
        if self.fault_delay:
            time.sleep(self.fault_delay)
        with self._lock:
            if not self._finds:
                self._finds_since = self._clock()
            self._finds.append((item_key, event_type, json.dumps(data), library))
            # Batched: a fast scan sends its finds in one or two round trips; a slow one
            # every 0.1 s (the heartbeat also sends finds older than that).
            due = len(self._finds) >= 256 or self._clock() - self._finds_since >= 0.1
        if due:
            self.flush_finds()

    def flush_finds(self, older_than: float = 0.0) -> None:
        """Send the finds not sent yet; mark the job lost if another attempt owns it."""
        with self._lock:
            if not self._finds or self._clock() - self._finds_since < older_than:
                return
            finds, self._finds = self._finds, []
        if not self._send_found(self, finds):
            self.stop("lost")

    def prune(self, library: Library, root: str, keep: set[str]) -> list[str]:
        """Forget the entries of ``library`` under ``root`` that this run did not find."""
        return self._prune(self, library, root, keep)

    # -- called by the worker ----------------------------------------------

    def flush(self) -> None:
        """Send the pending progress now, if any (the heartbeat calls it too)."""
        with self._lock:
            p, self._pending = self._pending, None
            if p is None:
                return
            self._last_sent = self._clock()
        try:
            code = self._send_progress(self, p)
        except Exception:
            # Redis is away: keep it pending and carry on; the next call retries.
            with self._lock:
                if self._pending is None:
                    self._pending = p
            return
        if code == 0:
            self.stop("lost")
        elif code == 2:
            self.stop("cancelled")

    def stop(self, why: str) -> None:
        if self._stop is None or why == "lost":
            self._stop = why

    @property
    def stopping(self) -> str | None:
        return self._stop

    @property
    def last_percent(self) -> float | None:
        return self._last_percent


def kill_when_stopped(ctx: JobContext, proc: Any, kill: Callable[[], None] | None = None,
                      name: str = "stop-guard") -> threading.Thread:
    """Watch ``proc`` (a :class:`subprocess.Popen`) on a thread of its own and kill it as soon
    as the job must stop, even while it prints nothing for the job's loop to notice.
    ``kill``: how (default ``proc.kill()``; a process group, say)."""
    def guard() -> None:
        while proc.poll() is None:
            if ctx.stopping is not None:
                (kill or proc.kill)()
                return
            time.sleep(0.2)

    t = threading.Thread(target=guard, daemon=True, name=name)
    t.start()
    return t
