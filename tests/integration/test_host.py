"""/host and /host/stats on a real kimchid, checked against the machine itself."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import websocket

from tests.conftest import Kimchi, RedisServer, wait_for


@pytest.fixture
def fast(kimchi_factory: Any, redis_db: RedisServer) -> Kimchi:
    """Samples every half second, 10 kept."""
    return kimchi_factory(redis_url=redis_db.url, workers=0,
                          extra={"host": {"stats_interval": 0.5, "history": 10}})


def test_the_host_is_described_as_it_is(fast: Kimchi) -> None:
    h = fast.get("/host").json()
    assert h["hostname"] == socket.gethostname()
    assert h["kernel"] == platform.release()
    assert h["cpus"]["online"] == os.cpu_count()
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    sockets = {line for line in lines if line.startswith("physical id")}
    assert h["cpus"]["sockets"] == max(1, len(sockets))
    assert h["cpus"]["cores"] == psutil.cpu_count(logical=False)
    assert h["memory"] == psutil.virtual_memory().total
    release = Path("/etc/os-release").read_text()
    assert f'VERSION_ID="{h["os_version"]}"' in release or \
        f"VERSION_ID={h['os_version']}" in release
    assert h["os_distro"] and h["os_distro"] in release
    cpuinfo = Path("/proc/cpuinfo").read_text()
    assert h["cpu_model"] and h["cpu_model"] in cpuinfo
    assert 0 < h["uptime"] <= time.time() - psutil.boot_time() + 5
    assert h["libvirt_version"].count(".") == 2


def test_the_figures_follow_what_the_host_does(fast: Kimchi, tmp_path: Path) -> None:
    k = fast
    s = wait_for(lambda: (lambda r: r.json() if r.status_code == 200 and "time" in r.json()
                          else None)(k.get("/host/stats")), what="a first sample")
    assert 0 <= s["cpu_utilization"] <= 100
    mem = s["memory"]
    assert mem["total"] == psutil.virtual_memory().total
    assert 0 < mem["avail"] <= mem["total"] and 0 < mem["free"] <= mem["total"]
    for key in ("disk_read_rate", "disk_write_rate", "net_recv_rate", "net_sent_rate"):
        assert isinstance(s[key], int) and s[key] >= 0

    # a busy CPU shows: one spinning process per CPU for three seconds
    spin = "import time\nend = time.monotonic() + 3\nwhile time.monotonic() < end: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", spin])
                for _ in range(os.cpu_count() or 1)]
    try:
        busy = wait_for(lambda: (lambda x: x if x["cpu_utilization"] >= 60 else None)(
            k.get("/host/stats").json()), timeout=5, what="the CPU figure to rise")
        assert busy["cpu_utilization"] <= 100
    finally:
        for p in spinners:
            p.wait()

    # written bytes show as a disk write rate, when the kernel counts them at all
    before = psutil.disk_io_counters()
    with open(tmp_path / "blob", "wb") as f:
        for _ in range(32):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    after = psutil.disk_io_counters()
    if before and after and after.write_bytes > before.write_bytes:
        wait_for(lambda: k.get("/host/stats").json()["disk_write_rate"] > 0, timeout=5,
                 what="the disk write rate to show the write")

    hist = k.get("/host/stats/history").json()
    assert hist["interval"] == 0.5
    n = len(hist["time"])
    assert 3 <= n <= 10  # kept to [host] history
    assert hist["time"] == sorted(hist["time"])
    for key in ("cpu_utilization", "disk_write_rate", "net_recv_rate"):
        assert len(hist[key]) == n
    assert len(hist["memory"]["avail"]) == n
    assert max(hist["cpu_utilization"]) >= 60  # the busy moment is in there


def test_watchers_get_each_sample_live(fast: Kimchi) -> None:
    ws = websocket.create_connection(f"{fast.ws_url}/events?types=host.stats", timeout=10,
                                     header=fast.ws_headers)
    try:
        got: list[dict[str, Any]] = []
        t0 = time.monotonic()
        while len(got) < 3:
            ev = json.loads(ws.recv())
            assert ev["type"] == "host.stats"
            got.append(ev)
        took = time.monotonic() - t0
    finally:
        ws.close()
    assert all(e["id"] is None for e in got)  # notices: not kept, never replayed
    times = [e["data"]["time"] for e in got]
    assert times == sorted(times) and len(set(times)) == 3
    assert took < 5  # every half second, not every few
    assert {"cpu_utilization", "memory", "net_sent_rate"} <= set(got[-1]["data"])
    kept = fast.get("/events?since=0&types=host.stats").json()
    assert kept == []


def test_the_host_answers_while_libvirt_is_unreachable(kimchi_factory: Any,
                                                       redis_db: RedisServer) -> None:
    k = kimchi_factory(redis_url=redis_db.url, workers=0,
                       extra={"libvirt": {"uri": "qemu+unix:///system?socket=/nonexistent"}})
    h = k.get("/host").json()
    assert h["libvirt_version"] == "" and h["cpus"]["online"] == os.cpu_count()
    assert k.get("/host/stats").status_code == 200
