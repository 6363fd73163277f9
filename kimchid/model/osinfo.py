"""Sensible VM defaults for an operating system, from the distribution and version the ISO says."""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET
from typing import Any

# Distributions whose releases from this version on have virtio drivers in the installer.
# Older releases (and unknown systems) get the emulated devices every installer knows.
_MODERN_SINCE: dict[str, tuple[int, ...]] = {
    "fedora": (16,), "centos": (6,), "rhel": (6,), "rocky": (8,), "almalinux": (8,),
    "ol": (6,), "debian": (6,), "ubuntu": (10, 4), "linuxmint": (10,), "opensuse": (11, 4),
    "sles": (11,), "sled": (11,), "arch": (0,), "alpine": (3,), "gentoo": (0,),
    "freebsd": (10,), "openbsd": (5, 9), "netbsd": (8,),
}

# (memory MiB, disk GB, vcpus) by family
_SIZES: dict[str, tuple[int, int, int]] = {
    "windows": (4096, 40, 2),
    "alpine": (512, 4, 1),
    "arch": (1024, 10, 1),
    "openbsd": (1024, 10, 1),
    "netbsd": (1024, 10, 1),
    "freebsd": (1024, 10, 1),
}
_DEFAULT_SIZE = (2048, 20, 1)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.replace("-", ".").split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def is_modern(distro: str, version: str) -> bool:
    """True when the installer of this release has virtio drivers."""
    if distro == "windows":
        return False  # virtio needs the driver disk: start with what installs everywhere
    since = _MODERN_SINCE.get(distro)
    if since is None:
        return False
    v = _version(version)
    return not v or v >= since  # rolling releases ("tumbleweed", dates) are modern


def defaults(distro: str, version: str) -> dict[str, Any]:
    """The template fields kimchi fills in for this OS; the user's fields override them."""
    memory, disk, vcpus = _SIZES.get(distro, _DEFAULT_SIZE)
    modern = is_modern(distro, version)
    bus = "virtio" if modern else ("sata" if distro == "windows" else "ide")
    return {
        "memory": {"current": memory, "maxmemory": memory},
        "cpu_info": {"vcpus": vcpus, "maxvcpus": vcpus},
        "disks": [{"index": 0, "size": disk, "format": "qcow2", "bus": bus,
                   "pool": {"name": "default"}}],
        "networks": ["default"],
        "nic_model": "virtio" if modern else "e1000",
        "cdrom_bus": "sata" if distro == "windows" else "ide",
        "graphics": {"type": "vnc", "listen": "127.0.0.1"},
        "tablet": modern or distro == "windows",  # an absolute pointer: the mouse follows
    }


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``; dicts merge key by key, everything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


# -- libosinfo's name of the OS --------------------------------------------------------------

#: Where osinfo-db keeps its operating systems (Debian's ``osinfo-db`` package).
OSINFO_DB = "/usr/share/osinfo"

#: libosinfo's id of a release, for the distributions whose ids follow one pattern: the
#: fallback when osinfo-db is not installed ({major}: the version's first number, {mm}:
#: its first two parts as written).
_OSINFO_IDS: dict[str, str] = {
    "fedora": "http://fedoraproject.org/fedora/{major}",
    "ubuntu": "http://ubuntu.com/ubuntu/{mm}",
    "debian": "http://debian.org/debian/{major}",
    "centos": "http://centos.org/centos/{major}",
    "rhel": "http://redhat.com/rhel/{mm}",
    "rocky": "http://rockylinux.org/rocky/{major}",
    "almalinux": "http://almalinux.org/almalinux/{major}",
    "opensuse": "http://opensuse.org/opensuse/{mm}",
    "sles": "http://suse.com/sles/{major}",
    "alpine": "http://alpinelinux.org/alpinelinux/{mm}",
    "freebsd": "http://freebsd.org/freebsd/{mm}",
    "windows": "http://microsoft.com/win/{major}",
}


@functools.cache
def _osinfo_db(root: str) -> dict[str, str]:
    """short-id -> id of every OS osinfo-db describes (read once; empty without it)."""
    out: dict[str, str] = {}
    for folder, _dirs, files in os.walk(os.path.join(root, "os")):
        for f in files:
            if not f.endswith(".xml"):
                continue
            try:
                tree = ET.parse(os.path.join(folder, f))
            except (OSError, ET.ParseError):
                continue
            for el in tree.getroot().iter("os"):
                if el.get("id"):
                    for short in el.findall("short-id"):
                        if short.text:
                            out[short.text.strip()] = el.get("id", "")
    return out


def osinfo_id(distro: str, version: str, db: str = OSINFO_DB) -> str | None:
    """libosinfo's id of this OS (what virt-manager and Cockpit show a VM's OS by): from
    osinfo-db where it is installed and knows it, else from the project's own patterns;
    None for an OS neither knows."""
    v = _version(version)
    if not distro or not v:
        return None
    known = _osinfo_db(db)
    for short in (f"{distro}{version}", f"{distro}{'.'.join(map(str, v[:2]))}",
                  f"{distro}{v[0]}", f"win{v[0]}" if distro == "windows" else ""):
        if short and short in known:
            return known[short]
    pattern = _OSINFO_IDS.get(distro)
    if pattern is None:
        return None
    parts = [p for p in version.split(".") if p]
    mm = ".".join(parts[:2]) if len(parts) > 1 else f"{v[0]}.0"  # "22.04" stays "22.04"
    return pattern.format(major=v[0], mm=mm)
