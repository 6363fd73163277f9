"""Garbage-collector pauses: the histogram, its distribution, and the stats file a process
writes for the benchmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kimchi.gcpause import SLOW_MS, THRESHOLDS, PauseRecorder, distribution


class Clock:
    """A hand-moved clock (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def collections(rec: PauseRecorder, clock: Clock, cpu: Clock, pauses: list[tuple[int, float]]
                ) -> None:
    """Feed ``rec`` collections of (generation, ms) through its gc.callbacks interface."""
    for gen, ms in pauses:
        rec("start", {"generation": gen})
        clock.now += ms / 1000
        cpu.now += ms / 2000  # half of it waiting for a core
        rec("stop", {"generation": gen, "collected": 3, "uncollectable": 0})


def test_the_distribution_of_collections_by_generation() -> None:
    clock, cpu = Clock(), Clock()
    rec = PauseRecorder("kimchid", clock=clock, cpu_clock=cpu)
    rec.settled = True
    collections(rec, clock, cpu, [(0, 0.1)] * 98 + [(1, 2.0), (2, 25.0)])
    summary = rec.summary()

    all_gens = distribution([(summary, None)])
    assert all_gens["n"] == 100 and all_gens["over"] == 1
    assert 0.1 <= all_gens["p50"] < 0.13  # a bucket's upper bound: at most 26 % high
    assert 2.0 <= all_gens["p99"] < 2.6
    assert abs(all_gens["max"] - 25.0) < 1e-6

    full = distribution([(summary, None)], generation=2)
    assert full["n"] == 1 and full["over"] == 1

    on_cpu = distribution([(summary, None)], cpu=True)
    assert on_cpu["over"] == 1 and 12.5 <= on_cpu["max"] < 16


def test_only_the_collections_after_a_mark_are_counted() -> None:
    clock, cpu = Clock(), Clock()
    rec = PauseRecorder("worker", clock=clock, cpu_clock=cpu)
    rec.settled = True
    collections(rec, clock, cpu, [(2, 50.0)])  # start-up
    mark = rec.summary()
    time.sleep(0.01)  # the slow list is stamped with time.time()
    collections(rec, clock, cpu, [(0, 0.5)] * 10)
    d = distribution([(rec.summary(), mark)])
    assert d["n"] == 10 and d["over"] == 0
    assert d["max"] < SLOW_MS


def test_processes_add_up() -> None:
    runs: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for ms in (1.0, 12.0):
        clock, cpu = Clock(), Clock()
        rec = PauseRecorder("worker", clock=clock, cpu_clock=cpu)
        rec.settled = True
        collections(rec, clock, cpu, [(0, ms)])
        runs.append((rec.summary(), None))
    d = distribution(runs)
    assert d["n"] == 2 and d["over"] == 1 and abs(d["max"] - 12.0) < 1e-6


def test_a_slow_collection_after_start_up_is_handed_to_the_reporter() -> None:
    clock, cpu = Clock(), Clock()
    rec = PauseRecorder("kimchid", clock=clock, cpu_clock=cpu)
    collections(rec, clock, cpu, [(2, 80.0)])  # start-up's: counted, not reported
    assert rec.slow_queue.empty() and distribution([(rec.summary(), None)])["over"] == 1
    rec.settled = True
    collections(rec, clock, cpu, [(0, 1.0), (2, 30.0)])
    pause = rec.slow_queue.get_nowait()
    assert pause is not None and pause.generation == 2 and abs(pause.ms - 30.0) < 1e-6
    assert rec.slow_queue.empty()


PROGRAM = """
import gc, sys, time
from kimchi import gcpause
gcpause.install("probe")
junk = [[i] for i in range(200_000)]  # start-up's objects
frozen = gcpause.settle()
print(frozen, gc.get_threshold(), flush=True)
sys.stdin.readline()
"""


def test_a_process_writes_its_figures_at_start_and_on_sigusr2(tmp_path: Path) -> None:
    env = dict(os.environ, KIMCHI_BENCH_GC_STATS=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        frozen, thresholds = proc.stdout.readline().split(" ", 1)
        assert int(frozen) > 200_000  # start-up's objects are out of the collector's sight
        assert thresholds.strip() == str(THRESHOLDS)
        stats = tmp_path / f"gc-probe-{proc.pid}.json"
        first = json.loads(stats.read_text())
        proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while True:
            now = json.loads(stats.read_text())
            if now["written"] > first["written"] or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert now["written"] > first["written"]
        # settle() ran a full collection of everything start-up made
        assert distribution([(now, None)], generation=2)["n"] >= 1
        assert now["frozen"] == int(frozen)
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(10)


class Collector:
    """What IdleFullCollections calls instead of gc: counts its full collections, and
    how many collections of generation 1 are owed one."""

    def __init__(self) -> None:
        self.owed = 0
        self.runs = 0

    def collect(self, generation: int) -> None:
        assert generation == 2
        self.runs += 1
        self.owed = 0


def idle_collector() -> tuple[Any, Collector, Clock, Any]:
    from twisted.internet.task import Clock as ReactorClock

    from kimchi.gcpause import IdleFullCollections

    reactor, gc_, cpu = ReactorClock(), Collector(), Clock()
    full = IdleFullCollections(reactor, collect=gc_.collect, pending=lambda: gc_.owed,
                               cpu_clock=cpu)
    full.due_after = 10
    return full, gc_, cpu, reactor


def test_a_full_collection_runs_when_the_reactor_is_idle_and_one_is_owed() -> None:
    from kimchi.gcpause import IDLE_CHECK

    full, gc_, cpu, reactor = idle_collector()
    reactor.advance(IDLE_CHECK)
    full.check()  # idle, but nothing owed: nothing to do
    assert gc_.runs == 0
    gc_.owed = 1
    cpu.now += IDLE_CHECK * 0.5  # the reactor used half a core meanwhile: busy
    reactor.advance(IDLE_CHECK)
    full.check()
    assert gc_.runs == 0
    cpu.now += IDLE_CHECK * 0.01  # then 1 %: idle
    reactor.advance(IDLE_CHECK)
    full.check()
    assert (gc_.runs, full.idle_runs, full.forced_runs) == (1, 1, 0)


def test_a_reactor_never_idle_gets_its_full_collection_after_max_defer() -> None:
    from kimchi.gcpause import IDLE_CHECK, MAX_DEFER

    full, gc_, cpu, reactor = idle_collector()
    gc_.owed = 10  # CPython would have run one by now
    steps = int(MAX_DEFER / IDLE_CHECK)
    for _ in range(steps - 2):
        cpu.now += IDLE_CHECK * 0.9
        reactor.advance(IDLE_CHECK)
        full.check()
    assert gc_.runs == 0  # held back while the reactor works
    for _ in range(4):
        cpu.now += IDLE_CHECK * 0.9
        reactor.advance(IDLE_CHECK)
        full.check()
    assert (gc_.runs, full.idle_runs, full.forced_runs) == (1, 0, 1)


def test_idle_full_collections_are_kept_apart_from_the_pauses() -> None:
    from kimchi.gcpause import IDLE_FULL

    clock, cpu = Clock(), Clock()
    rec = PauseRecorder("kimchid", clock=clock, cpu_clock=cpu)
    rec.settled = True
    collections(rec, clock, cpu, [(0, 0.2), (2, 4.0)])
    rec.idle = True
    collections(rec, clock, cpu, [(2, 30.0)])
    rec.idle = False
    now = rec.summary()
    assert distribution([(now, None)])["n"] == 2
    assert distribution([(now, None)])["max"] == 4.0
    assert distribution([(now, None)], generation=IDLE_FULL)["n"] == 1
    assert rec.slow == []  # it stalled no one: not reported as a slow pause
