"""The worker loop: take jobs from the stream, run them, keep their leases, end them.

One process runs up to ``concurrency`` jobs at once, each in its own thread.
The main thread reads the job stream (and reclaims jobs of dead workers with
XAUTOCLAIM once their lease has expired); a heartbeat thread keeps the leases
of running jobs, delivers cancellation and flushes throttled progress.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis

from kimchi import bus
from kimchi.bus.context import JobContext, Progress, Stop
from kimchi.bus.jobs import Job
from kimchi.bus.sync import SyncBus, connect
from kimchi.bus.text import TaskText
from kimchi.config import Config
from kimchi.errors import KimchiError

log = logging.getLogger("kimchi.worker")

_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, OSError)

T = TypeVar("T")


class Worker:
    def __init__(self, cfg: Config, redis_url: str, jobs: Mapping[str, Job],
                 name: str | None = None, *, stream: str | None = None,
                 advertise: bool = True) -> None:
        """``jobs``: the kinds this loop runs (the workers' whole registry, or the daemon's
        own runner's); ``stream``: one other queue instead of the shared one and those of
        the hosts in ``[workers] hosts`` (the daemon's); ``advertise``: count in
        ``/health``'s workers and in the served hosts' (``GET /hosts``)."""
        self.cfg = cfg
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.redis_url = redis_url
        self.client: Any = connect(redis_url, cfg.redis.timeout)
        self.bus = SyncBus(self.client, bus.Keys(cfg.redis.key_prefix), cfg.events.max_len)
        self.keys = self.bus.keys
        self.hosts: tuple[str, ...] = () if stream else tuple(cfg.workers.hosts)
        # the shared queue, then each served host's (kimchi/bus/kinds.py)
        self.streams = [stream] if stream else [
            self.keys.jobs, *(self.keys.host_jobs(h) for h in self.hosts)]
        self.advertise = advertise
        self.concurrency = cfg.workers.concurrency
        self.lease_ms = int(cfg.workers.lease_seconds * 1000)
        self.beat = min(0.25, cfg.workers.lease_seconds / 4)
        self.running: dict[str, JobContext] = {}
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(self.concurrency)
        self.stopping = threading.Event()
        self.signalled = False  # SIGTERM/SIGINT came: the main loop stops (see on_signal)
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="job")
        self.fault_delay = float(os.environ.get("KIMCHI_FAULT_SLOW_REPORTS", "0") or 0)
        # for the tests: a pause before the prune, to take Redis away in the middle of it
        self.fault_prune_delay = float(os.environ.get("KIMCHI_FAULT_SLOW_PRUNE", "0") or 0)
        self.grace = 2.0
        self.busy = 0
        self.endings: queue.Queue[tuple[JobContext, str, TaskText, Any]] = queue.Queue()
        self._next_tidy = 0.0
        self.jobs = jobs

    # -- the main loop -------------------------------------------------------

    def run(self) -> None:
        log.info("worker %s starting (concurrency %d, hosts %s)", self.name, self.concurrency,
                 ", ".join(self.hosts) or "-")
        hb = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        hb.start()
        threading.Thread(target=self._ending_loop, name="endings", daemon=True).start()
        next_reap = 0.0
        backoff = 0.1
        self._ensure_group()
        while not self._must_stop():
            if not self.slots.acquire(timeout=0.5):
                continue
            self.slots.release()
            free = self._free_slots()
            try:
                entries: list[tuple[str, str, dict[str, str]]] = []
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + max(0.5, self.lease_ms / 2000)
                    entries = self._reclaim(free)
                if not entries:
                    reply = self.client.xreadgroup(
                        bus.GROUP, self.name, dict.fromkeys(self.streams, ">"), count=free,
                        block=1000)
                    entries = [(_str(s), eid, f) for s, es in reply or () for eid, f in es]
                if entries:
                    self._start(entries)
                backoff = 0.1
            except _REDIS_DOWN as e:
                log.warning("redis unreachable (%s); retrying in %.1fs", e, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            except redis.ResponseError as e:
                # the queue's stream deleted (FLUSHALL, a DEL by hand), before the read
                # (NOGROUP) or while it waited (UNBLOCKED): make it and its group again
                if str(e).startswith(("NOGROUP", "UNBLOCKED")):
                    log.warning("the job queue was deleted in redis (%s); making it again", e)
                    self._ensure_group()
                else:
                    raise
        self._shutdown()

    def _ensure_group(self) -> None:
        backoff = 0.1
        while not self._must_stop():
            try:
                for stream in self.streams:
                    self.bus.ensure_group(stream)
                return
            except _REDIS_DOWN as e:
                log.warning("redis unreachable (%s); retrying in %.1fs", e, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)

    def _free_slots(self) -> int:
        with self.lock:
            return max(1, self.concurrency - self.busy)

    def _reclaim(self, count: int) -> list[tuple[str, str, dict[str, str]]]:
        """Take over jobs whose worker stopped heartbeating for longer than the lease."""
        claimed = []
        for stream in self.streams:
            reply = self.client.xautoclaim(
                stream, bus.GROUP, self.name, self.lease_ms, "0-0", count=count)
            claimed += [(stream, eid, f) for eid, f in reply[1] if f]
        if time.monotonic() >= self._next_tidy:
            self._next_tidy = time.monotonic() + 60
            self._forget_dead_consumers()
        if claimed:
            self.client.incrby(self.keys.leases_lost, len(claimed))  # kimchi_leases_lost_total
            log.warning("reclaimed %d job(s) of lost workers: %s", len(claimed),
                        [f.get("task") for _s, _e, f in claimed])
        return claimed

    def _forget_dead_consumers(self) -> None:
        """Drop consumers (workers long gone) that hold no job, so the group stays small."""
        for stream in self.streams:
            for c in self.client.xinfo_consumers(stream, bus.GROUP):
                if c["name"] != self.name and c["pending"] == 0 and c["idle"] > 3_600_000:
                    self.client.xgroup_delconsumer(stream, bus.GROUP, c["name"])
        for key in (self.keys.workers, *(self.keys.host_workers(h) for h in self.hosts)):
            self.client.zremrangebyscore(key, "-inf", time.time() - 3600)

    def _start(self, entries: list[tuple[str, str, dict[str, str]]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for stream, eid, fields in entries:
            tid = fields["task"]
            self.bus.start(eid, tid, self.name, self.cfg.workers.max_attempts,
                           TaskText.error("KCHTASK0003E",
                                          attempts=self.cfg.workers.max_attempts),
                           TaskText("Cancelled before it started"), stream=stream, pipe=pipe)
        for (stream, eid, fields), res in zip(entries, self.bus.execute(pipe), strict=True):
            if res[0] != "run":
                continue
            _run, attempt, kind, params = res
            ctx = JobContext(
                task_id=fields["task"], entry_id=eid, attempt=attempt, kind=kind,
                params=json.loads(params or "{}"), send_progress=self._send_progress,
                send_found=self._send_found, prune=self._prune,
                progress_interval=self.cfg.workers.progress_interval,
                fault_delay=self.fault_delay, stream=stream, upload=self._upload,
            )
            self.slots.acquire()
            with self.lock:
                self.running[ctx.task_id] = ctx
                self.busy += 1
            self.pool.submit(self._run_job, ctx)

    # -- one job ---------------------------------------------------------------

    def _run_job(self, ctx: JobContext) -> None:
        status, msg, result = "finished", TaskText("OK"), None
        try:
            fn = self.jobs.get(ctx.kind)
            if fn is None:
                raise KimchiError("KCHTASK0004E", kind=ctx.kind)
            log.debug("task %s (%s) attempt %s started", ctx.task_id, ctx.kind, ctx.attempt)
            result = fn(ctx) or {}
            said = result.pop("message", None) if isinstance(result, dict) else None
            if isinstance(said, TaskText):
                msg = said
            elif said is not None:  # a job's bug: its words cannot be translated
                log.warning("task %s (%s): a message that is no TaskText: %r", ctx.task_id,
                            ctx.kind, said)
                msg = TaskText.verbatim(str(said))
        except Stop as s:
            status, msg = self._stopped_as(ctx, s.why)
        except KimchiError as e:
            status, msg = "failed", TaskText.of_error(e)
        except Exception as e:  # the job's bug or its environment's: fail, with the reason
            log.error("task %s failed:\n%s", ctx.task_id, traceback.format_exc())
            status, msg = "failed", TaskText.error("KCHTASK0005E",
                                                   error=f"{type(e).__name__}: {e}")
        if status not in ("lost", "handback"):
            try:
                ctx.flush_finds()  # what was found is recorded, whatever the ending
            except Exception as e:
                log.warning("task %s: finds not recorded: %s", ctx.task_id, e)
            if ctx.stopping == "lost":
                status = "lost"
        if status != "lost":
            ctx.flush()  # the last progress goes out before the end
        with self.lock:
            self.busy -= 1
        self.slots.release()
        # The ending is recorded by the ending thread, batched with others; the job stays
        # in `running` (its lease kept) until then.
        self.endings.put((ctx, status, msg, result))

    def _ending_loop(self) -> None:
        """Record the ends of jobs, many per round trip."""
        while True:
            batch = [self.endings.get()]
            while len(batch) < 256:
                try:
                    batch.append(self.endings.get_nowait())
                except queue.Empty:
                    break
            self._record_endings(batch)
            for _ in batch:
                self.endings.task_done()

    def _record_endings(self, batch: list[tuple[JobContext, str, TaskText, Any]]) -> None:
        backoff = 0.1
        give_up = float("inf")
        todo = [b for b in batch if b[1] != "lost"]
        while todo:
            try:
                pipe = self.client.pipeline(transaction=False)
                for ctx, status, msg, result in todo:
                    if status == "handback":
                        self._handback(ctx, pipe)
                    else:
                        self._finish(ctx, status, msg, result, pipe)
                codes = self.bus.execute(pipe)
                for (ctx, status, _m, _r), code in zip(todo, codes, strict=True):
                    if code == 0:
                        log.warning("task %s: attempt %s was superseded; its end (%s) is "
                                    "dropped", ctx.task_id, ctx.attempt, status)
                break
            except _REDIS_DOWN as e:
                if self.stopping.is_set():
                    # Stopping with Redis away: leave the jobs pending; their leases expire
                    # and other workers re-run them.
                    give_up = min(give_up, time.monotonic() + 3.0)
                todo = [b for b in todo if b[0].stopping != "lost"]
                if time.monotonic() > give_up:
                    break
                log.warning("cannot record the end of %d job(s) (%s); retrying", len(todo), e)
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        with self.lock:
            for ctx, status, _m, _r in batch:
                self.running.pop(ctx.task_id, None)
                log.debug("task %s ended: %s", ctx.task_id, status)

    def _stopped_as(self, ctx: JobContext, why: str) -> tuple[str, TaskText]:
        if why == "cancelled":
            return "cancelled", TaskText("Cancelled")
        if why == "timeout":
            return "failed", TaskText.error("KCHTASK0006E", id=ctx.task_id,
                                            seconds=self.cfg.workers.job_timeout)
        return why, TaskText("Stopped: {why}", why=why)  # lost | handback: not recorded

    def _finish(self, ctx: JobContext, status: str, msg: TaskText, result: Any,
                pipe: Any) -> None:
        final = ctx.last_percent
        if status == "finished":
            final = 100.0
        self.bus.finish(ctx.task_id, ctx.attempt, status, msg, result, ctx.entry_id,
                        self.cfg.tasks.keep_seconds, final, stream=ctx.stream, pipe=pipe)

    def _handback(self, ctx: JobContext, pipe: Any) -> None:
        self.bus.handback(ctx.task_id, ctx.attempt, ctx.entry_id,
                          TaskText("Handed back by worker {worker}, which is stopping",
                                   worker=self.name),
                          stream=ctx.stream, pipe=pipe)

    def _send_progress(self, ctx: JobContext, p: Progress) -> int:
        answer: int = self.bus.progress(ctx.task_id, ctx.attempt, p.percent, p.message,
                                        p.details)
        return answer

    def _upload(self, ctx: JobContext, path: str) -> dict[str, Any]:
        return self.bus.put_file(self.keys.upload(ctx.task_id, ctx.attempt), path)

    def _send_found(self, ctx: JobContext, finds: list[tuple[str, str, str, Any]]) -> bool:
        """Record a batch of finds; False when the attempt was superseded."""
        backoff = 0.1
        while True:  # a find must be recorded: wait out a Redis outage
            try:
                pipe = self.client.pipeline(transaction=False)
                for item_key, event_type, data, library in finds:
                    into, field, value = library or (None, "", None)
                    self.bus.found(ctx.task_id, ctx.attempt, item_key, event_type, data,
                                   into, field, value, pipe=pipe)
                return 0 not in self.bus.execute(pipe)
            except _REDIS_DOWN:
                # Given up, or the worker is stopping (even with the job cancelled: Redis
                # may be gone for good, kimchid having died with its embedded Redis): do
                # not wait. The lease expires; a re-run reports them or ends it cancelled.
                if ctx.stopping in ("lost", "handback") or self.stopping.is_set():
                    return False
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _prune(self, ctx: JobContext, library: bus.Library, root: str,
               keep: set[str]) -> list[str]:
        """Forget the entries of ``library`` under ``root`` not in ``keep``; waits out a
        Redis outage."""
        if self.fault_prune_delay:
            time.sleep(self.fault_prune_delay)
        k = self.keys
        prefix = root.rstrip("/") + "/"

        def prune() -> list[str]:
            gone = [p for p in self.client.hkeys(k.library(library))
                    if p.startswith(prefix) and p not in keep]
            if gone:
                # MULTI: the entries and their removal events go together or not at all,
                # so a retry after a lost connection neither repeats nor misses one.
                pipe = self.client.pipeline(transaction=True)
                pipe.hdel(k.library(library), *gone)
                for field in gone:
                    host, path = bus.split_field(field)
                    self.bus.emit(library.removed, {"path": path, "host": host,
                                                    "task": ctx.task_id},
                                  ctx.task_id, pipe=pipe)
                self.bus.execute(pipe)
            return gone

        return self._redis_step(ctx, f"prune the library {library.name}", prune)

    def _redis_step(self, ctx: JobContext, what: str, step: Callable[[], T]) -> T:
        """Run one Redis step of a job, waiting out a Redis outage instead of failing the job.

        The wait ends when the job must stop (cancelled, lost, handed back) or has run
        longer than the job timeout: the heartbeat, which usually enforces that, cannot
        while Redis is away.
        """
        backoff = 0.1
        while True:
            try:
                return step()
            except _REDIS_DOWN as e:
                ctx.check()
                if time.monotonic() - ctx.started > self.cfg.workers.job_timeout:
                    raise Stop("timeout") from e
                log.warning("task %s: cannot %s, redis unreachable (%s); retrying in %.1fs",
                            ctx.task_id, what, e, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    # -- heartbeat ---------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while True:
            time.sleep(self.beat)
            with self.lock:
                jobs = list(self.running.values())
            try:
                self._heartbeat(jobs)
            except _REDIS_DOWN as e:
                log.debug("heartbeat failed: %s", e)
            except Exception:
                log.error("heartbeat crashed:\n%s", traceback.format_exc())

    def _heartbeat(self, jobs: list[JobContext]) -> None:
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        seen = [k.workers, *(k.host_workers(h) for h in self.hosts)] if self.advertise else []
        now = time.time()
        for key in seen:
            pipe.zadd(key, {self.name: now})
        for ctx in jobs:
            self.bus.heartbeat(ctx.task_id, ctx.attempt, ctx.entry_id, self.name,
                               stream=ctx.stream, pipe=pipe)
        codes = self.bus.execute(pipe)[len(seen):]
        now = time.monotonic()
        for ctx, code in zip(jobs, codes, strict=True):
            if code == 0:
                ctx.stop("lost")
            elif code == 2:
                ctx.stop("cancelled")
            elif now - ctx.started > self.cfg.workers.job_timeout:
                ctx.stop("timeout")
            ctx.flush()
            ctx.flush_finds(older_than=0.1)

    # -- stopping ------------------------------------------------------------------

    def _drain_endings(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.running and self.endings.empty():
                    return
            time.sleep(0.02)

    def request_stop(self) -> None:
        if not self.stopping.is_set():
            log.info("worker %s stopping: finishing or handing back its jobs", self.name)
        self.stopping.set()

    def on_signal(self, *_args: Any) -> None:
        """The SIGTERM/SIGINT handler: a flag, nothing more.  A handler runs between two
        bytecodes of the main thread, which may be inside ``Event.set`` holding the
        Event's lock, and a second signal (the parent's death and a stop, together) then
        re-entered it and waited for that lock for ever.  The main loop acts on the flag
        within a second (its longest wait)."""
        self.signalled = True

    def _must_stop(self) -> bool:
        if self.signalled and not self.stopping.is_set():
            self.request_stop()
        return self.stopping.is_set()

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            with self.lock:
                if not self.running:
                    break
            time.sleep(0.05)
        with self.lock:
            for ctx in self.running.values():
                ctx.stop("handback")
        self.pool.shutdown(wait=True)
        self._drain_endings(timeout=5.0)
        # Tidying up is best effort, and quick: Redis may be going down with us.
        tidy = connect(self.redis_url, timeout=1.0)
        try:
            for key in (self.keys.workers, *(self.keys.host_workers(h) for h in self.hosts)):
                tidy.zrem(key, self.name)
            for stream in self.streams:
                pending = tidy.xpending_range(stream, bus.GROUP, "-", "+", 1,
                                              consumername=self.name)
                if not pending:
                    tidy.xgroup_delconsumer(stream, bus.GROUP, self.name)
        except (*_REDIS_DOWN, redis.ResponseError):
            pass
        finally:
            tidy.close()
        log.info("worker %s stopped", self.name)


def _str(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def install_signal_handlers(worker: Worker) -> None:
    signal.signal(signal.SIGTERM, worker.on_signal)
    signal.signal(signal.SIGINT, worker.on_signal)
