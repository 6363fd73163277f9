"""Moving a VM to another host: libvirt's peer-to-peer migration, as a task.

``POST /vms/<name>/migrate {"host", "live", "copy_storage", "bandwidth"}`` checks the VM
and the target while the client waits, then answers 202 with a ``vm.migrate`` task, run
on the daemon's runner (it holds both hosts' connections).  The source's libvirtd
connects to the target's itself (``VIR_MIGRATE_PEER2PEER``) and the guest's memory goes
straight between the two QEMUs (``tcp://<target's address>``).  A running VM moves live
(it keeps running; ``live: false`` pauses it during the move); a shut-off VM's definition
moves (``VIR_MIGRATE_OFFLINE``).  The definition is made persistent on the target and
undefined on the source, with kimchi's metadata (users, groups, template) in it.

Storage: ``none`` — the disks stay where they are, on storage both hosts see: each disk
file must be a volume of a storage pool of the target at the same path (checked before the
task; libvirt cannot tell a shared folder from a local one, so kimchi does, and then tells
libvirt so with ``VIR_MIGRATE_UNSAFE``); ``all`` — every disk is copied to the target
(``VIR_MIGRATE_NON_SHARED_DISK``); ``auto`` (the default) — ``none`` when the target sees
every disk, else ``all``.

Progress comes from the source's job statistics (bytes processed of the total); a cancel
aborts libvirt's job: the VM stays on its source, running as it was.
"""

from __future__ import annotations

import os
import threading
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlsplit

from kimchi.bus.context import JobContext, Stop
from kimchi.bus.text import TaskText
from kimchi.errors import InvalidOperation, KimchiError, NotFound
from kimchid.model.hosts import Host, Hosts
from kimchid.model.tasks import TaskService

KIND = "vm.migrate"
MOVABLE = ("running", "paused", "shutoff")


def _disk_files(xml: str) -> list[str]:
    root = ET.fromstring(xml)
    return [s.get("file", "") for d in root.findall("./devices/disk")
            if d.get("device", "disk") == "disk" and d.get("type") == "file"
            for s in d.findall("source") if s.get("file")]


def _sees(conn: Any, path: str) -> bool:
    """Whether ``conn``'s host has ``path`` as a volume of one of its pools (blocking)."""
    import libvirt

    folder = os.path.dirname(path)
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        target = ET.fromstring(pool.XMLDesc(0)).findtext("./target/path") or ""
        if os.path.normpath(target) == folder:
            pool.refresh(0)
            try:
                pool.storageVolLookupByName(os.path.basename(path))
                return True
            except libvirt.libvirtError:
                return False
    return False


class VmMigrator:
    def __init__(self, tasks: TaskService, hosts: Hosts) -> None:
        self.tasks = tasks
        self.hosts = hosts

    async def migrate(self, source: Host, name: str, body: dict[str, Any],
                      owner: str = "") -> dict[str, Any]:
        vm = source.vms.get(name)
        target = self.hosts.known(body["host"])
        if target is source:
            raise InvalidOperation("KCHVM0030E", name=name, host=target.name,
                                   reason="it is on that host already")
        if not target.conn.up:
            raise InvalidOperation("KCHVM0030E", name=name, host=target.name,
                                   reason=f"the host is {target.state}: {target.reason}")
        if vm["state"] not in MOVABLE:
            raise InvalidOperation("KCHVM0030E", name=name, host=target.name,
                                   reason=f"it is {vm['state']}")
        if target.vms.has(name):
            raise InvalidOperation("KCHVM0030E", name=name, host=target.name,
                                   reason="that host has a VM of that name")
        copy = body.get("copy_storage", "auto")
        files = await source.conn.run(
            lambda c: _disk_files(c.lookupByUUIDString(vm["uuid"]).XMLDesc(0)))
        seen = await target.conn.run(lambda c: [p for p in files if _sees(c, p)])
        shared = len(seen) == len(files)
        if copy == "none" and not shared:
            missing = ", ".join(p for p in files if p not in seen)
            raise InvalidOperation(
                "KCHVM0030E", name=name, host=target.name,
                reason=f"its disks are not on storage {target.name} sees ({missing}: no "
                       f"storage pool there holds them): copy them (copy_storage all) or "
                       f"put them on shared storage")
        if copy == "all" and shared:
            raise InvalidOperation(
                "KCHVM0030E", name=name, host=target.name,
                reason=f"its disks are on storage {target.name} sees: a copy would write "
                       f"over them (copy_storage none or auto)")
        if vm["state"] == "shutoff" and not shared:
            raise InvalidOperation(
                "KCHVM0030E", name=name, host=target.name,
                reason="a shut-off VM moves without its disks: they must be on storage "
                       f"{target.name} sees")
        params = {"name": name, "uuid": vm["uuid"], "from": source.name, "to": target.name,
                  "live": bool(body.get("live", True)), "copy": not shared,
                  "bandwidth": int(body.get("bandwidth", 0))}
        return await self.tasks.submit(KIND, params, f"/hosts/{target.name}/vms/{name}",
                                       owner, host=source.name)

    # -- the job (on a runner thread of the daemon) ---------------------------------------

    def run(self, ctx: JobContext) -> dict[str, Any]:
        import libvirt

        p = ctx.params
        try:
            source, target = self.hosts.get(p["from"]), self.hosts.get(p["to"])
        except NotFound as e:
            raise KimchiError("KCHVM0031E", name=p["name"], error=e.reason) from None
        dom = source.conn.call(lambda c: c.lookupByUUIDString(p["uuid"]))
        active = bool(dom.isActive())
        flags = (libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
                 | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
        if not active:
            flags |= libvirt.VIR_MIGRATE_OFFLINE
        elif p["live"]:
            flags |= libvirt.VIR_MIGRATE_LIVE
        if p["copy"]:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
        else:  # kimchi saw each disk on the target's storage (see migrate)
            flags |= libvirt.VIR_MIGRATE_UNSAFE
        params: dict[str, Any] = {}
        address = urlsplit(target.uri).hostname
        if active and address:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = f"tcp://{address}"
        if p["bandwidth"]:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = p["bandwidth"]  # MiB/s
        ctx.progress(0, TaskText("Moving {name} to {host}", name=p["name"], host=target.name))
        ctx.flush()
        outcome: dict[str, BaseException | None] = {}

        def move() -> None:
            try:
                dom.migrateToURI3(target.uri, params, flags)
                outcome["error"] = None
            except BaseException as e:  # handed to the job's thread
                outcome["error"] = e

        mover = threading.Thread(target=move, name=f"migrate-{p['name']}", daemon=True)
        mover.start()
        try:
            while mover.is_alive():
                mover.join(0.25)
                ctx.check()
                if active:
                    self._report(ctx, dom, p["name"], target.name)
        except Stop:
            try:
                dom.abortJob()
            except libvirt.libvirtError:
                pass  # it ended meanwhile
            mover.join(60)
            if outcome.get("error") is None and "error" in outcome:
                # too late to stop: it is on the target
                return self._moved(ctx, target, p, active)
            raise
        error = outcome.get("error")
        if error is not None:
            msg = error.get_error_message() if isinstance(error, libvirt.libvirtError) \
                else str(error)
            raise KimchiError("KCHVM0031E", name=p["name"], error=msg)
        return self._moved(ctx, target, p, active)

    @staticmethod
    def _report(ctx: JobContext, dom: Any, name: str, host: str) -> None:
        import libvirt

        try:
            stats = dom.jobStats()
        except libvirt.libvirtError:
            return
        total = stats.get("data_total") or stats.get("memory_total") or 0
        done = stats.get("data_processed") or stats.get("memory_processed") or 0
        if total:
            ctx.progress(min(99.0, 100.0 * done / total),
                         TaskText("Moving {name} to {host}: {done} of {total} MiB", name=name,
                                  host=host, done=done // 2**20, total=total // 2**20),
                         bytes=done, total=total)

    @staticmethod
    def _moved(ctx: JobContext, target: Host, p: dict[str, Any],
               active: bool) -> dict[str, Any]:
        # listed on the target as it now is there (a live move ends with a resume)
        target.vms.wait_listed(p["uuid"], timeout=10, state="running" if active else None)
        return {"name": p["name"], "host": target.name,
                "message": TaskText("Moved {name} to {host}", name=p["name"],
                                    host=target.name)}
