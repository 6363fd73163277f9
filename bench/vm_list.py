"""GET /vms with 1,000 VMs (libvirt's test driver) against raw libvirt-python listing them.

kimchid answers from its in-memory view (kept by libvirt's events), serialised once per
change and, for a client that accepts gzip (python-requests here, every browser), sent
compressed (also made once per change); the timing includes the client's decompression
and parsing of the body.  The reference lists the same 1,000 domains the plain way, in this process:
``listAllDomains`` + ``info()`` + name + UUID per domain (what a naive manager does
per request).  Also kimchid's resident memory with those 1,000 VMs.  The requests sign in
with HTTP Basic, which kimchid checks with PAM once and then remembers for a minute: the
timed requests run no PAM check.

kimchid as ``kimchi.sh up`` serves it (HTTPS, login) and, as a second column, over plain
HTTP: one daemon each (own Redis), requests interleaved with the reference.
``--gc-before`` adds a third HTTPS daemon with the garbage collector left as CPython
sets it (no freeze, default thresholds): the before/after of kimchi/gcpause.py in one run.

Targets: issue 11, over TLS p50 <= 0.5x raw, no GC pause over 10 ms in kimchid;
issue 4, p50 no slower than raw and <= 50 ms, RSS <= 200 MB.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    KimchidProc,
    RedisProc,
    footer,
    gc_snapshot,
    header,
    median,
    percentile,
    print_gc_pauses,
    table,
    verdict,
    wait_for,
    workdir,
)


def node_xml(n: int) -> str:
    doms = "".join(
        f"<domain type='test'><name>vm{i:04d}</name><uuid>{uuid.UUID(int=i + 1)}</uuid>"
        f"<memory>1048576</memory><vcpu>2</vcpu><os><type>hvm</type></os><devices>"
        f"<disk type='file' device='disk'><source file='/var/lib/libvirt/images/vm{i:04d}.qcow2'/>"
        f"<target dev='vda' bus='virtio'/></disk><graphics type='vnc' port='-1'/></devices>"
        f"</domain>" for i in range(n))
    return f"<node>{doms}</node>"


def raw_listing(conn: object) -> list[dict[str, object]]:
    """The floor: an open connection, one bulk list, info() per domain, no HTTP, no JSON."""
    out = []
    for d in conn.listAllDomains(0):  # type: ignore[attr-defined]
        state, maxmem, mem, vcpus, _ = d.info()
        out.append({"name": d.name(), "uuid": d.UUIDString(), "state": state,
                    "memory": mem, "cpus": vcpus})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--plain", action="store_true", help="plain HTTP only (no TLS column)")
    ap.add_argument("--gc-before", action="store_true",
                    help="also a TLS daemon with CPython's own GC settings (no freeze)")
    args = ap.parse_args()
    n_req = 40 if args.quick else args.requests
    header(f"GET /vms with {args.vms} VMs", args.quick)
    wd = workdir("vmlist")
    node = wd / "node.xml"
    node.write_text(node_xml(args.vms))
    uri = f"test://{node}"
    sides: list[tuple[str, bool, dict[str, Any]]] = (
        [("plain", False, {})] if args.plain else [("tls", True, {}), ("plain", False, {})])
    if args.gc_before:
        sides.append(("tls, GC as CPython sets it", True, {"KIMCHI_BENCH_GC_SETTLE": "0"}))
    procs: list[KimchidProc | RedisProc] = []
    daemons: dict[str, KimchidProc] = {}
    import libvirt

    conn = libvirt.open(uri)  # opened once: only the listing is timed
    try:
        for i, (label, tls, env) in enumerate(sides):
            rds = RedisProc(wd / f"redis-{i}").start()
            procs.append(rds)
            k = KimchidProc(wd / f"kimchid-{i}", rds.url, workers=0, tls=tls,
                            extra={"libvirt": {"uri": uri}})
            k.env = env
            procs.append(k.start())
            daemons[label] = k
        sessions = {label: k.session() for label, k in daemons.items()}
        for label, k in daemons.items():
            s = sessions[label]
            wait_for(lambda s=s, k=k: len(s.get(k.url + "/vms", timeout=30).json()) >= args.vms,
                     timeout=60, what=f"kimchid ({label}) to know every VM")
        first = sessions[sides[0][0]].get(daemons[sides[0][0]].url + "/vms", stream=True)
        wire = len(first.raw.read(decode_content=False))  # as sent: requests asks for gzip
        encoding = first.headers.get("Content-Encoding", "identity")
        body = len(sessions[sides[0][0]].get(daemons[sides[0][0]].url + "/vms").content)
        for _ in range(5):  # warm all
            for label, k in daemons.items():
                sessions[label].get(k.url + "/vms")
            raw_listing(conn)
        marks = {label: gc_snapshot(k.gc_dir)
                 for label, k in daemons.items()}
        ours: dict[str, list[float]] = {label: [] for label in daemons}
        raw: list[float] = []
        for i in range(n_req):  # interleaved, so all see the same machine
            order = list(daemons.items())
            if i % 2:
                order.reverse()
            for label, k in order:
                k.keep_remembered(5.0)  # no PAM check inside the timing (one a minute at most)
                t = time.perf_counter()
                r = sessions[label].get(k.url + "/vms")
                ours[label].append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200 and len(r.json()) == args.vms
            t = time.perf_counter()
            listed = raw_listing(conn)
            raw.append((time.perf_counter() - t) * 1000)
            assert len(listed) == args.vms
        rss = {label: psutil.Process(k.proc.pid).memory_info().rss / 2**20  # type: ignore[union-attr]
               for label, k in daemons.items()}
        ref = median(raw)
        table([*((f"kimchid GET /vms ({label})", f"{median(v):.2f}", f"{percentile(v, 99):.2f}",
                  f"{median(v) / ref:.2f}x", f"{rss[label]:.0f}") for label, v in ours.items()),
               ("raw libvirt-python list+info", f"{ref:.2f}", f"{percentile(raw, 99):.2f}",
                "1", "")],
              ["what", "p50 ms", "p99 ms", "p50 / raw", "RSS MB"])
        print(f"the listing: {body:,} bytes of JSON, {wire:,} on the wire ({encoding}: the "
              f"client, python-requests, sends Accept-Encoding: gzip, deflate, as browsers do)")
        gc_pauses = {label: print_gc_pauses(k, label, since=marks[label])
                     for label, k in daemons.items()}
        main_side = sides[0][0]
        p50 = median(ours[main_side])
        ratio = p50 / ref
        gc_ok = all(d.get("kimchid", {}).get("over", 0) == 0
                    for label, d in gc_pauses.items() if label in ("tls", "plain"))
        ok = (ratio <= 0.5 and p50 <= 50 and rss[main_side] <= 200 and gc_ok)
        verdict(ok, f"GET /vms ({main_side}) p50 {p50:.2f} ms = {ratio:.2f}x raw {ref:.2f} ms "
                    f"(target <= 0.5x); RSS {rss[main_side]:.0f} MB (<= 200); GC pauses over "
                    f"10 ms: {'none' if gc_ok else 'some'}")
        busy = footer()
        print("RESULT " + json.dumps({
            "machine_busy_pct": busy, "vms": args.vms, "requests": n_req, "body_bytes": body,
            "raw_p50_ms": ref, "raw_p99_ms": percentile(raw, 99),
            **{label: {"p50_ms": median(v), "p99_ms": percentile(v, 99),
                       "ratio": median(v) / ref, "rss_mb": rss[label],
                       "gc": gc_pauses[label]} for label, v in ours.items()},
            "ok": ok}))
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    main()
