"""kimchid leaves no full garbage collection to CPython: they run while its reactor is
idle, kept apart in the pause figures it writes (kimchi/gcpause.py)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from kimchi.gcpause import IDLE_FULL, NEVER, distribution
from tests.conftest import Kimchi, RedisServer, wait_for


def stats(folder: Path, pid: int) -> dict[str, Any]:
    path = folder / f"gc-kimchid-{pid}.json"
    before = time.time()
    os.kill(pid, signal.SIGUSR2)  # write the figures now
    wait_for(lambda: path.exists() and json.loads(path.read_text())["written"] >= before,
             what="kimchid's GC figures written")
    return json.loads(path.read_text())


def test_full_collections_wait_for_an_idle_reactor(kimchi_factory: Any, redis_db: RedisServer,
                                                   tmp_path: Path) -> None:
    folder = tmp_path / "gc"
    folder.mkdir()
    k: Kimchi = kimchi_factory(redis_url=redis_db.url, workers=0,
                               env={"KIMCHI_BENCH_GC_STATS": str(folder)})
    assert k.proc is not None
    pid = k.proc.pid
    first = stats(folder, pid)
    assert first["settled"] and first["thresholds"][2] == NEVER
    # work that leaves survivors behind (sessions, listings), then nothing
    for _ in range(300):
        assert k.get("/vms").status_code == 200
        assert k.get("/tasks").status_code == 200

    def idle_collected() -> bool:
        now = stats(folder, pid)
        return distribution([(now, first)], generation=IDLE_FULL)["n"] >= 1

    wait_for(idle_collected, timeout=20, what="a full collection on the idle reactor")
    now = stats(folder, pid)
    assert distribution([(now, first)], generation=2)["n"] == 0  # none left to CPython
