"""A VM's disks, CD-ROMs and network interfaces, changed after it was made.

A shut-off VM is changed by editing its persistent definition (every libvirt
driver can do that); a running one through libvirt's hotplug, live and in its
definition at once, where QEMU can: virtio disks and interfaces come and go, a
CD-ROM's medium changes, but a CD-ROM drive is added or removed only while the
VM is off.  Detaching a disk never deletes its volume.  The VM view is updated
by libvirt's own events (``vm.updated``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from typing import Any

from twisted.internet import threads

from kimchi.bus import LOCAL_HOST
from kimchi.errors import InvalidOperation, InvalidRequest, NotFound
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.model.events import EventHub
from kimchid.model.libvirtobjects import LibvirtObjects, lv, why

_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "usb": "sd", "ide": "hd"}
MODELS = ("virtio", "e1000", "rtl8139")
_FORBIDDEN = ("/proc", "/sys", "/dev")


def free_dev(root: ET.Element, bus: str) -> str:
    """The first target name (vdb, hdc, ...) of ``bus`` that no disk of the domain uses."""
    prefix = _PREFIX.get(bus, "vd")
    used = {t.get("dev") for t in root.findall("./devices/disk/target")}
    for i in range(26 * 27):
        n, letters = i + 1, ""
        while n:
            n, r = divmod(n - 1, 26)
            letters = chr(ord("a") + r) + letters
        if prefix + letters not in used:
            return prefix + letters
    raise InvalidOperation("KCHVMSTOR0006E", reason=f"no free {bus} target left")


def check_file(path: str, what: str) -> str:
    """An absolute path to an existing regular file, outside the pseudo file systems."""
    if not os.path.isabs(path) or "\x00" in path:
        raise InvalidRequest("KCHVMSTOR0002E", reason=f"{what} {path} is not an absolute path")
    real = os.path.realpath(path)
    if any(real == f or real.startswith(f + "/") for f in _FORBIDDEN) \
            or not os.path.isfile(real):
        raise InvalidOperation("KCHVMSTOR0006E", reason=f"{what} {path} is no file")
    return real


def image_format(path: str) -> str:
    """What ``qemu-img info`` says the image is (raw when it cannot tell)."""
    try:
        out = subprocess.run(["qemu-img", "info", "--output=json", "-U", path],
                             capture_output=True, timeout=20, check=True).stdout
        fmt = json.loads(out).get("format", "raw")
        return fmt if re.fullmatch(r"[a-z0-9]+", fmt) else "raw"
    except (OSError, subprocess.SubprocessError, ValueError):
        return "raw"


def disk_element(device: str, path: str, fmt: str, dev: str, bus: str) -> ET.Element:
    disk = ET.Element("disk", type="file", device=device)
    ET.SubElement(disk, "driver", name="qemu", type=fmt)
    if path:
        ET.SubElement(disk, "source", file=path)
    ET.SubElement(disk, "target", dev=dev, bus=bus)
    if device == "cdrom":
        ET.SubElement(disk, "readonly")
    return disk


def _storages(root: ET.Element) -> list[dict[str, Any]]:
    out = []
    for d in root.findall("./devices/disk"):
        target, src, driver = d.find("target"), d.find("source"), d.find("driver")
        if target is None:
            continue
        path = ""
        if src is not None:
            path = src.get("file") or src.get("dev") or src.get("name") or ""
        out.append({"dev": target.get("dev", ""), "type": d.get("device", "disk"),
                    "bus": target.get("bus", ""), "path": path,
                    "format": driver.get("type", "") if driver is not None else ""})
    return out


def _ifaces(root: ET.Element) -> list[dict[str, Any]]:
    out = []
    for i in root.findall("./devices/interface"):
        mac, src, model = i.find("mac"), i.find("source"), i.find("model")
        out.append({"mac": mac.get("address", "") if mac is not None else "",
                    "type": i.get("type", ""),
                    "network": src.get("network", "") if src is not None else "",
                    "model": model.get("type", "") if model is not None else ""})
    return out


class VmDevices(LibvirtObjects):
    """One host's ``/vms/<name>/storages`` and ``/vms/<name>/ifaces``."""

    def __init__(self, libvirt: LibvirtConnection, events: EventHub,
                 host: str = LOCAL_HOST, local: bool = True) -> None:
        """``local``: whether the host's files are this machine's (the local host): a
        path given for another host must be one of its storage volumes, which its
        libvirtd knows, since kimchid cannot look at that host's disk."""
        super().__init__(libvirt, events, host)
        self.local = local

    async def _checked(self, path: str, kind: str) -> tuple[str, str]:
        """``path`` (an image for a disk or a CD-ROM) once checked, and its format."""
        what = "ISO" if kind == "cdrom" else "disk image"
        if self.local:
            path = await threads.deferToThread(check_file, path, what)
            return path, (await threads.deferToThread(image_format, path)
                          if kind == "disk" else "raw")
        if not os.path.isabs(path) or "\x00" in path:
            raise InvalidRequest("KCHVMSTOR0002E", reason=f"{what} {path} is not an absolute path")

        def find(c: Any) -> tuple[str, str]:
            try:
                vol = c.storageVolLookupByPath(path)
            except lv().libvirtError:
                raise InvalidOperation(
                    "KCHVMSTOR0006E", reason=f"{what} {path} is no volume of a storage pool "
                                             f"of host {self.host}") from None
            fmt = ET.fromstring(vol.XMLDesc(0)).find("target/format")
            found = fmt.get("type", "raw") if fmt is not None else "raw"
            return str(vol.path()), (found if kind == "disk" and re.fullmatch(
                r"[a-z0-9]+", found) else "raw")

        return await self._run(find)

    def _dom(self, conn: Any, vm: str) -> Any:
        try:
            return conn.lookupByName(vm)
        except lv().libvirtError:
            raise NotFound("KCHVM0002E", name=vm) from None

    @staticmethod
    def _config(dom: Any) -> ET.Element:
        libvirt = lv()
        return ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE
                                         | libvirt.VIR_DOMAIN_XML_SECURE))

    def _change(self, conn: Any, dom: Any, xml: str, how: str) -> None:
        """Apply one device change: hotplug (live and persistent) when running, else in the
        persistent definition."""
        libvirt = lv()
        if dom.isActive():
            flags = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG
            call = {"attach": dom.attachDeviceFlags, "detach": dom.detachDeviceFlags,
                    "update": dom.updateDeviceFlags}[how]
            try:
                call(xml, flags)
            except libvirt.libvirtError as e:
                raise InvalidOperation("KCHVMSTOR0004E", name=dom.name(), error=why(e)) from None
            return
        root = self._config(dom)
        devices = root.find("devices")
        assert devices is not None
        new = ET.fromstring(xml)
        if how == "attach":
            devices.append(new)
        else:
            old = self._find_same(devices, new)
            if how == "detach":
                devices.remove(old)
            else:
                devices.insert(list(devices).index(old), new)
                devices.remove(old)
        try:
            conn.defineXML(ET.tostring(root, encoding="unicode"))
        except libvirt.libvirtError as e:
            raise InvalidOperation("KCHVMSTOR0004E", name=dom.name(), error=why(e)) from None

    @staticmethod
    def _find_same(devices: ET.Element, new: ET.Element) -> ET.Element:
        if new.tag == "disk":
            dev = new.find("target").get("dev")  # type: ignore[union-attr]
            for d in devices.findall("disk"):
                t = d.find("target")
                if t is not None and t.get("dev") == dev:
                    return d
        else:
            mac = new.find("mac").get("address")  # type: ignore[union-attr]
            for i in devices.findall("interface"):
                m = i.find("mac")
                if m is not None and m.get("address", "").lower() == str(mac).lower():
                    return i
        raise NotFound("KCHVMSTOR0001E", dev=new.tag, name="")

    # -- storages -----------------------------------------------------------------------

    async def storages(self, vm: str) -> list[dict[str, Any]]:
        return await self._run(lambda c: _storages(self._config(self._dom(c, vm))))

    async def storage(self, vm: str, dev: str) -> dict[str, Any]:
        for s in await self.storages(vm):
            if s["dev"] == dev:
                return s
        raise NotFound("KCHVMSTOR0001E", dev=dev, name=vm)

    async def _volume_path(self, pool: str, vol: str) -> str:
        def find(c: Any) -> str:
            try:
                return str(c.storagePoolLookupByName(pool).storageVolLookupByName(vol).path())
            except lv().libvirtError:
                raise NotFound("KCHVOL0002E", name=vol, pool=pool) from None

        return await self._run(find)

    async def attach_storage(self, vm: str, body: dict[str, Any]) -> dict[str, Any]:
        kind = body["type"]
        path = body.get("path", "")
        if body.get("pool") or body.get("vol"):
            if kind != "disk" or not (body.get("pool") and body.get("vol")) or path:
                raise InvalidRequest("KCHVMSTOR0002E",
                                     reason="a disk is a path, or a pool and a vol")
            path = await self._volume_path(body["pool"], body["vol"])
        if kind == "disk" and not path:
            raise InvalidRequest("KCHVMSTOR0002E", reason="a disk needs a path or a volume")
        fmt = "raw"
        if path:
            path, fmt = await self._checked(path, kind)
        bus = body.get("bus") or ("virtio" if kind == "disk" else "")

        def attach(c: Any) -> dict[str, Any]:
            dom = self._dom(c, vm)
            root = self._config(dom)
            cd_bus = bus or next((t.get("bus", "ide") for t in root.findall(
                "./devices/disk[@device='cdrom']/target")), "ide")
            if kind == "cdrom" and dom.isActive():
                raise InvalidOperation("KCHVMSTOR0003E", name=vm)
            if path and any(s["path"] == path for s in _storages(root)):
                raise InvalidOperation("KCHVMSTOR0005E", path=path, name=vm)
            dev = free_dev(root, cd_bus if kind == "cdrom" else bus)
            xml = ET.tostring(disk_element(kind, path, fmt, dev, cd_bus if kind == "cdrom"
                                           else bus), encoding="unicode")
            self._change(c, dom, xml, "attach")
            return next(s for s in _storages(self._config(dom)) if s["dev"] == dev)

        out = await self._run(attach)
        await self._publish("vm.storage.attached", {**out, "vm": vm})
        return out

    async def change_media(self, vm: str, dev: str, path: str) -> dict[str, Any]:
        """A CD-ROM's medium: another ISO, or none ("" ejects); also while the VM runs."""
        if path:
            path, _ = await self._checked(path, "cdrom")

        def update(c: Any) -> dict[str, Any]:
            dom = self._dom(c, vm)
            now = next((s for s in _storages(self._config(dom)) if s["dev"] == dev), None)
            if now is None:
                raise NotFound("KCHVMSTOR0001E", dev=dev, name=vm)
            if now["type"] != "cdrom":
                raise InvalidOperation("KCHVMSTOR0006E", reason=f"{dev} is a disk, not a CD-ROM")
            xml = ET.tostring(disk_element("cdrom", path, "raw", dev, now["bus"]),
                              encoding="unicode")
            self._change(c, dom, xml, "update")
            return {**now, "path": path}

        out = await self._run(update)
        await self._publish("vm.storage.changed", {**out, "vm": vm})
        return out

    async def detach_storage(self, vm: str, dev: str) -> None:
        def detach(c: Any) -> None:
            dom = self._dom(c, vm)
            now = next((s for s in _storages(self._config(dom)) if s["dev"] == dev), None)
            if now is None:
                raise NotFound("KCHVMSTOR0001E", dev=dev, name=vm)
            if now["type"] == "cdrom" and dom.isActive():
                raise InvalidOperation("KCHVMSTOR0003E", name=vm)
            xml = ET.tostring(disk_element(now["type"], now["path"], now["format"] or "raw",
                                           dev, now["bus"]), encoding="unicode")
            self._change(c, dom, xml, "detach")  # the volume stays

        await self._run(detach)
        await self._publish("vm.storage.detached", {"dev": dev, "vm": vm})

    # -- interfaces ---------------------------------------------------------------------

    async def ifaces(self, vm: str) -> list[dict[str, Any]]:
        return await self._run(lambda c: _ifaces(self._config(self._dom(c, vm))))

    async def attach_iface(self, vm: str, body: dict[str, Any]) -> dict[str, Any]:
        network, model = body["network"], body.get("model", "virtio")

        def attach(c: Any) -> dict[str, Any]:
            dom = self._dom(c, vm)
            try:
                c.networkLookupByName(network)
            except lv().libvirtError:
                raise NotFound("KCHNET0002E", name=network) from None
            before = {i["mac"] for i in _ifaces(self._config(dom))}
            iface = ET.Element("interface", type="network")
            ET.SubElement(iface, "source", network=network)
            ET.SubElement(iface, "model", type=model)
            self._change(c, dom, ET.tostring(iface, encoding="unicode"), "attach")
            return next(i for i in _ifaces(self._config(dom)) if i["mac"] not in before)

        out = await self._run(attach)
        await self._publish("vm.iface.attached", {**out, "vm": vm})
        return out

    async def detach_iface(self, vm: str, mac: str) -> None:
        def detach(c: Any) -> None:
            dom = self._dom(c, vm)
            now = next((i for i in _ifaces(self._config(dom))
                        if i["mac"].lower() == mac.lower()), None)
            if now is None:
                raise NotFound("KCHVMIFACE0001E", mac=mac, name=vm)
            iface = ET.Element("interface", type=now["type"] or "network")
            ET.SubElement(iface, "mac", address=now["mac"])
            if now["network"]:
                ET.SubElement(iface, "source", network=now["network"])
            if now["model"]:
                ET.SubElement(iface, "model", type=now["model"])
            self._change(c, dom, ET.tostring(iface, encoding="unicode"), "detach")

        await self._run(detach)
        await self._publish("vm.iface.detached", {"mac": mac, "vm": vm})
