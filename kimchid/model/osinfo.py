"""Sensible VM defaults for an operating system, from the distribution and version the ISO says."""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
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
    machine = {k: v for k, v in machine_defaults(distro, version).items() if k != "source"}
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
        **machine,
        # q35 has no IDE bus: its CD-ROM is SATA (the installers of its OSes know AHCI)
        **({"cdrom_bus": "sata"} if machine["machine"] == "q35" else {}),
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
}


@dataclass(frozen=True)
class _DbOs:
    """What osinfo-db says of one OS that kimchi uses."""

    derives: tuple[str, ...]  # the ids it derives from or clones: it inherits their devices
    devices: frozenset[str]  # device ids it lists itself
    unsupported: frozenset[str]  # device ids it says it does not support (inherited ones)
    firmware: dict[str, bool]  # x86_64 firmware type -> supported, as it says itself


@dataclass(frozen=True)
class _Db:
    ids: dict[str, str]  # short-id -> id
    oses: dict[str, _DbOs]  # id -> what it says


_Q35 = "http://qemu.org/chipset/x86/q35"


@functools.cache
def _read_db(root: str) -> _Db:
    """Every OS osinfo-db describes (read once; empty without it)."""
    ids: dict[str, str] = {}
    oses: dict[str, _DbOs] = {}
    for folder, _dirs, files in os.walk(os.path.join(root, "os")):
        for f in files:
            if not f.endswith(".xml"):
                continue
            try:
                tree = ET.parse(os.path.join(folder, f))
            except (OSError, ET.ParseError):
                continue
            for el in tree.getroot().iter("os"):
                os_id = el.get("id")
                if not os_id:
                    continue
                for short in el.findall("short-id"):
                    if short.text:
                        ids[short.text.strip()] = os_id
                listed = el.findall("devices/device")
                said = _DbOs(
                    derives=tuple(d.get("id", "") for d in
                                  el.findall("derives-from") + el.findall("clones")),
                    devices=frozenset(d.get("id", "") for d in listed
                                      if d.get("supported") != "false"),
                    unsupported=frozenset(d.get("id", "") for d in listed
                                          if d.get("supported") == "false"),
                    firmware={fw.get("type", ""): fw.get("supported") != "false"
                              for fw in el.findall("firmware")
                              if fw.get("arch") in ("x86_64", None)})
                before = oses.get(os_id)  # an OS's <name>.d/ files say more of it
                if before is not None:
                    said = _DbOs(before.derives + said.derives, before.devices | said.devices,
                                 before.unsupported | said.unsupported,
                                 {**before.firmware, **said.firmware})
                oses[os_id] = said
    return _Db(ids, oses)


def _osinfo_db(root: str) -> dict[str, str]:
    """short-id -> id of every OS osinfo-db describes (empty without it)."""
    return _read_db(root).ids


def _windows_release(version: str) -> int:
    """10 of "10", 8 of "8.1", 2012 of "2012r2"; 0 of "xp" and "vista"."""
    digits = version[:len(version) - len(version.lstrip("0123456789"))]
    return int(digits) if digits else 0


# Windows Server releases as osinfo-db names them (win2k22), and the rest as winN (win10)
def _short_ids(distro: str, version: str) -> list[str]:
    v = _version(version)
    out = [f"{distro}{version}", f"{distro}{'.'.join(map(str, v[:2]))}", f"{distro}{v[0]}"]
    if distro == "windows":
        year = _windows_release(version)
        r2 = "r2" if "r2" in version.lower() else ""
        server = "win2k" if year == 2000 else f"win2k{year % 100}{r2}"
        out = ([server] if year >= 2000 else [f"win{version}", f"win{year}"]) + out
    return out


def _known_id(distro: str, version: str, db: str) -> str | None:
    """osinfo-db's id of this OS, if it knows it."""
    if not distro or not _version(version):
        return None
    known = _osinfo_db(db)
    for short in _short_ids(distro, version):
        if short in known:
            return known[short]
    return None


def osinfo_id(distro: str, version: str, db: str = OSINFO_DB) -> str | None:
    """libosinfo's id of this OS (what virt-manager and Cockpit show a VM's OS by): from
    osinfo-db where it is installed and knows it, else from the project's own patterns;
    None for an OS neither knows."""
    v = _version(version)
    if not distro or not v:
        return None
    found = _known_id(distro, version, db)
    if found:
        return found
    if distro == "windows":  # win10 -> .../win/10, win2k12r2 -> .../win/2k12r2
        return f"http://microsoft.com/win/{_short_ids(distro, version)[0][3:]}"
    pattern = _OSINFO_IDS.get(distro)
    if pattern is None:
        return None
    parts = [p for p in version.split(".") if p]
    mm = ".".join(parts[:2]) if len(parts) > 1 else f"{v[0]}.0"  # "22.04" stays "22.04"
    return pattern.format(major=v[0], mm=mm)


# -- the virtual machine an OS wants: chipset, firmware, TPM -----------------------------------

#: Releases from which on a distribution runs on the q35 chipset (PCI Express, AHCI),
#: as osinfo-db says of them: the fallback when it is not installed or does not know
#: the release.  Older releases, and systems neither knows, get i440FX ("pc").
_Q35_SINCE: dict[str, tuple[int, ...]] = {
    "fedora": (23,), "centos": (6,), "rhel": (6,), "rocky": (8,), "almalinux": (8,),
    "ol": (7,), "debian": (9,), "ubuntu": (17, 4), "linuxmint": (19,), "opensuse": (15,),
    "sles": (12, 2), "sled": (12, 2), "arch": (0,), "alpine": (3, 11), "gentoo": (0,),
    "freebsd": (12,),
}


def _windows_machine(version: str) -> dict[str, Any]:
    """Windows 11 needs UEFI with Secure Boot and a TPM 2.0; from 7 and Server 2008 R2
    on, Windows runs on q35 (osinfo-db lists the chipset from those on)."""
    year = _windows_release(version)
    if 11 <= year < 2000:
        return {"machine": "q35", "firmware": "uefi", "secure_boot": True, "tpm": True}
    modern = 7 <= year < 2000 or year >= 2008
    return {"machine": "q35" if modern else "pc", "firmware": "bios", "secure_boot": False,
            "tpm": False}


def _table_machine(distro: str, version: str) -> dict[str, Any]:
    if distro == "windows":
        return _windows_machine(version)
    since = _Q35_SINCE.get(distro)
    v = _version(version)
    q35 = since is not None and (not v or v >= since)  # rolling releases: the newest
    return {"machine": "q35" if q35 else "pc", "firmware": "bios", "secure_boot": False,
            "tpm": False}


def _lineage(db: _Db, os_id: str) -> list[_DbOs]:
    """The OS, then those it derives from, nearest first (each once)."""
    out, todo, seen = [], [os_id], set()
    while todo:
        current = todo.pop(0)
        if current in seen or current not in db.oses:
            continue
        seen.add(current)
        entry = db.oses[current]
        out.append(entry)
        todo += list(entry.derives)
    return out


def machine_defaults(distro: str, version: str, db: str = OSINFO_DB) -> dict[str, Any]:
    """The chipset (``machine``: "q35" or "pc"), ``firmware`` ("bios" or "uefi"),
    ``secure_boot`` and ``tpm`` a new VM of this OS gets, and their ``source``.

    From osinfo-db where it is installed and knows the OS: its chipset devices (q35,
    inherited from the releases it derives from) and its firmware (UEFI where BIOS is
    "not supported", as for Windows 11; BIOS, which every host can give, where both
    are).  osinfo-db says nothing of Secure Boot or a TPM: those, and the OSes it does
    not know, come from the project's own table.
    """
    table = _table_machine(distro, version)
    found = _known_id(distro, version, db)
    if found is None:
        return {**table, "source": "kimchi"}
    lineage = _lineage(_read_db(db), found)
    q35 = None
    for entry in lineage:  # the nearest release that says anything of the chipset
        if _Q35 in entry.unsupported:
            q35 = False
            break
        if _Q35 in entry.devices:
            q35 = True
            break
    bios = next((e.firmware["bios"] for e in lineage if "bios" in e.firmware), True)
    efi = next((e.firmware["efi"] for e in lineage if "efi" in e.firmware), False)
    firmware = "uefi" if efi and not bios else "bios"
    # Secure Boot needs SMM, which only q35 has
    machine = "q35" if q35 or firmware == "uefi" else "pc"
    secure = table["secure_boot"] and firmware == "uefi"
    return {"machine": machine, "firmware": firmware, "secure_boot": secure,
            "tpm": bool(table["tpm"]), "source": "osinfo-db"}
