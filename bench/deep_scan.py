"""Deep ISO scan: ``POST /isos/scan`` of a 100,000-file tree -> task finished, against
``find TREE -name '*.iso'`` on the same (warm) tree.

The tree (built once, cached in /tmp/kimchi-bench-tree, like floors.md section 6): 50 x 100
leaf folders (5,051 folders), 20 entries each = 100,000 files, of which 200 are small valid
ISO-9660 images (tests/isofactory.make_iso) of 10 distributions; the rest are empty files.

Each repetition (medians of 5, 2 in --quick), all with a warm page cache:

* find: ``find TREE -name '*.iso'`` as a subprocess, wall time (process start included);
* python: an in-process recursive os.scandir walk (the primitive the worker uses);
* kimchi: ``POST /isos/scan`` -> poll ``GET /tasks/<id>`` every 5 ms until ``finished``
  (signed in with HTTP Basic, which kimchid checked with PAM before the clock starts),
  over HTTPS as ``kimchi.sh up`` serves it and, as a second column, plain HTTP (one
  kimchid with 2 workers each, own Redis; ``--plain``: plain only);
  also the worker's own time from the task's ``task.started`` event to its ``updated``
  stamp (ms resolution), and the queueing before it (``created`` -> started).

CPU (psutil/rusage, 10 ms ticks): find's user+sys and the workers' during the scan, a
figure less sensitive than wall time to other load on a shared machine.

Checks: the task found 200 ISOs and ``GET /isos`` lists all 200 with the right distro and
version.  Target: kimchi (HTTPS) <= 1.5x find.  Also printed: the garbage-collector pauses
of each kimchid and its workers during the run (issue 11: none over 10 ms).

    python bench/deep_scan.py [--quick] [--reps N] [--tree DIR] [--plain]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import common  # noqa: E402
from common import KimchidProc, RedisProc, log, median  # noqa: E402

TARGET_RATIO = 1.5
TOP, SUB, PER_DIR, ISOS = 50, 100, 20, 200
TREE_VERSION = 1

# volume id -> (os_distro, os_version) as the scan must report them
DISTROS = [
    ("Fedora-WS-Live-39-1-5", "fedora", "39"),
    ("Ubuntu 22.04.3 LTS amd64", "ubuntu", "22.04"),
    ("Debian 12.2.0 amd64 n", "debian", "12.2"),
    ("CentOS-Stream-9-BaseOS-x86_64", "centos", "9"),
    ("RHEL-9-2-0-BaseOS-x86_64", "rhel", "9.2"),
    ("Rocky-9-2-x86_64-dvd", "rocky", "9.2"),
    ("openSUSE-Leap-15.5-DVD-x86_64", "opensuse", "15.5"),
    ("SLE-15-SP4-Full-x86_64", "sles", "15sp4"),
    ("ARCH_202311", "arch", "2023.11"),
    ("13_2_RELEASE_AMD64_CD", "freebsd", "13.2"),
]


def build_tree(cache: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """The tree under ``cache/tree`` and its manifest {iso path: (distro, version)}."""
    tree = cache / "tree"
    manifest_file = cache / "manifest.json"
    if manifest_file.exists():
        m = json.loads(manifest_file.read_text())
        if m.get("version") == TREE_VERSION and tree.is_dir():
            return tree, {p: tuple(v) for p, v in m["isos"].items()}
    from tests.isofactory import make_iso

    log(f"building the tree in {tree} (once)")
    t0 = time.monotonic()
    if tree.exists():
        shutil.rmtree(tree)
    isos: dict[str, tuple[str, str]] = {}
    iso_every = (TOP * SUB) // ISOS  # one ISO in every 25th leaf folder
    leaf = 0
    for a in range(TOP):
        for b in range(SUB):
            d = tree / f"d{a:02d}" / f"s{b:03d}"
            d.mkdir(parents=True)
            with_iso = leaf % iso_every == 0 and len(isos) < ISOS
            for i in range(PER_DIR - (1 if with_iso else 0)):
                ext = (".dat", ".txt", ".img", ".qcow2", ".log")[i % 5]
                fd = os.open(d / f"f{i:02d}{ext}", os.O_WRONLY | os.O_CREAT, 0o644)
                os.close(fd)
            if with_iso:
                vol, distro, version = DISTROS[len(isos) % len(DISTROS)]
                p = d / f"{distro}-{version}-{leaf}.iso"
                make_iso(p, vol)
                isos[str(p)] = (distro, version)
            leaf += 1
    manifest_file.write_text(json.dumps({"version": TREE_VERSION, "isos": isos}))
    log(f"tree built in {time.monotonic() - t0:.1f} s")
    return tree, isos


FIND_CPU: list[float] = []


def time_find(tree: Path) -> tuple[float, int]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(["find", str(tree), "-name", "*.iso"], capture_output=True,
                         check=True).stdout
    wall = (time.perf_counter() - t0) * 1000
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    FIND_CPU.append((r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000)
    return wall, out.count(b"\n")


def time_scandir(tree: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    found = 0
    stack = [str(tree)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.name.endswith(".iso"):
                    found += 1
    return (time.perf_counter() - t0) * 1000, found


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def time_kimchi(k: KimchidProc, s, tree: Path, poll: float = 0.005) -> dict:
    k.keep_remembered(15.0)  # no PAM check of our Basic password inside the timing
    cpu_w = common.CpuMeter([p.pid for p in k.worker_procs()]).start()
    cpu_d = common.CpuMeter([k.proc.pid]).start()
    t0 = time.perf_counter()
    r = s.post(k.url + "/isos/scan", json={"path": str(tree)}, timeout=30)
    r.raise_for_status()
    tid = r.json()["id"]
    deadline = time.monotonic() + 120
    while True:
        t = s.get(f"{k.url}/tasks/{tid}", timeout=30).json()
        if t["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(poll)
    total = (time.perf_counter() - t0) * 1000
    worker_cpu, daemon_cpu = cpu_w.stop()[0] * 1000, cpu_d.stop()[0] * 1000
    started = s.get(f"{k.url}/events", params={"since": "0", "types": "task.started",
                                               "task": tid}, timeout=30).json()
    t_start = _ts(started[-1]["time"]) if started else float("nan")
    return {"ms": total, "status": t["status"], "result": t.get("result") or {},
            "queue_ms": (t_start - _ts(t["created"])) * 1000,
            "worker_ms": (_ts(t["updated"]) - t_start) * 1000, "id": tid,
            "worker_cpu_ms": worker_cpu, "daemon_cpu_ms": daemon_cpu}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run (CI)")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--poll", type=float, default=0.005, help="GET /tasks/<id> interval, s")
    ap.add_argument("--tree", default="/tmp/kimchi-bench-tree", help="cache folder of the tree")
    ap.add_argument("--plain", action="store_true", help="plain HTTP only (no HTTPS column)")
    a = ap.parse_args()
    reps = a.reps or (2 if a.quick else 5)

    common.header("deep ISO scan: 100,000 files, 200 ISOs, warm cache", a.quick)
    tree, manifest = build_tree(Path(a.tree))
    print(f"# tree {tree}: {TOP * SUB + TOP + 1:,} folders, {TOP * SUB * PER_DIR:,} files, "
          f"{len(manifest)} ISOs; {reps} repetition(s), medians")
    wd = common.workdir("scan")
    labels = ["plain"] if a.plain else ["tls", "plain"]
    procs: list[KimchidProc | RedisProc] = []
    daemons: dict[str, KimchidProc] = {}
    finds, pys = [], []
    kims: dict[str, list[dict]] = {label: [] for label in labels}
    listed_by: dict[str, list[dict]] = {}
    gc: dict[str, dict] = {}
    try:
        for label in labels:
            rds = RedisProc(wd / f"redis-{label}").start()
            procs.append(rds)
            daemons[label] = KimchidProc(wd / f"kimchid-{label}", rds.url, workers=2,
                                         tls=label == "tls").start()
            procs.append(daemons[label])
        sessions = {label: k.session() for label, k in daemons.items()}
        # warm the page cache and the daemon (first scan loads scripts, fills the library)
        n_find = time_find(tree)[1]
        time_scandir(tree)
        for label, k in daemons.items():
            warm = time_kimchi(k, sessions[label], tree, a.poll)
            log(f"warm-up scan ({label}): {warm['ms']:.0f} ms, {warm['status']}, "
                f"{warm['result'].get('isos')} ISOs")
        for rep in range(reps):
            f, n_find = time_find(tree)
            p, n_py = time_scandir(tree)
            finds.append(f)
            pys.append(p)
            order = labels if rep % 2 == 0 else labels[::-1]
            for label in order:
                kk = time_kimchi(daemons[label], sessions[label], tree, a.poll)
                kims[label].append(kk)
                log(f"rep {rep + 1} {label}: kimchi {kk['ms']:.0f} ms ({kk['status']}, "
                    f"{kk['result'].get('isos')} ISOs; queue {kk['queue_ms']:.0f} ms, worker "
                    f"{kk['worker_ms']:.0f} ms; CPU: workers {kk['worker_cpu_ms']:.0f} ms, "
                    f"kimchid {kk['daemon_cpu_ms']:.0f} ms)")
            log(f"rep {rep + 1}: find {f:.0f} ms ({n_find} ISOs) | scandir {p:.0f} ms")
        for label, k in daemons.items():
            listed_by[label] = [i for i in sessions[label].get(k.url + "/isos", timeout=30).json()
                                if i["path"].startswith(str(tree) + "/")]
        print()
        for label, k in daemons.items():
            gc[label] = common.print_gc_pauses(k, label)
    finally:
        for proc in reversed(procs):
            proc.stop()

    main_label = labels[0]
    listed = listed_by[main_label]
    wrong = [i["path"] for i in listed
             if tuple(manifest.get(i["path"], ("?", "?"))) != (i["os_distro"], i["os_version"])]
    all_found = (all(len(lst) == len(manifest) for lst in listed_by.values()) and not wrong
                 and all(x["status"] == "finished" and x["result"].get("isos") == len(manifest)
                         for runs in kims.values() for x in runs))
    mf, mp = median(finds), median(pys)
    fcpu = median(FIND_CPU[-reps:])
    rows = [
        ["find -name '*.iso' (reference)", mf, common.spread(finds), 1.0, f"{n_find}"],
        ["python os.scandir walk", mp, common.spread(pys), mp / mf, f"{n_py}"],
        ["CPU: find (user+sys)", fcpu, common.spread(FIND_CPU[-reps:]), 1.0, "-"],
    ]
    figures: dict[str, dict] = {}
    for label, runs in kims.items():
        mk, mw = median(x["ms"] for x in runs), median(x["worker_ms"] for x in runs)
        wcpu, mq = median(x["worker_cpu_ms"] for x in runs), median(x["queue_ms"] for x in runs)
        figures[label] = {"kimchi_ms": mk, "worker_ms": mw, "ratio": mk / mf,
                          "worker_cpu_ms": wcpu, "gc": gc.get(label, {})}
        rows += [
            [f"kimchi ({label}) POST /isos/scan -> finished", mk,
             common.spread([x["ms"] for x in runs]), mk / mf,
             f"{runs[-1]['result'].get('isos')}"],
            ["  of which worker started->finished", mw,
             common.spread([x["worker_ms"] for x in runs]), mw / mf, "-"],
            ["  of which queued (created->started)", mq,
             common.spread([x["queue_ms"] for x in runs]), "-", "-"],
            ["  CPU: kimchi workers during the scan", wcpu,
             common.spread([x["worker_cpu_ms"] for x in runs]), wcpu / fcpu, "-"],
            ["  CPU: kimchid during the scan (incl. polling)",
             median(x["daemon_cpu_ms"] for x in runs),
             common.spread([x["daemon_cpu_ms"] for x in runs]), "-", "-"],
        ]
    mk, mw, wcpu = (figures[main_label][key] for key in ("kimchi_ms", "worker_ms",
                                                          "worker_cpu_ms"))
    print()
    common.table(rows, ["operation", "ms (median)", "spread", "x find", "ISOs"])
    print(f"GET /isos lists {len(listed)}/{len(manifest)} of the tree's ISOs; "
          f"wrong distro/version: {len(wrong)} {wrong[:3]}")
    ok = mk <= TARGET_RATIO * mf and all_found
    common.verdict(ok, f"deep scan ({main_label}) {mk:.0f} ms = {mk / mf:.2f}x find "
                       f"(target <= {TARGET_RATIO}x); all {len(manifest)} ISOs identified: "
                       f"{all_found}")
    busy = common.footer()
    print("RESULT " + json.dumps({"machine_busy_pct": busy, **{
                                  "bench": "deep_scan", "find_ms": mf, "scandir_ms": mp,
                                  "kimchi_ms": mk, "worker_ms": mw, "ratio": mk / mf,
                                  "find_cpu_ms": fcpu, "worker_cpu_ms": wcpu,
                                  "isos_listed": len(listed), "sides": figures,
                                  "pass": ok}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
