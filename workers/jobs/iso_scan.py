"""The deep ISO scan: walk a tree, identify every ``*.iso``, add it to the library.

The walk itself runs in GNU ``find`` (C, the speed of the reference), which
streams one token per entry to the worker: counts for the progress, the paths
of ``*.iso`` files and of symlinks.  Python identifies each ISO from a few
sectors of its volume descriptors while ``find`` goes on.  Directory symlinks
are followed once each, by (device, inode), each with a ``find`` of its own, so
symlink loops end; ``/proc``, ``/sys`` and ``/dev`` are never entered.  Without
GNU find the same walk runs in Python (``os.scandir``).  Finds are reported
through the task (once per task, even when the job is re-run after a worker died).
"""

from __future__ import annotations

import functools
import os
import re
import selectors
import shutil
import stat
import subprocess
import time
from typing import Any

from kimchi import isoinfo
from kimchi.bus import ISOS, LOCAL_HOST, library_field
from kimchi.bus.context import JobContext, Stop
from kimchi.bus.jobs import job
from kimchi.bus.text import TaskText
from kimchi.scanpaths import check_scan_path

PSEUDO_FS = ("/proc", "/sys", "/dev")

# One NUL-terminated token per entry: D<links> a folder, I<path> a regular *.iso file,
# L<path> a symlink, S something else named *.iso, and an empty token for the rest.
# No shell: find gets these as argv.  Only a scan of / can meet /proc, /sys or /dev
# (the daemon refuses roots below them, and resolved symlinks are checked here), so
# only then are they pruned: the test costs find a third of its time.
FIND_PRUNE = ["(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/dev", ")",
              "-prune", "-o"]
FIND_EXPRESSION = [  # plain files first (most entries); a bracket class is cheaper than -iname
    "-type", "f", "(", "-name", "*.[iI][sS][oO]", "-printf", r"I%p\0", "-o", "-printf", r"\0",
    ")", "-o",
    "-type", "d", "-printf", r"D%n\0", "-o",
    "-type", "l", "-printf", r"L%p\0", "-o",
    "-name", "*.[iI][sS][oO]", "-printf", r"S\0", "-o",  # a FIFO or device named *.iso
    "-printf", r"\0",
]
# a token that is not empty starts right after a NUL (or at the start of a chunk)
_TOKEN = re.compile(rb"(?:^|(?<=\0))([DILS])([^\0]*)")


@functools.cache
def gnu_find() -> str | None:
    """The path of GNU find (it has -printf), or None."""
    path = shutil.which("find")
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if b"GNU findutils" in out else None


def _excluded(path: str) -> bool:
    """True for /proc, /sys, /dev and anything below them (for resolved symlinks)."""
    return any(path == p or path.startswith(p + "/") for p in PSEUDO_FS)


class _Scan:
    def __init__(self, ctx: JobContext, root: str) -> None:
        self.ctx = ctx
        self.root = root
        self.files = 0
        self.dirs = 0
        self.dirs_found = 1
        self.isos = 0
        self.skipped = 0
        self.unreadable_dirs = 0
        self.bytes = 0
        self.found: set[str] = set()  # real paths, so one image behind two links counts once
        self.paths: set[str] = set()  # library entries made by this run
        self.host: str = ctx.params.get("host", LOCAL_HOST)  # the host whose disk this is
        self.seen_dirs: set[tuple[int, int]] = set()
        self.next_report = 0.0

    def details(self) -> dict[str, Any]:
        return {"path": self.root, "files": self.files, "dirs": self.dirs, "isos": self.isos,
                "skipped": self.skipped, "unreadable_dirs": self.unreadable_dirs,
                "bytes": self.bytes}

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self.next_report:
            return
        self.next_report = now + 0.1
        self.ctx.progress(self.percent(), self.summary(), **self.details())

    def percent(self) -> float | None:
        """Estimate: the share of the folders found so far that have been walked."""
        if self.dirs_found < 8:
            return None
        return min(99.0, 100.0 * self.dirs / self.dirs_found)

    def counts(self) -> dict[str, int]:
        """The values of the scan's messages."""
        return {"files": self.files, "dirs": self.dirs, "isos": self.isos,
                "skipped": self.skipped}

    def summary(self) -> TaskText:
        return TaskText("Scanned {files} files in {dirs} folders, {isos} ISO images found",
                        **self.counts())

    def walk(self) -> None:
        # The hot loop of a scan (100,000 entries in a fraction of a second): counters in
        # locals, one C call for a plain file, the name test cheapest first.  A real
        # folder can only be /proc, /sys or /dev itself (below the root nothing of theirs
        # is ever pushed), so one set lookup per folder excludes them.
        st = os.stat(self.root)
        self.seen_dirs.add((st.st_dev, st.st_ino))
        stack = [self.root]
        push = stack.append
        scandir = os.scandir
        pseudo = frozenset(PSEUDO_FS)
        ctx = self.ctx
        files = dirs = 0
        dirs_found = 1
        while stack:
            top = stack.pop()
            try:
                it = scandir(top)
            except OSError:
                self.unreadable_dirs += 1
                dirs += 1
                continue
            with it:
                for entry in it:
                    try:
                        if entry.is_file(follow_symlinks=False):
                            files += 1
                            name = entry.name
                            if name[-1] in "oO" and name[-4:].lower() == ".iso" and len(name) > 4:
                                self._probe(entry.path, entry.path)
                            elif files & 0xFFF == 0:
                                ctx.check()  # a folder of a million files stops in time
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            path = entry.path
                            if path not in pseudo:
                                push(path)
                                dirs_found += 1
                            continue
                        if entry.is_symlink():
                            self.files, self.dirs_found = files, dirs_found
                            self._symlink(entry, stack)
                            files, dirs_found = self.files, self.dirs_found
                            continue
                    except OSError:
                        self.skipped += 1
                        continue
                    files += 1  # a FIFO, socket or device: counted, never opened
                    if entry.name.lower().endswith(".iso"):
                        self.skipped += 1
            dirs += 1
            self.files, self.dirs, self.dirs_found = files, dirs, dirs_found
            ctx.check()
            self.report()  # at most every 0.1 s
        self.files, self.dirs, self.dirs_found = files, dirs, dirs_found

    def walk_with_find(self, find: str) -> None:
        st = os.stat(self.root)
        self.seen_dirs.add((st.st_dev, st.st_ino))
        self.dirs_found = 0  # the root's own D token counts it
        roots = [self.root]
        while roots:
            self._find(find, roots.pop(), roots)

    def _find(self, find: str, top: str, roots: list[str]) -> None:
        expression = FIND_PRUNE + FIND_EXPRESSION if top == "/" else FIND_EXPRESSION
        # -H: a starting point that is a link (a linked folder) is followed; nothing below
        proc = subprocess.Popen([find, "-H", top, *expression], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.fileno(), proc.stderr.fileno()
        sel = selectors.DefaultSelector()
        sel.register(out, selectors.EVENT_READ)
        sel.register(err, selectors.EVENT_READ)
        rest = b""
        try:
            open_streams = 2
            while open_streams:
                for key, _ in sel.select(timeout=0.1):
                    data = os.read(key.fd, 1 << 17)
                    if not data:
                        sel.unregister(key.fd)
                        open_streams -= 1
                    elif key.fd == err:
                        self.unreadable_dirs += data.count(b"\n")  # "Permission denied"
                    else:
                        data = rest + data
                        cut = data.rfind(b"\0")
                        rest = data[cut + 1:]
                        if cut >= 0:
                            self._tokens(data[:cut], roots)
                self.ctx.check()
                self.report()
            proc.wait()
        finally:
            sel.close()
            if proc.poll() is None:  # cancelled: stop find too
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()

    def _tokens(self, chunk: bytes, roots: list[str]) -> None:
        """Count and act on a run of whole tokens (the NUL after the last one cut off)."""
        entries = chunk.count(b"\0") + 1
        named = 0
        for m in _TOKEN.finditer(chunk):  # a few hundred in 100,000 entries: C does the rest
            named += 1
            kind, rest = m.group(1), m.group(2)
            if kind == b"D":
                self.dirs += 1
                links = int(rest or b"0")
                if links > 2:  # a folder's links: 2 + its subfolders (when the fs says so)
                    self.dirs_found += links - 2
            elif kind == b"I":
                self.files += 1
                path = os.fsdecode(rest)
                self._probe(path, path)
            elif kind == b"S":
                self.files += 1
                self.skipped += 1  # counted, never opened
            else:
                self._symlink_path(os.fsdecode(rest), roots)
        self.files += entries - named
        self.dirs_found = max(self.dirs_found, self.dirs)

    def _symlink_path(self, path: str, roots: list[str]) -> None:
        try:
            st = os.stat(path)  # follows the link
        except OSError:
            self.skipped += 1  # dangling
            return
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key not in self.seen_dirs and not _excluded(os.path.realpath(path)):
                self.seen_dirs.add(key)
                roots.append(path)
            return
        self.files += 1
        if path.lower().endswith(".iso") and stat.S_ISREG(st.st_mode):
            self._probe(path, os.path.realpath(path))

    def _symlink(self, entry: os.DirEntry[str], stack: list[str]) -> None:
        try:
            st = os.stat(entry.path)  # follows the link
        except OSError:
            self.skipped += 1  # dangling
            return
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            real = os.path.realpath(entry.path)
            if key not in self.seen_dirs and not _excluded(real):
                self.seen_dirs.add(key)
                stack.append(entry.path)
                self.dirs_found += 1
            return
        self.files += 1
        if entry.name.lower().endswith(".iso") and stat.S_ISREG(st.st_mode):
            self._probe(entry.path, os.path.realpath(entry.path))

    def _probe(self, path: str, real: str) -> None:
        try:
            flags = os.O_RDONLY | os.O_NONBLOCK | (os.O_NOFOLLOW if path == real else 0)
            fd = os.open(path, flags)
        except OSError:
            self.skipped += 1
            return
        try:
            size = os.fstat(fd).st_size
            info = isoinfo.probe_fd(fd)
        except (isoinfo.NotAnIso, OSError):
            self.skipped += 1
            return
        finally:
            os.close(fd)
        self.bytes += size
        if real in self.found:
            return  # the same image through another link
        self.found.add(real)
        self.paths.add(library_field(self.host, path))
        self.isos += 1
        record = {
            "name": os.path.basename(path),
            "path": path,
            "size": size,
            "os_distro": info.os_distro,
            "os_version": info.os_version,
            "bootable": info.bootable,
            "volume_id": info.volume_id,
            "found_by": "scan",
        }
        if self.host != LOCAL_HOST:
            record["host"] = self.host
        self.ctx.found(real, "iso.found", {**record, "task": self.ctx.task_id},
                       library=(ISOS, library_field(self.host, path), record))
        self.report()


@job("iso.scan")
def deep_scan(ctx: JobContext) -> dict[str, Any]:
    check_scan_path(ctx.params["path"])  # here, on the host whose folder it is
    root = os.path.normpath(ctx.params["path"])
    scan = _Scan(ctx, root)
    scan.report(force=True)
    find = gnu_find()
    try:
        if find and not ctx.params.get("python_walk"):
            scan.walk_with_find(find)
        else:
            scan.walk()
    except FileNotFoundError:
        pass  # the folder went away mid-scan: report what was seen
    except Stop:
        # cancelled or stopping: the task keeps the counts of what was done
        ctx.note(scan.percent(), TaskText("Scanned {files} files in {dirs} folders, {isos} "
                                          "ISO images found (stopped)", **scan.counts()),
                 **scan.details())
        raise
    removed: list[str] = []
    if ctx.params.get("prune", True):
        ctx.progress(scan.percent(), TaskText(
            "Scanned {files} files in {dirs} folders, {isos} ISO images found; removing the "
            "ISO images no longer there from the library", **scan.counts()), **scan.details())
        removed = ctx.prune(ISOS, library_field(scan.host, root), scan.paths)
    details = scan.details()
    ctx.progress(100.0, TaskText("Scanned {files} files, {isos} ISO images found",
                                 **scan.counts()), **details)
    return {
        **details,
        "removed": len(removed),
        "message": TaskText("Found {isos} ISO images in {files} files ({skipped} skipped)",
                            **scan.counts()),
    }
