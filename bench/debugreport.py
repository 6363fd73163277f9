"""A debug report through kimchid against ``sos report`` run by hand, in the same run.

kimchid's path: ``POST /debugreports`` -> a worker runs the tool (reading its plugin
lines as progress), checks the archive's MD5 sum, renames it into the reports folder ->
the task is finished.  The reference runs the same tool with the same plugins from this
process and waits for it.  The difference is what kimchi adds; then the download of the
finished archive over HTTP against reading the file.

kimchid as ``kimchi.sh up`` serves it (HTTPS, login) and, as a second column, over plain
HTTP (one daemon each, 2 workers, own Redis; ``--plain``: plain only), interleaved with
the reference.  No target in an issue: the figure to watch is the overhead in seconds,
which should stay a small part of the tool's own time.  Also printed: the garbage-collector
pauses of kimchid and its workers (issue 11: none over 10 ms).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    KimchidProc,
    RedisProc,
    footer,
    header,
    median,
    print_gc_pauses,
    table,
    verdict,
    wait_for,
    workdir,
)

PLUGINS = ["host", "kernel", "libvirt", "kvm"]


def raw_report(tmp: Path) -> float:
    t = time.perf_counter()
    subprocess.run([shutil.which("sos") or "sos", "report", "--batch", "--tmp-dir", str(tmp),
                    "--label", "bench", "--only-plugins", ",".join(PLUGINS)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--plain", action="store_true", help="plain HTTP only (no HTTPS column)")
    args = ap.parse_args()
    runs = 2 if args.quick else args.runs
    header(f"debug report ({', '.join(PLUGINS)} plugins), {runs} runs each", args.quick)
    wd = workdir("debugreport")
    labels = ["plain"] if args.plain else ["tls", "plain"]
    procs: list[KimchidProc | RedisProc] = []
    daemons: dict[str, KimchidProc] = {}
    try:
        for label in labels:
            redis = RedisProc(wd / f"redis-{label}").start()
            procs.append(redis)
            daemons[label] = KimchidProc(wd / f"kimchid-{label}", redis.url, workers=2,
                                         tls=label == "tls",
                                         extra={"debugreports": {"plugins": PLUGINS}}).start()
            procs.append(daemons[label])
        sessions = {label: k.session() for label, k in daemons.items()}
        for label, k in daemons.items():
            wait_for(lambda s=sessions[label], k=k: s.get(k.url + "/config/capabilities").json()
                     .get("system_report_tool") is True, what="the capability probe")
        ours: dict[str, list[float]] = {label: [] for label in labels}
        down: dict[str, list[float]] = {label: [] for label in labels}
        raw, read = [], []
        size = 0.0
        for i in range(runs):  # interleaved, so all see the same machine
            for label in labels if i % 2 == 0 else labels[::-1]:
                k, s = daemons[label], sessions[label]
                k.keep_remembered(5.0)
                t = time.perf_counter()
                task = s.post(k.url + "/debugreports", json={"name": f"bench-{i}"}).json()
                url = k.url + f"/tasks/{task['id']}"
                done = wait_for(lambda u=url, s=s: (
                    lambda x: x if x["status"] != "running" else None)(s.get(u).json()),
                    timeout=300, interval=0.02, what="the report")
                ours[label].append(time.perf_counter() - t)
                assert done["status"] == "finished", done
                t = time.perf_counter()
                body = s.get(k.url + f"/debugreports/bench-{i}/content",
                             headers={"Accept": "*/*"}).content
                down[label].append(time.perf_counter() - t)
                path = k.dir / "state" / "debugreports" / f"bench-{i}.tar.xz"
                t = time.perf_counter()
                assert path.read_bytes() == body
                read.append(time.perf_counter() - t)
                size = len(body) / 2**20
            with tempfile.TemporaryDirectory(dir=wd) as tmp:
                raw.append(raw_report(Path(tmp)))
        ref = median(raw)
        table([
            *((f"kimchid ({label}): POST -> task finished", f"{median(v):.2f}",
               f"{min(v):.2f}", f"{median(v) / ref:.2f}") for label, v in ours.items()),
            ("sos report by hand", f"{ref:.2f}", f"{min(raw):.2f}", "1"),
            *((f"download {size:.1f} MiB ({label})", f"{median(v) * 1000:.0f} ms",
               f"{min(v) * 1000:.0f} ms", "") for label, v in down.items()),
            ("read the file", f"{median(read) * 1000:.1f} ms", f"{min(read) * 1000:.1f} ms", ""),
        ], ["what", "median s", "best s", "x by hand"])
        main_label = labels[0]
        extra = median(ours[main_label]) - ref
        print(f"kimchi ({main_label}) adds {extra:+.2f} s to a {ref:.2f} s report "
              f"(ratio {median(ours[main_label]) / ref:.2f})")
        gc = {label: print_gc_pauses(k, label) for label, k in daemons.items()}
        ok = extra < max(1.0, 0.1 * ref)
        verdict(ok, f"overhead {extra:+.2f} s (watch: under 1 s or 10 % of the tool's time)")
        busy = footer()
        print("RESULT " + json.dumps({
            "machine_busy_pct": busy, "bench": "debugreport", "by_hand_s": ref,
            **{label: {"report_s": median(ours[label]), "ratio": median(ours[label]) / ref,
                       "download_ms": median(down[label]) * 1000, "gc": gc[label]}
               for label in labels},
            "pass": ok}))
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    main()
