"""Cloning a VM: its disks copied by a worker (``qemu-img``), then a new domain defined.

``POST /vms/<name>/clone`` (or ``/hosts/<host>/vms/<name>/clone``) checks the VM
(shut off, file-backed disks) while the client waits, and for the local host, whose
files the daemon sees, that the disks exist and the targets do not; then it answers
202 with a ``vm.clone`` task.  That task runs in the daemon (it ends in libvirt calls
on the connection the daemon holds to the VM's host): it queues a ``vm.clone.disks``
job for the workers of the VM's host — the file work, checked there, with
``qemu-img convert`` progress — follows it, passing its progress on, and once the
copies are made defines the new domain (new name, new UUID, new MAC addresses).  A
failure or a cancel at any point removes the copies (a ``disks.remove`` job on the same
host's workers); the source VM cannot be started while it is being copied.  If the
daemon dies, the next one takes the task over, stops the copy the lost attempt had
started, removes its files and starts again.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

from twisted.logger import Logger

from kimchi import bus
from kimchi.bus.context import JobContext, Stop
from kimchi.bus.follow import ChildGone, child_id, follow, last_event, stop_child
from kimchi.bus.sync import SyncBus
from kimchi.bus.text import TaskText
from kimchi.errors import InvalidOperation, KimchiError, NotFound
from kimchid.model.domainxml import METADATA_NS
from kimchid.model.hosts import Host, Hosts
from kimchid.model.tasks import TaskService
from kimchid.model.vm_create import VmCreator, _created_by

log = Logger()

KIND = "vm.clone"
DISKS_KIND = "vm.clone.disks"
REMOVE_KIND = "disks.remove"
_NS = f"{{{METADATA_NS}}}"


def _source_xml(conn: Any, uuid: str) -> ET.Element:
    import libvirt

    dom = conn.lookupByUUIDString(uuid)
    # SECURE: the clone keeps the VNC/SPICE password; the XML never leaves the daemon
    # (it is not in the task, which users may read)
    return ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE
                                     | libvirt.VIR_DOMAIN_XML_SECURE))


def _plan(conn: Any, uuid: str, new: str, files_here: bool) -> list[dict[str, str]]:
    """The copies to make (blocking: libvirt thread); with ``files_here`` (the VM's host
    is this machine), checked against its files: else the copy job checks them there."""
    root = _source_xml(conn, uuid)
    copies: list[dict[str, str]] = []
    for i, disk in enumerate(d for d in root.findall("./devices/disk")
                             if d.get("device", "disk") == "disk"):
        src = disk.find("source")
        path = src.get("file") if src is not None and disk.get("type") == "file" else None
        if src is None or not path:
            target = disk.find("target")
            raise InvalidOperation("KCHVM0017E", path=target.get("dev") if target is not None
                                 else "?", reason="only disks that are files can be cloned")
        if files_here and not os.path.isfile(path):
            raise InvalidOperation("KCHVM0017E", path=path, reason="the file does not exist")
        driver = disk.find("driver")
        fmt = driver.get("type", "raw") if driver is not None else "raw"
        if fmt not in ("qcow2", "raw"):
            raise InvalidOperation("KCHVM0017E", path=path, reason=f"{fmt} images are not copied")
        dst = os.path.join(os.path.dirname(path),
                           f"{new}-{i}.{'qcow2' if fmt == 'qcow2' else 'img'}")
        if files_here and (os.path.lexists(dst) or os.path.lexists(dst + ".part")):
            raise InvalidOperation("KCHVM0007E", volume=os.path.basename(dst),
                                 pool=os.path.dirname(dst))
        copies.append({"src": path, "dst": dst, "format": fmt})
    return copies


def _clone_xml(conn: Any, uuid: str, new: str, copies: list[dict[str, str]]) -> ET.Element:
    """The source's definition with the copies for disks and an identity of its own."""
    root = _source_xml(conn, uuid)
    dst = {c["src"]: c["dst"] for c in copies}
    for src in root.findall("./devices/disk/source"):
        if src.get("file") in dst:
            src.set("file", dst[src.get("file", "")])
    _new_identity(root, new)
    return root


def _new_identity(root: ET.Element, new: str) -> None:
    """Another name, UUID and MAC addresses: a VM of its own, not a twin."""
    for tag in ("uuid", "genid"):
        for el in root.findall(tag):
            root.remove(el)
    name = root.find("name")
    assert name is not None
    old = name.text or ""
    name.text = new
    title = root.find("title")
    if title is not None and title.text == old:
        title.text = new
    for iface in root.findall("./devices/interface"):
        for mac in iface.findall("mac"):
            iface.remove(mac)
    for g in root.findall("./devices/graphics"):
        if g.get("autoport", "yes") == "yes":
            g.attrib.pop("port", None)


def kimchi_metadata(root: ET.Element) -> ET.Element:
    """A domain's ``<metadata><kimchi:vm>`` element, made if it has none."""
    ET.register_namespace("kimchi", METADATA_NS)
    meta = root.find("metadata")
    if meta is None:
        meta = ET.SubElement(root, "metadata")
    vm = meta.find(f"{_NS}vm")
    if vm is None:
        vm = ET.SubElement(meta, f"{_NS}vm")
    return vm


def _with_task(root: ET.Element, task_id: str, source: str) -> str:
    """The clone's XML, recording the task that makes it and the VM it was cloned from."""
    vm = kimchi_metadata(root)
    for tag, value in (("task", task_id), ("cloned_from", source)):
        el = vm.find(f"{_NS}{tag}")
        if el is None:
            el = ET.SubElement(vm, f"{_NS}{tag}")
        el.text = value
    return ET.tostring(root, encoding="unicode")


class VmCloner:
    def __init__(self, tasks: TaskService, hosts: Hosts, creator: VmCreator,
                 copy_limit_mib: float = 0.0) -> None:
        self.tasks = tasks
        self.hosts = hosts
        self.creator = creator
        self.rate_limit = int(copy_limit_mib * 1024 * 1024)
        self._sources: dict[str, str] = {}  # UUID of a VM being copied -> the clone's name

    # -- while the client waits ------------------------------------------------------

    async def clone(self, host: Host, source: str, new: str | None,
                    owner: str = "") -> dict[str, Any]:
        vm = host.vms.get(source)
        if vm["state"] != "shutoff":
            raise InvalidOperation("KCHVM0016E", name=source, state=vm["state"])
        await self.creator.forget_ended()
        await self._forget_ended()
        if vm["uuid"] in self._sources:
            raise InvalidOperation("KCHVM0019E", name=source)
        name = new or self.creator.free_name(f"{source}-clone", host.vms)
        self.creator.check_free(name, host.vms)
        with self.creator.holding(name):
            copies = await host.conn.run(lambda c: _plan(c, vm["uuid"], name, host.local))
            where = "" if host.local else f"/hosts/{host.name}"
            task = await self.tasks.submit(
                KIND, {"source": source, "source_uuid": vm["uuid"], "name": name,
                       "copies": copies, "host": host.name}, f"{where}/vms/{name}", owner,
                host=host.name)
        self.creator.hold(name, task["id"])
        self._sources[vm["uuid"]] = task["id"]
        return task

    def hold_source(self, uuid: str, task_id: str) -> None:
        """The VM is being copied by another task (made a template): it must not start."""
        self._sources[uuid] = task_id

    async def cloning(self, uuid: str) -> bool:
        """Whether this VM's disks are being copied (it must not start meanwhile)."""
        if uuid not in self._sources:
            return False
        await self._forget_ended()
        return uuid in self._sources

    async def _forget_ended(self) -> None:
        for uuid, task_id in list(self._sources.items()):
            if await self.tasks.ended(task_id):
                self._sources.pop(uuid, None)

    # -- the job (on a runner thread of the daemon) ---------------------------------------

    def run(self, ctx: JobContext) -> dict[str, Any]:
        p = ctx.params
        name, copies = p["name"], p["copies"]
        try:
            host = self.hosts.get(p.get("host", bus.LOCAL_HOST))
        except NotFound:  # forgotten since the task was made
            raise KimchiError("KCHHOST0001E", name=p.get("host")) from None
        sync = self.tasks.blocking()
        attempt = int(ctx.attempt)
        try:
            if attempt > 1:
                uuid = host.conn.call(lambda c: _created_by(c, name, ctx.task_id))
                if uuid:
                    return {"name": name, "uuid": uuid,
                            "message": TaskText("Cloned {source}", source=p["source"])}
                earlier = [child_id(ctx.task_id, n) for n in range(1, attempt)]
                for child in earlier:  # the lost attempt's copy: stop it first
                    stop_child(sync, child)
                remove_made(sync, host.name, copies, earlier, ctx.task_id)
            child = child_id(ctx.task_id, attempt)
            since = last_event(sync)
            sync.submit(DISKS_KIND, {"copies": copies, "parent": ctx.task_id,
                                     "rate_limit": self.rate_limit},
                        f"/vms/{name}", task_id=child, host=host.name)
            try:
                done = follow(ctx, sync, child, since, 0.95, self.tasks.redis.timeout,
                              copy_task=child)
            except ChildGone:
                raise KimchiError("KCHVM0018E", name=p["source"],
                                  error="the copy job disappeared") from None
            if done["status"] != "finished":
                raise KimchiError("KCHVM0018E", name=p["source"], error=done["message"])
            ctx.progress(96, TaskText("Defining virtual machine {name}", name=name))
            ctx.flush()
            def define(conn: Any) -> str:
                root = _clone_xml(conn, p["source_uuid"], name, copies)
                return _define(conn, _with_task(root, ctx.task_id, p["source"]), copies)

            uuid = host.conn.call(define)
            host.vms.wait_listed(uuid)
            return {"name": name, "uuid": uuid, "host": host.name,
                    "message": TaskText("Cloned {source} as {name}", source=p["source"],
                                        name=name),
                    "disks": [c["dst"] for c in copies]}
        except BaseException as e:
            if isinstance(e, Stop) and e.why in ("lost", "handback"):
                raise  # another attempt takes over and tidies up
            stop_child(sync, child_id(ctx.task_id, attempt))
            self._undo(host, sync, name, ctx.task_id, copies, child_id(ctx.task_id, attempt))
            if isinstance(e, (Stop, KimchiError)):
                raise
            raise KimchiError("KCHVM0018E", name=p["source"], error=str(e)) from e

    @staticmethod
    def _undo(host: Host, sync: SyncBus, name: str, task_id: str,
              copies: list[dict[str, str]], child: str) -> None:
        def undefine(conn: Any) -> None:
            uuid = _created_by(conn, name, task_id)
            if uuid:
                conn.lookupByUUIDString(uuid).undefine()

        try:
            host.conn.call(undefine)
        except Exception as e:
            log.error("cloning {name}: domain not removed: {e}", name=name, e=str(e))
        remove_made(sync, host.name, copies, [child], task_id)


def _define(conn: Any, xml: str, copies: list[dict[str, str]]) -> str:
    """Define the clone; refresh the pools first so its disks show as volumes."""
    dirs = {os.path.dirname(c["dst"]) for c in copies}
    for pool in conn.listAllStoragePools(0):
        try:
            if pool.isActive() and ET.fromstring(pool.XMLDesc(0)).findtext(
                    "target/path") in dirs:
                pool.refresh(0)
        except Exception:
            pass
    return str(conn.defineXML(xml).UUIDString())


def remove_made(sync: SyncBus, host: str, copies: list[dict[str, str]], children: list[str],
            task_id: str) -> None:
    """Remove what the copy jobs ``children`` made for a clone (or a template) that will
    not be: a ``disks.remove`` job on ``host``'s workers, whose disk it is on, waited for.

    A copy job that did not finish removed what it wrote itself; one that finished left
    its copies, which go now, with any ``.part`` a killed worker left.  A file that was at
    a copy's path before the clone (the job refused to write over it) is never touched."""
    paths: list[str] = []
    for child in children:
        t = sync.task(child)
        if t is None or not int(t.get("attempt") or 0):
            continue  # never taken by a worker: it wrote nothing
        paths += [c["dst"] + ".part" for c in copies if c["dst"] + ".part" not in paths]
        if t["status"] == "finished":
            paths += (t.get("result") or {}).get("copied", [])
    if not paths:
        return
    try:
        job = sync.submit(REMOVE_KIND, {"paths": paths, "parent": task_id}, "", host=host)
        done = sync.wait(job, timeout=60)
    except Exception as e:  # Redis away, or no worker for the host
        done = {"status": "failed", "message": str(e)}
    if done.get("status") != "finished":
        log.error("the copies of a failed clone stay on host {host}: {paths}: {why}",
                  host=host, paths=", ".join(paths),
                  why=done.get("message") or "no worker removed them")
