"""A VM's disks made into a template's bases: the file work of ``POST /vms/<name>/template``.

For each disk of the (shut off) VM: ``qemu-img convert`` copies it to the template's new
base (``<base>.part``, renamed when complete, then made read-only), and ``qemu-img create``
makes the qcow2 leaf over that base the VM will continue on.  The VM's own files are only
read.  A failure or a cancel removes everything the job wrote, so the VM is left exactly as
it was; the daemon then switches the VM to the leaves in one libvirt call.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from typing import Any

from kimchi.bus.context import JobContext
from kimchi.bus.jobs import job
from kimchi.bus.text import TaskText
from kimchi.errors import KimchiError
from workers.jobs.disks import flush, remove_all, run_convert, settle

_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def _check(disks: list[dict[str, Any]], attempt: int) -> None:
    """Refuse a bad plan, or a base or leaf that is there already: on the first attempt.
    A later attempt's are what the lost one made (the first refused any that were there),
    removed now."""
    for d in disks:
        paths = [d.get("src", ""), d.get("base", ""), d.get("leaf", "")]
        if not all(os.path.isabs(p) for p in paths) or d.get("format") not in ("qcow2", "raw"):
            raise KimchiError("KCHVM0017E", path=paths[0] or "?", reason="bad request")
        if not os.path.isfile(d["src"]):
            raise KimchiError("KCHVM0017E", path=d["src"], reason="the file does not exist")
        for path in paths[1:]:
            if attempt > 1:
                for stale in (path, path + ".part"):
                    if os.path.isfile(stale):
                        os.unlink(stale)
            elif os.path.lexists(path):
                raise KimchiError("KCHVM0017E", path=path, reason="the file exists already")


def make_leaf(base: str, leaf: str) -> None:
    """A qcow2 leaf over ``base`` (a qcow2), at ``leaf``, of the base's size."""
    qemu_img = shutil.which("qemu-img") or "qemu-img"
    done = subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base,
                           leaf], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise KimchiError("KCHVM0017E", path=leaf,
                          reason=lines[-1] if lines else f"exit {done.returncode}")


@job("vm.template.disks")
def make_bases(ctx: JobContext) -> dict[str, Any]:
    """Each ``{src, format, base, leaf}`` of ``disks``: the base copied from ``src``, made
    read-only, and the leaf over it; progress weighted by the disks' allocated sizes."""
    disks: list[dict[str, Any]] = ctx.params["disks"]
    _check(disks, int(ctx.attempt))
    sizes = [max(1, os.stat(d["src"]).st_blocks * 512) for d in disks]
    total = sum(sizes)
    done_bytes = 0
    written: list[str] = []
    try:
        for d, size in zip(disks, sizes, strict=True):
            name = os.path.basename(d["src"])

            def report(percent: float, base: int = done_bytes, size: int = size,
                       name: str = name) -> None:
                ctx.progress(100.0 * (base + size * percent / 100) / total * 0.98,
                             TaskText("Copying {name} to the template's base: {percent} %",
                                      name=name, percent=f"{percent:.0f}"), disk=name)
                if ctx.fault_delay:  # KIMCHI_FAULT_SLOW_REPORTS, for the tests
                    time.sleep(ctx.fault_delay)

            report(0.0)
            part = d["base"] + ".part"
            written.append(part)
            run_convert(ctx, d["src"], part, "qcow2", report)
            os.chmod(part, _READ_ONLY)
            settle(part, d["base"])
            written[-1] = d["base"]
            done_bytes += size
        ctx.progress(99, TaskText("Making the virtual machine's new disks over the bases"))
        for d in disks:
            part = d["leaf"] + ".part"
            written.append(part)
            make_leaf(d["base"], part)
            flush(part)
            settle(part, d["leaf"])
            written[-1] = d["leaf"]
            ctx.check()
        return {"bases": [d["base"] for d in disks], "leaves": [d["leaf"] for d in disks],
                "copied": [d["base"] for d in disks] + [d["leaf"] for d in disks],
                "bytes": total,
                "message": TaskText("Made {count} base(s) and leaves", count=len(disks))}
    except BaseException:
        remove_all(written)  # a cancel or a failure leaves none of its files
        raise
