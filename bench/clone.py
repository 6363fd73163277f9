"""A full clone of a 2 GiB qcow2 through kimchid against ``qemu-img convert`` by hand.

kimchid's path: ``POST /vms/<name>/clone`` -> the daemon's ``vm.clone`` task queues a
``vm.clone.disks`` job -> a worker runs ``qemu-img convert`` into ``<dst>.part`` (reading its
progress) and renames it into place -> the daemon defines the new domain -> the task is
finished.  The reference runs the same ``qemu-img convert`` command line from this process
and waits for it.  Both copy the same source (2 GiB of real data, not zeros) into the same
folder, interleaved: each repetition runs every side twice, in ABBA order (BAAB the next time),
and a side's figure for the repetition is the mean of its two copies.

Target (issue 11): the clone's throughput >= 0.95x the hand-run copy's, same run, judged
on each side's fastest copy, with the medians printed beside.  A copy here writes 2 GiB
into the page cache at about 3 GiB/s, and this VM has slow episodes lasting seconds in
which the same copy takes 2-6 times as long, whoever runs it (at 20:21 on 2026-12-06,
9 repetitions: 7 of kimchi's 18 copies and 6 of the hand's 18 took 1.0-3.8 s against
0.56-0.77 s for the rest).  Such noise only ever adds time, and a few episodes decide a
median of 7-9 repetitions (0.46x in one run, 0.94x in the next, with the same code), so
the fastest copy of each side is the estimator of what each costs.  The time kimchi spends
outside qemu-img (``all but the copy job``) is the steady figure beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import ssl
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import KimchidProc, RedisProc, log, median, wait_for  # noqa: E402

TARGET = 0.95
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"


def make_source(path: Path, gib: int) -> None:
    """A qcow2 of ``gib`` GiB, every cluster written with a pattern (a copy of zeros would
    measure nothing): ``qemu-io`` writes in 256 MiB requests."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), f"{gib}G"], check=True)
    step = 256
    cmds: list[str] = []
    for i in range(gib * 1024 // step):
        cmds += ["-c", f"write -P 0x{0xa0 + i % 16:x} {i * step}M {step}M"]
    subprocess.run(["qemu-io", *cmds, str(path)], check=True, stdout=subprocess.DEVNULL)


def node_xml(src: Path) -> str:
    """libvirt's test driver with one shut-off VM whose disk is ``src``."""
    return (f"<node><domain type='test' xmlns:test='{TEST_NS}'><name>src</name>"
            "<uuid>6b1d9d4e-0000-4000-8000-000000000001</uuid><memory>1048576</memory>"
            "<vcpu>1</vcpu><os><type>hvm</type></os><devices>"
            f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{src}'/><target dev='vda' bus='virtio'/></disk>"
            "</devices><test:runstate>5</test:runstate></domain></node>")


def convert_argv(src: Path, dst: Path) -> list[str]:
    """The command line the worker runs (workers/jobs/disks.py), no copy limit."""
    from workers.jobs.disks import convert_argv as kimchis

    return kimchis(str(src), str(dst), "qcow2", 0)


def by_hand(src: Path, dst: Path) -> tuple[float, float]:
    """(wall seconds, qemu-img's CPU seconds) of one copy run from here, flushed to the
    disk (``fsync``) as the worker's copy is."""
    from workers.jobs.disks import flush

    argv = convert_argv(src, dst)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    flush(str(dst))  # on the disk, as the worker's copy is before it takes its name
    took = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _remove(dst)
    return took, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


COPY_PATH = ("workers/jobs/disks.py", "kimchid/model/vm_clone.py")


def before_tree(rev: str, dest: Path) -> Path:
    """This tree (kimchid, workers, webui, etc) with the copy path's files as of ``rev``: a
    kimchid that differs from this one in the copy path only, for a before/after run."""
    for part in ("kimchid", "workers", "webui", "etc"):
        shutil.copytree(common.ROOT / part, dest / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for path in COPY_PATH:
        old = subprocess.run(["git", "-C", str(common.ROOT), "show", f"{rev}:{path}"],
                             capture_output=True, check=True).stdout
        (dest / path).write_bytes(old)
    return dest


def _remove(path: Path) -> None:
    """Remove a copy and sync, so its freeing (ext4 here: online discard) is over before
    the next copy starts, whoever runs it."""
    path.unlink()
    os.sync()


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _own_cpu(pids: list[int], children: bool = False) -> float:
    """CPU seconds of these processes themselves, or (``children``) of their children
    that have ended and been waited for (qemu-img, for a worker)."""
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += (t.children_user + t.children_system) if children else (t.user + t.system)
        except psutil.NoSuchProcess:
            pass
    return total


def through_kimchi(k: KimchidProc, s: Any, name: str, folder: Path) -> dict[str, Any]:
    """One clone, followed as the web UI does (the task's end on ``/events``, a WebSocket
    opened before the POST): no polling that would take CPU from the copy."""
    import websocket

    k.keep_remembered(30.0)  # no PAM check of our Basic password inside the timing
    sent = time.monotonic()
    ws = websocket.create_connection(
        k.ws_url + "/events?types=task.finished,task.failed,task.cancelled", timeout=600,
        header=k.ws_headers, sslopt={"cert_reqs": ssl.CERT_NONE} if k.tls else None)
    k.note_request(sent, time.monotonic())
    workers = [p.pid for p in k.worker_procs()]
    assert k.proc is not None
    cpu = (_own_cpu([k.proc.pid]), _own_cpu(workers), _own_cpu(workers, children=True))
    try:
        posted = time.time()
        t = time.perf_counter()
        r = s.post(k.url + "/vms/src/clone", json={"name": name}, timeout=30)
        if r.status_code != 202:
            raise RuntimeError(f"POST /vms/src/clone: {r.status_code} {r.text[:300]}")
        tid = r.json()["id"]
        while True:
            ev = json.loads(ws.recv())
            if (ev.get("data") or {}).get("id") == tid:
                break
        took = time.perf_counter() - t
        seen = time.time()
    finally:
        ws.close()
    daemon_cpu, worker_cpu = _own_cpu([k.proc.pid]) - cpu[0], _own_cpu(workers) - cpu[1]
    qemu_cpu = _own_cpu(workers, children=True) - cpu[2]
    done = s.get(f"{k.url}/tasks/{tid}", timeout=30).json()
    if done["status"] != "finished":
        raise RuntimeError(f"clone {name}: {done}")
    child = next(c for c in s.get(k.url + "/tasks?kind=vm.clone.disks", timeout=30).json()
                 if c["params"]["parent"] == tid)
    events = s.get(k.url + "/events", params={"since": "0", "task": child["id"]},
                   timeout=30).json()
    started = next(_ts(e["time"]) for e in events if e["type"] == "task.started")
    copied = _ts(child["updated"])
    steps = s.get(k.url + "/events", params={"since": "0", "task": tid}, timeout=30).json()
    defining = next(_ts(e["time"]) for e in steps if e["type"] == "task.progress"
                    and e["data"]["message"].startswith("Defining"))
    out = {"s": took, "post_to_copy": started - posted, "copy": copied - started,
           "copy_to_end": _ts(done["updated"]) - copied, "define": _ts(done["updated"]) - defining,
           "end_to_seen": seen - _ts(done["updated"]),
           "progress_events": sum(e["type"] == "task.progress" for e in events),
           "daemon_cpu": daemon_cpu, "worker_cpu": worker_cpu, "qemu_cpu": qemu_cpu}
    if s.delete(k.url + f"/vms/{name}", timeout=60).status_code != 204:
        raise RuntimeError(f"DELETE /vms/{name} failed")
    for leftover in folder.glob(f"{name}-*"):  # if kimchid's delete left it: ours to remove
        leftover.unlink()
    os.sync()  # as _remove does
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run (CI): 1 GiB, 2 reps")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--gib", type=int, default=None, help="size of the source (default 2)")
    ap.add_argument("--plain", action="store_true", help="plain HTTP instead of HTTPS")
    ap.add_argument("--before", default="", metavar="REV",
                    help="also clone through a kimchid whose copy path (" + ", ".join(COPY_PATH)
                    + ") is REV's: a before/after run")
    a = ap.parse_args()
    reps = a.reps or (2 if a.quick else 7)
    gib = a.gib or (1 if a.quick else 2)

    common.header(f"full clone of a {gib} GiB qcow2 vs qemu-img convert by hand", a.quick)
    wd = common.workdir("clone")
    images = wd / "images"
    images.mkdir()
    src = images / "src.qcow2"
    t = time.perf_counter()
    make_source(src, gib)
    size = gib * 2**30
    log(f"source made in {time.perf_counter() - t:.1f} s: {src} "
        f"({src.stat().st_blocks * 512 / 2**30:.2f} GiB allocated)")
    node = wd / "node.xml"
    node.write_text(node_xml(src))
    print(f"# {reps} repetition(s), interleaved; `{' '.join(convert_argv(src, images / 'X'))}`")

    sides: dict[str, KimchidProc] = {}
    redises: list[RedisProc] = []
    trees = {"kimchi": common.ROOT}
    if a.before:
        trees[f"before ({a.before})"] = before_tree(a.before, wd / "before")
    try:
        for label, tree in trees.items():
            rds = RedisProc(wd / f"redis-{len(redises)}").start()
            redises.append(rds)
            sides[label] = KimchidProc(wd / f"kimchid-{len(sides)}", rds.url, workers=2,
                                       tree=tree, tls=not a.plain,
                                       extra={"libvirt": {"uri": f"test://{node}"}}).start()
        sessions = {label: k.session() for label, k in sides.items()}
        for label, k in sides.items():
            wait_for(lambda k=k, s=sessions[label]: s.get(k.url + "/vms/src", timeout=10)
                     .json().get("state") == "shutoff", what="the source VM listed")
        # warm-up: the source in the page cache, each side's first clone
        by_hand(src, images / "warm.qcow2")  # (the source is in the page cache already)
        for label, k in sides.items():
            through_kimchi(k, sessions[label], f"w{len(label)}", images)

        hand: list[float] = []
        hand_each: list[float] = []  # every single copy, for the fastest
        hand_cpu: list[float] = []
        ours: dict[str, list[dict[str, Any]]] = {label: [] for label in sides}
        ours_each: dict[str, list[float]] = {label: [] for label in sides}
        for rep in range(reps):
            # ABBA: each side copies twice per repetition, once in an odd and once in an
            # even slot (on this disk a copy right after another's removal can take twice
            # as long, whoever runs it: an order that gives one side the same slots biases)
            order = ["hand", *sides]
            if rep % 2:
                order.reverse()
            done: dict[str, list[dict[str, Any]]] = {who: [] for who in order}
            for who in order + order[::-1]:
                if who == "hand":
                    took, cpu = by_hand(src, images / "hand.qcow2")
                    done[who].append({"s": took, "qemu_cpu": cpu})
                else:
                    done[who].append(through_kimchi(sides[who], sessions[who],
                                                    f"c{rep}x{len(who)}x{len(done[who])}",
                                                    images))
            parts = []
            for who, xs in done.items():
                x = {key: sum(y[key] for y in xs) / len(xs) for key in xs[0]}
                each = " + ".join(f"{y['s']:.2f}" for y in xs)
                if who == "hand":
                    hand.append(x["s"])
                    hand_each.extend(y["s"] for y in xs)
                    hand_cpu.append(x["qemu_cpu"])
                    parts.append(f"hand {x['s']:.2f} s ({each}; qemu-img CPU "
                                 f"{x['qemu_cpu']:.2f} s)")
                    continue
                ours[who].append(x)
                ours_each[who].extend(y["s"] for y in xs)
                parts.append(f"{who} {x['s']:.2f} s ({each}; before copy "
                             f"{x['post_to_copy']:.3f}, copy {x['copy']:.3f}, after "
                             f"{x['copy_to_end']:.3f} (define {x['define']:.3f}), seen "
                             f"{x['end_to_seen']:.3f}; CPU qemu-img {x['qemu_cpu']:.2f} s, "
                             f"kimchid {x['daemon_cpu']:.2f} s, workers {x['worker_cpu']:.2f} s; "
                             f"{x['progress_events']:.0f} progress events)")
            log(f"rep {rep + 1}: " + " | ".join(parts))
    finally:
        for k in sides.values():
            k.stop()
        for rds in redises:
            rds.stop()

    mh = median(hand)
    rows: list[list[Any]] = [
        ["qemu-img convert by hand (reference)", mh, common.spread(hand), size / mh / 2**20,
         1.0],
        ["  its CPU", median(hand_cpu), common.spread(hand_cpu), "-", "-"]]
    result: dict[str, Any] = {"bench": "clone", "gib": gib, "reps": reps, "hand_s": mh,
                              "hand_mib_s": size / mh / 2**20, "hand_cpu_s": median(hand_cpu)}
    keys = ("post_to_copy", "copy", "copy_to_end", "define", "end_to_seen", "outside",
            "qemu_cpu", "daemon_cpu", "worker_cpu")
    for label, xs in ours.items():
        for x in xs:
            x["outside"] = x["s"] - x["copy"]
        m = median(x["s"] for x in xs)
        paired = median(h / x["s"] for h, x in zip(hand, xs, strict=True))
        rows.append([f"{label}: POST -> task finished", m, common.spread([x["s"] for x in xs]),
                     size / m / 2**20, mh / m])
        for key, what in (("post_to_copy", "POST -> worker started the copy"),
                          ("copy", "the copy job (started -> finished)"),
                          ("copy_to_end", "copy finished -> clone finished"),
                          ("define", "  of which defining the VM"),
                          ("end_to_seen", "finished -> the client saw it"),
                          ("outside", "all but the copy job"),
                          ("qemu_cpu", "CPU: qemu-img"),
                          ("daemon_cpu", "CPU: kimchid"),
                          ("worker_cpu", "CPU: the workers (qemu-img apart)")):
            v = [x[key] for x in xs]
            rows.append([f"  {what}", median(v), common.spread(v),
                         size / median(v) / 2**20 if key == "copy" else "-",
                         mh / median(v) if key == "copy" else "-"])
        rows.append(["  median of the per-rep ratios (hand / kimchi)", "-", "-", "-", paired])
        best = min(ours_each[label])
        rows.append([f"{label}: the fastest copy (hand's fastest: {min(hand_each):.3f} s)", best,
                     "-", size / best / 2**20, min(hand_each) / best])
        result[label] = {"s": m, "mib_s": size / m / 2**20, "ratio": mh / m,
                         "paired_ratio": paired, "best_s": best,
                         "best_ratio": min(hand_each) / best,
                         "slow_copies": sum(x > 1.5 * best for x in ours_each[label]),
                         **{key: median(x[key] for x in xs) for key in keys}}
    result["hand_best_s"] = min(hand_each)
    result["hand_slow_copies"] = sum(x > 1.5 * min(hand_each) for x in hand_each)
    print()
    common.table(rows, ["operation", "s (median)", "spread", "MiB/s", "x hand (throughput)"])
    ratio = result["kimchi"]["best_ratio"]
    ok = ratio >= TARGET
    print(f"copies over 1.5x their side's fastest: kimchi {result['kimchi']['slow_copies']} of "
          f"{len(ours_each['kimchi'])}, hand {result['hand_slow_copies']} of {len(hand_each)} "
          f"(this VM's slow episodes, whoever copies then: see the docstring)")
    fastest = size / result["kimchi"]["best_s"] / 2**20
    common.verdict(ok, f"clone {gib} GiB, fastest copies: {fastest:.0f} MiB/s = "
                       f"{ratio:.3f}x qemu-img convert by hand "
                       f"({size / min(hand_each) / 2**20:.0f} MiB/s); target >= {TARGET}x "
                       f"(medians: {result['kimchi']['ratio']:.3f}x)")
    busy = common.footer()
    print("RESULT " + json.dumps({"machine_busy_pct": busy, **result, "ratio": ratio,
                                  "target": TARGET, "pass": ok}))
    return 0


if __name__ == "__main__":
    if not shutil.which("qemu-img") or not shutil.which("qemu-io"):
        raise SystemExit("qemu-img and qemu-io are needed (apt-get install qemu-utils)")
    os.umask(0o022)
    sys.exit(main())
