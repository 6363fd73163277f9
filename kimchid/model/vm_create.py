"""Making a VM from a template: checked at once, then done as a task.

``POST /vms`` checks what it can while the client waits (the template, the
name, the pools, a remote ISO's streaming) and answers 202 with a ``vm.create``
task.  The daemon's own runner (:mod:`kimchid.adapters.jobrunner`) then creates
the disk volumes and defines the domain, reporting each step.  Whatever ends the
job early — an error, a cancel — removes what it had made: a failed creation
leaves neither volumes nor a half-made domain.  If the daemon dies mid-way, the
next daemon re-runs the job and first removes what the lost attempt made.
"""

from __future__ import annotations

import json
import os
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from kimchi import bus, isoinfo
from kimchi.bus import LOCAL_HOST
from kimchi.bus.context import JobContext, Stop
from kimchi.bus.follow import ChildGone, child_id, run_child, stop_child
from kimchi.bus.text import TaskText
from kimchi.errors import InvalidOperation, KimchiError, NotFound
from kimchi.outbound import DestinationRefused
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.model import cloudinit
from kimchid.model.capabilities import Capabilities, check_guest_needs
from kimchid.model.domainxml import (
    GIB,
    METADATA_NS,
    PlannedVolume,
    domain_xml,
    pick_guest,
    plan_volumes,
    volume_xml,
)
from kimchid.model.tasks import TaskService
from kimchid.model.templates import TemplateService, base_host, bases
from kimchid.model.vms import VmInventory

if TYPE_CHECKING:
    from kimchid.model.hosts import Hosts

log = Logger()

KIND = "vm.create"
COPY_KIND = "vm.clone.disks"  # a full copy of a template's base: the clone's copy job
MAX_COUNT = 500  # VMs one request may make
# pool types whose volumes kimchi cannot create (LUNs are given, not made)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ftps": 990}
_NO_NEW_VOLUMES = {"iscsi", "scsi", "mpath", "iscsi-direct"}


def _pool_problems(conn: Any, plan: list[PlannedVolume]) -> KimchiError | None:
    """Why these volumes cannot be made now, or None (blocking: libvirt thread)."""
    import libvirt

    for vol in plan:
        try:
            pool = conn.storagePoolLookupByName(vol.pool)
        except libvirt.libvirtError:
            return InvalidOperation("KCHVM0006E", pool=vol.pool, reason="it does not exist")
        if not pool.isActive():
            return InvalidOperation("KCHVM0006E", pool=vol.pool, reason="it is not active")
        ptype = ET.fromstring(pool.XMLDesc(0)).get("type", "")
        if ptype in _NO_NEW_VOLUMES:
            return InvalidOperation("KCHVM0006E", pool=vol.pool,
                                  reason=f"a {ptype} pool offers LUNs, kimchi cannot add disks")
        try:
            pool.storageVolLookupByName(vol.name)
        except libvirt.libvirtError:
            continue
        return InvalidOperation("KCHVM0007E", volume=vol.name, pool=vol.pool)
    return None


def _created_by(conn: Any, name: str, task_id: str) -> str | None:
    """The UUID of domain ``name`` if this task made it."""
    import libvirt

    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return None
    root = ET.fromstring(dom.XMLDesc(0))
    if root.findtext(f"./metadata/{{{METADATA_NS}}}vm/{{{METADATA_NS}}}task") == task_id:
        return str(dom.UUIDString())
    return None


def _delete_volume(conn: Any, vol: PlannedVolume) -> bool:
    """Delete the volume; True once it is gone (already gone counts)."""
    import libvirt

    try:
        pool = conn.storagePoolLookupByName(vol.pool)
        pool.refresh(0)
        try:
            found = pool.storageVolLookupByName(vol.name)
        except libvirt.libvirtError as e:
            return bool(e.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL)
        found.delete(0)
        return True
    except libvirt.libvirtError:
        return False


@dataclass
class Leftovers:
    """What a failed creation could not remove: its volumes, and maybe its domain."""

    name: str
    task_id: str
    volumes: list[PlannedVolume]
    paths: dict[str, str]  # volume name -> its path, where known
    domain_unknown: bool = False  # libvirt could not be asked whether it was defined
    host: str = LOCAL_HOST  # where

    @property
    def key(self) -> str:  # a task may make several VMs
        return f"{self.task_id}/{self.name}"

    def describe(self) -> str:
        what = [f"volume {self.paths.get(v.name) or v.name} (storage pool {v.pool})"
                for v in self.volumes]
        if self.domain_unknown:
            what.append(f"virtual machine {self.name}, if libvirt defined it")
        return ", ".join(what)


def _remove(conn: Any, left: Leftovers) -> list[PlannedVolume]:
    """Remove a creation's domain and volumes; the volumes still there (blocking)."""
    import libvirt

    uuid = _created_by(conn, left.name, left.task_id)
    if uuid:
        try:
            conn.lookupByUUIDString(uuid).undefine()
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
    return [vol for vol in left.volumes if not _delete_volume(conn, vol)]


class VmCreator:
    def __init__(self, tasks: TaskService, inventory: VmInventory, templates: TemplateService,
                 libvirt: LibvirtConnection, capabilities: Capabilities,
                 leftovers_file: Path | None = None, hosts: Hosts | None = None) -> None:
        """*leftovers_file*: where what failed creations left is kept across restarts
        (None: in memory only); *hosts*: where a request may ask for its VM (its ``host``;
        without: the local host only)."""
        self.tasks = tasks
        self.hosts = hosts
        self.inventory = inventory
        self.templates = templates
        self.libvirt = libvirt
        self.capabilities = capabilities
        self._pending: dict[str, str] = {}  # VM name -> id of the task making it
        # task id -> what it could not remove (libvirt was away); removed when it is back
        self._leftovers_file = leftovers_file
        self._leftovers: dict[str, Leftovers] = self._load_leftovers()
        self._leftovers_lock = threading.Lock()
        libvirt.connect_listeners.append(self._libvirt_back)

    # -- while the client waits ------------------------------------------------------

    async def create(self, body: dict[str, Any], owner: str = "") -> dict[str, Any]:
        template_name = _last(body["template"], "templates")
        try:
            template = await self.templates.get(template_name)
        except NotFound:
            raise InvalidOperation("KCHVM0003E", template=template_name) from None
        if template.get("invalid"):
            raise InvalidOperation("KCHVM0004E", template=template_name,
                                 reason=_describe(template["invalid"]))
        caps = await self.capabilities.get()
        source = template.get("source_media") or {}
        path = source.get("path") or ""
        if source.get("type") != "netboot" and isoinfo.is_remote(path):
            await self._check_destination(path)
            scheme = urlsplit(path).scheme.lower()
            if not caps.get("qemu_stream"):
                raise InvalidOperation(
                    "KCHVM0005E", path=path,
                    reason="QEMU on this host cannot read ISOs over the network (install "
                           "qemu-block-extra, or set [features] iso_streaming); download the "
                           "ISO into a storage pool and make the template from that file")
            if scheme not in caps.get("libvirt_stream_protocols", []):
                raise InvalidOperation("KCHVM0005E", path=path,
                                     reason=f"libvirt here does not stream {scheme}")
        await self.forget_ended()
        image = bool(bases(template))
        if image:  # the VMs go where the base is
            host = base_host(template)
            if body.get("host", host) != host:
                raise InvalidOperation("KCHVM0041E", template=template_name, host=host)
        else:
            host = body.get("host", LOCAL_HOST)
            if "disk_mode" in body:
                raise InvalidOperation("KCHVM0042E", template=template_name)
        if self.hosts is not None:
            host = self.hosts.known(host).name
        conn, inventory = self._of(host)
        if host == LOCAL_HOST:  # the probes are the local host's; another's libvirt says
            check_guest_needs(f"Template {template_name}", template, caps)
        count = int(body.get("count", 1))
        names = _names(str(body["name"]), count) if body.get("name") else \
            [self.free_name(f"{template_name}-vm", inventory, taken=n) for n in range(count)]
        for name in names:
            self.check_free(name, inventory)
        data = {k: v for k, v in template.items() if k not in ("name", "invalid", "vms")}
        if body.get("storagepool"):  # Kimchi's override: every disk in that pool
            pool = _last(body["storagepool"], "storagepools")
            data["disks"] = [{**d, "pool": {"name": pool}} for d in data.get("disks", [])]
        data.pop("cloud_init", None)  # as shown: without the password's hash
        ci = cloudinit.combine(  # hashing a password takes CPU: not on the reactor
            await self.templates.cloud_init(template_name),
            await threads.deferToThread(cloudinit.normalise, body.get("cloud_init")))
        mode = body.get("disk_mode", "linked")
        plans = [plan_volumes(name, data, mode) for name in names]
        params: dict[str, Any] = {
            "name": names[0], "template": template_name, "template_data": data,
            # another host: KVM where its libvirt offers it (the probes are local)
            "kvm": bool(caps.get("kvm")) if host == LOCAL_HOST else True}
        if count > 1:
            params["names"] = names
        if image:
            params["disk_mode"] = mode
        if ci:
            params["cloud_init"] = ci
        if host != LOCAL_HOST:
            params["host"] = host
        with self.holding(*names):  # while the pools are looked at
            extra = [_seed_volume(n, p) for n, p in zip(names, plans, strict=True) if ci]
            every = [v for p in plans for v in p] + extra
            problem = await conn.run(lambda c: _pool_problems(c, every))
            if problem is not None:
                raise problem
            where = "/vms" if host == LOCAL_HOST else f"/hosts/{host}/vms"
            target = f"{where}/{names[0]}" if count == 1 else where
            task = await self.tasks.submit(KIND, params, target, owner, host=host)
        for name in names:
            self.hold(name, task["id"])
        return task

    async def _check_destination(self, url: str) -> None:
        """QEMU reads a remote ISO itself, from whatever its host resolves to now: every
        address must be one ``[outbound] allow`` admits, as when the template was made (a
        name that resolves elsewhere since, a policy made stricter)."""
        parts = urlsplit(url)
        try:
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 443)
            await threads.deferToThread(self.templates.outbound.check_every,
                                        parts.hostname or "", port)
        except DestinationRefused as e:
            raise InvalidOperation("KCHTMPL0012E", path=url, target=e.target,
                                   kind=e.kind) from None
        except (OSError, ValueError) as e:  # no such name, a port out of range
            raise InvalidOperation("KCHVM0005E", path=url, reason=str(e)) from None

    # -- names being made (creations and clones) -------------------------------------

    def being_made(self, name: str) -> bool:
        """Whether a creation or a clone under way will make a VM called ``name``."""
        return name in self._pending

    def _of(self, host: str) -> tuple[LibvirtConnection, VmInventory]:
        """The libvirt connection and the VMs of ``host``."""
        if host == LOCAL_HOST or self.hosts is None:
            return self.libvirt, self.inventory
        try:
            h = self.hosts.get(host)
        except NotFound:  # forgotten since the task was made
            raise KimchiError("KCHHOST0001E", name=host) from None
        return h.conn, h.vms

    def check_free(self, name: str, inventory: VmInventory | None = None) -> None:
        """400 if a VM has this name (KCHVM0001E) or one is being made with it (0009E)."""
        if any(vm["name"] == name for vm in (inventory or self.inventory).list()):
            raise InvalidOperation("KCHVM0001E", name=name)
        if name in self._pending:
            raise InvalidOperation("KCHVM0009E", name=name)

    @contextmanager
    def holding(self, *names: str) -> Iterator[None]:
        """Keep ``names`` taken while a request is checked; released if it fails."""
        for name in names:
            self._pending[name] = ""
        try:
            yield
        except BaseException:
            for name in names:
                self._pending.pop(name, None)
            raise

    def hold(self, name: str, task_id: str) -> None:
        """``name`` is taken until the task making it ends."""
        self._pending[name] = task_id

    def free_name(self, prefix: str, inventory: VmInventory | None = None,
                  taken: int = 0) -> str:
        """``<prefix>-N`` with the first N no VM has or is being made with (``taken``:
        skip that many more free ones, for several names at once)."""
        used = {vm["name"] for vm in (inventory or self.inventory).list()} | set(self._pending)
        n = 1
        while True:
            if f"{prefix}-{n}" not in used:
                if not taken:
                    return f"{prefix}-{n}"
                taken -= 1
            n += 1

    async def forget_ended(self) -> None:
        """Release the names of creations that have ended (however they ended), but not
        of those whose leftovers are still there: a new VM could take their volumes."""
        for host in {left.host for left in self.leftovers()}:
            try:
                conn, _vms = self._of(host)
                await conn.run(partial(self.remove_leftovers, host=host))
            except Exception as e:  # libvirt still away: the names stay taken
                log.debug("leftovers not removed yet: {e}", e=str(e))
        with self._leftovers_lock:
            leaving = {left.task_id for left in self._leftovers.values()}
        for name, task_id in list(self._pending.items()):
            if task_id and task_id not in leaving and await self.tasks.ended(task_id):
                self._pending.pop(name, None)

    # -- what failed creations left behind ------------------------------------------------

    def _load_leftovers(self) -> dict[str, Leftovers]:
        if self._leftovers_file is None or not self._leftovers_file.exists():
            return {}
        try:
            kept = json.loads(self._leftovers_file.read_text())
            out = {}
            for item in kept:
                item["volumes"] = [PlannedVolume(**v) for v in item["volumes"]]
                left = Leftovers(**item)
                out[left.key] = left
        except (OSError, ValueError, TypeError, KeyError) as e:
            log.error("cannot read what failed creations left ({path}): {e}",
                      path=str(self._leftovers_file), e=str(e))
            return {}
        if out:
            log.info("{n} failed creations left volumes: removed once libvirt answers",
                     n=len(out))
        return out

    def _save_leftovers(self) -> None:
        """Write the leftovers down (under ``_leftovers_lock``): a restart keeps them."""
        if self._leftovers_file is None:
            return
        text = json.dumps([asdict(left) for left in self._leftovers.values()])
        tmp = self._leftovers_file.with_name(f".{self._leftovers_file.name}.tmp")
        try:
            tmp.write_text(text)
            os.replace(tmp, self._leftovers_file)
        except OSError as e:
            log.error("cannot keep what failed creations left ({path}): {e}",
                      path=str(self._leftovers_file), e=str(e))

    def _libvirt_back(self) -> None:
        """libvirt (re)connected: remove what failed creations could not."""
        if self._leftovers:
            d = Deferred.fromCoroutine(self.libvirt.run(self.remove_leftovers))  # local
            d.addErrback(lambda f: log.failure("removing what failed creations left", f))

    def remove_leftovers(self, conn: Any, host: str = LOCAL_HOST) -> None:
        """Remove the leftovers of failed creations on ``host`` (``conn``'s); keep those
        that still cannot be (blocking: a libvirt thread)."""
        import libvirt

        with self._leftovers_lock:
            todo = [left for left in self._leftovers.values() if left.host == host]
        for left in todo:
            try:
                still = _remove(conn, left)
            except libvirt.libvirtError as e:
                log.warn("creating {name}: leftovers not removed yet: {e}", name=left.name,
                         e=e.get_error_message())
                continue
            with self._leftovers_lock:
                if still:
                    left.volumes = still
                else:
                    self._leftovers.pop(left.key, None)
                self._save_leftovers()
            if not still:
                log.info("creating {name}: what the failed attempt left is removed now",
                         name=left.name)

    def leftovers(self) -> list[Leftovers]:
        """What failed creations left behind and kimchid still has to remove."""
        with self._leftovers_lock:
            return list(self._leftovers.values())

    # -- the job (on a runner thread of the daemon) ---------------------------------------

    def run(self, ctx: JobContext) -> dict[str, Any]:
        """Make the task's VMs (one, or ``count``): their disks (blank volumes, leaves
        over a template's base, or copies of it made by a worker of the host), their
        cloud-init seeds, their domains.  Any failure or a cancel removes all of it."""
        import libvirt

        p = ctx.params
        names: list[str] = p.get("names") or [p["name"]]
        template_name, data = p["template"], p["template_data"]
        host = p.get("host", LOCAL_HOST)
        conn, inventory = self._of(host)
        mode = p.get("disk_mode", "linked")
        ci = p.get("cloud_init")
        plans = {name: plan_volumes(name, data, mode) for name in names}
        made: dict[str, list[tuple[PlannedVolume, str]]] = {name: [] for name in names}
        defined: dict[str, str] = {}  # name -> UUID
        call = conn.call
        current = names[0]
        sync = None

        def step(percent: float, text: TaskText) -> None:
            ctx.progress(percent, text)
            ctx.flush()  # a handful of steps: each one is worth showing
            if ctx.fault_delay:  # KIMCHI_FAULT_SLOW_REPORTS, for the tests
                time.sleep(ctx.fault_delay)

        try:
            if int(ctx.attempt) > 1:
                sync = self.tasks.blocking()
                for n in range(1, int(ctx.attempt)):  # the lost attempt's copy, if any
                    stop_child(sync, child_id(ctx.task_id, n))
                for name in names:
                    uuid = call(partial(_created_by, name=name, task_id=ctx.task_id))
                    if uuid:  # the lost attempt got as far as this domain
                        defined[name] = uuid
                        continue
                    for vol in plans[name] + ([_seed_volume(name, plans[name])] if ci else []):
                        call(partial(_delete_volume, vol=vol))
            step(0, TaskText("Checking the host"))
            guest = call(lambda c: pick_guest(c.getCapabilities(), bool(p.get("kvm"))))
            todo = [name for name in names if name not in defined]
            copies = self._copies(call, {name: plans[name] for name in todo}, made)
            share = 0.0
            if copies:
                share = 60.0
                sync = sync or self.tasks.blocking()
                try:
                    done = run_child(ctx, sync, COPY_KIND, {"copies": copies, "rate_limit": 0},
                                     host, share / 100, self.tasks.redis.timeout,
                                     target_uri=f"/vms/{names[0]}")
                except ChildGone:
                    raise KimchiError("KCHVM0008E", name=names[0],
                                      error="the copy job disappeared") from None
                if done["status"] != "finished":
                    raise KimchiError("KCHVM0008E", name=names[0], error=done["message"])
                call(partial(refresh_pools, pools={c["pool"] for c in copies}))
            for k, name in enumerate(todo):
                current = name
                base = share + (90 - share) * k / len(todo)
                per = (90 - share) / len(todo)
                paths = made[name]
                for i, vol in enumerate(plans[name]):
                    if vol.mode == "full":
                        call(partial(_grow, path=dict((v.name, pth) for v, pth in paths)[vol.name],
                                     capacity=int(vol.capacity_gb * GIB)))
                        continue
                    if len(todo) == 1:
                        step(base + per * i / max(1, len(plans[name])),
                             TaskText("Creating disk {disk} ({size} GB, {format}) in storage "
                                      "pool {pool}", disk=vol.name,
                                      size=f"{vol.capacity_gb:g}", format=vol.format,
                                      pool=vol.pool))
                    paths.append((vol, call(partial(self._create_volume, vol=vol))))
                cidata = ""
                if ci:
                    seed = _seed_volume(name, plans[name])
                    iso = cloudinit.build_iso(cloudinit.seed_files(
                        ci, name, f"{name}-{ctx.task_id[:12]}"))
                    cidata = call(partial(_upload_volume, vol=seed, data=iso))
                    paths.append((seed, cidata))
                step(base + per * 0.9, TaskText("Defining virtual machine {name}", name=name)
                     if len(todo) == 1 else
                     TaskText("Defining virtual machine {name} ({done} of {total})", name=name,
                              done=k + 1, total=len(todo)))
                xml = domain_xml(name=name, template_name=template_name, template=data,
                                 guest=guest, volumes=[(v, pth) for v, pth in paths
                                                       if v.format != "iso"],
                                 task_id=ctx.task_id, created=bus.now_iso(time.time()),
                                 cidata=cidata)
                ctx.check()
                defined[name] = call(partial(_define, xml=xml))
            # finish once the VMs are listed: whoever follows the task can GET them at once
            for uuid in defined.values():
                inventory.wait_listed(uuid)
            if len(names) == 1:
                name = names[0]
                return {"name": name, "uuid": defined[name],
                        "message": TaskText("Created {name}", name=name),
                        "disks": [pth for v, pth in made[name] if v.format != "iso"]}
            return {"names": names, "uuids": [defined[n] for n in names],
                    "message": TaskText("Created {count} virtual machines",
                                        count=len(names))}
        except BaseException as e:
            if isinstance(e, Stop) and e.why in ("lost", "handback"):
                raise  # another attempt takes over and tidies up
            if sync is not None:
                stop_child(sync, child_id(ctx.task_id, ctx.attempt))
            lefts = [left for name in names
                     if (left := self._undo(name, [v for v, _p in made[name]], ctx.task_id,
                                            made[name], host)) is not None]
            if isinstance(e, Stop):
                raise
            if isinstance(e, libvirt.libvirtError):
                error = e.get_error_message()
            elif isinstance(e, KimchiError):
                if not lefts:
                    raise
                error = e.reason
            else:
                error = f"{type(e).__name__}: {e}"
            if not lefts:
                raise KimchiError("KCHVM0008E", name=current, error=error) from None
            raise KimchiError("KCHVM0023E", name=current, error=error,
                              left="; ".join(left.describe() for left in lefts)) from None

    @staticmethod
    def _copies(call: Any, plans: dict[str, list[PlannedVolume]],
                made: dict[str, list[tuple[PlannedVolume, str]]]) -> list[dict[str, str]]:
        """The full copies of bases to make, into their pools' folders; each is counted
        as made at once (its removal is harmless if it never was)."""
        folders: dict[str, str] = {}
        copies = []
        for name, plan in plans.items():
            for vol in plan:
                if vol.mode != "full":
                    continue
                if vol.pool not in folders:
                    folders[vol.pool] = call(partial(_pool_folder, pool=vol.pool))
                dst = os.path.join(folders[vol.pool], vol.name)
                made[name].append((vol, dst))
                copies.append({"src": vol.base, "dst": dst, "format": "qcow2",
                               "pool": vol.pool})
        return copies

    @staticmethod
    def _create_volume(conn: Any, vol: PlannedVolume) -> str:
        pool = conn.storagePoolLookupByName(vol.pool)
        return str(pool.createXML(volume_xml(vol), 0).path())

    def _undo(self, name: str, made: list[PlannedVolume], task_id: str,
              paths: list[tuple[PlannedVolume, str]],
              host: str = LOCAL_HOST) -> Leftovers | None:
        """Remove what this attempt made; None when it is all gone, else what is left,
        kept to be removed once libvirt answers again."""
        left = Leftovers(name, task_id, list(made), {v.name: path for v, path in paths},
                         host=host)
        try:
            left.volumes = self._of(host)[0].call(partial(_remove, left=left))
            if not left.volumes:
                return None
        except Exception as e:  # libvirt away: the domain too may be there, or not
            left.domain_unknown = True
            log.error("creating {name}: libvirt unreachable to remove what it made: {e}",
                      name=name, e=str(e))
        log.error("creating {name}: could not remove {left}; removed once libvirt answers",
                  name=name, left=left.describe())
        with self._leftovers_lock:
            self._leftovers[left.key] = left
            self._save_leftovers()
        return left


def _define(conn: Any, xml: str) -> str:
    return str(conn.defineXML(xml).UUIDString())


def _names(name: str, count: int) -> list[str]:
    """The names of ``count`` VMs asked for as ``name``: itself, or ``<name>-1``..."""
    return [name] if count == 1 else [f"{name}-{n}" for n in range(1, count + 1)]


def _seed_volume(vm: str, plan: list[PlannedVolume]) -> PlannedVolume:
    """The volume of a VM's cloud-init seed: beside its first disk."""
    return PlannedVolume(plan[0].pool if plan else "default",
                         f"{vm}{cloudinit.VOLUME_SUFFIX}", 0, "iso", "")


def _pool_folder(conn: Any, pool: str) -> str:
    folder = ET.fromstring(conn.storagePoolLookupByName(pool).XMLDesc(0)).findtext(
        "target/path")
    if not folder:
        raise InvalidOperation("KCHVM0006E", pool=pool, reason="it has no folder to copy into")
    return folder


def refresh_pools(conn: Any, pools: set[str]) -> None:
    """Refresh these pools, so files made in their folders show as volumes (a pool gone
    meanwhile is skipped: what needs its volumes fails on them, saying so)."""
    import libvirt

    for name in pools:
        try:
            conn.storagePoolLookupByName(name).refresh(0)
        except libvirt.libvirtError:
            pass


def _grow(conn: Any, path: str, capacity: int) -> None:
    """A copy of a base grows to the template's disk size."""
    vol = conn.storageVolLookupByPath(path)
    if vol.info()[1] < capacity:
        vol.resize(capacity, 0)


def _upload_volume(conn: Any, vol: PlannedVolume, data: bytes) -> str:
    """A new raw volume holding ``data``, sent through libvirt (any host's pool)."""
    pool = conn.storagePoolLookupByName(vol.pool)
    root = ET.Element("volume")
    ET.SubElement(root, "name").text = vol.name
    ET.SubElement(root, "capacity", unit="bytes").text = str(len(data))
    ET.SubElement(ET.SubElement(root, "target"), "format", type="raw")
    made = pool.createXML(ET.tostring(root, encoding="unicode"), 0)
    stream = conn.newStream(0)
    try:
        made.upload(stream, 0, len(data), 0)
        view = memoryview(data)
        while view:
            sent = stream.send(bytes(view[:1 << 20]))
            view = view[sent:]
        stream.finish()
    except BaseException:
        stream.abort()
        made.delete(0)
        raise
    return str(made.path())


def _last(value: str, collection: str) -> str:
    """A name from a name or a URI (``/templates/x``, Kimchi's ``/plugins/kimchi/...``)."""
    parts = [p for p in value.split("/") if p]
    if len(parts) >= 2 and parts[-2] == collection:
        return parts[-1]
    return value


def _describe(invalid: dict[str, Any]) -> str:
    return "; ".join(f"missing {k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                     for k, v in invalid.items())
