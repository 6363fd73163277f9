"""Many hosts in one kimchi: 20 simulated hosts x 500 VMs (10,000 VMs).

Each host is a libvirtd of its own (its own sockets and ``host_uuid``; ``LIBVIRT_DRIVER_DIR``
an empty folder, so it loads only libvirt's test driver and never touches the machine's
guests), holding 500 domains defined through a connection this script keeps open (the test
driver drops its state when its last client leaves).  kimchid (HTTPS with login, as
``kimchi.sh up`` serves it; no workers) has the first as its ``[libvirt] uri`` and the
other 19 as host files dropped into ``objects_dir/hosts``.

Measured, interleaved in the same run:

* ``GET /vms`` (every host's 10,000 VMs, gzip as browsers ask for it): the answer as sent
  (the time kimchid takes, the target's measure) and with the client's decompression and
  JSON parsing (python-requests: 6 MB of JSON take it over 300 ms), against the reference:
  the 20 hosts listed directly
  with libvirt-python, one after another, on connections opened beforehand
  (``listAllDomains`` + ``info()``, name and UUID per domain, no HTTP, no JSON);
* kimchid's resident memory with the 10,000 VMs;
* a VM state change on any of the 20 hosts (``create()`` / ``destroy()`` of a random
  domain, through this script's connection) -> the ``vm.state`` frame on a WebSocket client
  watching ``/events?types=vm.state``, against libvirt's own event delivery of the same
  change to a bare libvirt-python client in this process (``domainEventRegisterAny`` on
  the same connection that made the change, its event loop on a thread).

Targets (issue 12): GET /vms p50 <= 20 ms (as sent) and faster than the reference
(parsed too); RSS <= 200 MB;
the state change p99 no more than 5 ms above libvirt's own delivery.

    python bench/cluster.py [--quick] [--hosts 20] [--vms 500] [--requests 100] [--changes 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import ssl
import subprocess
import sys
import threading
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
    header,
    log,
    median,
    percentile,
    print_gc_pauses,
    table,
    track,
    verdict,
    wait_for,
    workdir,
)

DOMAIN = ("<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>"
          "<memory>1048576</memory><vcpu>2</vcpu><os><type>hvm</type></os><devices>"
          "<disk type='file' device='disk'><source file='/var/lib/libvirt/images/{name}.qcow2'/>"
          "<target dev='vda' bus='virtio'/></disk><graphics type='vnc' port='-1'/></devices>"
          "</domain>")


class SimHost:
    """One simulated host: a private libvirtd serving the test driver."""

    def __init__(self, folder: Path, name: str) -> None:
        self.name = name
        self.dir = folder
        (folder / "sock").mkdir(parents=True, exist_ok=True)
        (folder / "no-drivers").mkdir(exist_ok=True)
        self.conf = folder / "libvirtd.conf"
        self.conf.write_text(
            f'unix_sock_dir = "{folder / "sock"}"\nunix_sock_rw_perms = "0700"\n'
            'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
            f'host_uuid = "{uuid.uuid4()}"\nlog_outputs = "3:file:{folder / "libvirtd.log"}"\n')
        self.uri = f"test+unix:///default?socket={folder / 'sock' / 'libvirt-sock'}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn: Any = None

    def start(self) -> None:
        import libvirt

        binary = self.dir / "kimchi-bench-lvd"
        if not binary.exists():
            binary.symlink_to("/usr/sbin/libvirtd")
        self.proc = track(subprocess.Popen(
            [str(binary), "-f", str(self.conf), "-p", str(self.dir / "libvirtd.pid")],
            env={**os.environ, "LIBVIRT_DRIVER_DIR": str(self.dir / "no-drivers")},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.conn = wait_for(lambda: libvirt.open(self.uri), timeout=20,
                             what=f"libvirtd of {self.name}")

    def fill(self, n: int) -> None:
        for i in range(n):
            name = f"{self.name}-vm{i:04d}"
            self.conn.defineXML(DOMAIN.format(name=name, uuid=uuid.uuid4()))

    def stop(self) -> None:
        self.conn = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def raw_listing(conns: list[Any]) -> int:
    """The reference: every host listed directly, one after another."""
    n = 0
    for conn in conns:
        for d in conn.listAllDomains(0):
            state, _maxmem, mem, vcpus, _ = d.info()
            d.name()
            d.UUIDString()
            n += 1
    return n


class LibvirtWatch:
    """libvirt's own delivery of lifecycle events to a bare client (this process)."""

    def __init__(self, hosts: list[SimHost]) -> None:
        self.seen: dict[str, float] = {}  # "<domain>:<event>" -> arrival
        self.cond = threading.Condition()
        for h in hosts:
            h.conn.domainEventRegisterAny(None, 0, self._event, None)  # LIFECYCLE

    def _event(self, _conn: Any, dom: Any, event: int, _detail: int, _opaque: Any) -> None:
        t = time.perf_counter()
        with self.cond:
            self.seen[f"{dom.name()}:{event}"] = t
            self.cond.notify_all()

    def wait(self, key: str, timeout: float = 10.0) -> float:
        with self.cond:
            self.cond.wait_for(lambda: key in self.seen, timeout)
            return self.seen.pop(key)


class WsWatch:
    """A WebSocket client on /events?types=vm.state, frames dated on arrival."""

    def __init__(self, k: KimchidProc) -> None:
        import websocket

        self.ws = websocket.create_connection(
            f"{k.ws_url}/events?types=vm.state", timeout=30, header=k.ws_headers,
            sslopt={"cert_reqs": ssl.CERT_NONE})
        self.seen: dict[str, float] = {}  # "<host>/<name>:<state>" -> arrival
        self.cond = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                text = self.ws.recv()
            except Exception:
                return
            t = time.perf_counter()
            try:
                d = json.loads(text).get("data") or {}
            except (ValueError, AttributeError):
                continue  # not an event (the close)
            with self.cond:
                self.seen[f"{d.get('host')}/{d.get('name')}:{d.get('state')}"] = t
                self.cond.notify_all()

    def wait(self, key: str, timeout: float = 10.0) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.seen, timeout):
                raise TimeoutError(f"no vm.state for {key}")
            return self.seen.pop(key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--vms", type=int, default=500)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--changes", type=int, default=200)
    a = ap.parse_args()
    if a.quick:
        a.hosts, a.vms, a.requests, a.changes = 5, 100, 20, 40
    header(f"{a.hosts} hosts x {a.vms} VMs", a.quick)
    import libvirt

    libvirt.virEventRegisterDefaultImpl()
    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)],
                     daemon=True).start()
    wd = workdir("cluster")
    hosts = [SimHost(wd / f"h{i + 1:02d}", f"h{i + 1:02d}") for i in range(a.hosts)]
    procs: list[Any] = []
    try:
        t = time.monotonic()
        for h in hosts:
            h.start()
            h.fill(a.vms)
        log(f"{a.hosts} libvirtds with {a.vms} VMs each in {time.monotonic() - t:.1f} s")
        total = a.hosts * a.vms + a.hosts  # each test driver also has its own "test" VM
        rds = RedisProc(wd / "redis").start()
        procs.append(rds)
        k = KimchidProc(wd / "kimchid", rds.url, workers=0, tls=True,
                        extra={"libvirt": {"uri": hosts[0].uri}})
        hdir = k.dir / "objects" / "hosts"
        hdir.mkdir(parents=True)
        for h in hosts[1:]:
            (hdir / f"{h.name}.json").write_text(json.dumps({"name": h.name, "uri": h.uri}))
        t = time.monotonic()
        procs.append(k.start())
        s = k.session()
        wait_for(lambda: len(s.get(k.url + "/vms", timeout=30).json()) >= total, timeout=120,
                 what="kimchid to list every host's VMs")
        log(f"kimchid listed {total:,} VMs of {a.hosts} hosts {time.monotonic() - t:.1f} s "
            "after its start")
        conns = [h.conn for h in hosts]

        # -- GET /vms against the hosts listed directly ------------------------------
        for _ in range(3):
            s.get(k.url + "/vms")
            raw_listing(conns)
        ours, wire, raw = [], [], []
        sizes = (0, 0)
        for i in range(a.requests):
            k.keep_remembered(5.0)
            order = ["k", "wire", "raw"] if i % 2 else ["raw", "wire", "k"]
            for what in order:
                t0 = time.perf_counter()
                if what == "k":
                    r = s.get(k.url + "/vms")
                    n = len(r.json())
                    ours.append((time.perf_counter() - t0) * 1000)
                    sizes = (len(r.content), sizes[1])
                elif what == "wire":  # the answer as sent: no decompression, no parsing
                    r = s.get(k.url + "/vms", stream=True)
                    body = r.raw.read(decode_content=False)
                    wire.append((time.perf_counter() - t0) * 1000)
                    sizes, n = (sizes[0], len(body)), total
                else:
                    n = raw_listing(conns)
                    raw.append((time.perf_counter() - t0) * 1000)
                assert n == total, (what, n, total)
        rss = psutil.Process(k.proc.pid).memory_info().rss / 2**20  # type: ignore[union-attr]

        # -- a state change on any host -> a WebSocket client --------------------------
        lv = LibvirtWatch(hosts)
        ws = WsWatch(k)
        rng = random.Random(12)
        lat_ws, lat_lv = [], []
        running: set[tuple[int, str]] = set()
        for _ in range(a.changes):
            hi = rng.randrange(a.hosts)
            name = f"{hosts[hi].name}-vm{rng.randrange(a.vms):04d}"
            host_name = "local" if hi == 0 else hosts[hi].name
            dom = hosts[hi].conn.lookupByName(name)
            start = (hi, name) not in running
            t0 = time.perf_counter()
            if start:
                dom.create()
                running.add((hi, name))
            else:
                dom.destroy()
                running.discard((hi, name))
            state = "running" if start else "shutoff"
            t_lv = lv.wait(f"{name}:{2 if start else 5}")  # STARTED / STOPPED
            t_ws = ws.wait(f"{host_name}/{name}:{state}")
            lat_lv.append((t_lv - t0) * 1000)
            lat_ws.append((t_ws - t0) * 1000)
            time.sleep(0.01)
        ws.ws.close()

        ref = median(raw)
        p50, p99 = median(ours), percentile(ours, 99)
        table([("kimchid GET /vms (TLS, gzip), parsed", f"{p50:.1f}", f"{p99:.1f}",
                f"{p50 / ref:.2f}x", f"{rss:.0f}"),
               ("kimchid GET /vms, the answer as sent (not parsed)", f"{median(wire):.1f}",
                f"{percentile(wire, 99):.1f}", f"{median(wire) / ref:.2f}x", ""),
               (f"the {a.hosts} hosts listed directly, one after another", f"{ref:.1f}",
                f"{percentile(raw, 99):.1f}", "1", "")],
              ["what", "p50 ms", "p99 ms", "p50 / reference", "RSS MB"])
        print(f"the listing: {sizes[0]:,} bytes of JSON, {sizes[1]:,} on the wire (gzip)")
        ev_p99, lv_p99 = percentile(lat_ws, 99), percentile(lat_lv, 99)
        table([("VM state change -> WebSocket client (kimchid)", f"{median(lat_ws):.2f}",
                f"{ev_p99:.2f}"),
               ("VM state change -> libvirt's own event to a bare client",
                f"{median(lat_lv):.2f}", f"{lv_p99:.2f}")],
              ["what", "p50 ms", "p99 ms"])
        gc = print_gc_pauses(k, "kimchid")
        sent = median(wire)
        ok_list = sent <= 20 and p50 < ref
        ok_rss = rss <= 200
        ok_ev = ev_p99 - lv_p99 <= 5
        verdict(ok_list, f"GET /vms over {total:,} VMs of {a.hosts} hosts: answered in "
                         f"{sent:.1f} ms (p50, as sent; target <= 20 ms), {p50:.1f} ms with the "
                         f"client's decompression and parsing, below the direct listing's "
                         f"{ref:.1f} ms")
        verdict(ok_rss, f"kimchid's RSS {rss:.0f} MB (target <= 200)")
        verdict(ok_ev, f"state change p99 {ev_p99:.2f} ms = libvirt's own {lv_p99:.2f} ms "
                       f"+ {ev_p99 - lv_p99:.2f} ms (target <= +5 ms)")
        busy = footer()
        print("RESULT " + json.dumps({
            "bench": "cluster", "machine_busy_pct": busy, "hosts": a.hosts, "vms": total,
            "list_p50_ms": p50, "list_p99_ms": p99, "wire_p50_ms": median(wire),
            "wire_p99_ms": percentile(wire, 99), "direct_p50_ms": ref,
            "direct_p99_ms": percentile(raw, 99), "rss_mb": rss,
            "event_p50_ms": median(lat_ws), "event_p99_ms": ev_p99,
            "libvirt_event_p50_ms": median(lat_lv), "libvirt_event_p99_ms": lv_p99,
            "gc": gc, "ok": ok_list and ok_rss and ok_ev}))
    finally:
        for p in reversed(procs):
            p.stop()
        for h in hosts:
            h.stop()


if __name__ == "__main__":
    main()
