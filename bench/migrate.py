"""Live migration of a running QEMU guest (512 MiB of RAM) between two hosts: kimchi's
``POST /vms/<name>/migrate`` (task to ``finished``, over HTTPS with login) against
``virsh migrate --live --p2p`` run by hand between the same two hosts, in the same run.

The hosts are two libvirtds on this machine, each in its own network, mount and UTS
namespaces (tests/qemu_hosts.py), the guest's disk on a folder both see (a storage pool
over it on each).  The guest goes back and forth: kimchi moves it one way, virsh the other
way, in turns (the two directions alternate between the two tools from one repetition to
the next), after one untimed move there and back; each time is from the request to the
guest running on the other host (kimchi: its task finished, which it is once kimchi lists
the VM running there).

Target (issue 12): kimchi's median time <= 1.1x virsh's.

    python bench/migrate.py [--quick] [--reps N] [--memory MIB]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from common import KimchidProc, RedisProc, footer, header, median, table, verdict, workdir  # noqa: E402

from tests.qemu_hosts import QemuHosts  # noqa: E402

GUEST = """<domain type='qemu'><name>bench-mover</name><memory unit='MiB'>{mib}</memory>
<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
<graphics type='vnc' port='-1' listen='127.0.0.1'/><video><model type='vga'/></video>
</devices></domain>"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--memory", type=int, default=512, help="the guest's RAM, MiB")
    a = ap.parse_args()
    reps = 2 if a.quick else a.reps
    header(f"live migration of a {a.memory} MiB guest", a.quick)
    import libvirt

    wd = workdir("migrate")
    hosts = QemuHosts(wd, 2)
    shared = Path(tempfile.mkdtemp(prefix="kimchi-bench-migrate-", dir="/tmp"))
    shared.chmod(0o755)
    procs: list = []
    try:
        hosts.start()
        h0, h1 = hosts.hosts
        pool = f"<pool type='dir'><name>shared</name><target><path>{shared}</path></target></pool>"
        for h in hosts.hosts:
            libvirt.open(h.uri).storagePoolCreateXML(pool, 0)
        disk = shared / "bench-mover.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
        os.chmod(disk, 0o666)
        c0 = libvirt.open(h0.uri)
        c0.storagePoolLookupByName("shared").refresh(0)
        c0.defineXML(GUEST.format(mib=a.memory, disk=disk)).create()
        rds = RedisProc(wd / "redis").start()
        procs.append(rds)
        k = KimchidProc(wd / "kimchid", rds.url, workers=0, tls=True,
                        extra={"libvirt": {"uri": h0.uri}})
        procs.append(k.start())
        s = k.session()
        r = s.post(k.url + "/hosts", json={"name": "h1", "uri": h1.uri}, timeout=60)
        assert r.status_code == 201, r.text
        name = {h0.uri: "local", h1.uri: "h1"}

        def by_kimchi(src: str, dst: str) -> float:
            t = time.perf_counter()
            r = s.post(f"{k.url}/hosts/{name[src]}/vms/bench-mover/migrate",
                       json={"host": name[dst]}, timeout=30)
            assert r.status_code == 202, r.text
            tid = r.json()["id"]
            while True:
                task = s.get(f"{k.url}/tasks/{tid}", timeout=30).json()
                if task["status"] != "running":
                    break
                time.sleep(0.02)
            assert task["status"] == "finished", task
            return time.perf_counter() - t

        def by_virsh(src: str, dst: str) -> float:
            addr = hosts.hosts[0].address if dst == h0.uri else hosts.hosts[1].address
            t = time.perf_counter()
            subprocess.run(["virsh", "-c", src, "migrate", "--live", "--p2p", "--persistent",
                            "--undefinesource", "--unsafe", "--migrateuri", f"tcp://{addr}",
                            "bench-mover", dst], check=True, capture_output=True, timeout=300)
            return time.perf_counter() - t

        # a warm-up there and back (the first move starts QEMU on the target cold)
        by_virsh(h0.uri, h1.uri)
        by_virsh(h1.uri, h0.uri)
        times: dict[str, list[float]] = {"kimchi": [], "virsh": []}
        where = h0.uri
        for i in range(reps):
            order = ["kimchi", "virsh"] if i % 2 == 0 else ["virsh", "kimchi"]
            for tool in order:
                other = h1.uri if where == h0.uri else h0.uri
                took = (by_kimchi if tool == "kimchi" else by_virsh)(where, other)
                times[tool].append(took)
                print(f"  .. {tool}: {name[where]} -> {name[other]} in {took:.2f} s", flush=True)
                where = other
                time.sleep(0.5)
        km, vm = median(times["kimchi"]), median(times["virsh"])
        table([("kimchi POST .../migrate -> task finished", f"{km:.2f}",
                f"{min(times['kimchi']):.2f}-{max(times['kimchi']):.2f}", f"{km / vm:.2f}x"),
               ("virsh migrate --live --p2p by hand", f"{vm:.2f}",
                f"{min(times['virsh']):.2f}-{max(times['virsh']):.2f}", "1")],
              ["what", "median s", "spread", "ratio"])
        ok = km <= 1.1 * vm
        verdict(ok, f"live migration of a {a.memory} MiB guest: kimchi {km:.2f} s = "
                    f"{km / vm:.2f}x virsh's {vm:.2f} s (target <= 1.1x)")
        busy = footer()
        print("RESULT " + json.dumps({"bench": "migrate", "machine_busy_pct": busy,
                                      "memory_mib": a.memory, "reps": reps,
                                      "kimchi_s": times["kimchi"], "virsh_s": times["virsh"],
                                      "ratio": km / vm, "ok": ok}))
    finally:
        for p in reversed(procs):
            p.stop()
        hosts.stop()
        subprocess.run(["rm", "-rf", str(shared)], check=False)


if __name__ == "__main__":
    main()
