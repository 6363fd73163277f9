"""The object store across real processes: flock serialises them; the watcher sees their writes.

Each writer is a separate ``python`` process, as the daemon and the workers
are, so nothing is shared but the files.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import task

from kimchid.adapters.objectstore import ObjectStore, ObjectWatcher, StoredObject
from tests.conftest import ROOT

WRITER = """
import os, sys, time
from pathlib import Path
from kimchid.adapters.objectstore import Exists, ObjectStore

root, action, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
while not (Path(root) / "go").exists():  # all start together, or they would not race
    time.sleep(0.001)
store = ObjectStore(root)
if action == "increment":
    for _ in range(count):
        store.update("counters", "c", lambda d: {"n": d["n"] + 1})
elif action == "create":
    try:
        store.create("vms", "v", {"by": os.getpid()})
        print("created")
    except Exists:
        print("exists")
"""


def run_together(root: Path, action: str, processes: int, count: int = 0) -> list[str]:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), action, str(count)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    time.sleep(0.3)  # let the interpreters start
    (root / "go").touch()
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outputs.append(out.strip())
    return outputs


def test_4_processes_updating_one_object_lose_no_increment(tmp_path: Path):
    store = ObjectStore(tmp_path)
    store.put("counters", "c", {"n": 0})
    run_together(tmp_path, "increment", processes=4, count=200)
    assert store.get("counters", "c").data == {"n": 800}
    left = sorted(p.name for p in (tmp_path / "counters").iterdir())
    assert left == [".c.lock", "c.json"]  # no temporary file left behind


def test_processes_racing_to_create_one_object_have_one_winner(tmp_path: Path):
    ObjectStore(tmp_path)
    outputs = run_together(tmp_path, "create", processes=6)
    assert sorted(outputs) == ["created"] + ["exists"] * 5


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    from twisted.internet import reactor

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await task.deferLater(reactor, 0.02, lambda: None)  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_the_watcher_on_its_own_thread_sees_another_process_write(tmp_path: Path):
    from twisted.internet import reactor

    store = ObjectStore(tmp_path)
    seen: list[tuple[str, str, Any]] = []

    def on_change(kind: str, name: str, change: str, obj: StoredObject | None) -> None:
        seen.append((change, name, obj.data if obj else None))

    watcher = ObjectWatcher(store, reactor, 0.05, on_change)  # type: ignore[arg-type]
    watcher.startService()
    try:
        store.put("counters", "c", {"n": 0})
        await until(lambda: ("added", "c", {"n": 0}) in seen)
        run_together(tmp_path, "increment", processes=1, count=3)
        await until(lambda: seen[-1] == ("changed", "c", {"n": 3}))
        (tmp_path / "counters" / "c.json").unlink()
        await until(lambda: seen[-1] == ("removed", "c", None))
    finally:
        await watcher.stopService()
    assert watcher._pool is not None and not watcher._pool.started  # its thread is joined
