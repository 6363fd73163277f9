"""Disk copies (``vm.clone.disks``) with the real qemu-img, and how the clone follows them."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from kimchi.bus.context import JobContext, Progress, Stop
from kimchi.bus.follow import child_event, last_event
from kimchi.bus.sync import SyncBus, connect
from kimchi.errors import KimchiError
from kimchid.model.vms import VmInventory
from workers.jobs.disks import convert_argv, copy_disks


def _image(path: Path, mib: int) -> Path:
    """A qcow2 with ``mib`` MiB of data written into it (a copy of zeros proves nothing)."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), f"{mib * 2}M"],
                   check=True)
    subprocess.run(["qemu-io", "-c", f"write -P 0x5a 0 {mib}M", str(path)], check=True,
                   capture_output=True)
    return path


def _job(copies: list[dict[str, str]], sent: list[Progress],
         rate_limit: int = 0) -> JobContext:
    def send_progress(_ctx: JobContext, p: Progress) -> int:
        sent.append(p)
        return 1

    return JobContext(task_id="t1", entry_id="0-1", attempt="1", kind="vm.clone.disks",
                      params={"copies": copies, "rate_limit": rate_limit},
                      send_progress=send_progress,
                      send_found=lambda *_a: True, progress_interval=0.0)


def _qemu_img_writing(dst: Path) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.info["name"] == "qemu-img" and str(dst) + ".part" in (p.info["cmdline"] or []):
            out.append(p)
    return out


def test_a_copy_is_the_same_data_under_its_name_with_progress_up_to_100(tmp_path):
    src = _image(tmp_path / "a.qcow2", 8)
    dst = tmp_path / "a-clone-0.qcow2"
    sent: list[Progress] = []
    result = copy_disks(_job([{"src": str(src), "dst": str(dst), "format": "qcow2"}], sent))
    assert result["copied"] == [str(dst)]
    same = subprocess.run(["qemu-img", "compare", str(src), str(dst)], capture_output=True)
    assert same.returncode == 0, same.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-clone-0.qcow2", "a.qcow2"]
    percents = [p.percent for p in sent]
    assert percents[0] == 0 and percents[-1] == 100 and percents == sorted(percents)
    assert str(sent[-1].message) == "Copying a-clone-0.qcow2: 100 %"


def test_the_copy_runs_qemu_img_as_a_user_would_with_a_limit_only_when_one_is_set():
    argv = convert_argv("/a.qcow2", "/b.qcow2.part", "qcow2", 0)
    assert argv[1:] == ["convert", "-p", "-O", "qcow2", "-o", "preallocation=off",
                        "/a.qcow2", "/b.qcow2.part"]
    limited = convert_argv("/a.img", "/b.img.part", "raw", 4 << 20)
    assert limited[1:] == ["convert", "-p", "-O", "raw", "-r", str(4 << 20),
                           "/a.img", "/b.img.part"]


def test_a_failed_copy_leaves_no_file(tmp_path):
    folder = tmp_path / "not-an-image"
    folder.mkdir()
    dst = tmp_path / "x-0.img"
    with pytest.raises(KimchiError) as e:
        copy_disks(_job([{"src": str(folder), "dst": str(dst), "format": "raw"}], []))
    assert e.value.errcode == "KCHVM0017E"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-an-image"]


def test_stopping_a_copy_kills_qemu_img_and_removes_the_part(tmp_path):
    src = _image(tmp_path / "b.qcow2", 24)
    dst = tmp_path / "b-clone-0.qcow2"
    # 24 MiB at 4 MiB/s: about 6 s unless stopped
    ctx = _job([{"src": str(src), "dst": str(dst), "format": "qcow2"}], [],
               rate_limit=4 << 20)

    def stop_once_copying() -> None:
        deadline = time.monotonic() + 10
        while not _qemu_img_writing(dst) and time.monotonic() < deadline:
            time.sleep(0.02)
        ctx.stop("cancelled")

    threading.Thread(target=stop_once_copying, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(Stop):
        copy_disks(ctx)
    assert time.monotonic() - t0 < 5
    assert not _qemu_img_writing(dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.qcow2"]


def test_the_clone_is_woken_by_its_copy_jobs_events_only(redis_db):
    sync = SyncBus(connect(redis_db.url))
    child = sync.submit("vm.clone.disks", {"copies": []})
    since = last_event(sync)
    woke: list[tuple[str, float]] = []
    waiter = threading.Thread(target=lambda: woke.append(
        (child_event(sync, child, since, block_ms=8000), time.monotonic())))
    waiter.start()
    time.sleep(0.2)
    sync.submit("diag.noop")  # another task's event: not a reason to wake
    time.sleep(0.3)
    assert waiter.is_alive()
    cancelled = time.monotonic()
    sync.cancel(child)  # not started: ends at once, with its task.cancelled event
    waiter.join(5)
    assert woke, "still waiting after the copy job's event"
    (eid, at), = woke
    assert at - cancelled < 2  # the event, not the 8 s limit
    assert eid == last_event(sync)


def test_the_clone_stops_waiting_after_block_ms_without_an_event(redis_db):
    sync = SyncBus(connect(redis_db.url))
    since = last_event(sync)
    t0 = time.monotonic()
    assert child_event(sync, "nobody", since, block_ms=150) == since
    assert 0.1 < time.monotonic() - t0 < 2


class _NoLibvirt:
    """Enough of LibvirtConnection for an inventory that is only written to."""

    def __init__(self) -> None:
        self.connect_listeners: list[Any] = []
        self.down_listeners: list[Any] = []
        self.domain_listeners: list[Any] = []


def test_waiting_for_a_new_vm_ends_when_it_is_listed_not_at_a_poll():
    inventory = VmInventory(_NoLibvirt(), None)  # type: ignore[arg-type]
    listed = threading.Timer(0.1, lambda: setattr(inventory, "vms", {"u1": {"name": "a"}}))
    listed.start()
    t0 = time.monotonic()
    inventory.wait_listed("u1", timeout=5)
    assert "u1" in inventory.vms and time.monotonic() - t0 < 2
    t0 = time.monotonic()
    inventory.wait_listed("u2", timeout=0.2)  # never listed: gives up after its timeout
    assert 0.15 < time.monotonic() - t0 < 2
