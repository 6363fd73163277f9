"""Debug reports: the host's logs and configuration collected by ``sos report``.

The tool runs in a working folder of its own, ``<reports>/.work/<name>.<attempt>``, in a
session of its own (so a cancel stops the commands its plugins started) and
under :mod:`~kimchi.orphan_guard` (so a killed worker does not leave
it running).  Its archive is checked against the MD5 sum it printed, then
renamed to ``<reports>/<name>.tar.xz``: a report that is listed is complete.
A failed or cancelled attempt removes its working folder; the next attempt of
the same task starts by removing what a lost attempt left (in a folder of its
own: a lost attempt's tool may take seconds to obey its SIGTERM).  No argument comes
from the user: the report's name only ever names kimchi's own files.

A report of a host other than the daemon's (``upload``: the job of a
``debugreport.fetch`` on the daemon) is made in a folder of the worker's own, sent over
the bus (:meth:`JobContext.upload`) and removed here; the daemon keeps it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kimchi.bus.context import JobContext, Stop, kill_when_stopped
from kimchi.bus.jobs import job
from kimchi.bus.text import TaskText
from kimchi.errors import KimchiError
from kimchi.reports import KIND, NAME, SUFFIXES, report_file

PLUGIN = re.compile(r"[a-z0-9_]{1,64}")

_STARTING = re.compile(rb"Starting (\d+)/(\d+)\s+(\S+)")
_FINISHING = re.compile(rb"Finish(?:ed|ing) (?:running )?plugins")
_ARCHIVE = re.compile(rb"Creating compressed archive")


def tool() -> list[str]:
    """The command that writes a report: ``sos report`` (sos 4), else ``sosreport``."""
    sos = shutil.which("sos")
    if sos:
        return [sos, "report"]
    old = shutil.which("sosreport")
    if old:
        return [old]
    raise KimchiError("KCHDR0005E")


def _plan(params: dict[str, Any]) -> tuple[str, Path, list[str]]:
    name, reports = params.get("name", ""), params.get("dir", "")
    plugins = params.get("plugins") or []
    if params.get("upload"):  # made here, for the daemon on another host
        reports = os.path.join(tempfile.gettempdir(), f"kimchi-debugreports-{os.getuid()}")
        os.makedirs(reports, mode=0o700, exist_ok=True)
    if not NAME.fullmatch(name) or not os.path.isabs(reports):
        raise KimchiError("KCHDR0006E", name=name, error="bad request")
    if not all(isinstance(p, str) and PLUGIN.fullmatch(p) for p in plugins):
        raise KimchiError("KCHDR0006E", name=name, error=f"bad plugin list {plugins!r}")
    return name, Path(reports), list(plugins)


def _result(path: Path, name: str) -> dict[str, Any]:
    st = path.stat()
    return {"name": name, "file": path.name, "size": st.st_size,
            "uri": f"/debugreports/{name}",
            "message": TaskText("Debug report {name} is ready", name=name)}


def _argv(work: Path, plugins: list[str]) -> list[str]:
    argv = [sys.executable, "-m", "kimchi.orphan_guard", *tool(),
            "--batch", "--tmp-dir", str(work), "--label", "kimchi"]
    if plugins:  # [debugreports] plugins: only these (faster, smaller)
        argv += ["--only-plugins", ",".join(plugins)]
    return argv


def _run(ctx: JobContext, argv: list[str], work: Path) -> None:
    """Run the tool, passing its plugin count on as progress; stopped on a cancel."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=work, start_new_session=True,
                            env={**os.environ, "LC_ALL": "C.UTF-8"})

    def kill() -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # sos and the commands of its plugins
        except ProcessLookupError:
            pass

    kill_when_stopped(ctx, proc, kill, name="sos-guard")  # even while sos prints nothing
    tail: list[bytes] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            tail = (tail + [line.strip()])[-20:]
            if m := _STARTING.search(line):
                done, total = int(m.group(1)), max(1, int(m.group(2)))
                plugin = m.group(3).decode(errors="replace")
                ctx.progress(5 + 80 * (done - 1) / total,
                             TaskText("Collecting {plugin} ({done} of {total})",
                                      plugin=plugin, done=done, total=total),
                             plugin=plugin, plugins_done=done - 1, plugins=total)
                if ctx.fault_delay:  # KIMCHI_FAULT_SLOW_REPORTS, for the tests
                    time.sleep(ctx.fault_delay)
            elif _FINISHING.search(line):
                ctx.progress(85, TaskText("Finishing the plugins"))
            elif _ARCHIVE.search(line):
                ctx.progress(90, TaskText("Compressing the report"))
            ctx.check()
        code = proc.wait()
        ctx.check()  # killed by the guard: say why
    except Stop:
        kill()
        proc.wait()
        raise
    if code != 0:
        said = [t.decode(errors="replace") for t in tail if t]
        raise KimchiError("KCHDR0006E", name=work.name,
                          error=said[-1] if said else f"{argv[3]} exited with {code}")


def _archive(work: Path) -> Path:
    """The one archive sos wrote into ``work``, its MD5 sum checked when it printed one."""
    found = [p for p in work.iterdir() if p.name.startswith("sosreport-")
             and p.name.endswith(SUFFIXES) and p.is_file()]
    if len(found) != 1:
        raise KimchiError("KCHDR0006E", name=work.name,
                          error=f"expected one archive, found {len(found)}")
    archive = found[0]
    summed = archive.with_name(archive.name + ".md5")
    if summed.is_file():
        want = summed.read_text().split()[0].strip().lower()
        md5 = hashlib.md5(usedforsecurity=False)
        with open(archive, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                md5.update(chunk)
        if md5.hexdigest() != want:
            raise KimchiError("KCHDR0006E", name=work.name, error="the archive is damaged")
    return archive


@job(KIND)
def collect(ctx: JobContext) -> dict[str, Any]:
    """Collect a report into ``<dir>/<name>.<tar suffix>`` (or, to ``upload`` it, into a
    folder of the worker's own, sent over the bus, then removed)."""
    name, reports, plugins = _plan(ctx.params)
    if not ctx.params.get("upload"):
        return _collect(ctx, name, reports, plugins)
    made = _collect(ctx, name, reports, plugins)
    path = reports / made["file"]
    try:
        ctx.progress(99, TaskText("Sending debug report {name}", name=name))
        return {**made, "upload": ctx.upload(str(path))}
    finally:
        path.unlink(missing_ok=True)


def _collect(ctx: JobContext, name: str, reports: Path, plugins: list[str]) -> dict[str, Any]:
    done = report_file(reports, name)
    if done is not None:  # a lost attempt got as far as the rename
        _sweep(reports, name)
        return _result(done, name)
    _sweep(reports, name)  # what lost attempts left (their tool may still be exiting)
    attempt = re.sub(r"\W", "", str(ctx.attempt)) or "0"
    work = reports / ".work" / f"{name}.{attempt}"
    work.mkdir(parents=True, mode=0o700)
    try:
        ctx.progress(1, TaskText("Starting the report tool"))
        _run(ctx, _argv(work, plugins), work)
        archive = _archive(work)
        suffix = next(s for s in SUFFIXES if archive.name.endswith(s))
        final = reports / f"{name}{suffix}"
        os.chmod(archive, 0o600)
        os.rename(archive, final)  # the same file system: listed only when complete
        return _result(final, name)
    finally:
        _sweep(reports, name)


def _sweep(reports: Path, name: str) -> None:
    """Remove the working folders of every attempt at ``name`` (``.work/<name>.<attempt>``:
    a name has no dot, so no other report's folders match)."""
    for path in (reports / ".work").glob(f"{name}.*"):
        shutil.rmtree(path, ignore_errors=True)
