"""Disk images a template can be made from: what they are, and which OS they hold.

A template of ``source_media {"type": "image"}`` uses a qcow2 or raw disk image as
the read-only base of its VMs' disks.  Before one is accepted it is looked at:

* a file on this machine (the daemon's host) with ``qemu-img info``;
* a storage volume of another host through that host's libvirtd (its pool knows the
  format and size; the first sectors of a raw one are read through a libvirt stream).

A base must stand on its own (no backing file of its own: kimchi declares each VM's
backing chain in its XML, one level deep), and a raw file must look like a disk (a
partition table or a boot sector): every file is a valid "raw image" to qemu-img, so
without that check a text file would make a template.  ISO images are install media:
they make templates of ``type: disk``.

Which OS an image holds is read from the image's own root file system where it can be
(an image of this host: :mod:`kimchid.model.guestos`), else from its file name, as the
distributions name their cloud images (``debian-12-generic-amd64.qcow2``,
``Fedora-Cloud-Base-39-1.5...``, ``jammy-server-cloudimg-amd64.img``); a user's
``os_distro``/``os_version`` win.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from kimchi import isoinfo
from kimchi.errors import InvalidOperation, InvalidRequest

FORMATS = ("qcow2", "raw")
_SECTOR = 512


@dataclass(frozen=True)
class Image:
    path: str
    format: str  # qcow2 | raw
    virtual_size: int  # bytes


def _refuse(path: str, why: str) -> InvalidOperation:
    return InvalidOperation("KCHTMPL0020E", path=path, reason=why)


def _looks_like_disk(head: bytes) -> bool:
    """A raw disk begins with a boot sector (0x55AA at 510) or a GPT header at 512."""
    return (len(head) >= _SECTOR and head[510:512] == b"\x55\xaa") or \
        head[_SECTOR:_SECTOR + 8] == b"EFI PART"


def inspect_file(path: str) -> Image:
    """A local file as a base image, or KCHTMPL0020E saying why not (blocking)."""
    if not os.path.isabs(path):
        raise InvalidRequest("KCHTMPL0004E", path=path)
    try:
        with open(path, "rb") as f:
            head = f.read(2 * _SECTOR)
    except FileNotFoundError:
        raise _refuse(path, "no such file") from None
    except IsADirectoryError:
        raise _refuse(path, "it is a folder") from None
    except OSError as e:
        raise _refuse(path, e.strerror or "it cannot be read") from None
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise _refuse(path, "qemu-img is not installed on this host")
    # -U: a base in use by running VMs is read without taking its lock
    done = subprocess.run([qemu_img, "info", "-U", "--output=json", path],
                          capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise _refuse(path, lines[-1] if lines else "qemu-img cannot read it")
    info: dict[str, Any] = json.loads(done.stdout)
    return _checked(path, info.get("format", ""), int(info.get("virtual-size") or 0),
                    info.get("backing-filename"), head)


def _checked(path: str, fmt: str, size: int, backing: str | None, head: bytes) -> Image:
    if fmt not in FORMATS:
        raise _refuse(path, f"a {fmt or 'unknown'} image: only qcow2 and raw ones are bases")
    if backing:
        raise _refuse(path, f"it has a backing file of its own ({backing}): make a "
                            "standalone copy first (qemu-img convert)")
    if fmt == "raw":
        if _is_iso(path):
            raise _refuse(path, "an ISO-9660 image is install media: make the template "
                                "from it with source_media type disk")
        if not _looks_like_disk(head):
            raise _refuse(path, "not a disk image (a raw image begins with a partition "
                                "table or a boot sector)")
    if size <= 0:
        raise _refuse(path, "its virtual size is zero")
    return Image(path, fmt, size)


def _is_iso(path: str) -> bool:
    try:
        isoinfo.probe_file(path)
        return True
    except Exception:
        return False


def inspect_volume(conn: Any, path: str) -> Image:
    """A storage volume of ``conn``'s host as a base image (blocking: libvirt thread)."""
    import libvirt

    if not os.path.isabs(path):
        raise InvalidRequest("KCHTMPL0004E", path=path)
    try:
        vol = conn.storageVolLookupByPath(path)
    except libvirt.libvirtError:
        raise _refuse(path, "it is no storage volume of that host (refresh its pool if "
                            "the file is new)") from None
    root = ET.fromstring(vol.XMLDesc(0))
    fmt_el = root.find("target/format")
    fmt = fmt_el.get("type", "") if fmt_el is not None else "raw"
    backing = root.findtext("backingStore/path")
    _kind, capacity, _alloc = vol.info()
    head = b""
    if fmt == "raw":
        stream = conn.newStream(0)
        try:
            vol.download(stream, 0, 2 * _SECTOR, 0)
            while len(head) < 2 * _SECTOR:
                got = stream.recv(2 * _SECTOR - len(head))
                if not isinstance(got, bytes) or not got:
                    break
                head += got
            stream.finish()
        except libvirt.libvirtError as e:
            stream.abort()
            raise _refuse(path, e.get_error_message()) from None
        if not _looks_like_disk(head):
            raise _refuse(path, "not a disk image (a raw image begins with a partition "
                                "table or a boot sector)")
        return Image(path, "raw", int(capacity))
    return _checked(path, fmt, int(capacity), backing, head)


# distribution -> how its cloud images are named; version from the name or a code name
_CODENAMES = {"focal": ("ubuntu", "20.04"), "jammy": ("ubuntu", "22.04"),
              "noble": ("ubuntu", "24.04"), "bionic": ("ubuntu", "18.04"),
              "bookworm": ("debian", "12"), "bullseye": ("debian", "11"),
              "trixie": ("debian", "13"), "buster": ("debian", "10")}
_NAMED = (
    (re.compile(r"ubuntu[-_]?(\d{2}\.\d{2})", re.I), "ubuntu"),
    (re.compile(r"debian[-_]?(\d{1,2})(?!\d)", re.I), "debian"),
    (re.compile(r"fedora[-_a-z]*?[-_](\d{2})(?!\d)", re.I), "fedora"),
    (re.compile(r"centos[-_a-z]*?[-_]?(\d{1,2})(?!\d)", re.I), "centos"),
    (re.compile(r"rocky[-_a-z]*?[-_]?(\d{1,2}(?:\.\d+)?)", re.I), "rocky"),
    (re.compile(r"alma[a-z]*[-_a-z]*?[-_]?(\d{1,2}(?:\.\d+)?)", re.I), "almalinux"),
    (re.compile(r"opensuse[-_a-z]*?[-_]?(\d{2}\.\d)", re.I), "opensuse"),
    (re.compile(r"(?:rhel|redhat)[-_a-z]*?[-_]?(\d{1,2}(?:\.\d+)?)", re.I), "rhel"),
    (re.compile(r"alpine[-_a-z]*?[-_]?v?(\d\.\d{1,2})", re.I), "alpine"),
)


def guess_os(path: str) -> tuple[str, str] | None:
    """(distribution, version) from an image's file name, or None."""
    name = os.path.basename(path)
    for pattern, distro in _NAMED:
        m = pattern.search(name)
        if m:
            return distro, m.group(1)
    for word in re.split(r"[^a-z]+", name.lower()):
        if word in _CODENAMES:
            return _CODENAMES[word]
    return None
