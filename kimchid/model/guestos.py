"""Which operating system a disk image holds, read from the image itself.

The root file system's ``/etc/os-release`` (or ``/usr/lib/os-release``, which the first
often links to) names the distribution and its version, as ``ID`` and ``VERSION_ID``.
It is read without mounting anything and without booting the image:

* a qcow2 image is seen as raw bytes through ``qemu-storage-daemon``'s FUSE export (a
  read-only file the size of the disk; the image is opened read-only and unlocked, so
  a base in use is read too); a raw image is read as it is;
* its partition table (GPT or MBR; none: the whole disk is the file system) gives the
  partitions; each ext2/3/4 file system among them (the root of Debian's and Ubuntu's
  cloud images, and of most hand-made ones) is asked for the file with ``debugfs``,
  which reads the image at the partition's offset.

Other root file systems (XFS, Btrfs: Fedora's, RHEL's, Rocky's cloud images), LVM and
encrypted disks are not read here: the template's OS then comes from the image's file
name (:func:`kimchid.model.images.guess_os`) or from the user.  Everything here blocks
(a thread's work) and gives up after :data:`TIMEOUT` seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from twisted.logger import Logger

log = Logger()

TIMEOUT = 20.0  # seconds for the whole look, the FUSE export's start included
_SECTOR = 512
_EXT_MAGIC_AT = 1024 + 56  # the superblock's s_magic
_EXT_MAGIC = 0xEF53
_MBR_LINUX = {0x83}
_MBR_EXTENDED = {0x05, 0x0F, 0x85}
# GPT partition types that may hold a root file system (Linux data, x86-64/arm64 root)
_GPT_ROOTS = {"0fc63daf-8483-4772-8e79-3d69d8477de4", "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
              "b921b045-1df0-41c3-af44-4c6f280d3fae", "44479540-f297-41b2-9af7-d131d5f0458a"}
_RELEASE_FILES = ("/etc/os-release", "/usr/lib/os-release")
# os-release IDs -> the distribution names of kimchi's templates (osinfo.py)
_DISTROS = {"debian": "debian", "ubuntu": "ubuntu", "fedora": "fedora", "centos": "centos",
            "rocky": "rocky", "almalinux": "almalinux", "rhel": "rhel", "alpine": "alpine",
            "opensuse-leap": "opensuse", "opensuse-tumbleweed": "opensuse", "sles": "sles",
            "arch": "arch", "gentoo": "gentoo"}


def identify(path: str, fmt: str) -> tuple[str, str] | None:
    """(distribution, version) of the system on the image at ``path``, or None when it
    cannot be read here (a file system not read, no os-release, tools missing)."""
    if fmt not in ("qcow2", "raw") or shutil.which("debugfs") is None:
        return None
    deadline = time.monotonic() + TIMEOUT
    try:
        with _raw_view(path, fmt, deadline) as raw:
            for offset in _filesystems(raw):
                text = _release_text(raw, offset, deadline)
                if text is not None:
                    return parse_os_release(text)
    except (OSError, subprocess.SubprocessError, TimeoutError) as e:
        log.info("the OS of {path} cannot be read from the image: {e}", path=path, e=str(e))
    return None


def parse_os_release(text: str) -> tuple[str, str] | None:
    """(distribution, version) from an os-release file's ``ID`` and ``VERSION_ID`` (a
    rolling distribution without a version: "latest"), or None without an ``ID``."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            fields[key] = value.strip().strip("\"'")
    ident = fields.get("ID", "").lower()
    if not ident:
        return None
    distro = _DISTROS.get(ident)
    if distro is None:  # a derivative: the family it says it is like
        like = [_DISTROS[w] for w in fields.get("ID_LIKE", "").lower().split() if w in _DISTROS]
        distro = like[0] if like else ident
    version = fields.get("VERSION_ID") or "latest"
    if distro in ("debian", "centos", "rocky", "almalinux", "rhel"):
        version = version.split(".")[0] if distro != "rhel" else version
    return distro, version


@contextmanager
def _raw_view(path: str, fmt: str, deadline: float) -> Iterator[str]:
    """A path whose bytes are the disk's, as long as the ``with`` lasts."""
    if fmt == "raw":
        yield path
        return
    qsd = shutil.which("qemu-storage-daemon")
    if qsd is None or not os.path.exists("/dev/fuse"):
        raise OSError("qemu-storage-daemon or /dev/fuse is missing")
    with tempfile.TemporaryDirectory(prefix="kimchi-inspect-") as tmp:
        mountpoint = os.path.join(tmp, "disk")
        open(mountpoint, "wb").close()  # a FUSE export is mounted over a regular file
        argv = [qsd,
                "--blockdev", f"driver=file,node-name=file,filename={_opt(path)},"
                              "read-only=on,locking=off",
                "--blockdev", "driver=qcow2,node-name=disk,file=file,read-only=on",
                "--export", f"type=fuse,id=view,node-name=disk,mountpoint={_opt(mountpoint)},"
                            "writable=off"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            while not _mounted(mountpoint):
                if proc.poll() is not None:
                    err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")
                    raise OSError(f"qemu-storage-daemon: {err.strip() or 'exited'}")
                if time.monotonic() > deadline:
                    raise TimeoutError("qemu-storage-daemon did not export the image")
                time.sleep(0.02)
            yield mountpoint
        finally:
            proc.terminate()  # unmounts its export as it stops
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


def _opt(value: str) -> str:
    """A value inside a QEMU option string (its commas doubled)."""
    return value.replace(",", ",,")


def _mounted(mountpoint: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == mountpoint for line in f)


def _filesystems(raw: str) -> list[int]:
    """Byte offsets of the ext2/3/4 file systems on the disk, the largest partition
    first (the root, rather than /boot)."""
    with open(raw, "rb") as f:
        head = f.read(34 * _SECTOR)
        candidates = _gpt(f, head) or _mbr(f, head) or [(0, 0)]
        found = []
        for offset, size in candidates:
            f.seek(offset + _EXT_MAGIC_AT)
            magic = f.read(2)
            if len(magic) == 2 and struct.unpack("<H", magic)[0] == _EXT_MAGIC:
                found.append((size, offset))
    return [offset for _, offset in sorted(found, reverse=True)]


def _gpt(f: object, head: bytes) -> list[tuple[int, int]]:
    if head[_SECTOR:_SECTOR + 8] != b"EFI PART":
        return []
    entries_lba, count, entry_size = struct.unpack_from("<QII", head, _SECTOR + 72)
    if not 128 <= entry_size <= 4096 or count > 1024:
        return []
    assert hasattr(f, "seek") and hasattr(f, "read")
    f.seek(entries_lba * _SECTOR)
    table = f.read(count * entry_size)
    out = []
    for i in range(len(table) // entry_size):
        entry = table[i * entry_size:(i + 1) * entry_size]
        kind = _guid(entry[:16])
        first, last = struct.unpack_from("<QQ", entry, 32)
        if kind in _GPT_ROOTS and last >= first:
            out.append((first * _SECTOR, (last - first + 1) * _SECTOR))
    return out


def _guid(raw: bytes) -> str:
    a, b, c = struct.unpack_from("<IHH", raw)
    return f"{a:08x}-{b:04x}-{c:04x}-{raw[8:10].hex()}-{raw[10:16].hex()}"


def _mbr(f: object, head: bytes) -> list[tuple[int, int]]:
    if head[510:512] != b"\x55\xaa":
        return []
    out = []
    for i in range(4):
        kind = head[446 + 16 * i + 4]
        start, sectors = struct.unpack_from("<II", head, 446 + 16 * i + 8)
        if kind in _MBR_LINUX and sectors:
            out.append((start * _SECTOR, sectors * _SECTOR))
        elif kind in _MBR_EXTENDED:
            out.extend(_logical(f, start))
    return out


def _logical(f: object, extended: int) -> list[tuple[int, int]]:
    """The logical partitions of an MBR extended partition (its chain of EBRs)."""
    assert hasattr(f, "seek") and hasattr(f, "read")
    out: list[tuple[int, int]] = []
    ebr = extended
    for _ in range(64):
        f.seek(ebr * _SECTOR)
        sector = f.read(_SECTOR)
        if len(sector) < _SECTOR or sector[510:512] != b"\x55\xaa":
            break
        kind = sector[446 + 4]
        start, sectors = struct.unpack_from("<II", sector, 446 + 8)
        if kind in _MBR_LINUX and sectors:
            out.append(((ebr + start) * _SECTOR, sectors * _SECTOR))
        nxt = struct.unpack_from("<I", sector, 446 + 16 + 8)[0]
        if not nxt:
            break
        ebr = extended + nxt
    return out


def _release_text(raw: str, offset: int, deadline: float) -> str | None:
    """The os-release file of the ext file system at ``offset``, or None."""
    debugfs = shutil.which("debugfs") or "debugfs"
    device = f"{raw}?offset={offset}" if offset else raw
    for name in _RELEASE_FILES:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("reading the image took too long")
        done = subprocess.run([debugfs, "-R", f"cat {name}", device], capture_output=True,
                              timeout=left, stdin=subprocess.DEVNULL, check=False)
        text = done.stdout.decode("utf-8", errors="replace")
        if done.returncode == 0 and "ID=" in text:
            return text
    return None
