"""Sensible VM defaults for an operating system, from the distribution and version the ISO says."""

from __future__ import annotations

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
