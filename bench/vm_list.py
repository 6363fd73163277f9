"""GET /vms with 1,000 VMs (libvirt's test driver) against raw libvirt-python listing them.

kimchid answers from its in-memory view (kept by libvirt's events); the
reference lists the same 1,000 domains the plain way, in this process:
``listAllDomains`` + ``info()`` + name + UUID per domain (what a naive manager does
per request).  Also kimchid's resident memory with those 1,000 VMs.  The requests sign in
with HTTP Basic, which kimchid checks with PAM once and then remembers for a minute: the
timed requests run no PAM check.

Targets (issue 4): p50 no slower than raw and <= 50 ms; RSS <= 200 MB.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    KimchidProc,
    RedisProc,
    footer,
    header,
    median,
    percentile,
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
    args = ap.parse_args()
    n_req = 40 if args.quick else args.requests
    header(f"GET /vms with {args.vms} VMs", args.quick)
    wd = workdir("vmlist")
    node = wd / "node.xml"
    node.write_text(node_xml(args.vms))
    uri = f"test://{node}"
    redis = RedisProc(wd / "redis").start()
    k = KimchidProc(wd / "kimchid", redis.url, workers=0,
                    extra={"libvirt": {"uri": uri}}).start()
    s = k.session()  # HTTP Basic; kimchid checked it with PAM once, in start()
    import libvirt

    conn = libvirt.open(uri)  # opened once: only the listing is timed
    try:
        wait_for(lambda: len(s.get(k.url + "/vms", timeout=30).json()) >= args.vms,
                 timeout=60, what="kimchid to know every VM")
        for _ in range(5):  # warm both
            s.get(k.url + "/vms")
            raw_listing(conn)
        ours, raw = [], []
        for _ in range(n_req):  # interleaved, so both see the same machine
            k.keep_remembered(5.0)  # no PAM check inside the timing (one a minute at most)
            t = time.perf_counter()
            r = s.get(k.url + "/vms")
            ours.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200 and len(r.json()) == args.vms
            t = time.perf_counter()
            listed = raw_listing(conn)
            raw.append((time.perf_counter() - t) * 1000)
            assert len(listed) == args.vms
        assert k.proc is not None
        rss = psutil.Process(k.proc.pid).memory_info().rss / 2**20
        table([
            ("kimchid GET /vms (HTTP, JSON)", f"{median(ours):.1f}", f"{percentile(ours, 99):.1f}"),
            ("raw libvirt-python list+info", f"{median(raw):.1f}", f"{percentile(raw, 99):.1f}"),
        ], ["what", "p50 ms", "p99 ms"])
        ratio = median(ours) / median(raw)
        print(f"p50 ratio kimchid/raw: {ratio:.2f}; kimchid RSS with {args.vms} VMs: "
              f"{rss:.0f} MB")
        ok = median(ours) <= median(raw) and median(ours) <= 50 and rss <= 200
        verdict(ok, f"GET /vms p50 {median(ours):.1f} ms vs raw {median(raw):.1f} ms "
                          f"(target: no slower, <= 50 ms); RSS {rss:.0f} MB (<= 200)")
        footer()
    finally:
        k.stop()
        redis.stop()


if __name__ == "__main__":
    main()
