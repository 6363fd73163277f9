"""A template made into libvirt XML: the volumes of a new VM and its domain.

Pure functions (no libvirt calls), so what kimchi asks libvirt for can be read
and tested on its own.  Every value comes from a validated template; the XML is
built with ElementTree, never by pasting strings.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kimchid.model.osinfo import osinfo_id

METADATA_NS = "urn:kimchi:vm:1"
LIBOSINFO_NS = "http://libosinfo.org/xmlns/libvirt/domain/1.0"

_DEV_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "ide": "hd"}
GIB = 1024 ** 3


@dataclass(frozen=True)
class PlannedVolume:
    """One disk of the new VM: the volume to create in ``pool``."""

    pool: str
    name: str
    capacity_gb: float
    format: str
    bus: str
    #: a template's base image under this disk: ``linked``, a qcow2 leaf over it; ``full``,
    #: a copy of it (made by a worker before the volume is looked up)
    base: str = ""
    base_format: str = ""
    mode: str = ""  # "" (blank) | linked | full


@dataclass(frozen=True)
class HostGuest:
    """What the connection can run: the domain type (kvm, qemu, test) and the arch."""

    domain_type: str
    arch: str
    os_type: str = "hvm"


def plan_volumes(vm: str, template: dict[str, Any], disk_mode: str = "linked"
                 ) -> list[PlannedVolume]:
    """The volumes of VM ``vm``; a disk over a base image is a leaf (``linked``) or a
    copy (``full``) of it, always qcow2."""
    out = []
    for i, disk in enumerate(sorted(template.get("disks", []),
                                    key=lambda d: d.get("index", 0))):
        base = disk.get("base") or {}
        fmt = "qcow2" if base else disk.get("format", "qcow2")
        out.append(PlannedVolume(
            pool=(disk.get("pool") or {}).get("name", "default"),
            name=f"{vm}-{disk.get('index', i)}.{'qcow2' if fmt == 'qcow2' else 'img'}",
            capacity_gb=float(disk["size"]), format=fmt, bus=disk.get("bus", "virtio"),
            base=base.get("path", ""), base_format=base.get("format", ""),
            mode=disk_mode if base else ""))
    return out


def volume_xml(vol: PlannedVolume) -> str:
    root = ET.Element("volume")
    ET.SubElement(root, "name").text = vol.name
    ET.SubElement(root, "capacity", unit="bytes").text = str(int(vol.capacity_gb * GIB))
    ET.SubElement(root, "allocation", unit="bytes").text = "0"  # sparse: grows as used
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "format", type=vol.format)
    if vol.mode == "linked":  # libvirt makes it with qemu-img create -b: constant time
        backing = ET.SubElement(root, "backingStore")
        ET.SubElement(backing, "path").text = vol.base
        ET.SubElement(backing, "format", type=vol.base_format)
    return ET.tostring(root, encoding="unicode")


def pick_guest(capabilities_xml: str, want_kvm: bool) -> HostGuest:
    """The best domain type for the host's arch that the connection offers (kvm, then qemu)."""
    root = ET.fromstring(capabilities_xml)
    host_arch = root.findtext("host/cpu/arch") or "x86_64"
    offers: list[tuple[str, str]] = []
    for guest in root.findall("guest"):
        if guest.findtext("os_type") != "hvm":
            continue
        arch_el = guest.find("arch")
        if arch_el is None:
            continue
        types = {d.get("type", "") for d in arch_el.findall("domain")}
        offers += [(arch_el.get("name", ""), t) for t in types]
    if not offers:
        raise ValueError("this libvirt connection offers no hvm guests")
    preference = (["kvm"] if want_kvm else []) + ["qemu"]
    for dtype in preference:
        for arch, t in offers:
            if t == dtype and arch == host_arch:
                return HostGuest(dtype, arch)
    same_arch = [o for o in offers if o[0] == host_arch] or offers
    # e.g. the test driver: one type ("test"), arch i686
    arch, dtype = sorted(same_arch, key=lambda o: (o[1] == "kvm", o))[0]
    return HostGuest(dtype, arch)


def _devs(bus: str, used: dict[str, int]) -> str:
    prefix = _DEV_PREFIX.get(bus, "vd")
    n = used.get(prefix, 0)
    used[prefix] = n + 1
    letters = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        letters = chr(ord("a") + r) + letters
    return prefix + letters


def domain_xml(*, name: str, template_name: str, template: dict[str, Any], guest: HostGuest,
               volumes: list[tuple[PlannedVolume, str]], task_id: str, created: str,
               cidata: str = "") -> str:
    """The domain of a new VM; ``volumes`` pairs each planned volume with its path;
    ``cidata``: the path of its cloud-init seed, a CD-ROM."""
    t = template
    dom = ET.Element("domain", type=guest.domain_type)
    ET.SubElement(dom, "name").text = name
    ET.SubElement(dom, "title").text = name
    ET.SubElement(dom, "description").text = f"Created by kimchi from template {template_name}"
    meta = ET.SubElement(dom, "metadata")
    ET.register_namespace("kimchi", METADATA_NS)
    kv = ET.SubElement(meta, f"{{{METADATA_NS}}}vm")
    ET.SubElement(kv, f"{{{METADATA_NS}}}template").text = template_name
    ET.SubElement(kv, f"{{{METADATA_NS}}}task").text = task_id
    ET.SubElement(kv, f"{{{METADATA_NS}}}created").text = created
    if cidata:  # deleted with the VM
        ET.SubElement(kv, f"{{{METADATA_NS}}}cidata").text = cidata
    access = ET.SubElement(kv, f"{{{METADATA_NS}}}access")
    for user in t.get("users", []):
        ET.SubElement(access, f"{{{METADATA_NS}}}user").text = user
    for group in t.get("groups", []):
        ET.SubElement(access, f"{{{METADATA_NS}}}group").text = group
    os_id = osinfo_id(str(t.get("os_distro") or ""), str(t.get("os_version") or ""))
    if os_id:  # how virt-manager and Cockpit tell the VM's OS
        ET.register_namespace("libosinfo", LIBOSINFO_NS)
        info = ET.SubElement(meta, f"{{{LIBOSINFO_NS}}}libosinfo")
        ET.SubElement(info, f"{{{LIBOSINFO_NS}}}os", id=os_id)

    mem = t.get("memory", {})
    current = int(mem.get("current", 1024))
    ET.SubElement(dom, "memory", unit="MiB").text = str(int(mem.get("maxmemory", current)))
    ET.SubElement(dom, "currentMemory", unit="MiB").text = str(current)
    cpu = t.get("cpu_info", {})
    vcpus = int(cpu.get("vcpus", 1))
    ET.SubElement(dom, "vcpu", placement="static",
                  current=str(vcpus)).text = str(int(cpu.get("maxvcpus", vcpus)))

    os_el = ET.SubElement(dom, "os")
    os_type = ET.SubElement(os_el, "type", arch=guest.arch)
    os_type.text = guest.os_type
    if t.get("machine"):  # "q35", "pc" or one of libvirt's full names (pc-q35-7.2)
        os_type.set("machine", str(t["machine"]))
    _firmware(os_el, t)
    if t.get("bootmenu"):
        ET.SubElement(os_el, "bootmenu", enable="yes")
    source = t.get("source_media") or {}
    netboot = source.get("type") == "netboot"
    image = source.get("type") == "image"  # the disk is the system: no installer
    for dev in (("network", "hd") if netboot else ("hd",) if image else ("cdrom", "hd")):
        ET.SubElement(os_el, "boot", dev=dev)
    if guest.domain_type in ("kvm", "qemu"):
        feats = ET.SubElement(dom, "features")
        ET.SubElement(feats, "acpi")
        ET.SubElement(feats, "apic")
        if secure_boot(t):  # OVMF keeps its Secure Boot variables where only SMM writes
            ET.SubElement(feats, "smm", state="on")
        # no <cpu> element: libvirt's default model starts everywhere (host-passthrough
        # does not on nested hosts, where KVM refuses some of the host's MSRs)
    topology = t.get("cpu_topology")
    if topology:  # only the topology: the model stays libvirt's default
        ET.SubElement(ET.SubElement(dom, "cpu"), "topology", {
            "sockets": str(int(topology["sockets"])), "dies": "1",
            "cores": str(int(topology["cores"])), "threads": str(int(topology["threads"]))})
    ET.SubElement(dom, "on_poweroff").text = "destroy"
    ET.SubElement(dom, "on_reboot").text = "restart"
    ET.SubElement(dom, "on_crash").text = "restart"

    devices = ET.SubElement(dom, "devices")
    used: dict[str, int] = {}
    if any(v.bus == "scsi" for v, _p in volumes) or t.get("cdrom_bus") == "scsi":
        ET.SubElement(devices, "controller", type="scsi", index="0", model="virtio-scsi")
    for vol, path in volumes:
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type=vol.format)
        ET.SubElement(disk, "source", file=path)
        if vol.mode == "linked":  # declared, so that the VM's listing shows its base
            backing = ET.SubElement(disk, "backingStore", type="file")
            ET.SubElement(backing, "format", type=vol.base_format)
            ET.SubElement(backing, "source", file=vol.base)
            ET.SubElement(backing, "backingStore")
        ET.SubElement(disk, "target", dev=_devs(vol.bus, used), bus=vol.bus)
    if not netboot and not image and source.get("path"):
        _cdrom(devices, source["path"], t.get("cdrom_bus", "ide"), used)
    if cidata:
        _cdrom(devices, cidata, t.get("cdrom_bus", "ide"), used)
    for net in t.get("networks", []):
        iface = ET.SubElement(devices, "interface", type="network")
        ET.SubElement(iface, "source", network=net)
        ET.SubElement(iface, "model", type=t.get("nic_model", "virtio"))
    if guest.domain_type in ("kvm", "qemu"):
        if t.get("tablet", False):
            ET.SubElement(devices, "input", type="tablet", bus="usb")
        graphics = t.get("graphics") or {"type": "vnc", "listen": "127.0.0.1"}
        g = ET.SubElement(devices, "graphics", type=graphics.get("type", "vnc"),
                          autoport="yes", listen=graphics.get("listen", "127.0.0.1"))
        ET.SubElement(g, "listen", type="address", address=graphics.get("listen", "127.0.0.1"))
        video = ET.SubElement(devices, "video")
        ET.SubElement(video, "model", type="qxl" if graphics.get("type") == "spice" else "vga")
        serial = ET.SubElement(devices, "serial", type="pty")
        ET.SubElement(serial, "target", port="0")
        ET.SubElement(devices, "memballoon", model="virtio")
    _tpm(devices, t)
    return ET.tostring(dom, encoding="unicode")


def secure_boot(template: dict[str, Any]) -> bool:
    """Whether a VM of this template boots UEFI with Secure Boot."""
    return template.get("firmware") == "uefi" and bool(template.get("secure_boot"))


def _firmware(os_el: ET.Element, t: dict[str, Any]) -> None:
    """UEFI through libvirt's firmware auto-selection: libvirt picks the OVMF build (and
    makes the VM's NVRAM from its template) that has the features asked for, from the
    descriptors the firmware packages install (/usr/share/qemu/firmware)."""
    if t.get("firmware") != "uefi":
        return  # BIOS: libvirt's default, SeaBIOS
    os_el.set("firmware", "efi")
    secure = "yes" if secure_boot(t) else "no"
    fw = ET.SubElement(os_el, "firmware")
    # enrolled keys: Microsoft's, which Windows and the shim of the distributions need
    ET.SubElement(fw, "feature", enabled=secure, name="enrolled-keys")
    ET.SubElement(fw, "feature", enabled=secure, name="secure-boot")
    if secure == "yes":  # said twice, as libvirt wants (it refuses secure='no' here)
        ET.SubElement(os_el, "loader", secure="yes")


def _tpm(devices: ET.Element, t: dict[str, Any]) -> None:
    """A TPM 2.0 that swtpm emulates for the VM (libvirt starts one swtpm per VM and keeps
    its state under /var/lib/libvirt/swtpm/<uuid>, removed with the VM)."""
    if t.get("tpm"):
        tpm = ET.SubElement(devices, "tpm", model="tpm-crb")
        ET.SubElement(tpm, "backend", type="emulator", version="2.0")


def _cdrom(devices: ET.Element, path: str, bus: str, used: dict[str, int]) -> None:
    url = urlsplit(path)
    if url.scheme in ("http", "https", "ftp", "ftps"):
        disk = ET.SubElement(devices, "disk", type="network", device="cdrom")
        ET.SubElement(disk, "driver", name="qemu", type="raw")
        src = ET.SubElement(disk, "source", protocol=url.scheme,
                            name=url.path + (f"?{url.query}" if url.query else ""))
        port = url.port or {"http": 80, "https": 443, "ftp": 21, "ftps": 990}[url.scheme]
        ET.SubElement(src, "host", name=url.hostname or "", port=str(port))
    else:
        disk = ET.SubElement(devices, "disk", type="file", device="cdrom")
        ET.SubElement(disk, "driver", name="qemu", type="raw")
        ET.SubElement(disk, "source", file=path)
    ET.SubElement(disk, "target", dev=_devs(bus, used), bus=bus)
    ET.SubElement(disk, "readonly")
