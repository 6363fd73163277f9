"""Queue throughput: N no-op jobs through 2 worker processes, from the first submit to the
last job finished, against RQ and dramatiq on the same redis-server in the same run.

Each system gets a FLUSHALL'd Redis (unix socket, AOF everysec), its workers started and
idle for 0.5 s, then the clock starts:

* kimchi: 2 ``kimchi-worker`` processes (``python -m workers.main``, concurrency 2, and 4
  in a second configuration); jobs ``diag.noop`` submitted with ``SyncBus.submit`` on a
  redis-py pipeline, batches of 500 (the daemon's SUBMIT script); done when the job stream
  is empty (the FINISH script deletes each job's entry), then every task's status is
  checked to be ``finished``.
* dramatiq 2.x: ``dramatiq --processes 2 --threads 8``, RedisBroker; ``actor.send()`` per
  message (dramatiq's only way; it has no batch enqueue); done when the queue's ``.msgs``
  hash is empty (a message leaves it when acked).
* RQ 3.x: 2 ``rq worker -w rq.worker.SimpleWorker`` processes (and, in a full run, the
  default fork-per-job Worker on fewer jobs); ``Queue.enqueue_many`` in pipelined batches
  of 500 (RQ's bulk API); done when the finished registry holds every job.

Targets: kimchi >= 2,000 jobs/s, ahead of dramatiq, >= 5x RQ SimpleWorker.  No kimchid
and no HTTP here (jobs go straight to Redis), so no TLS column; the kimchi workers'
garbage-collector pauses during the runs are printed (issue 11: none over 10 ms).

    python bench/queue_throughput.py [--quick] [--jobs N] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import common  # noqa: E402
from common import CpuMeter, RedisProc, log, median  # noqa: E402

TARGET_JOBS_S = 2000.0
BATCH = 500


def _poll(pred: Any, timeout: float, interval: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False


class Result(dict):
    pass


def _measure(rds: RedisProc, procs: list[subprocess.Popen[Any]], n: int,
             enqueue: Any, done: Any, timeout: float) -> dict[str, Any]:
    """Time enqueue + processing; CPU of workers (with children) and of redis-server."""
    cpu_w = CpuMeter([p.pid for p in procs], children=True).start()
    cpu_r = CpuMeter([rds.proc.pid]).start()
    t0 = time.perf_counter()
    enqueue()
    t_enq = time.perf_counter() - t0
    ok = _poll(done, timeout)
    total = time.perf_counter() - t0
    w_cpu, _ = cpu_w.stop()
    r_cpu, _ = cpu_r.stop()
    return {"n": n, "total_s": total, "jobs_s": n / total if ok else float("nan"),
            "enqueue_s": t_enq, "enqueue_rate": n / t_enq, "timed_out": not ok,
            "worker_cpu_us_per_job": 1e6 * w_cpu / n, "redis_cpu_us_per_job": 1e6 * r_cpu / n}


def run_kimchi(rds: RedisProc, wd: Path, n: int, concurrency: int, nproc: int = 2) -> dict:
    from kimchi.bus.sync import SyncBus, connect

    r = rds.client()
    r.flushall()
    cfg = common.write_config(wd / f"worker-c{concurrency}.toml", {
        "server": {"log_level": "warn"},
        "workers": {"concurrency": concurrency},
    })
    gc_dir = Path(tempfile.mkdtemp(prefix=f"gc-c{concurrency}-", dir=wd))
    procs = [common.start_worker(cfg, rds.url, f"bench-{i}", wd / f"worker-{i}.log",
                                 gc_dir=gc_dir)
             for i in range(nproc)]
    try:
        common.wait_workers(r, nproc)
        time.sleep(0.5)
        gc_mark = common.gc_snapshot(gc_dir)
        client = connect(rds.url, timeout=30)
        bus = SyncBus(client)
        ids: list[str] = []

        def enqueue() -> None:
            for start in range(0, n, BATCH):
                pipe = client.pipeline(transaction=False)
                for _ in range(min(BATCH, n - start)):
                    ids.append(bus.submit("diag.noop", pipe=pipe))
                pipe.execute()

        res = _measure(rds, procs, n, enqueue, lambda: r.xlen("kimchi:jobs") == 0,
                       timeout=max(60.0, n / 100))
        pipe = r.pipeline(transaction=False)
        for tid in ids:
            pipe.hget(f"kimchi:task:{tid}", "status")
        statuses: dict[str, int] = defaultdict(int)
        for s in pipe.execute():
            statuses[str(s)] += 1
        res["finished"] = statuses.get("finished", 0)
        res["statuses"] = dict(statuses)
        res["gc"] = common.gc_runs(gc_dir, gc_mark)  # the workers' pauses during the run
        return res
    finally:
        for p in procs:
            common.stop_proc(p)


def run_dramatiq(rds: RedisProc, wd: Path, n: int, procs_n: int = 2, threads: int = 8) -> dict:
    r = rds.client()
    r.flushall()
    env = common.base_env(BENCH_REDIS_URL=rds.url)
    with open(wd / "dramatiq.log", "ab") as out:
        proc = common.track(subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "_dramatiq_app", "--processes", str(procs_n),
             "--threads", str(threads)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=common.BENCH,
        ))
    try:
        common.wait_for(lambda: r.zcard("dramatiq:__heartbeats__") >= procs_n, timeout=30,
                        what="dramatiq workers")
        time.sleep(0.5)
        import os

        os.environ["BENCH_REDIS_URL"] = rds.url
        import _dramatiq_app

        sent = [0]

        def enqueue() -> None:
            for _ in range(n):
                _dramatiq_app.noop.send()
                sent[0] += 1

        res = _measure(rds, [proc], n, enqueue,
                       lambda: r.hlen("dramatiq:default.msgs") == 0, timeout=max(60.0, n / 50))
        res["finished"] = n - r.hlen("dramatiq:default.msgs") - r.hlen(
            "dramatiq:default.XQ.msgs") if not res["timed_out"] else 0
        return res
    finally:
        common.stop_proc(proc, timeout=20)


def run_rq(rds: RedisProc, wd: Path, n: int, worker_class: str, nproc: int = 2) -> dict:
    import _rq_jobs
    from redis import Redis
    from rq import Queue

    r = rds.client()
    r.flushall()
    url = rds.url
    procs = []
    for i in range(nproc):
        with open(wd / f"rq-{i}.log", "ab") as out:
            procs.append(common.track(subprocess.Popen(
                [sys.executable, "-m", "rq.cli", "worker", "-w", worker_class, "-u", url,
                 "-n", f"bench-rq-{i}", "-q", "default"],
                stdout=out, stderr=subprocess.STDOUT, env=common.base_env(), cwd=common.BENCH,
            )))
    try:
        common.wait_for(lambda: r.scard("rq:workers") >= nproc, timeout=30, what="rq workers")
        time.sleep(0.5)
        conn = Redis(unix_socket_path=str(rds.sock))
        q = Queue("default", connection=conn)

        def enqueue() -> None:
            for start in range(0, n, BATCH):
                with conn.pipeline() as pipe:
                    q.enqueue_many([Queue.prepare_data(_rq_jobs.noop)
                                    for _ in range(min(BATCH, n - start))], pipeline=pipe)
                    pipe.execute()

        def done() -> bool:
            return r.zcard("rq:finished:default") + r.zcard("rq:failed:default") >= n

        res = _measure(rds, procs, n, enqueue, done, timeout=max(120.0, n / 20))
        res["finished"] = r.zcard("rq:finished:default")
        return res
    finally:
        for p in procs:
            common.stop_proc(p)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run (CI)")
    ap.add_argument("--jobs", type=int, default=None, help="jobs per run (default 10,000)")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--only", default="", help="comma-separated subset of systems")
    a = ap.parse_args()
    quick = a.quick
    n = a.jobs or (2000 if quick else 10_000)
    reps = a.reps or (1 if quick else 3)
    rds: RedisProc  # started below, before the runners that use it are called
    systems: list[tuple[str, Any, int, str]] = [
        # name, runner, jobs, enqueue method
        ("kimchi c=2", lambda wd, m: run_kimchi(rds, wd, m, 2), n,
         "SyncBus.submit, pipelined x500"),
        ("kimchi c=4", lambda wd, m: run_kimchi(rds, wd, m, 4), n,
         "SyncBus.submit, pipelined x500"),
        ("dramatiq 2x8", lambda wd, m: run_dramatiq(rds, wd, m), n, "actor.send() each"),
        ("rq SimpleWorker", lambda wd, m: run_rq(rds, wd, m, "rq.worker.SimpleWorker"),
         min(n, 1000) if quick else n, "enqueue_many, pipelined x500"),
    ]
    if quick:
        systems = [s for s in systems if s[0] != "kimchi c=4"]
    else:
        systems.append(("rq Worker (fork)", lambda wd, m: run_rq(rds, wd, m, "rq.worker.Worker"),
                        min(n, 2000), "enqueue_many, pipelined x500"))
    if a.only:
        keep = [s.strip() for s in a.only.split(",")]
        systems = [s for s in systems if any(s[0].startswith(k) for k in keep)]

    common.header("queue throughput: no-op jobs, 2 worker processes", quick)
    print(f"# {reps} repetition(s); redis AOF everysec, unix socket; jobs per run: "
          + ", ".join(f"{name} {m:,}" for name, _f, m, _e in systems))
    wd = common.workdir("tput")
    rds = RedisProc(wd / "redis").start()
    results: dict[str, list[dict]] = defaultdict(list)
    try:
        for rep in range(reps):
            for name, fn, m, _e in systems:
                # the fork worker is slow: one repetition is enough
                if name.startswith("rq Worker") and rep > 0:
                    continue
                res = fn(wd, m)
                results[name].append(res)
                log(f"rep {rep + 1} {name}: {res['jobs_s']:.0f} jobs/s "
                    f"({res['total_s']:.2f} s, enqueue {res['enqueue_rate']:.0f}/s, "
                    f"{res['finished']}/{m} finished, worker CPU "
                    f"{res['worker_cpu_us_per_job']:.0f} us/job, redis "
                    f"{res['redis_cpu_us_per_job']:.0f} us/job)")
    finally:
        rds.stop()

    def med(name: str, key: str) -> float:
        return median(r[key] for r in results.get(name, []))

    rows = []
    k2 = med("kimchi c=2", "jobs_s")
    for name, _f, m, how in systems:
        if name not in results:
            continue
        v = [r["jobs_s"] for r in results[name]]
        rows.append([name, m, med(name, "jobs_s"), common.spread(v),
                     k2 / med(name, "jobs_s") if not name.startswith("kimchi c=2") else 1.0,
                     med(name, "enqueue_rate"), med(name, "worker_cpu_us_per_job"),
                     med(name, "redis_cpu_us_per_job"),
                     f"{min(r['finished'] for r in results[name])}/{m}", how])
    print()
    common.table(rows, ["system", "jobs", "jobs/s (median)", "spread", "kimchi c=2 / this",
                        "enqueue/s", "worker CPU us/job", "redis CPU us/job", "done",
                        "enqueue method"])
    gc: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, runs in results.items():
        pooled: common.GcRuns = {}
        for r in runs:
            for role, pairs in r.get("gc", {}).items():
                pooled.setdefault(role, []).extend(pairs)
        if pooled:  # kimchi's workers, over every repetition
            gc[name] = common.gc_describe(pooled)
            common.print_gc_lines(gc[name], name)
    best_k = max(med("kimchi c=2", "jobs_s"), med("kimchi c=4", "jobs_s")
                 if "kimchi c=4" in results else float("nan"))
    best_k = best_k if best_k == best_k else k2
    dq = med("dramatiq 2x8", "jobs_s")
    rqs = med("rq SimpleWorker", "jobs_s")
    all_done = all(r["finished"] == r["n"] for rs in results.values() for r in rs)
    ok = (best_k >= TARGET_JOBS_S and (dq != dq or best_k > dq)
          and (rqs != rqs or best_k >= 5 * rqs) and all_done)
    common.verdict(ok, f"kimchi {best_k:.0f} jobs/s (target >= {TARGET_JOBS_S:.0f}); "
                       f"dramatiq {dq:.0f} ({best_k / dq:.2f}x); RQ SimpleWorker {rqs:.0f} "
                       f"({best_k / rqs:.1f}x, target >= 5x); every job finished: {all_done}")
    busy = common.footer()
    print("RESULT " + json.dumps({"machine_busy_pct": busy, **{
                                  "bench": "queue_throughput", "jobs": n, "reps": reps,
                                  "jobs_s": {k: med(k, "jobs_s") for k in results},
                                  "gc": gc, "pass": ok}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
