"""Storage volumes made on the host's disk: downloaded from a URL, wiped, cloned.

Each new file is written to ``<pool dir>/<name>.part`` and renamed into place only once
complete (and verified), so a file that looks finished is finished.  A download taken over
by another worker after a crash (``kill -9``) continues its ``.part`` with an HTTP
``Range`` request; a server that ignores ``Range`` sends the whole file again, from 0.
A cancel, a timeout or a failure removes the ``.part``; an attempt that is lost or
handed back leaves it for the next one.  The daemon refreshes the pool when the task ends.

Every connection of a download goes through :class:`kimchi.outbound.OutboundPolicy`
(``[outbound] allow``, passed by the daemon in ``allow``): each redirection hop is resolved
once, checked, and connected to at the checked address.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import ssl
import subprocess
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

from kimchi.bus.context import JobContext, Stop
from kimchi.bus.jobs import job
from kimchi.bus.text import TaskText
from kimchi.errors import KimchiError
from kimchi.outbound import DestinationRefused, OutboundPolicy
from workers.jobs.disks import run_convert, settle

CHUNK = 1024 * 1024  # bytes read from the server, and written, at a time
TIMEOUT = 30.0  # seconds without a byte from the server before the download fails
MAX_REDIRECTS = 5
_USER_AGENT = "kimchi-volume-download/1"
#: why a job stops that leaves its ``.part`` for the next attempt
_KEEP_FOR_NEXT = ("lost", "handback")


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _free(folder: str) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def human(n: float) -> str:
    """``1.5 GiB``: bytes as a person reads them."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def open_url(url: str, policy: OutboundPolicy, headers: dict[str, str],
             timeout: float = TIMEOUT) -> tuple[http.client.HTTPConnection,
                                                http.client.HTTPResponse, str]:
    """GET ``url``, following redirections, each hop connected through ``policy``; the
    connection, its response (not a redirection) and the URL that answered."""
    for _hop in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url[:100]} is not an http or https URL")
        port = parts.port or (443 if scheme == "https" else 80)
        sock = policy.connect(parts.hostname, port, timeout)
        conn: http.client.HTTPConnection
        if scheme == "https":
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=parts.hostname)
            conn = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout)
        else:
            conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
        conn.sock = sock  # connected here, to the checked address: never connect again
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target, headers=headers)
        resp = conn.getresponse()
        if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
            url = urljoin(url, resp.getheader("Location") or "")
            resp.close()
            conn.close()
            continue
        return conn, resp, url
    raise ValueError(f"more than {MAX_REDIRECTS} redirections")


def _content_range(value: str) -> tuple[int, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000); the total None when ``*``."""
    unit, _, rest = value.strip().partition(" ")
    span, _, total = rest.partition("/")
    first = span.partition("-")[0]
    if unit.lower() != "bytes" or not first.isdigit():
        raise ValueError(f"unreadable Content-Range {value[:60]!r}")
    return int(first), int(total) if total.isdigit() else None


@job("volume.download")
def download(ctx: JobContext) -> dict[str, Any]:
    """Download ``url`` into ``dir``/``name`` (see the module), checking ``checksum``
    (``sha256:<hex>``) when given; progress in bytes and %."""
    p = ctx.params
    name, folder, url = p["name"], p["dir"], p["url"]
    final = os.path.join(folder, name)
    part = final + ".part"
    if os.path.dirname(final) != folder.rstrip("/") or not os.path.isabs(folder):
        raise KimchiError("KCHVOL0010E", name=name, url=url, reason="bad target")
    if os.path.exists(final):
        raise KimchiError("KCHVOL0001E", name=name, pool=p["pool"])
    policy = OutboundPolicy.parse(p.get("allow") or [])
    try:
        got, digest = _fetch(ctx, url, part, folder, name, p["pool"], policy,
                             bool(p.get("checksum")))
        want = str(p.get("checksum") or "")
        if want:
            expected = want.partition(":")[2].lower()
            if digest != expected:
                raise KimchiError("KCHVOL0012E", name=name, expected=want,
                                  actual=f"sha256:{digest}")
        ctx.check()
        settle(part, final)
    except Stop as e:
        if e.why not in _KEEP_FOR_NEXT:  # cancelled, timed out: nothing left behind
            _remove(part)
        raise
    except BaseException:
        _remove(part)
        raise
    ctx.note(100, TaskText("Downloaded {name}: {size}", name=name, size=human(got)), bytes=got,
             total=got)
    return {"name": name, "pool": p["pool"], "path": final, "bytes": got,
            **({"sha256": digest} if digest else {}),
            "message": TaskText("Downloaded {name} ({size})", name=name, size=human(got))}


def _fetch(ctx: JobContext, url: str, part: str, folder: str, name: str, pool: str,
           policy: OutboundPolicy, want_digest: bool) -> tuple[int, str]:
    """Stream ``url`` into ``part``, continuing what an earlier attempt wrote; the bytes
    written and their sha256 (empty unless ``want_digest``)."""
    offset = os.path.getsize(part) if int(ctx.attempt or 1) > 1 and os.path.exists(part) else 0
    headers = {"Accept-Encoding": "identity", "User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        conn, resp, _where = open_url(url, policy, headers)
    except DestinationRefused as e:
        raise KimchiError("KCHVOL0010E", name=name, url=url,
                          reason=f"{e.target} is a {e.kind} address ([outbound] allow)"
                          ) from None
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise KimchiError("KCHVOL0010E", name=name, url=url, reason=str(e) or type(e).__name__
                          ) from None
    try:
        total: int | None
        if resp.status == 206 and offset:
            start, total = _content_range(resp.getheader("Content-Range") or "")
            if start != offset:
                raise KimchiError("KCHVOL0010E", name=name, url=url,
                                  reason=f"asked for byte {offset}, the server sent {start}")
        elif resp.status == 416 and offset:  # the .part is whole already
            total = _content_range(resp.getheader("Content-Range") or "")[1]
            if total != offset:
                raise KimchiError("KCHVOL0010E", name=name, url=url,
                                  reason="the server refuses the range it sent before")
        elif resp.status == 200:
            offset = 0  # the whole file: from the start (a server that ignores Range)
            length = resp.getheader("Content-Length") or ""
            total = int(length) if length.isdigit() else None
        else:
            raise KimchiError("KCHVOL0010E", name=name, url=url,
                              reason=f"HTTP {resp.status} {resp.reason}".strip())
        if total is not None and total - offset > _free(folder):
            raise KimchiError("KCHVOL0011E", name=name, size=total, pool=pool,
                              available=_free(folder) + offset)
        hasher = hashlib.sha256() if want_digest else None
        mode = "r+b" if offset else "wb"
        with open(part, mode) as out:
            out.truncate(offset)
            if hasher is not None and offset:  # what an earlier attempt wrote, hashed again
                out.seek(0)
                while block := out.read(CHUNK):
                    hasher.update(block)
            out.seek(offset)
            report = _Reporter(ctx, name, offset, total)
            report(offset)
            while resp.status != 416:
                block = resp.read1(CHUNK) if hasattr(resp, "read1") else resp.read(CHUNK)
                if not block:
                    break
                if len(block) > _free(folder):  # no Content-Length, or the disk filled up
                    raise KimchiError("KCHVOL0011E", name=name, size=offset + len(block),
                                      pool=pool, available=offset + _free(folder))
                out.write(block)
                if hasher is not None:
                    hasher.update(block)
                offset += len(block)
                if total is not None and offset > total:
                    raise KimchiError("KCHVOL0010E", name=name, url=url,
                                      reason=f"the server sent more than {total} bytes")
                report(offset)
                if ctx.fault_delay:  # KIMCHI_FAULT_SLOW_REPORTS, for the tests
                    time.sleep(ctx.fault_delay)
            out.flush()
            os.fsync(out.fileno())
        if total is not None and offset != total:
            raise KimchiError("KCHVOL0010E", name=name, url=url,
                              reason=f"the connection ended after {offset} of {total} bytes")
        return offset, hasher.hexdigest() if hasher is not None else ""
    except (OSError, http.client.HTTPException) as e:
        raise KimchiError("KCHVOL0010E", name=name, url=url, reason=str(e) or type(e).__name__
                          ) from None
    finally:
        resp.close()
        conn.close()


class _Reporter:
    """Progress in bytes and % (when the size is known), at most every 0.2 s (the context
    throttles what it sends; this keeps the messages' formatting off the hot loop)."""

    def __init__(self, ctx: JobContext, name: str, start: int, total: int | None) -> None:
        self.ctx, self.name, self.total = ctx, name, total
        self.next = 0.0
        self.start = start

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now < self.next and (self.total is None or done < self.total):
            self.ctx.check()
            return
        self.next = now + 0.2
        if self.total:
            self.ctx.progress(100.0 * done / self.total,
                              TaskText("Downloading {name}: {done} of {size}", name=self.name,
                                       done=human(done), size=human(self.total)),
                              bytes=done, total=self.total)
        else:
            self.ctx.progress(None, TaskText("Downloading {name}: {done}", name=self.name,
                                             done=human(done)), bytes=done)


@job("volume.wipe")
def wipe(ctx: JobContext) -> dict[str, Any]:
    """Overwrite the file of ``path`` with zeros, in place; a qcow2 volume is then made an
    empty qcow2 of its ``capacity`` again, so it stays a usable (blank) disk."""
    p = ctx.params
    path, name = p["path"], p["name"]
    if not os.path.isabs(path) or not os.path.isfile(path):
        raise KimchiError("KCHVOL0017E", action="wipe", name=name, reason="not a file")
    size = os.path.getsize(path)
    zeros = bytes(CHUNK)
    done = 0
    with open(path, "r+b") as f:
        while done < size:
            n = min(CHUNK, size - done)
            f.write(zeros[:n])
            done += n
            ctx.progress(100.0 * done / size,
                         TaskText("Wiping {name}: {done} of {size}", name=name,
                                  done=human(done), size=human(size)),
                         bytes=done, total=size)
            if ctx.fault_delay:
                time.sleep(ctx.fault_delay)
        f.flush()
        os.fsync(f.fileno())
    if p.get("format") == "qcow2":
        qemu_img = shutil.which("qemu-img") or "qemu-img"
        made = subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", path,
                               str(int(p["capacity"]))], capture_output=True, text=True,
                              timeout=60)
        if made.returncode != 0:
            raise KimchiError("KCHVOL0017E", action="wipe", name=name,
                              reason=made.stderr.strip() or f"exit {made.returncode}")
    return {"name": name, "pool": p["pool"], "bytes": size,
            "message": TaskText("Wiped {name} ({size})", name=name, size=human(size))}


@job("volume.clone")
def clone(ctx: JobContext) -> dict[str, Any]:
    """Copy ``src`` to ``dst`` in ``format`` with ``qemu-img convert`` through
    ``<dst>.part``."""
    p = ctx.params
    src, dst, name = p["src"], p["dst"], p["name"]
    if not (os.path.isabs(src) and os.path.isabs(dst)) or p["format"] not in ("qcow2", "raw"):
        raise KimchiError("KCHVOL0017E", action="clone", name=name, reason="bad copy request")
    if os.path.exists(dst):
        raise KimchiError("KCHVOL0001E", name=os.path.basename(dst), pool=p["pool"])
    part = dst + ".part"
    target = os.path.basename(dst)

    def report(percent: float) -> None:
        ctx.progress(percent, TaskText("Cloning {name} to {target}: {percent} %", name=name,
                                       target=target, percent=f"{percent:.0f}"))
        if ctx.fault_delay:
            time.sleep(ctx.fault_delay)

    try:
        report(0.0)
        run_convert(ctx, src, part, p["format"], report)
        settle(part, dst)
    except BaseException:
        _remove(part)  # cancelled, failed, or lost: a copy starts again from nothing
        raise
    return {"name": target, "pool": p["pool"], "path": dst, "source": name,
            "message": TaskText("Cloned {name} to {target}", name=name, target=target)}
