"""Disk images holding a (very small) system for the OS inspection's tests: a partition
table (GPT, MBR or none) with an ext4 root file system made by ``mkfs.ext4 -d`` from a
folder that has an os-release file, as a distribution's cloud image has."""

from __future__ import annotations

import struct
import subprocess
import uuid
import zlib
from pathlib import Path

MiB = 1 << 20
LINUX_DATA = "0fc63daf-8483-4772-8e79-3d69d8477de4"
EFI_SYSTEM = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"


def make_system_disk(path: Path, os_release: str, table: str = "gpt", fmt: str = "raw",
                     size_mib: int = 48) -> Path:
    """An image at ``path`` whose root file system's /usr/lib/os-release is
    ``os_release`` (/etc/os-release links to it); ``table``: gpt | mbr | none."""
    tree = path.parent / (path.name + ".root")
    (tree / "usr" / "lib").mkdir(parents=True)
    (tree / "etc").mkdir()
    (tree / "usr" / "lib" / "os-release").write_text(os_release)
    (tree / "etc" / "os-release").symlink_to("../usr/lib/os-release")
    raw = path if fmt == "raw" else path.with_suffix(".raw")
    with open(raw, "wb") as f:
        f.truncate(size_mib * MiB)
    root_at = 0 if table == "none" else 8 * MiB
    root_size = size_mib * MiB - root_at - (MiB if table == "gpt" else 0)
    if table == "gpt":  # a small EFI partition first, as cloud images have, then the root
        _gpt(raw, size_mib * MiB, [(EFI_SYSTEM, 1 * MiB, 4 * MiB), (LINUX_DATA, root_at,
                                                                    root_size)])
    elif table == "mbr":
        _mbr(raw, [(0x83, root_at, root_size)])
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", f"offset={root_at}", "-d", str(tree),
                    str(raw), f"{root_size // 1024}k"], check=True, capture_output=True)
    if fmt == "qcow2":
        subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(raw), str(path)],
                       check=True)
        raw.unlink()
    return path


def _mbr(path: Path, parts: list[tuple[int, int, int]]) -> None:
    sector = bytearray(512)
    for i, (kind, start, size) in enumerate(parts):
        entry = 446 + 16 * i
        sector[entry + 4] = kind
        struct.pack_into("<II", sector, entry + 8, start // 512, size // 512)
    sector[510:512] = b"\x55\xaa"
    with open(path, "r+b") as f:
        f.write(sector)


def _gpt(path: Path, disk_size: int, parts: list[tuple[str, int, int]]) -> None:
    """A protective MBR, the primary GPT header at LBA 1 and its entries at LBA 2 (CRCs
    right); no backup header (nothing here reads it)."""
    _mbr(path, [(0xEE, 512, disk_size - 512)])
    entries = bytearray(128 * 128)
    for i, (kind, start, size) in enumerate(parts):
        e = 128 * i
        entries[e:e + 16] = uuid.UUID(kind).bytes_le
        entries[e + 16:e + 32] = uuid.uuid4().bytes_le
        struct.pack_into("<QQ", entries, e + 32, start // 512, (start + size) // 512 - 1)
    last_lba = disk_size // 512 - 1
    header = bytearray(92)
    struct.pack_into("<8sIIIIQQQQ16sQIII", header, 0, b"EFI PART", 0x00010000, 92, 0, 0,
                     1, last_lba, 34, last_lba - 33, uuid.uuid4().bytes_le, 2, 128, 128,
                     zlib.crc32(entries))
    struct.pack_into("<I", header, 16, zlib.crc32(header))
    with open(path, "r+b") as f:
        f.seek(512)
        f.write(header)
        f.seek(1024)
        f.write(entries)
