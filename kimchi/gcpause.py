"""Garbage-collector pauses: measured in every kimchid and worker process, and kept short.

:func:`install` hooks ``gc.callbacks``: each collection's generation and duration go into a
bounded histogram (fixed log-spaced buckets, so memory does not grow with uptime), and a
collection over :data:`SLOW_MS` is reported (logged at warn level by the caller's
``report``).  The hook runs inside the collector, where logging could re-enter a stream
that is half-written, so it only does arithmetic and hands slow pauses to a small thread
through a ``SimpleQueue`` (made for exactly that: safe to call from ``__del__`` and
callbacks).

With ``KIMCHI_BENCH_GC_STATS`` naming a folder, the process writes its figures there as
``gc-<role>-<pid>.json`` at start, on ``SIGUSR2`` and at exit: the benchmarks read them
(``bench/common.py``).  Without it nothing is written and ``SIGUSR2`` is left alone.

:func:`settle` is the fix at the root, called once start-up is over: everything alive
then (modules, classes, functions, the route table, the schemas: about 100,000 objects
in kimchid) is moved out of the collector's sight with ``gc.freeze()``, so a full
collection walks only what was made since; and the thresholds are set for a long-running
server (:data:`THRESHOLDS`, CPython's own young thresholds: they gave the shortest pauses).
"""

from __future__ import annotations

import atexit
import bisect
import gc
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SLOW_MS = 10.0
STATS_ENV = "KIMCHI_BENCH_GC_STATS"

# CPython's own young thresholds, kept on purpose: measured under bench/vm_list.py's load
# (1,000 VMs over TLS), larger ones make each pause longer for the same total (a young
# collection every 2,000 allocations: p99 2 ms of collector CPU; every 5,000 with the middle
# one every 20: 4 ms; 700: 0.6 ms).  What made the long pauses was the full collections
# walking start-up's ~100,000 objects, which settle() freezes; a full collection then walks
# only what came since, and CPython still holds it back until that has grown by 25 %.
THRESHOLDS = (700, 10, 10)

# The row of the histogram that holds the full collections run on an idle reactor.
IDLE_FULL = 3

# Full collections are not left to CPython, which starts one whenever enough objects have
# survived younger ones, in the middle of whatever the server is doing; one walks every
# object alive that settle() did not freeze (about 0.6 us an object here: 17-31 ms with
# 500 TLS watchers' connections, bench/fanout.py).  IdleFullCollections runs them when the
# reactor thread has used under IDLE_SHARE of a core since its last look (every
# IDLE_CHECK s): nobody waits then.  A reactor never idle that long still gets one once
# CPython's own count is reached and MAX_DEFER s have passed since the last: cyclic
# garbage lives at most that long.
NEVER = 1_000_000_000
IDLE_SHARE = 0.05
IDLE_CHECK = 0.25
MAX_DEFER = 300.0

# Bucket upper bounds in ms: 10 per decade from 1 µs to 10 s (a 26 % step).
BOUNDS_MS: tuple[float, ...] = tuple(round(10 ** (k / 10 - 3), 6) for k in range(71))


@dataclass(frozen=True)
class Pause:
    """One collection: when it ended (``time.time()``), its generation, how long it took,
    and how many objects it freed."""

    at: float
    generation: int
    ms: float
    collected: int
    cpu_ms: float = float("nan")


class PauseRecorder:
    """The histogram of collection times, per generation, fed by ``gc.callbacks``."""

    def __init__(self, role: str, slow_ms: float = SLOW_MS,
                 clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] = time.thread_time) -> None:
        self.role = role
        self.slow_ms = slow_ms
        self.clock = clock
        self.cpu_clock = cpu_clock
        # rows 0-2: the collections of each generation; row 3 (IDLE_FULL): the full
        # collections IdleFullCollections ran while the reactor was idle, kept apart
        # because they stalled no one
        self.counts = [[0] * (len(BOUNDS_MS) + 1) for _ in range(4)]
        # the same for the collector's own CPU time: on a busy machine a collection's wall
        # time also holds the time the process waited for a core
        self.cpu_counts = [[0] * (len(BOUNDS_MS) + 1) for _ in range(4)]
        self.total_ms = [0.0, 0.0, 0.0, 0.0]
        self.max_ms = [0.0, 0.0, 0.0, 0.0]
        self.idle = False  # a collection now is IdleFullCollections', on an idle reactor
        self.slow: list[Pause] = []  # the last 100 over slow_ms since start-up
        self.frozen = 0  # objects moved to the permanent generation by settle()
        # settle() has run: start-up is over, and from then on a slow collection is
        # reported (start-up's own, over 100,000 objects being made, would say nothing)
        self.settled = False
        self._started = self._cpu_started = 0.0
        self.slow_queue: queue.SimpleQueue[Pause | None] = queue.SimpleQueue()

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        """The ``gc.callbacks`` hook: arithmetic only (see the module's docstring)."""
        if phase == "start":
            self._cpu_started = self.cpu_clock()
            self._started = self.clock()
            return
        ms = (self.clock() - self._started) * 1000.0
        cpu_ms = (self.cpu_clock() - self._cpu_started) * 1000.0
        self.record(info["generation"], ms, info.get("collected", 0), cpu_ms)

    def record(self, generation: int, ms: float, collected: int = 0,
               cpu_ms: float = float("nan")) -> None:
        if generation == 2 and self.idle:
            generation = IDLE_FULL
        self.counts[generation][bisect.bisect_left(BOUNDS_MS, ms)] += 1
        if cpu_ms == cpu_ms:
            self.cpu_counts[generation][bisect.bisect_left(BOUNDS_MS, cpu_ms)] += 1
        self.total_ms[generation] += ms
        if ms > self.max_ms[generation]:
            self.max_ms[generation] = ms
        if ms > self.slow_ms and self.settled and generation != IDLE_FULL:
            pause = Pause(time.time(), generation, ms, collected, cpu_ms)
            self.slow = [*self.slow[-99:], pause]
            self.slow_queue.put(pause)

    def summary(self) -> dict[str, Any]:
        """The figures as JSON-able data (what the stats file holds)."""
        return {
            "role": self.role, "pid": os.getpid(), "written": time.time(),
            "bounds_ms": list(BOUNDS_MS), "counts": [list(c) for c in self.counts],
            "cpu_counts": [list(c) for c in self.cpu_counts],
            "total_ms": list(self.total_ms), "max_ms": list(self.max_ms),
            "slow_ms": self.slow_ms, "frozen": self.frozen, "settled": self.settled,
            "thresholds": list(gc.get_threshold()),
            "slow": [[p.at, p.generation, round(p.ms, 3), p.collected, round(p.cpu_ms, 3)]
                     for p in self.slow],
        }


def distribution(runs: list[tuple[dict[str, Any], dict[str, Any] | None]],
                 generation: int | None = None, cpu: bool = False) -> dict[str, float]:
    """``n``, ``p50``, ``p99``, ``max`` (ms) and ``over`` (how many over the slow limit) of
    the collections of some processes, each given as ``(summary, since)``: its stats file
    now and, or ``None``, an earlier one of the same process, whose collections are left
    out.  ``generation``: that generation's only.  Percentiles are the upper bound of
    their bucket (at most 26 % high); ``max`` is exact when it was over the slow limit or
    no ``since`` is given, else the upper bound of its bucket.  ``cpu``: the collector's
    CPU time instead of the wall-clock pause."""
    key, col = ("cpu_counts", 4) if cpu else ("counts", 2)
    gens = range(3) if generation is None else [generation]
    if any(len(now[key]) <= g for now, _ in runs for g in gens):  # an older kimchid's file
        gens = [g for g in gens if all(len(now[key]) > g for now, _ in runs)]
    counts = [0] * (len(BOUNDS_MS) + 1)
    top = float("nan")
    for now, since in runs:
        mine = [sum(now[key][g][i] - (since[key][g][i] if since else 0) for g in gens)
                for i in range(len(counts))]
        counts = [a + b for a, b in zip(counts, mine, strict=True)]
        if not any(mine):
            continue
        if since is None and not cpu:
            largest = max(now["max_ms"][g] for g in gens)
        else:
            after = since["written"] if since else 0.0
            top_bucket = max(i for i, c in enumerate(mine) if c)
            exact = [p[col] for p in now["slow"] if p[0] > after and p[1] in gens
                     and bisect.bisect_left(BOUNDS_MS, p[col]) == top_bucket]
            largest = max(exact) if exact else _upper(top_bucket)
        top = largest if top != top else max(top, largest)
    n = sum(counts)

    def pct(p: float) -> float:
        rank, seen = max(1, -(-n * p // 100)), 0
        for i, c in enumerate(counts):
            seen += c
            if seen >= rank:
                return _upper(i)
        return float("nan")

    # a bucket holds (BOUNDS_MS[i-1], BOUNDS_MS[i]]; SLOW_MS is one of the bounds
    over = sum(c for i, c in enumerate(counts) if i > 0 and BOUNDS_MS[i - 1] >= SLOW_MS)
    return {"n": n, "p50": pct(50) if n else float("nan"),
            "p99": pct(99) if n else float("nan"), "max": top, "over": over}


def _upper(i: int) -> float:
    return BOUNDS_MS[i] if i < len(BOUNDS_MS) else float("inf")


_RECORDER: PauseRecorder | None = None


def install(role: str, report: Callable[[Pause], None] | None = None,
            stats_dir: str | None = None) -> PauseRecorder:
    """Measure this process's collections from now on (once per process).

    ``report`` is called, on a thread of its own, with each pause over :data:`SLOW_MS`.
    ``stats_dir`` (default: ``$KIMCHI_BENCH_GC_STATS``) is where the figures are written."""
    global _RECORDER
    if _RECORDER is not None:
        return _RECORDER
    rec = _RECORDER = PauseRecorder(role)
    gc.callbacks.append(rec)
    folder = stats_dir if stats_dir is not None else os.environ.get(STATS_ENV, "")
    path = Path(folder) / f"gc-{role}-{os.getpid()}.json" if folder else None

    census = os.environ.get("KIMCHI_BENCH_GC_CENSUS") == "1"

    def write() -> None:
        if path is None:
            return
        data = rec.summary()
        if census:  # the profile behind the fix: what the collector walks, by type
            data["census"] = tracked_by_type()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)  # readers never see half a file

    def reporter() -> None:
        while True:
            pause = rec.slow_queue.get()
            if pause is None:
                write()
                continue
            if report is not None:
                try:
                    report(pause)
                except Exception:  # a broken logger must not stop the measuring
                    pass

    threading.Thread(target=reporter, name="gc-pauses", daemon=True).start()
    if path is not None:
        write()
        atexit.register(write)
        # the handler only queues: the file is written on the reporter thread
        signal.signal(signal.SIGUSR2, lambda *_: rec.slow_queue.put(None))
    return rec


def tracked_by_type(top: int = 25) -> dict[str, Any]:
    """How many objects the collector tracks (the frozen ones apart), the most common
    types first: where a full collection spends its time."""
    counts: dict[str, int] = {}
    objs = gc.get_objects()
    for o in objs:
        name = type(o).__qualname__
        counts[name] = counts.get(name, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return {"tracked": len(objs), "frozen": gc.get_freeze_count(), "types": ranked}


def settle(thresholds: tuple[int, int, int] = THRESHOLDS) -> int:
    """Call once start-up is done: collect what start-up left, then freeze everything alive
    (no later collection walks it) and set the server's thresholds.  Returns the number of
    objects frozen.  ``KIMCHI_BENCH_GC_SETTLE=0`` leaves the collector as CPython sets it (the
    benchmarks' before/after comparison)."""
    frozen = 0
    if os.environ.get("KIMCHI_BENCH_GC_SETTLE") != "0":
        if os.environ.get("KIMCHI_BENCH_GC_THRESHOLDS"):  # for trying others
            a, b, c = (int(x) for x in os.environ["KIMCHI_BENCH_GC_THRESHOLDS"].split(","))
            thresholds = (a, b, c)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*thresholds)
        frozen = gc.get_freeze_count()
    if _RECORDER is not None:
        _RECORDER.frozen, _RECORDER.settled = frozen, True
        _RECORDER.slow_queue.put(None)  # the stats file says so (a benchmark waits for it)
    return frozen


class IdleFullCollections:
    """Full collections on an idle reactor (see :data:`IDLE_SHARE`): start it on the
    reactor once :func:`settle` has run; the young generations stay CPython's."""

    def __init__(self, clock: Any, collect: Callable[[int], object] = gc.collect,
                 pending: Callable[[], int] = lambda: gc.get_count()[2],
                 cpu_clock: Callable[[], float] = time.thread_time) -> None:
        self.clock = clock
        self.collect = collect
        self.pending = pending  # collections of generation 1 since the last full one
        self.cpu_clock = cpu_clock
        self.due_after = gc.get_threshold()[2]  # CPython's count for a full collection
        self.last_full = clock.seconds()
        self.idle_runs = self.forced_runs = 0
        self._cpu = cpu_clock()
        self._at = clock.seconds()
        self._loop: Any = None

    def start(self) -> None:
        from twisted.internet.task import LoopingCall

        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, NEVER)
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(IDLE_CHECK, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def check(self) -> None:
        """Every IDLE_CHECK s, on the reactor thread: a full collection if one is owed and
        the reactor was idle since the last look, or MAX_DEFER s have passed."""
        now, cpu = self.clock.seconds(), self.cpu_clock()
        share = (cpu - self._cpu) / max(now - self._at, 1e-3)
        self._at, self._cpu = now, cpu
        pending = self.pending()
        if not pending:
            return
        idle = share < IDLE_SHARE
        if not idle and not (pending >= self.due_after and now - self.last_full >= MAX_DEFER):
            return
        if _RECORDER is not None:
            _RECORDER.idle = idle
        try:
            self.collect(2)
        finally:
            if _RECORDER is not None:
                _RECORDER.idle = False
        if idle:
            self.idle_runs += 1
        else:
            self.forced_runs += 1
        self.last_full = self.clock.seconds()
        self._at, self._cpu = self.last_full, self.cpu_clock()  # its own time is not work
