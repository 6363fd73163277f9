"""Event latency: a worker's progress publish -> a WebSocket client's receipt.

Method (each repetition, the floor and kimchi interleaved on the same Redis):

* floor: a producer process XADDs ``count`` entries ``every`` seconds apart to a stream of
  its own, each stamped with time.time(); this process waits in a blocked XREAD (redis-py)
  and takes receipt time - stamp.  Same host, so time.time() is one clock.
* kimchi: kimchid (2 embedded workers) on the same redis-server; a WebSocket client
  (websocket-client, this process, signed in with HTTP Basic: one handshake per
  repetition, before the job starts) watches ``/events?types=task.progress``; a
  ``diag.progress`` job {count, every} is submitted with ``SyncBus.submit``; the job stamps
  ``t`` = time.time() into each progress's details just before publishing it (the progress
  Lua script -> XADD on the event stream -> kimchid's XREAD -> WebSocket frame); latency
  is receipt time - details.t.

Target: kimchi p99 <= 5 ms.  Prints p50/p99 of both, and their ratio.

    python bench/event_latency.py [--quick] [--reps N] [--count N] [--every S]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import common  # noqa: E402
from common import KimchidProc, RedisProc, log, median, percentile  # noqa: E402

TARGET_P99_MS = 5.0


def floor_producer(url: str, count: int, every: float, key: str) -> None:
    """(child process) XADD ``count`` stamped entries, ``every`` seconds apart."""
    import redis

    r = redis.Redis.from_url(url)
    time.sleep(0.2)  # let the reader block first
    nxt = time.monotonic()
    for i in range(count):
        r.xadd(key, {"i": i, "t": repr(time.time())})
        nxt += every
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def run_floor(rds: RedisProc, count: int, every: float, rep: int) -> list[float]:
    """XADD (other process) -> blocked XREAD wake-up (here), ms."""
    import redis

    key = f"bench:floor:{rep}"
    r = redis.Redis(unix_socket_path=str(rds.sock), decode_responses=False, socket_timeout=30)
    r.delete(key)
    prod = common.track(subprocess.Popen(
        [sys.executable, __file__, "--floor-producer", rds.url, str(count), str(every), key],
        env=common.base_env(),
    ))
    lat: list[float] = []
    last = b"0-0"
    deadline = time.monotonic() + count * every + 20
    while len(lat) < count and time.monotonic() < deadline:
        reply = r.xread({key: last}, count=100, block=1000)
        now = time.time()
        for _k, entries in reply or ():
            for eid, fields in entries:
                last = eid
                lat.append((now - float(fields[b"t"])) * 1000)
    prod.wait(10)
    r.delete(key)
    return lat


def run_kimchi(k: KimchidProc, rds: RedisProc, count: int, every: float) -> tuple[list[float], int]:
    """diag.progress job -> WebSocket receipt, ms; also the number of distinct ticks seen."""
    import websocket

    from workers.queue import SyncBus, connect

    sent = time.monotonic()
    ws = websocket.create_connection(k.ws_url + "/events?types=task.progress", timeout=30,
                                     header=k.ws_headers)  # signed in (Basic)
    k.note_request(sent, time.monotonic())
    try:
        bus = SyncBus(connect(rds.url))
        task_id = bus.submit("diag.progress", {"count": count, "every": every})
        lat: list[float] = []
        seen: set[int] = set()
        deadline = time.monotonic() + count * every + 30
        while len(seen) < count and time.monotonic() < deadline:
            raw = ws.recv()
            now = time.time()
            ev = json.loads(raw)
            data = ev.get("data") or {}
            det = data.get("details") or {}
            if data.get("id") != task_id or "t" not in det:
                continue
            lat.append((now - det["t"]) * 1000)
            seen.add(det["i"])
        bus.wait(task_id, timeout=30)
        return lat, len(seen)
    finally:
        ws.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run (CI)")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--count", type=int, default=None, help="progress events per job")
    ap.add_argument("--every", type=float, default=0.005, help="seconds between events")
    ap.add_argument("--workers", type=int, default=2, help="kimchid's embedded workers")
    ap.add_argument("--floor-producer", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.floor_producer:
        url, n, every, key = a.floor_producer
        floor_producer(url, int(n), float(every), key)
        return 0
    reps = a.reps or (1 if a.quick else 3)
    count = a.count or (200 if a.quick else 500)

    common.header("event latency: worker progress -> WebSocket client", a.quick)
    print(f"# {reps} repetition(s) of {count} events every {a.every * 1000:.1f} ms; "
          f"redis AOF everysec, unix socket; kimchid with {a.workers} embedded workers")
    wd = common.workdir("evlat")
    rds = RedisProc(wd / "redis").start()
    k = KimchidProc(wd / "kimchid", rds.url, workers=a.workers).start()
    rows = []
    floors50, floors99, k50, k99, seen_all = [], [], [], [], []
    pooled_f: list[float] = []
    pooled_k: list[float] = []
    try:
        # warm-up: one short job (script loading, first connections)
        run_kimchi(k, rds, 20, 0.002)
        for rep in range(reps):
            f = run_floor(rds, count, a.every, rep)
            kl, seen = run_kimchi(k, rds, count, a.every)
            pooled_f += f
            pooled_k += kl
            floors50.append(percentile(f, 50))
            floors99.append(percentile(f, 99))
            k50.append(percentile(kl, 50))
            k99.append(percentile(kl, 99))
            seen_all.append(seen)
            log(f"rep {rep + 1}: floor p50 {floors50[-1]:.3f} p99 {floors99[-1]:.3f} ms | "
                f"kimchi p50 {k50[-1]:.3f} p99 {k99[-1]:.3f} max {max(kl):.2f} ms, "
                f"{seen}/{count} seen")
    finally:
        k.stop()
        rds.stop()

    mf50, mf99, mk50, mk99 = median(floors50), median(floors99), median(k50), median(k99)
    rows.append(["p50 ms", mk50, common.spread(k50), mf50, common.spread(floors50),
                 mk50 / mf50, "-"])
    rows.append(["p99 ms", mk99, common.spread(k99), mf99, common.spread(floors99),
                 mk99 / mf99, f"<= {TARGET_P99_MS}"])
    rows.append(["max ms (pooled)", max(pooled_k), "-", max(pooled_f), "-",
                 max(pooled_k) / max(pooled_f), "-"])
    print()
    common.table(rows, ["figure", "kimchi (median)", "spread", "floor XADD->XREAD",
                        "spread", "ratio", "target"])
    print(f"events seen: {min(seen_all)}/{count} (worst repetition)")
    ok = mk99 <= TARGET_P99_MS and min(seen_all) == count
    common.verdict(ok, f"event latency p99 {mk99:.2f} ms (target <= {TARGET_P99_MS} ms), "
                       f"{min(seen_all)}/{count} events delivered")
    busy = common.footer()
    print("RESULT " + json.dumps({"machine_busy_pct": busy, **{
                                  "bench": "event_latency", "kimchi_p50_ms": mk50,
                                  "kimchi_p99_ms": mk99, "floor_p50_ms": mf50,
                                  "floor_p99_ms": mf99, "reps": reps, "count": count,
                                  "pass": ok}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
