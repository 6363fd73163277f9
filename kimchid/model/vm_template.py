"""A template made from a VM: the 2013 plan's "template from a VM".

``POST /vms/<name>/template {"name"}`` (the VM shut off) answers 202 with a
``vm.template`` task, run on the daemon's runner like the other VM jobs:

1. a worker of the VM's host (``vm.template.disks``) copies each disk to a new file,
   the template's base (``<template>-base-<i>.qcow2``, made read-only), and makes a
   qcow2 leaf over it for the VM (``<vm>-<i>-<template>.qcow2``); the VM's own files are
   only read, and the VM cannot be started meanwhile;
2. one libvirt call redefines the VM on its leaves: the commit point.  Before it, a
   failure, a cancel or a crash removes the bases and leaves and leaves the VM exactly
   as it was; after it, the task only completes;
3. the template is stored (its disks' ``base``, ``source_media {"type": "image",
   "owned": true}``: deleting the template deletes the bases), and the VM's old files
   are removed by a worker of its host (``disks.remove``).

A daemon that dies mid-way leaves the task to the next: it sees whether the VM is on
its leaves already (then completes), or removes what the lost attempt made and starts
again.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from kimchi.bus.context import JobContext, Stop
from kimchi.bus.follow import ChildGone, child_id, run_child, stop_child
from kimchi.bus.sync import SyncBus
from kimchi.bus.text import TaskText
from kimchi.errors import InvalidOperation, KimchiError, NotFound
from kimchi.faults import crash_point
from kimchid.model import osinfo
from kimchid.model.domainxml import METADATA_NS
from kimchid.model.hosts import Host, Hosts
from kimchid.model.tasks import TaskService
from kimchid.model.templates import TemplateService
from kimchid.model.vm_clone import VmCloner, kimchi_metadata, remove_made
from kimchid.model.vm_create import refresh_pools

log = Logger()

KIND = "vm.template"
DISKS_KIND = "vm.template.disks"
_NS = f"{{{METADATA_NS}}}"
_KEEP = ("os_distro", "os_version", "nic_model", "cdrom_bus", "tablet", "graphics",
         "cloud_init")  # what the VM's own template says beyond what the VM shows


def _volume(conn: Any, path: str) -> Any:
    """The storage volume at ``path``, the pools refreshed once if it is not found."""
    import libvirt

    try:
        return conn.storageVolLookupByPath(path)
    except libvirt.libvirtError:
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            try:
                pool.refresh(0)
            except libvirt.libvirtError:
                pass
    return conn.storageVolLookupByPath(path)


def _plan(conn: Any, uuid: str, vm: str, template: str, files_here: bool
          ) -> list[dict[str, Any]]:
    """What each disk becomes (blocking: a libvirt thread)."""
    import libvirt

    root = ET.fromstring(conn.lookupByUUIDString(uuid).XMLDesc(
        libvirt.VIR_DOMAIN_XML_INACTIVE))
    out: list[dict[str, Any]] = []
    for i, disk in enumerate(d for d in root.findall("./devices/disk")
                             if d.get("device", "disk") == "disk"):
        src = disk.find("source")
        path = src.get("file") if src is not None and disk.get("type") == "file" else None
        target = disk.find("target")
        dev = target.get("dev", "?") if target is not None else "?"
        if not path:
            raise InvalidOperation("KCHVM0043E", name=vm,
                                   reason=f"disk {dev} is not a file")
        driver = disk.find("driver")
        fmt = driver.get("type", "raw") if driver is not None else "raw"
        if fmt not in ("qcow2", "raw"):
            raise InvalidOperation("KCHVM0043E", name=vm,
                                   reason=f"disk {dev} is a {fmt} image (qcow2 or raw only)")
        try:
            vol = _volume(conn, path)
        except libvirt.libvirtError:
            raise InvalidOperation("KCHVM0043E", name=vm, reason=(
                f"disk {path} is in no storage pool of its host")) from None
        folder = os.path.dirname(path)
        base = os.path.join(folder, f"{template}-base-{i}.qcow2")
        leaf = os.path.join(folder, f"{vm}-{i}-{template}.qcow2")
        if files_here:
            for p in (base, leaf):
                if os.path.lexists(p) or os.path.lexists(p + ".part"):
                    raise InvalidOperation("KCHVM0043E", name=vm, reason=f"{p} exists already")
        out.append({"src": path, "format": fmt, "base": base, "leaf": leaf, "dev": dev,
                    "bus": target.get("bus", "virtio") if target is not None else "virtio",
                    "capacity": int(vol.info()[1]),
                    "pool": vol.storagePoolLookupByVolume().name()})
    if not out:
        raise InvalidOperation("KCHVM0043E", name=vm, reason="it has no disk")
    return out


def _switch(conn: Any, uuid: str, disks: list[dict[str, Any]], task_id: str) -> bool:
    """Redefine the VM on its leaves (the commit point); False when it already is."""
    import libvirt

    dom = conn.lookupByUUIDString(uuid)
    if dom.isActive():
        raise InvalidOperation("KCHVM0043E", name=dom.name(), reason="it was started")
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE
                                     | libvirt.VIR_DOMAIN_XML_SECURE))
    if _on_leaves(root, disks):
        return False
    by_src = {d["src"]: d for d in disks}
    for disk in root.findall("./devices/disk"):
        src = disk.find("source")
        d = by_src.get(src.get("file", "") if src is not None else "")
        if d is None or src is None:
            continue
        src.set("file", d["leaf"])
        driver = disk.find("driver")
        if driver is None:
            driver = ET.SubElement(disk, "driver", name="qemu")
        driver.set("type", "qcow2")
        for old in disk.findall("backingStore"):
            disk.remove(old)
        backing = ET.Element("backingStore", type="file")
        ET.SubElement(backing, "format", type="qcow2")
        ET.SubElement(backing, "source", file=d["base"])
        ET.SubElement(backing, "backingStore")
        disk.insert(list(disk).index(src) + 1, backing)
    vm = kimchi_metadata(root)
    for old in vm.findall(f"{_NS}templated"):
        vm.remove(old)
    ET.SubElement(vm, f"{_NS}templated").text = task_id
    conn.defineXML(ET.tostring(root, encoding="unicode"))
    return True


def _on_leaves(root: ET.Element, disks: list[dict[str, Any]]) -> bool:
    files = {s.get("file") for s in root.findall("./devices/disk/source")}
    return all(d["leaf"] in files for d in disks)


def _committed(conn: Any, uuid: str, disks: list[dict[str, Any]]) -> bool:
    import libvirt

    dom = conn.lookupByUUIDString(uuid)
    return _on_leaves(ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)), disks)


class VmTemplater:
    def __init__(self, tasks: TaskService, hosts: Hosts, templates: TemplateService,
                 cloner: VmCloner, reactor: Any) -> None:
        self.tasks = tasks
        self.hosts = hosts
        self.templates = templates
        self.cloner = cloner
        self.reactor = reactor

    # -- while the client waits ------------------------------------------------------

    async def make(self, host: Host, source: str, name: str, owner: str = ""
                   ) -> dict[str, Any]:
        vm = host.vms.get(source)
        if vm["state"] != "shutoff":
            raise InvalidOperation("KCHVM0043E", name=source,
                                   reason=f"it is {vm['state']}: shut it off first")
        if await self.cloner.cloning(vm["uuid"]):
            raise InvalidOperation("KCHVM0019E", name=source)
        async with self.templates.making(name) as made:
            disks = await host.conn.run(
                lambda c: _plan(c, vm["uuid"], source, name, host.local))
            data = await self._template_data(host, vm, disks)
            task = made(await self.tasks.submit(
                KIND, {"source": source, "source_uuid": vm["uuid"], "template": name,
                       "disks": disks, "host": host.name, "template_data": data},
                f"/templates/{name}", owner, host=host.name))
        self.cloner.hold_source(vm["uuid"], task["id"])
        return task

    async def _template_data(self, host: Host, vm: dict[str, Any],
                             disks: list[dict[str, Any]]) -> dict[str, Any]:
        """The new template: the VM's own template's OS and settings where it still
        exists, the VM's sizes and networks, its disks as the bases."""
        origin: dict[str, Any] = {}
        if vm.get("template"):
            try:
                origin = await self.templates.get(vm["template"])
            except NotFound:
                pass
        data = {k: origin[k] for k in _KEEP if k in origin}
        data.setdefault("os_distro", "unknown")
        data.setdefault("os_version", "unknown")
        defaults = osinfo.defaults(data["os_distro"], data["os_version"])
        data = {**{k: v for k, v in defaults.items() if k != "disks"}, **data}
        mem = vm["memory"]
        data.update(
            memory={"current": mem["current"], "maxmemory": max(mem["maxmemory"],
                                                                mem["current"])},
            cpu_info={"vcpus": vm["cpus"], "maxvcpus": max(vm["cpus"],
                                                           vm.get("maxcpus") or 0)},
            networks=list(vm.get("networks") or []),
            disks=[{"index": i, "size": round(d["capacity"] / 1024 ** 3, 3),
                    "format": "qcow2", "bus": d["bus"], "pool": {"name": d["pool"]},
                    "base": {"path": d["base"], "format": "qcow2"}}
                   for i, d in enumerate(disks)],
            source_media={"type": "image", "path": disks[0]["base"], "format": "qcow2",
                          "virtual_size": disks[0]["capacity"], "owned": True,
                          **({} if host.local else {"host": host.name})},
            made_from=vm["name"])
        # the virtual hardware the system on these disks was installed on and boots with
        for key in ("machine", "firmware", "secure_boot", "tpm", "bootmenu", "cpu_topology"):
            if vm.get(key) is not None:
                data[key] = vm[key]
        if "q35" in str(data.get("machine") or ""):
            data["cdrom_bus"] = "sata"  # q35 has no IDE (a cloud-init seed is a CD-ROM)
        models = {i["model"] for i in vm.get("interfaces") or () if i.get("model")}
        if len(models) == 1:
            data["nic_model"] = models.pop()
        return data

    def _adopt(self, name: str, data: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return Deferred.fromCoroutine(self.templates.adopt(name, data))

    # -- the job (on a runner thread of the daemon) ---------------------------------------

    def run(self, ctx: JobContext) -> dict[str, Any]:
        p = ctx.params
        name, source, disks = p["template"], p["source"], p["disks"]
        try:
            host = self.hosts.get(p["host"])
        except NotFound:
            raise KimchiError("KCHHOST0001E", name=p["host"]) from None
        sync = self.tasks.blocking()
        attempt = int(ctx.attempt)
        uuid = p["source_uuid"]
        committed = False
        try:
            if attempt > 1:
                committed = host.conn.call(lambda c: _committed(c, uuid, disks))
                if not committed:  # the lost attempt's files go before anew
                    earlier = [child_id(ctx.task_id, n) for n in range(1, attempt)]
                    for child in earlier:
                        stop_child(sync, child)
                    _remove_made(sync, host.name, disks, earlier, ctx.task_id)
            if not committed:
                try:
                    done = run_child(ctx, sync, DISKS_KIND, {"disks": disks}, host.name,
                                     0.9, self.tasks.redis.timeout,
                                     target_uri=f"/templates/{name}")
                except ChildGone:
                    raise KimchiError("KCHVM0044E", template=name, name=source,
                                      error="the copy job disappeared") from None
                if done["status"] != "finished":
                    raise KimchiError("KCHVM0044E", template=name, name=source,
                                      error=done["message"])
                ctx.progress(92, TaskText("Moving {name} onto its new disks", name=source))
                ctx.flush()
                ctx.check()  # the last moment a cancel leaves the VM as it was
                crash_point("vm.template.commit")
                host.conn.call(lambda c: _switch(c, uuid, disks, ctx.task_id))
                committed = True
                crash_point("vm.template.committed")
        except BaseException as e:
            if isinstance(e, Stop) and e.why in ("lost", "handback"):
                raise  # another attempt takes over and tidies up
            if not committed:
                child = child_id(ctx.task_id, attempt)
                stop_child(sync, child)
                _remove_made(sync, host.name, disks, [child], ctx.task_id)
            if isinstance(e, (Stop, KimchiError)):
                raise
            raise KimchiError("KCHVM0044E", template=name, name=source, error=str(e)) from e
        # committed: the rest only completes (a cancel now comes too late)
        ctx.progress(95, TaskText("Keeping template {name}", name=name))
        ctx.flush()
        data = {**p["template_data"], "made_by": ctx.task_id}
        adopt: Any = self._adopt  # (typeshed's signature takes no Deferred of a value)
        threads.blockingCallFromThread(self.reactor, adopt, name, data)
        old = [d["src"] for d in disks]
        try:
            job = sync.submit("disks.remove", {"paths": old, "parent": ctx.task_id}, "",
                              host=host.name)
            removed = sync.wait(job, timeout=60)
        except Exception as e:
            removed = {"status": "failed", "message": str(e)}
        if removed.get("status") != "finished":
            log.error("template {name}: the old disks of {vm} stay on host {host}: {paths}: "
                      "{why}", name=name, vm=source, host=host.name, paths=", ".join(old),
                      why=removed.get("message") or "no worker removed them")
        host.conn.call(lambda c: refresh_pools(c, {d["pool"] for d in disks}))
        return {"template": name, "vm": source, "host": host.name,
                "bases": [d["base"] for d in disks], "leaves": [d["leaf"] for d in disks],
                "message": TaskText("Made template {name} of {vm}; {vm} now runs on leaves "
                                    "over its base", name=name, vm=source)}


def _remove_made(sync: SyncBus, host: str, disks: list[dict[str, Any]], children: list[str],
                 task_id: str) -> None:
    """Remove the bases and leaves a copy job made for a template that will not be."""
    remove_made(sync, host, [{"dst": d["base"]} for d in disks]
            + [{"dst": d["leaf"]} for d in disks], children, task_id)
