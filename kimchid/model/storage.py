"""Storage pools and their volumes, on libvirt.

Pools are few, so they are read from libvirt at each request (no cache to go
stale when virsh changes them).  XML is built with ElementTree from validated
fields, never by pasting strings.  A multi-step change undoes its earlier steps
when a later one fails: a pool that was defined but cannot be built or started
is undefined again, and a folder made for it is removed.  What is in use is
protected: a volume a VM uses is not deleted, a pool a template names is not
deleted, a pool a running VM uses is not stopped.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from twisted.internet import threads

from kimchi.bus import LOCAL_HOST
from kimchi.errors import (
    InvalidOperation,
    InvalidRequest,
    NotFound,
    OperationFailed,
)
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.model.events import EventHub
from kimchid.model.libvirtobjects import LibvirtObjects, lv, why
from kimchid.model.vms import VmInventory

POOL_STATES = ("inactive", "building", "active", "degraded", "inaccessible")
POOL_TYPES = ("dir", "netfs", "logical", "iscsi")
#: the source fields each pool type needs
POOL_NEEDS: dict[str, tuple[str, ...]] = {"dir": (), "netfs": ("host", "path"),
                                          "logical": ("devices",), "iscsi": ("host", "target")}
VOLUME_FORMATS = ("qcow2", "raw")



def _pool_xml_info(xml: str) -> dict[str, Any]:
    root = ET.fromstring(xml)
    src = root.find("source")
    source: dict[str, Any] = {}
    if src is not None:
        host = src.find("host")
        if host is not None:
            source["host"] = host.get("name", "")
        directory = src.find("dir")
        if directory is not None:
            source["path"] = directory.get("path", "")
        devices = [d.get("path", "") for d in src.findall("device")]
        if devices:
            source["devices"] = devices
        fmt = src.find("format")
        if fmt is not None:
            source["format"] = fmt.get("type", "")
        if src.findtext("name"):
            source["name"] = src.findtext("name")
    return {"type": root.get("type", ""), "path": root.findtext("target/path") or "",
            "source": source}


def pool_info(pool: Any) -> dict[str, Any]:
    """A pool as the API shows it (blocking: a libvirt thread)."""
    state, capacity, allocation, available = pool.info()
    active = bool(pool.isActive())
    out = {"name": pool.name(), "uuid": pool.UUIDString(),
           "state": "active" if active else POOL_STATES[state]
           if 0 <= state < len(POOL_STATES) else "inactive",
           "autostart": bool(pool.autostart()), "persistent": bool(pool.isPersistent()),
           "capacity": capacity, "allocated": allocation, "available": available,
           "nr_volumes": pool.numOfVolumes() if active else 0,
           **_pool_xml_info(pool.XMLDesc(0))}
    return out


def volume_info(vol: Any) -> dict[str, Any]:
    kind, capacity, allocation = vol.info()
    root = ET.fromstring(vol.XMLDesc(0))
    fmt = root.find("target/format")
    kinds = ("file", "block", "dir", "network", "netdir", "ploop")
    return {"name": vol.name(), "path": vol.path(),
            "type": kinds[kind] if 0 <= kind < len(kinds) else "unknown",
            "capacity": capacity, "allocation": allocation,
            "format": fmt.get("type", "") if fmt is not None else ""}


def pool_xml(body: dict[str, Any]) -> str:
    """The XML of a new pool, from a validated request."""
    kind, name = body["type"], body["name"]
    root = ET.Element("pool", type=kind)
    ET.SubElement(root, "name").text = name
    src = body.get("source") or {}
    source = ET.SubElement(root, "source")
    target = ET.SubElement(root, "target")
    if kind == "dir":
        ET.SubElement(target, "path").text = body["path"]
    elif kind == "netfs":
        ET.SubElement(source, "host", name=src["host"])
        ET.SubElement(source, "dir", path=src["path"])
        ET.SubElement(source, "format", type="nfs")
        ET.SubElement(target, "path").text = body.get("path") or f"/var/lib/kimchi/nfs/{name}"
    elif kind == "logical":
        for dev in src["devices"]:
            ET.SubElement(source, "device", path=dev)
        ET.SubElement(source, "name").text = name
        ET.SubElement(source, "format", type="lvm2")
        ET.SubElement(target, "path").text = f"/dev/{name}"
    elif kind == "iscsi":
        ET.SubElement(source, "host", name=src["host"], port=str(src.get("port", 3260)))
        ET.SubElement(source, "device", path=src["target"])
        ET.SubElement(target, "path").text = "/dev/disk/by-path"
    return ET.tostring(root, encoding="unicode")


def volume_xml(name: str, capacity: int, fmt: str) -> str:
    root = ET.Element("volume")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "capacity", unit="bytes").text = str(capacity)
    ET.SubElement(root, "allocation", unit="bytes").text = "0"
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "format", type=fmt)
    return ET.tostring(root, encoding="unicode")


def check_pool_request(body: dict[str, Any]) -> None:
    """What the schema cannot say: the fields each type needs, and sane paths."""
    kind, src = body["type"], body.get("source") or {}
    missing = [k for k in POOL_NEEDS[kind] if not src.get(k)]
    if missing:
        raise InvalidRequest("KCHPOOL0004E", name=body["name"],
                             reason=f"a {kind} pool needs source.{', source.'.join(missing)}")
    path = body.get("path", "")
    if kind == "dir" and not path:
        raise InvalidRequest("KCHPOOL0004E", name=body["name"],
                             reason="a dir pool needs a path")
    if path:
        real = os.path.realpath(path)
        if not os.path.isabs(path) or "\x00" in path or real in ("/", "/proc", "/sys", "/dev") \
                or real.startswith(("/proc/", "/sys/", "/dev/")):
            raise InvalidOperation("KCHPOOL0010E", name=body["name"], path=path,
                                   reason="not a usable folder")
    for dev in src.get("devices", []):
        if not dev.startswith("/dev/"):
            raise InvalidRequest("KCHPOOL0004E", name=body["name"],
                                 reason=f"{dev} is not a block device path")


class Storage(LibvirtObjects):
    def __init__(self, libvirt: LibvirtConnection, events: EventHub, vms: VmInventory,
                 template_pools: Callable[[], dict[str, list[str]]],
                 host: str = LOCAL_HOST) -> None:
        super().__init__(libvirt, events, host)
        self.vms = vms
        self.template_pools = template_pools  # pool name -> templates naming it (blocking)

    # -- reading ------------------------------------------------------------------------

    async def list_pools(self) -> list[dict[str, Any]]:
        pools = await self._run(lambda c: [_safely(pool_info, p, _broken_pool)
                                           for p in c.listAllStoragePools(0)])
        return sorted(await self._with_usage(*pools), key=lambda p: p["name"])

    async def get_pool(self, name: str) -> dict[str, Any]:
        return await self._one_with_usage(
            await self._run(lambda c: pool_info(self._pool(c, name))))

    async def _one_with_usage(self, pool: dict[str, Any]) -> dict[str, Any]:
        return (await self._with_usage(pool))[0]

    async def _with_usage(self, *pools: dict[str, Any]) -> list[dict[str, Any]]:
        """``used_by`` and ``in_use`` of each pool: the templates read once, the VMs once."""
        named = await threads.deferToThread(self.template_pools)
        vms = self.vms.list()
        for pool in pools:
            pool["used_by"] = {"templates": sorted(named.get(pool["name"], [])),
                               "vms": sorted({vm["name"] for vm in vms
                                              if _vm_uses_pool(vm, pool)})}
            pool["in_use"] = bool(pool["used_by"]["templates"] or pool["used_by"]["vms"])
        return list(pools)

    @staticmethod
    def _pool(conn: Any, name: str) -> Any:
        try:
            return conn.storagePoolLookupByName(name)
        except lv().libvirtError:
            raise NotFound("KCHPOOL0002E", name=name) from None

    async def list_volumes(self, pool: str) -> list[dict[str, Any]]:
        def read(c: Any) -> list[dict[str, Any]]:
            p = self._pool(c, pool)
            if not p.isActive():
                raise InvalidOperation("KCHVOL0004E", pool=pool)
            # a volume that cannot be read (gone meanwhile, unreadable) is left out: one bad
            # file never hides the others (Kimchi's #1279)
            return [v for v in (_safely(volume_info, v, lambda _v, _e: None)
                                for v in p.listAllVolumes(0)) if v is not None]

        vols = await self._run(read)
        users = self._disk_users()
        for v in vols:
            v["used_by"] = users.get(v["path"], [])
        return sorted(vols, key=lambda v: v["name"])

    async def get_volume(self, pool: str, name: str) -> dict[str, Any]:
        v = await self._run(lambda c: volume_info(self._volume(c, pool, name)))
        v["used_by"] = self._disk_users().get(v["path"], [])
        return v

    def _volume(self, conn: Any, pool: str, name: str) -> Any:
        p = self._pool(conn, pool)
        if not p.isActive():
            raise InvalidOperation("KCHVOL0004E", pool=pool)
        try:
            return p.storageVolLookupByName(name)
        except lv().libvirtError:
            raise NotFound("KCHVOL0002E", name=name, pool=pool) from None

    def _disk_users(self) -> dict[str, list[str]]:
        """Disk path -> the VMs with it as a disk, from one look at the VM view."""
        users: dict[str, set[str]] = {}
        for vm in self.vms.list():
            for d in vm.get("disks", []):
                if d.get("path"):
                    users.setdefault(d["path"], set()).add(vm["name"])
        return {path: sorted(names) for path, names in users.items()}

    # -- pools --------------------------------------------------------------------------

    async def create_pool(self, body: dict[str, Any]) -> dict[str, Any]:
        check_pool_request(body)
        name = body["name"]
        xml = pool_xml(body)

        def make(c: Any) -> dict[str, Any]:
            libvirt = lv()
            try:
                c.storagePoolLookupByName(name)
                raise InvalidOperation("KCHPOOL0001E", name=name)
            except libvirt.libvirtError:
                pass
            path = body.get("path", "")
            made_dir = body["type"] == "dir" and not os.path.exists(path)
            try:
                pool = c.storagePoolDefineXML(xml, 0)
            except libvirt.libvirtError as e:
                raise InvalidOperation("KCHPOOL0009E", name=name, error=why(e)) from None
            try:
                if body["type"] in ("dir", "netfs", "logical"):
                    pool.build(0)  # a folder (0755), a mount point, a volume group
                pool.setAutostart(1)
                pool.create(0)
            except libvirt.libvirtError as e:  # undo: no half-made pool stays behind
                try:
                    pool.undefine()
                except libvirt.libvirtError:
                    pass
                if made_dir:
                    try:
                        os.rmdir(path)
                    except OSError:
                        pass
                raise OperationFailed("KCHPOOL0009E", name=name, error=why(e)) from None
            return pool_info(pool)

        out = await self._one_with_usage(await self._run(make))
        await self._publish("storagepool.created", out)
        return out

    async def set_autostart(self, name: str, autostart: bool) -> dict[str, Any]:
        def change(c: Any) -> dict[str, Any]:
            p = self._pool(c, name)
            p.setAutostart(1 if autostart else 0)
            return pool_info(p)

        out = await self._one_with_usage(await self._run(change))
        await self._publish("storagepool.updated", out)
        return out

    async def activate(self, name: str) -> dict[str, Any]:
        def start(c: Any) -> dict[str, Any]:
            p = self._pool(c, name)
            if p.isActive():
                raise InvalidOperation("KCHPOOL0008E", name=name, state="active")
            try:
                p.create(0)
            except lv().libvirtError as e:
                raise OperationFailed("KCHPOOL0009E", name=name, error=why(e)) from None
            return pool_info(p)

        out = await self._one_with_usage(await self._run(start))
        await self._publish("storagepool.updated", out)
        return out

    async def deactivate(self, name: str) -> dict[str, Any]:
        pool = await self.get_pool(name)
        running = [vm["name"] for vm in self.vms.list()
                   if vm["state"] != "shutoff" and _vm_uses_pool(vm, pool)]
        if running:
            raise InvalidOperation("KCHPOOL0007E", name=name, vms=", ".join(sorted(running)))

        def stop(c: Any) -> dict[str, Any]:
            p = self._pool(c, name)
            if not p.isActive():
                raise InvalidOperation("KCHPOOL0008E", name=name, state="inactive")
            try:
                p.destroy()
            except lv().libvirtError as e:
                raise OperationFailed("KCHPOOL0009E", name=name, error=why(e)) from None
            return pool_info(p)

        out = await self._one_with_usage(await self._run(stop))
        await self._publish("storagepool.updated", out)
        return out

    async def refresh(self, name: str) -> dict[str, Any]:
        def again(c: Any) -> dict[str, Any]:
            p = self._pool(c, name)
            if not p.isActive():
                raise InvalidOperation("KCHVOL0004E", pool=name)
            p.refresh(0)
            return pool_info(p)

        return await self._one_with_usage(await self._run(again))

    async def delete_pool(self, name: str) -> None:
        pool = await self.get_pool(name)
        if pool["state"] == "active":
            raise InvalidOperation("KCHPOOL0005E", name=name)
        if pool["used_by"]["templates"]:
            raise InvalidOperation("KCHPOOL0006E", name=name,
                                   templates=", ".join(pool["used_by"]["templates"]))

        def drop(c: Any) -> None:
            p = self._pool(c, name)
            try:
                p.undefine()  # the pool's definition only: its files stay where they are
            except lv().libvirtError as e:
                raise OperationFailed("KCHPOOL0009E", name=name, error=why(e)) from None

        await self._run(drop)
        await self._publish("storagepool.deleted", {"name": name})

    # -- volumes ------------------------------------------------------------------------

    async def create_volume(self, pool: str, body: dict[str, Any]) -> dict[str, Any]:
        name, capacity, fmt = body["name"], int(body["capacity"]), body.get("format", "qcow2")
        xml = volume_xml(name, capacity, fmt)

        def make(c: Any) -> dict[str, Any]:
            libvirt = lv()
            p = self._pool(c, pool)
            if not p.isActive():
                raise InvalidOperation("KCHVOL0004E", pool=pool)
            try:
                p.storageVolLookupByName(name)
                raise InvalidOperation("KCHVOL0001E", name=name, pool=pool)
            except libvirt.libvirtError:
                pass
            _, _, _, available = p.info()
            if fmt == "raw" and capacity > available:
                raise InvalidOperation("KCHVOL0003E", capacity=capacity,
                                     reason=f"the pool has {available} bytes free")
            try:
                return volume_info(p.createXML(xml, 0))
            except libvirt.libvirtError as e:
                raise InvalidOperation("KCHVOL0006E", name=name, error=why(e)) from None

        out = await self._run(make)
        out["used_by"] = []
        await self._publish("storagevolume.created", {**out, "pool": pool})
        return out

    async def delete_volume(self, pool: str, name: str) -> None:
        vol = await self.get_volume(pool, name)
        if vol["used_by"]:
            raise InvalidOperation("KCHVOL0005E", name=name, vms=", ".join(vol["used_by"]))

        def drop(c: Any) -> None:
            try:
                self._volume(c, pool, name).delete(0)
            except lv().libvirtError as e:
                raise OperationFailed("KCHVOL0006E", name=name, error=why(e)) from None

        await self._run(drop)
        await self._publish("storagevolume.deleted", {"name": name, "pool": pool})

    async def resize_volume(self, pool: str, name: str, size: int) -> dict[str, Any]:
        vol = await self.get_volume(pool, name)
        if size < vol["capacity"]:
            raise InvalidOperation("KCHVOL0007E", name=name, capacity=vol["capacity"])
        states = {vm["name"]: vm["state"] for vm in self.vms.list()}
        running = [n for n in vol["used_by"] if states.get(n) != "shutoff"]
        if running:
            raise InvalidOperation("KCHVOL0005E", name=name, vms=", ".join(running))

        def grow(c: Any) -> dict[str, Any]:
            libvirt = lv()
            v = self._volume(c, pool, name)
            try:
                v.resize(size, 0)
            except libvirt.libvirtError as e:
                if e.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:  # the driver cannot: say so
                    raise InvalidOperation("KCHVOL0006E", name=name, error=why(e)) from None
                raise OperationFailed("KCHVOL0006E", name=name, error=why(e)) from None
            return volume_info(v)

        out = await self._run(grow)
        out["used_by"] = vol["used_by"]
        await self._publish("storagevolume.updated", {**out, "pool": pool})
        return out


def _safely(read: Callable[[Any], Any], obj: Any, instead: Callable[[Any, str], Any]) -> Any:
    try:
        return read(obj)
    except lv().libvirtError as e:
        return instead(obj, why(e))


def _broken_pool(pool: Any, error: str) -> dict[str, Any]:
    """What is known of a pool libvirt cannot describe: listed, with the reason."""
    try:
        name = pool.name()
    except lv().libvirtError:
        name = "?"
    return {"name": name, "uuid": "", "state": "inaccessible", "autostart": False,
            "persistent": True, "capacity": 0, "allocated": 0, "available": 0,
            "nr_volumes": 0, "type": "", "path": "", "source": {}, "error": error}


def _vm_uses_pool(vm: dict[str, Any], pool: dict[str, Any]) -> bool:
    base = pool.get("path") or ""
    for d in vm.get("disks", []):
        if d.get("device") == "cdrom":
            continue
        if d.get("pool") == pool["name"]:
            return True
        path = d.get("path") or ""
        if base and path.startswith(base.rstrip("/") + "/"):
            return True
    return False

