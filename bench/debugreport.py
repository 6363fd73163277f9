"""A debug report through kimchid against ``sos report`` run by hand, in the same run.

kimchid's path: ``POST /debugreports`` -> a worker runs the tool (reading its plugin
lines as progress), checks the archive's MD5 sum, renames it into the reports folder ->
the task is finished.  The reference runs the same tool with the same plugins from this
process and waits for it.  The difference is what kimchi adds; then the download of the
finished archive over HTTP against reading the file.

No target in an issue: the figure to watch is the overhead in seconds, which should stay
a small part of the tool's own time.
"""

from __future__ import annotations

import argparse
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
    args = ap.parse_args()
    runs = 2 if args.quick else args.runs
    header(f"debug report ({', '.join(PLUGINS)} plugins), {runs} runs each", args.quick)
    wd = workdir("debugreport")
    redis = RedisProc(wd / "redis").start()
    k = KimchidProc(wd / "kimchid", redis.url, workers=2,
                    extra={"debugreports": {"plugins": PLUGINS}}).start()
    s = k.session()
    try:
        wait_for(lambda: s.get(k.url + "/config/capabilities").json().get(
            "system_report_tool") is True, what="the capability probe")
        ours, raw, down, read = [], [], [], []
        for i in range(runs):  # interleaved, so both see the same machine
            k.keep_remembered(5.0)
            t = time.perf_counter()
            task = s.post(k.url + "/debugreports", json={"name": f"bench-{i}"}).json()
            url = k.url + f"/tasks/{task['id']}"
            done = wait_for(lambda u=url: (lambda x: x if x["status"] != "running" else None)(
                s.get(u).json()), timeout=300, interval=0.02, what="the report")
            ours.append(time.perf_counter() - t)
            assert done["status"] == "finished", done
            with tempfile.TemporaryDirectory(dir=wd) as tmp:
                raw.append(raw_report(Path(tmp)))
            t = time.perf_counter()
            body = s.get(k.url + f"/debugreports/bench-{i}/content",
                         headers={"Accept": "*/*"}).content
            down.append(time.perf_counter() - t)
            path = wd / "kimchid" / "state" / "debugreports" / f"bench-{i}.tar.xz"
            t = time.perf_counter()
            assert path.read_bytes() == body
            read.append(time.perf_counter() - t)
        size = len(body) / 2**20
        table([
            ("kimchid: POST -> task finished", f"{median(ours):.2f}", f"{min(ours):.2f}"),
            ("sos report by hand", f"{median(raw):.2f}", f"{min(raw):.2f}"),
            (f"download {size:.1f} MiB over HTTP", f"{median(down) * 1000:.0f} ms",
             f"{min(down) * 1000:.0f} ms"),
            ("read the file", f"{median(read) * 1000:.1f} ms", f"{min(read) * 1000:.1f} ms"),
        ], ["what", "median s", "best s"])
        extra = median(ours) - median(raw)
        print(f"kimchi adds {extra:+.2f} s to a {median(raw):.2f} s report "
              f"(ratio {median(ours) / median(raw):.2f})")
        verdict(extra < max(1.0, 0.1 * median(raw)),
                f"overhead {extra:+.2f} s (watch: under 1 s or 10 % of the tool's time)")
        footer()
    finally:
        k.stop()
        redis.stop()


if __name__ == "__main__":
    main()
