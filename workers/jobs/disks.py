"""Disk images copied with ``qemu-img convert``: the file work of cloning a VM.

Each copy is written to ``<dst>.part`` and renamed into place only when
complete, so a crash or a cancel never leaves a file that looks finished; a
failed or cancelled job removes what it wrote.  ``qemu-img convert -p`` prints
its progress as ``(12.50/100%)`` separated by carriage returns.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from typing import Any

from kimchi.bus.context import JobContext, Stop, kill_when_stopped
from kimchi.bus.jobs import job
from kimchi.bus.text import TaskText
from kimchi.errors import KimchiError

_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")
_FORMATS = {"qcow2", "raw"}


def _check_plan(copies: list[dict[str, Any]]) -> None:
    for c in copies:
        src, dst = c.get("src", ""), c.get("dst", "")
        if not (os.path.isabs(src) and os.path.isabs(dst)) or c.get("format") not in _FORMATS:
            raise KimchiError("KCHVM0017E", path=src or dst, reason="bad copy request")
        if os.path.exists(dst):
            raise KimchiError("KCHVM0017E", path=dst, reason="the target exists already")


def _sizes(copies: list[dict[str, Any]]) -> list[int]:
    out = []
    for c in copies:
        try:
            out.append(max(1, os.stat(c["src"]).st_blocks * 512))
        except OSError as e:
            raise KimchiError("KCHVM0017E", path=c["src"], reason=e.strerror) from None
    return out


def convert_argv(src: str, dst: str, fmt: str, rate: int) -> list[str]:
    """The ``qemu-img convert`` command line of one copy (``rate``: bytes/s, 0 no limit)."""
    argv = [shutil.which("qemu-img") or "qemu-img", "convert", "-p", "-O", fmt]
    if rate > 0:  # [workers] copy_limit_mib: leave I/O to the running VMs
        argv += ["-r", str(rate)]
    if fmt == "qcow2":
        argv += ["-o", "preallocation=off"]
    return [*argv, src, dst]


def run_convert(ctx: JobContext, src: str, dst: str, fmt: str,
             on_percent: Any) -> None:
    """One ``qemu-img convert``, stopped (and its output removed) when the job must stop."""
    argv = convert_argv(src, dst, fmt, int(ctx.params.get("rate_limit") or 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read() if proc.stderr
                                                           else b""), daemon=True)
    reader.start()

    kill_when_stopped(ctx, proc, name="qemu-img-guard")  # even while it prints nothing
    assert proc.stdout is not None
    buf = b""
    try:
        while True:
            chunk = proc.stdout.read1(256) if hasattr(proc.stdout, "read1") else b""
            if not chunk:
                break
            buf = (buf + chunk)[-256:]
            found = _PROGRESS.findall(buf)
            if found:
                on_percent(float(found[-1]))
            ctx.check()
        code = proc.wait()
        ctx.check()  # killed by the guard: say why
    except Stop:
        proc.kill()
        proc.wait()
        raise
    finally:
        reader.join(5)
    if code != 0:
        text = b"".join(errors).decode(errors="replace").strip().splitlines()
        raise KimchiError("KCHVM0017E", path=src, reason=(text[-1] if text else f"exit {code}"))
    flush(dst)  # qemu-img convert leaves its output in the page cache


def flush(path: str) -> None:
    """The file's bytes on the disk (``fsync``): before a copy takes its final name, so
    that no crash can leave the name on a half-written file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def settle(part: str, final: str) -> None:
    """``part`` renamed to ``final``, the rename itself made durable (the folder fsynced)."""
    os.rename(part, final)
    fd = os.open(os.path.dirname(final) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@job("vm.clone.disks")
def copy_disks(ctx: JobContext) -> dict[str, Any]:
    """Copy each ``{src, dst, format}`` of ``copies``; progress weighted by allocated size."""
    copies: list[dict[str, Any]] = ctx.params["copies"]
    _check_plan(copies)
    sizes = _sizes(copies)
    total = sum(sizes)
    done_bytes = 0
    written: list[str] = []
    try:
        for c, size in zip(copies, sizes, strict=True):
            part = c["dst"] + ".part"
            written.append(part)
            name = os.path.basename(c["dst"])

            def report(percent: float, base: int = done_bytes, size: int = size,
                       name: str = name) -> None:
                ctx.progress(100.0 * (base + size * percent / 100) / total,
                             TaskText("Copying {name}: {percent} %", name=name,
                                      percent=f"{percent:.0f}"), disk=name)
                if ctx.fault_delay:  # KIMCHI_FAULT_SLOW_REPORTS, for the tests
                    time.sleep(ctx.fault_delay)

            report(0.0)
            run_convert(ctx, c["src"], part, c["format"], report)
            settle(part, c["dst"])
            written[-1] = c["dst"]
            done_bytes += size
        return {"copied": [c["dst"] for c in copies], "bytes": total,
                "message": TaskText("Copied {count} disk(s)", count=len(copies))}
    except BaseException:
        remove_all(written)  # a cancel or a failure leaves none of its files
        raise


def remove_all(paths: list[str]) -> None:
    """Remove these files, those that are there."""
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


@job("disks.remove")
def remove_copies(ctx: JobContext) -> dict[str, Any]:
    """Remove the files of ``paths`` (copies of a clone that will not be, and their
    ``.part``): those that are there; a folder or a relative path is refused."""
    paths: list[str] = ctx.params["paths"]
    removed = []
    for path in paths:
        if not os.path.isabs(path) or os.path.isdir(path):
            raise KimchiError("KCHVM0017E", path=path, reason="not a disk image's path")
    for path in paths:
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return {"removed": removed,
            "message": TaskText("Removed {count} file(s)", count=len(removed))}
