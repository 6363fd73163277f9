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

import errno
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from twisted.internet import defer, threads
from twisted.logger import Logger

from kimchi.bus import LOCAL_HOST
from kimchi.errors import (
    Conflict,
    InvalidOperation,
    InvalidRequest,
    KimchiError,
    NotFound,
    OperationFailed,
)
from kimchi.outbound import DestinationRefused, OutboundPolicy
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.model.events import Event, EventFilter, EventHub, Watcher
from kimchid.model.libvirtobjects import LibvirtObjects, lv, why
from kimchid.model.vms import VmInventory

if TYPE_CHECKING:
    from kimchid.model.hosts import Host, Hosts
    from kimchid.model.tasks import TaskService

log = Logger()

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



# -- images onto the host: downloads, uploads, wipes and clones ----------------------------

UPLOAD_FORMATS = ("raw", "qcow2", "iso")
#: the pools whose volumes are files in a folder kimchi can write: downloads, uploads,
#: wipes and clones go there
FOLDER_POOLS = ("dir", "netfs")
VOLUME_JOBS = ("volume.download", "volume.clone", "volume.wipe")
CHUNK_LIMIT = 64 * 1024 * 1024  # bytes of one PUT .../content


@dataclass
class Upload:
    """A volume being uploaded: ``total`` bytes to come, ``offset`` of them arrived."""

    host: str
    pool: str
    name: str
    folder: str
    total: int
    format: str
    local: bool
    offset: int = 0
    lock: defer.DeferredLock = field(default_factory=defer.DeferredLock)

    @property
    def path(self) -> str:
        return os.path.join(self.folder, self.name)

    @property
    def part(self) -> str:
        """Where the bytes go: ``<name>.part`` on the daemon's own host; the volume itself
        on another (libvirt streams it there)."""
        return self.path + ".part" if self.local else self.path

    def view(self) -> dict[str, Any]:
        return {"name": self.name, "pool": self.pool, "host": self.host, "path": self.path,
                "format": self.format, "capacity": self.total, "received": self.offset,
                "complete": self.offset >= self.total}


def parse_content_range(value: str | None) -> tuple[int, int, int]:
    """``bytes a-b/total`` -> (a, b, total), or 400 KCHVOL0015E."""
    text = (value or "").strip()
    unit, _, rest = text.partition(" ")
    span, _, total = rest.partition("/")
    first, _, last = span.partition("-")
    if unit.lower() != "bytes" or not (first.isdigit() and last.isdigit() and total.isdigit()):
        raise InvalidRequest("KCHVOL0015E", value=text[:80] or "(none)",
                             reason="expected bytes <first>-<last>/<total>")
    a, b, n = int(first), int(last), int(total)
    if a > b or b >= n:  # a rule between the numbers: a refusal, not a malformed header
        raise InvalidOperation("KCHVOL0019E", value=text[:80], reason="not a range of the total")
    return a, b, n


class _FinishedVolumeJobs(Watcher):
    """Refreshes a pool when a job that wrote a file into it ends (a download, a clone),
    so the new volume is listed at once."""

    def __init__(self, transfers: VolumeTransfers) -> None:
        super().__init__(EventFilter("task.finished,task.failed,task.cancelled"), 10_000)
        self.transfers = transfers

    def write(self, ev: Event) -> None:
        try:
            task = json.loads(ev.text).get("data") or {}
        except ValueError:
            return
        if task.get("kind") not in VOLUME_JOBS or not isinstance(task.get("params"), dict):
            return
        d = defer.Deferred.fromCoroutine(self.transfers.refreshed(
            task.get("host") or LOCAL_HOST, task["params"].get("pool", ""),
            task, ev.type == "task.finished"))
        d.addErrback(lambda f: log.warn("pool refresh after task {id}: {e}", id=task.get("id"),
                                        e=f.getErrorMessage()))

    def write_reset(self) -> None:
        pass

    def drop(self, reason: str) -> None:
        self.transfers.watching = None  # watched again at the next volume request


class VolumeTransfers:
    """Volumes whose bytes come from elsewhere: downloaded from a URL (a ``volume.download``
    job on a worker of the pool's host), uploaded in chunks through the daemon, wiped and
    cloned (``volume.wipe``, ``volume.clone`` jobs).  Only in folder pools (dir, netfs).

    An upload to the daemon's own host is written straight into ``<name>.part`` in the pool's
    folder and renamed when its last byte has come and ``qemu-img info`` has read it; to
    another host the bytes go through libvirt (``virStorageVol.upload``) into a volume made
    for it.  Uploads in progress are known to this daemon only: after a restart, ``POST``
    the upload again (same name and capacity) and the local ``.part`` continues from its
    size."""

    def __init__(self, hosts: Hosts, tasks: TaskService, outbound: OutboundPolicy,
                 copy_limit_mib: float = 0.0) -> None:
        """``copy_limit_mib``: ``[workers] copy_limit_mib``, the MiB/s a clone may copy."""
        self.rate_limit = int(copy_limit_mib * 1024 * 1024)
        self.hosts = hosts
        self.tasks = tasks
        self.outbound = outbound
        self.uploads: dict[tuple[str, str, str], Upload] = {}
        self.watching: _FinishedVolumeJobs | None = None
        if hosts.clock is not None:  # jobs queued before a restart end refreshed too
            hosts.clock.callLater(1.0, self.watch_quietly)

    def watch_quietly(self) -> None:
        """Start following volume jobs' ends now, if not yet (Redis away: at the next
        volume request)."""
        if self.watching is not None:
            return
        d = defer.Deferred.fromCoroutine(self._watch_jobs())
        d.addErrback(self._watch_later)

    def _watch_later(self, failure: Any) -> None:
        log.debug("volume jobs not followed yet: {e}", e=failure.getErrorMessage())
        if self.hosts.clock is not None and self.watching is None:
            self.hosts.clock.callLater(5.0, self.watch_quietly)

    async def _watch_jobs(self) -> None:
        if self.watching is None:
            self.watching = _FinishedVolumeJobs(self)
            try:
                await self.hosts.events.watch(self.watching, None)
            except Exception:
                self.watching = None
                raise

    async def refreshed(self, host: str, pool: str, task: dict[str, Any], done: bool) -> None:
        """After a volume job: the pool refreshed, and the new volume announced."""
        try:
            st = self.hosts.get(host).storage
        except NotFound:
            return
        await st.refresh(pool)
        result = task.get("result") or {}
        if done and task.get("kind") in ("volume.download", "volume.clone") \
                and result.get("name"):
            vol = await st.get_volume(pool, result["name"])
            await st._publish("storagevolume.created", {**vol, "pool": pool})
        elif done:
            vol = await st.get_volume(pool, task["params"].get("name", ""))
            await st._publish("storagevolume.updated", {**vol, "pool": pool})

    # -- checks ---------------------------------------------------------------------------

    async def folder_pool(self, st: Storage, pool: str) -> dict[str, Any]:
        """The pool, when it is an active folder pool (else 400)."""
        p = await st._run(lambda c: pool_info(st._pool(c, pool)))
        if p["state"] != "active":
            raise InvalidOperation("KCHVOL0004E", pool=pool)
        if p["type"] not in FOLDER_POOLS or not p["path"]:
            raise InvalidOperation("KCHVOL0008E", pool=pool, type=p["type"] or "?")
        return p

    async def _free_name(self, st: Storage, pool: dict[str, Any], name: str,
                         local: bool) -> None:
        """400 when ``name`` is taken in the pool: a volume, a file, or one being made."""
        def taken(c: Any) -> bool:
            try:
                st._pool(c, pool["name"]).storageVolLookupByName(name)
                return True
            except lv().libvirtError:
                return False

        if await st._run(taken):
            raise InvalidOperation("KCHVOL0001E", name=name, pool=pool["name"])
        if (st.host, pool["name"], name) in self.uploads:
            raise InvalidOperation("KCHVOL0018E", name=name, pool=pool["name"])
        path = os.path.join(pool["path"], name)
        if local and await threads.deferToThread(os.path.exists, path):
            raise InvalidOperation("KCHVOL0001E", name=name, pool=pool["name"])
        for kind in VOLUME_JOBS:
            for t in await self.tasks.list(status="running", kind=kind, limit=10_000):
                params = t.get("params") or {}
                made = params.get("name") if kind == "volume.download" else (
                    os.path.basename(params.get("dst", "")) if kind == "volume.clone" else "")
                if t.get("host") == st.host and params.get("pool") == pool["name"] \
                        and made == name:
                    raise InvalidOperation("KCHVOL0018E", name=name, pool=pool["name"])

    async def _check_url(self, url: str) -> None:
        """400 KCHVOL0009E unless ``url`` is http(s) to an address ``[outbound] allow``
        admits (the worker checks every connection again, redirections included)."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise InvalidOperation("KCHVOL0009E", url=url, reason="bad port") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise InvalidOperation("KCHVOL0009E", url=url, reason="not an http or https URL")
        port = port or (443 if parts.scheme.lower() == "https" else 80)
        try:
            await threads.deferToThread(self.outbound.addresses, parts.hostname, port)
        except DestinationRefused as e:
            raise InvalidOperation("KCHVOL0009E", url=url, reason=f"{e.target} is a {e.kind} "
                                   "address: kimchi connects there only when [outbound] "
                                   "allow lists it") from None
        except OSError as e:
            raise InvalidOperation("KCHVOL0009E", url=url,
                                   reason=f"{parts.hostname}: {e}") from None

    # -- jobs -----------------------------------------------------------------------------

    async def download(self, host: Host, pool: str, body: dict[str, Any], owner: str,
                       where: str) -> dict[str, Any]:
        """Queue a ``volume.download``; its task."""
        params = await self.download_params(host, pool, body)
        return await self.tasks.submit("volume.download", params,
                                       f"{where}/storagevolumes/{params['name']}", owner,
                                       host=host.name)

    async def download_params(self, host: Host, pool: str, body: dict[str, Any]
                              ) -> dict[str, Any]:
        """The checked parameters of a ``volume.download`` of ``body`` (``name``, ``url``,
        ``checksum``) into ``pool`` of ``host``: its own task's, or a job that follows it
        (a template of an image at a URL)."""
        st = host.storage
        p = await self.folder_pool(st, pool)
        name, url = body["name"], body["url"]
        await self._check_url(url)
        await self._free_name(st, p, name, host.local)
        await self._watch_jobs()
        return {"name": name, "pool": pool, "dir": p["path"], "url": url,
                "checksum": body.get("checksum", ""), "allow": self._allow()}

    def _allow(self) -> list[str]:
        """``[outbound] allow`` again, for the worker's own checks."""
        o = self.outbound
        return [*(str(n) for n in o.networks), *sorted(o.names), *(f"*{d}" for d in o.domains)]

    async def wipe(self, host: Host, pool: str, name: str, owner: str,
                   where: str) -> dict[str, Any]:
        st = host.storage
        await self.folder_pool(st, pool)
        vol = await st.get_volume(pool, name)
        self._not_running(st, vol)
        await self._watch_jobs()
        params = {"name": name, "pool": pool, "path": vol["path"], "format": vol["format"],
                  "capacity": vol["capacity"]}
        return await self.tasks.submit("volume.wipe", params,
                                       f"{where}/storagevolumes/{name}", owner, host=host.name)

    async def clone(self, host: Host, pool: str, name: str, new: str, owner: str,
                    where: str) -> dict[str, Any]:
        st = host.storage
        p = await self.folder_pool(st, pool)
        vol = await st.get_volume(pool, name)
        self._not_running(st, vol)
        await self._free_name(st, p, new, host.local)
        await self._watch_jobs()
        fmt = vol["format"] if vol["format"] in VOLUME_FORMATS else "raw"
        params = {"name": name, "pool": pool, "src": vol["path"],
                  "dst": os.path.join(p["path"], new), "format": fmt,
                  "rate_limit": self.rate_limit}
        return await self.tasks.submit("volume.clone", params,
                                       f"{where}/storagevolumes/{new}", owner, host=host.name)

    @staticmethod
    def _not_running(st: Storage, vol: dict[str, Any]) -> None:
        states = {vm["name"]: vm["state"] for vm in st.vms.list()}
        running = [n for n in vol["used_by"] if states.get(n) != "shutoff"]
        if running:
            raise InvalidOperation("KCHVOL0005E", name=vol["name"], vms=", ".join(running))

    # -- uploads --------------------------------------------------------------------------

    async def start_upload(self, host: Host, pool: str, body: dict[str, Any]) -> dict[str, Any]:
        """Make the target of an upload of ``capacity`` bytes (see the class)."""
        st = host.storage
        p = await self.folder_pool(st, pool)
        name, total, fmt = body["name"], int(body["capacity"]), body.get("format", "raw")
        key = (host.name, pool, name)
        if fmt not in UPLOAD_FORMATS:
            raise InvalidOperation("KCHVOL0016E", name=name, format=fmt, reason="unknown format")
        up = Upload(host.name, pool, name, p["path"], total, fmt, host.local)
        resumed = 0
        if host.local:
            try:
                resumed = await threads.deferToThread(os.path.getsize, up.part)
            except OSError:
                resumed = 0
        if key in self.uploads:
            raise InvalidOperation("KCHVOL0018E", name=name, pool=pool)
        await self._free_name(st, p, name, host.local)
        if total - resumed > p["available"]:
            raise InvalidOperation("KCHVOL0011E", name=name, size=total, pool=pool,
                                   available=p["available"])
        if host.local:
            def make() -> int:
                fd = os.open(up.part, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    size = os.fstat(fd).st_size
                    if size > total:  # another upload's: begin again
                        os.ftruncate(fd, 0)
                        size = 0
                    return size
                finally:
                    os.close(fd)

            up.offset = await threads.deferToThread(make)
        else:
            xml = volume_xml(name, total, "raw")

            def make_volume(c: Any) -> None:
                try:
                    st._pool(c, pool).createXML(xml, 0)
                except lv().libvirtError as e:
                    raise InvalidOperation("KCHVOL0006E", name=name, error=why(e)) from None

            await st._run(make_volume)
        self.uploads[key] = up
        return up.view()

    def upload(self, host: Host, pool: str, name: str) -> Upload:
        up = self.uploads.get((host.name, pool, name))
        if up is None:
            raise NotFound("KCHVOL0014E", name=name, pool=pool)
        return up

    async def write_chunk(self, host: Host, pool: str, name: str, content_range: str | None,
                          data: bytes) -> Upload:
        """Write one chunk at its place; the last one completes the volume.  409 when it does
        not begin where the bytes received so far end."""
        first, last, total = parse_content_range(content_range)
        up = self.upload(host, pool, name)
        if total != up.total:
            raise InvalidOperation("KCHVOL0019E", value=content_range or "",
                                   reason=f"the upload is of {up.total} bytes")
        if len(data) != last - first + 1:
            raise InvalidOperation("KCHVOL0019E", value=content_range or "",
                                   reason=f"the body has {len(data)} bytes")
        async with up.lock:
            if (host.name, pool, name) not in self.uploads:  # cancelled meanwhile
                raise NotFound("KCHVOL0014E", name=name, pool=pool)
            if first != up.offset:
                err = Conflict("KCHVOL0013E", name=name, offset=up.offset, total=up.total)
                err.headers.update(upload_headers(up))
                raise err
            # written before the answer: overlapping the write with the next chunk's
            # transfer measured slower on 2 cores (bench/README.md, "Uploads")
            if up.local:
                try:
                    await threads.deferToThread(_write_at, up.part, first, data)
                except OSError as e:
                    if e.errno == errno.ENOSPC:
                        raise InvalidOperation("KCHVOL0011E", name=name, size=total, pool=pool,
                                               available=first) from None
                    raise OperationFailed("KCHVOL0017E", action="upload", name=name,
                                          reason=e.strerror or str(e)) from None
            else:
                await host.storage._run(lambda c: _stream_to(c, host.storage, up, first, data))
            up.offset = last + 1
            if up.offset == up.total:
                await self._complete(host, up)
        return up

    async def _complete(self, host: Host, up: Upload) -> None:
        st = host.storage
        try:
            if up.local:
                await threads.deferToThread(_check_image, up.part, up.name, up.format)
                await threads.deferToThread(_settle, up.part, up.path)
        except BaseException:
            self.uploads.pop((up.host, up.pool, up.name), None)
            if up.local:
                await threads.deferToThread(_unlink, up.part)
            raise
        self.uploads.pop((up.host, up.pool, up.name), None)
        try:  # the bytes are in place: a pool that cannot tell yet is no failure of theirs
            await st.refresh(up.pool)
            vol = await st.get_volume(up.pool, up.name)
        except KimchiError as e:
            log.warn("upload {name} to pool {pool} is complete, but not listed: {e}",
                     name=up.name, pool=up.pool, e=str(e))
            return
        await st._publish("storagevolume.created", {**vol, "pool": up.pool})

    async def cancel_upload(self, host: Host, pool: str, name: str) -> None:
        """Forget an upload and remove what it wrote."""
        up = self.upload(host, pool, name)
        async with up.lock:
            self.uploads.pop((host.name, pool, name), None)
            if up.local:
                await threads.deferToThread(_unlink, up.part)
            else:
                await host.storage.delete_volume(pool, name)


def upload_headers(up: Upload) -> dict[str, str]:
    """How much of an upload has come: ``Upload-Offset`` (the next byte expected),
    ``Upload-Length`` and ``Range: bytes=0-<last>`` (none while nothing has)."""
    out = {"Upload-Offset": str(up.offset), "Upload-Length": str(up.total)}
    if up.offset:
        out["Range"] = f"bytes=0-{up.offset - 1}"
    return out


def _write_at(path: str, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
    finally:
        os.close(fd)


def _stream_to(conn: Any, st: Storage, up: Upload, offset: int, data: bytes) -> None:
    """One chunk into another host's volume, through libvirt's stream (blocking)."""
    vol = st._volume(conn, up.pool, up.name)
    stream = conn.newStream(0)
    try:
        vol.upload(stream, offset, len(data), 0)
        sent = 0
        while sent < len(data):
            sent += stream.send(data[sent:sent + 4 * 1024 * 1024])
        stream.finish()
    except lv().libvirtError as e:
        try:
            stream.abort()
        except lv().libvirtError:
            pass
        raise OperationFailed("KCHVOL0006E", name=up.name, error=why(e)) from None


def _settle(part: str, path: str) -> None:
    """The complete upload on disk (fsync), then in place under its name."""
    fd = os.open(part, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(part, path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _check_image(path: str, name: str, fmt: str) -> None:
    """400 KCHVOL0016E unless ``qemu-img info`` reads ``path`` as ``fmt`` (qcow2, raw);
    an ISO is taken as it is."""
    if fmt == "iso":
        return
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        return
    try:
        done = subprocess.run([qemu_img, "info", "-U", "--output=json", path],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise InvalidOperation("KCHVOL0016E", name=name, format=fmt,
                               reason="qemu-img info took too long") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise InvalidOperation("KCHVOL0016E", name=name, format=fmt,
                               reason=lines[-1] if lines else "qemu-img cannot read it")
    found = json.loads(done.stdout).get("format", "")
    if found != fmt:
        raise InvalidOperation("KCHVOL0016E", name=name, format=fmt,
                               reason=f"it is a {found} image")
