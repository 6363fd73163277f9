"""Templates: how to make a VM, kept as JSON files, one per template.

A template is made from an ISO (its distribution and version read from the
image, defaults for that OS filled in, the user's fields on top) or for a
network boot.  The ISO is a local file or a URL (http, https, ftp, ftps), of
which only the few sectors that say what it is are read.  Files added, changed
or removed by hand in ``<objects_dir>/templates/`` are picked up without a
restart; a broken file is listed with its reason in ``invalid``.

The catalogue of remote install ISOs (``/config/distros``) lives here too: it
is a list of template sources, shipped in ``kimchid/data/distros.json`` and
extended by the admin's ``<objects_dir>/distros/<name>.json``.
"""

from __future__ import annotations

import builtins
import functools
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet import threads
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.logger import Logger

from kimchi import isoinfo
from kimchi.bus import LOCAL_HOST
from kimchi.errors import InvalidOperation, InvalidRequest, NotFound
from kimchi.outbound import PUBLIC_ONLY, DestinationRefused, OutboundPolicy
from kimchid.adapters.libvirt import LibvirtConnection
from kimchid.adapters.objectstore import (
    Exists,
    InvalidName,
    ObjectStore,
    StoredObject,
    check_name,
)
from kimchid.model import cloudinit, guestos, images, osinfo
from kimchid.model.events import EventHub

if TYPE_CHECKING:
    from kimchid.model.hosts import Hosts

log = Logger()
_T = TypeVar("_T")

KIND = "templates"
DISTROS = "distros"  # the admin's additions to the catalogue: <objects_dir>/distros/
DISTRO_FIELDS = ("name", "os_distro", "os_version", "os_arch", "path")
# A probe of a slow or silent server holds a pool thread for up to 20 s: a few at a
# time, so that the store's file I/O always finds a thread.
_REMOTE_PROBES = 3


def _public(obj: StoredObject, invalid: dict[str, Any],
            vms: list[str] | None = None) -> dict[str, Any]:
    out = {**obj.data, "name": obj.name}
    # what its OS would get: shown beside what it has (the UI's "OS default")
    out["os_defaults"] = osinfo.machine_defaults(str(obj.data.get("os_distro") or ""),
                                                 str(obj.data.get("os_version") or ""))
    if obj.invalid:
        invalid = {**invalid, "file": obj.invalid}
    out["invalid"] = invalid
    if obj.data.get("cloud_init"):
        out["cloud_init"] = cloudinit.public(obj.data["cloud_init"])
    if bases(obj.data):
        out["vms"] = vms or []
    return out


def bases(data: dict[str, Any]) -> list[str]:
    """The base images of a template's disks (image templates; none for ISO ones)."""
    out = []
    for d in data.get("disks") or []:
        base = d.get("base") if isinstance(d, dict) else None
        if isinstance(base, dict) and isinstance(base.get("path"), str):
            out.append(base["path"])
    return out


def base_host(data: dict[str, Any]) -> str:
    """The host whose disk holds an image template's bases."""
    return str((data.get("source_media") or {}).get("host") or LOCAL_HOST)


class TemplateService:
    def __init__(self, store: ObjectStore, libvirt: LibvirtConnection | None,
                 events: EventHub, reactor: Any, outbound_allow: Iterable[str] = ()) -> None:
        """*outbound_allow*: ``[outbound] allow``, the addresses besides public ones that a
        remote ISO's URL may make kimchid connect to (see :mod:`kimchi.outbound`)."""
        self.store = store
        self.outbound = OutboundPolicy.parse(outbound_allow) if outbound_allow else PUBLIC_ONLY
        self.libvirt = libvirt
        self.events = events
        self.reactor = reactor
        self._ours: set[tuple[str, str]] = set()  # (name, version) we wrote ourselves
        self._removed: set[str] = set()  # names we deleted or renamed away ourselves
        self._remote_probes = DeferredSemaphore(_REMOTE_PROBES)
        self._bad_distros: set[tuple[str, str]] = set()  # (name, version) already logged
        #: the hosts, for image templates (their bases, and the VMs over them), and
        #: whether a task has ended (templates being made by tasks); set by the service
        self.hosts: Hosts | None = None
        self.tasks_ended: Callable[[str], Awaitable[bool]] = _never_ended
        self._making: dict[str, str] = {}  # name -> the task making that template

    def prime(self) -> None:
        """Remember the templates there at start, so the watcher's first look is quiet."""
        for obj in self.store.list(KIND):
            self._ours.add((obj.name, obj.version))

    async def _io(self, fn: Callable[..., _T], *args: Any) -> _T:
        """The store does file I/O with fsync: never on the reactor thread."""
        return await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                               fn, *args)

    # -- reading --------------------------------------------------------------------

    async def list(self) -> list[dict[str, Any]]:
        known = await self._libvirt_names()
        # listing and the integrity checks stat files: both on a thread
        return await self._io(lambda: [_public(o, self._integrity(o.data, known),
                                               self.vms_over(o.data))
                                       for o in self.store.list(KIND)])

    async def get(self, name: str) -> dict[str, Any]:
        obj = await self._load(name)
        known = await self._libvirt_names()
        return await self._io(lambda: _public(obj, self._integrity(obj.data, known),
                                              self.vms_over(obj.data)))

    async def cloud_init(self, name: str) -> dict[str, Any] | None:
        """A template's cloud-init settings as kept (with the password's hash, which its
        public form leaves out)."""
        return (await self._load(name)).data.get("cloud_init")

    def vms_over(self, data: dict[str, Any]) -> builtins.list[str]:
        """The VMs whose disks are leaves over this template's bases (by name)."""
        paths = set(bases(data))
        if not paths or self.hosts is None:
            return []
        try:
            inventory = self.hosts.get(base_host(data)).vms
        except NotFound:
            return []
        return sorted(vm["name"] for vm in inventory.list()
                      if any(d.get("backing") in paths for d in vm.get("disks") or []))

    async def _load(self, name: str) -> StoredObject:
        try:
            return await self._io(self.store.get, KIND, name)
        except (KeyError, InvalidName):
            raise NotFound("KCHTMPL0002E", name=name) from None

    async def _libvirt_names(self) -> tuple[set[str], set[str]] | None:
        if self.libvirt is None:
            return None
        try:
            return await self.libvirt.run(lambda c: (
                {n.name() for n in c.listAllNetworks(0)},
                {p.name() for p in c.listAllStoragePools(0)}))
        except Exception:
            return None  # libvirt away: nothing to check against

    @staticmethod
    def _integrity(data: dict[str, Any], known: tuple[set[str], set[str]] | None
                   ) -> dict[str, Any]:
        """What a VM made from this template would miss: ISO, networks, storage pools."""
        invalid: dict[str, Any] = {}
        media = data.get("source_media") or {}
        src = media.get("path") or ""
        # a URL is not looked at again: that would be network I/O at every listing; nor
        # another host's base, which is on that host's disk
        if src and not media.get("remote") and not isoinfo.is_remote(src) \
                and base_host(data) == LOCAL_HOST and not os.path.isfile(src):
            invalid["image" if media.get("type") == "image" else "cdrom"] = [src]
        if known is not None:
            networks, pools = known
            missing = [n for n in data.get("networks", []) if n not in networks]
            if missing:
                invalid["networks"] = missing
            wanted = {(d.get("pool") or {}).get("name") for d in data.get("disks", [])}
            missing_pools = sorted(p for p in wanted if p and p not in pools)
            if missing_pools:
                invalid["storagepools"] = missing_pools
        return invalid

    # -- writing --------------------------------------------------------------------

    async def create(self, body: dict[str, Any], media_extra: dict[str, Any] | None = None,
                     made_by: str = "") -> dict[str, Any]:
        """``media_extra``: more of ``source_media`` (where a downloaded image came from);
        ``made_by``: the task making it (a retry of that task finds it made)."""
        data = await self._build(body)
        if media_extra:
            data["source_media"] = {**data["source_media"], **media_extra}
        if made_by:
            data["made_by"] = made_by
        name = body.get("name") or await self.free_name(
            f"{data['os_distro']}{data['os_version']}".replace("unknown", "template") or "t")
        try:
            obj = await self._io(self.store.create, KIND, name, data)
        except Exists:
            raise InvalidOperation("KCHTMPL0001E", name=name) from None
        except InvalidName as e:
            raise InvalidRequest("KCHTMPL0009E", name=name, reason=e.reason) from None
        self._ours.add((obj.name, obj.version))
        out = await self.get(obj.name)
        await self.events.publish("template.created", out)
        return out

    async def update(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change fields (partial dicts merge); a new ``name`` renames it."""
        obj = await self._load(name)
        if obj.invalid:
            raise InvalidOperation("KCHTMPL0008E", name=name, reason=obj.invalid)
        changes = {k: v for k, v in body.items() if k != "name"}
        if "cloud_init" in changes:
            # hashing a password takes CPU: not on the reactor
            fresh_ci = await self._io(cloudinit.normalise, changes["cloud_init"]) or {}
            if "password" in changes["cloud_init"] or "user" in changes["cloud_init"]:
                obj.data.get("cloud_init", {}).pop("password_hash", None)  # not another's
            changes["cloud_init"] = fresh_ci
        data = obj.data
        if bases(data) and ("source_media" in changes or "cdrom" in changes):
            raise InvalidOperation("KCHTMPL0021E", name=name)
        if "source_media" in changes or "cdrom" in changes:
            fresh = await self._build({**changes, "os_distro": changes.get("os_distro"),
                                       "os_version": changes.get("os_version")})
            data = {**data, "source_media": fresh["source_media"],
                    "os_distro": fresh["os_distro"], "os_version": fresh["os_version"]}
            data.pop("bootable", None)  # the old ISO's
            if "bootable" in fresh:
                data["bootable"] = fresh["bootable"]
            changes.pop("source_media", None)
            changes.pop("cdrom", None)
        data = _keep_bases(data, osinfo.merge(data, changes))
        self._check(data)
        new = body.get("name") or name
        if new != name:
            self._removed.add(name)
            try:
                await self._io(self.store.rename, KIND, name, new)
            except Exists:
                raise InvalidOperation("KCHTMPL0001E", name=new) from None
            except InvalidName as e:
                raise InvalidRequest("KCHTMPL0009E", name=new, reason=e.reason) from None
        stored = await self._io(self.store.put, KIND, new, data)
        self._ours.add((stored.name, stored.version))
        out = await self.get(new)
        await self.events.publish("template.updated",
                                  {**out, "previous": name} if new != name else out)
        return out

    async def delete(self, name: str) -> None:
        obj = await self._load(name)
        over = await self._io(self.vms_over, obj.data)
        if over:
            raise InvalidOperation("KCHTMPL0022E", name=name, vms=", ".join(over))
        self._removed.add(name)
        try:
            await self._io(self.store.delete, KIND, name)
        except KeyError:
            raise NotFound("KCHTMPL0002E", name=name) from None
        if (obj.data.get("source_media") or {}).get("owned"):
            await self._remove_bases(name, obj.data)
        await self.events.publish("template.deleted", {"name": name})

    async def _remove_bases(self, name: str, data: dict[str, Any]) -> None:
        """Delete the base images a template owned (made from a VM): through the libvirt
        of their host, which sees them as volumes of a pool (else, here, the files)."""
        host = base_host(data)
        paths = bases(data)
        try:
            conn = self.hosts.get(host).conn if self.hosts is not None else self.libvirt
            assert conn is not None
            left = await conn.run(lambda c: _delete_files(c, paths, host == LOCAL_HOST))
        except Exception as e:
            left = [f"{p} ({e})" for p in paths]
        if left:
            log.error("template {name} deleted; its base images stay on host {host}: "
                      "{left}", name=name, host=host, left=", ".join(left))

    async def clone(self, name: str) -> dict[str, Any]:
        obj = await self._load(name)
        if obj.invalid:
            raise InvalidOperation("KCHTMPL0008E", name=name, reason=obj.invalid)
        new = await self.free_name(f"{name}-clone")
        data = obj.data
        if (data.get("source_media") or {}).get("owned"):  # the bases stay the original's
            data = {**data, "source_media": {**data["source_media"], "owned": False}}
        stored = await self._io(self.store.create, KIND, new, data)
        self._ours.add((stored.name, stored.version))
        out = await self.get(new)
        await self.events.publish("template.created", out)
        return out

    async def free_name(self, base: str) -> str:
        names = {o.name for o in await self._io(self.store.list, KIND)}
        base = re.sub(r"[^A-Za-z0-9_.+-]", "-", base).strip(".-") or "template"
        if base not in names and not base.endswith("-clone"):
            return base
        n = 1
        while f"{base}{n}" in names:
            n += 1
        return f"{base}{n}"

    async def _build(self, body: dict[str, Any]) -> dict[str, Any]:
        """The stored form of a new template: the OS's defaults, then the user's fields."""
        if body.get("source_media") and body.get("cdrom"):
            raise InvalidRequest("KCHTMPL0010E")
        source = body.get("source_media") or (
            {"type": "disk", "path": body["cdrom"]} if body.get("cdrom") else None)
        if source is None:
            raise InvalidRequest("KCHTMPL0013E")
        distro, version, bootable = "unknown", "unknown", None
        image: images.Image | None = None
        if source["type"] == "disk":
            source, info = await self._disk_media(source.get("path", ""), body)
            if info is not None:
                distro, version, bootable = info.os_distro, info.os_version, info.bootable
        elif source["type"] == "image":
            source, image = await self._image_media(source)
            found = (None if "host" in source  # another host's file: not readable here
                     else await self._io(guestos.identify, image.path, image.format))
            distro, version = found or images.guess_os(image.path) or (distro, version)
        distro = body.get("os_distro") or distro
        version = body.get("os_version") or version
        user = {k: v for k, v in body.items()
                if k not in ("name", "source_media", "cdrom", "os_distro", "os_version")}
        if "cloud_init" in user:
            user["cloud_init"] = await self._io(cloudinit.normalise, user["cloud_init"])
        base = osinfo.defaults(distro, version)
        # Asking for more than a default maximum raises that maximum (not when it is given)
        cpu, mem = user.get("cpu_info", {}), user.get("memory", {})
        if "vcpus" in cpu and "maxvcpus" not in cpu:
            base["cpu_info"]["maxvcpus"] = max(base["cpu_info"]["maxvcpus"], cpu["vcpus"])
        if "current" in mem and "maxmemory" not in mem:
            base["memory"]["maxmemory"] = max(base["memory"]["maxmemory"], mem["current"])
        if image is not None:  # the first disk is the image, at least its size
            gib = image.virtual_size / 1024 ** 3
            disk = {**base["disks"][0], "size": round(gib, 3)}
            wanted = (user.get("disks") or [{}])[0].get("size")
            if isinstance(wanted, (int, float)) and wanted > gib:
                disk["size"] = wanted
            base["disks"] = [disk]
        data = osinfo.merge(base, user)
        if image is not None:
            data["disks"] = _with_base(data.get("disks") or [], image)
        data.update(source_media=source, os_distro=distro, os_version=version)
        if bootable is not None:
            data["bootable"] = bootable
        self._check(data)
        return data

    async def _image_media(self, source: dict[str, Any]
                           ) -> tuple[dict[str, Any], images.Image]:
        """``source_media`` of an image template as stored, and the image looked at: a
        file of this host, or a storage volume of the host named (its libvirt says)."""
        path = source.get("path", "")
        host = source.get("host") or LOCAL_HOST
        if isoinfo.is_remote(path):
            raise InvalidOperation("KCHTMPL0020E", path=path, reason=(
                "download it into a storage pool first (POST /storagepools/<pool>/"
                "storagevolumes with its url), then make the template from that volume"))
        if host == LOCAL_HOST:
            image = await self._io(images.inspect_file, path)
        else:
            if self.hosts is None:
                raise NotFound("KCHHOST0001E", name=host)
            image = await self.hosts.known(host).conn.run(
                lambda c: images.inspect_volume(c, path))
        media = {"type": "image", "path": image.path, "format": image.format,
                 "virtual_size": image.virtual_size}
        if host != LOCAL_HOST:
            media["host"] = host
        return media, image

    async def adopt(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Store a template made by a task (from a VM), unless that task stored it already
        (an earlier attempt); then publish it."""
        try:
            obj = await self._io(self.store.create, KIND, name, data)
        except Exists:
            obj = await self._load(name)
            if obj.data.get("made_by") != data.get("made_by"):
                raise InvalidOperation("KCHTMPL0001E", name=name) from None
            return await self.get(name)
        self._ours.add((obj.name, obj.version))
        out = await self.get(obj.name)
        await self.events.publish("template.created", out)
        return out

    @asynccontextmanager
    async def making(self, name: str) -> AsyncIterator[Callable[[dict[str, Any]], dict[str, Any]]]:
        """Keep ``name`` for a template a task will make: 400 when a template has it or a
        task is making one; inside, call the given function with the task once submitted
        (the name stays taken until the task ends); released if the block fails."""
        for pending, task_id in list(self._making.items()):
            if task_id and await self.tasks_ended(task_id):
                self._making.pop(pending, None)
        if name in self._making:
            raise InvalidOperation("KCHTMPL0001E", name=name)
        try:
            await self._io(self.store.get, KIND, name)
            raise InvalidOperation("KCHTMPL0001E", name=name)
        except (KeyError, InvalidName):
            pass
        self._making[name] = ""

        def made(task: dict[str, Any]) -> dict[str, Any]:
            self._making[name] = task["id"]
            return task

        try:
            yield made
        except BaseException:
            self._making.pop(name, None)
            raise

    async def _disk_media(self, path: str, body: dict[str, Any]
                          ) -> tuple[dict[str, Any], isoinfo.IsoInfo | None]:
        """``source_media`` as stored, and what the ISO says (None: it could not be read)."""
        if isoinfo.is_remote(path):
            return await self._remote_media(path, body)
        if not os.path.isabs(path):
            raise InvalidRequest("KCHTMPL0004E", path=path)
        try:
            info = await self._io(isoinfo.probe_file, path)
        except FileNotFoundError:
            raise InvalidOperation("KCHTMPL0003E", path=path, error="no such file") from None
        except OSError as e:  # the reason only ("Permission denied"), not the errno's words
            raise InvalidOperation("KCHTMPL0003E", path=path,
                                 error=e.strerror or "cannot be read") from None
        except isoinfo.DamagedIso as e:  # an ISO: how it is broken helps
            raise InvalidOperation("KCHTMPL0003E", path=path, error=str(e)) from None
        except isoinfo.NotAnIso:
            # Any file may be named (/etc/shadow): say nothing of its size or bytes.
            raise InvalidOperation("KCHTMPL0003E", path=path,
                                 error="not an ISO-9660 image") from None
        return {"type": "disk", "path": path}, info

    async def _remote_media(self, url: str, body: dict[str, Any]
                            ) -> tuple[dict[str, Any], isoinfo.IsoInfo | None]:
        """Probe the ISO at *url*, reading a few sectors of it, on a pool thread.

        A server that cannot be reached now is no reason to refuse a template whose
        OS the user names (``os_distro`` and ``os_version``): it is kept with
        ``verified: false``.  A server that says no (404) or sends something that
        is not an ISO is.
        """
        media: dict[str, Any] = {"type": "disk", "path": url, "remote": True}
        await self._remote_probes.acquire()
        try:
            found = await self._io(functools.partial(isoinfo.probe_url, url,
                                                     outbound=self.outbound))
        except ValueError as e:
            raise InvalidOperation("KCHTMPL0005E", path=url, reason=str(e)) from None
        except DestinationRefused as e:  # never kept unverified: it is no accident
            raise InvalidOperation("KCHTMPL0012E", path=url, target=e.target,
                                 kind=e.kind) from None
        except isoinfo.NotAnIso as e:
            raise InvalidOperation("KCHTMPL0003E", path=url, error=str(e)) from None
        except isoinfo.RemoteUnreachable as e:
            if not (body.get("os_distro") and body.get("os_version")):
                raise InvalidOperation("KCHTMPL0011E", path=url, error=str(e)) from None
            log.info("template ISO {url} not verified: {e}", url=url, e=str(e))
            return {**media, "verified": False, "error": str(e)}, None
        except isoinfo.RemoteError as e:
            raise InvalidOperation("KCHTMPL0011E", path=url, error=str(e)) from None
        finally:
            self._remote_probes.release()
        media["verified"] = True
        if found.size is not None:
            media["size"] = found.size
        return media, found.info

    # -- the catalogue of remote install ISOs -------------------------------------------

    async def distros(self) -> builtins.list[dict[str, Any]]:
        """Remote install ISOs to make templates from, sorted by name.

        The shipped catalogue, then ``<objects_dir>/distros/<name>.json`` files
        (``{"os_distro", "os_version", "os_arch"?, "path"}``); a file replaces the
        shipped entry of the same name.  Broken files are left out (and logged).
        """
        shipped, local = await self._io(lambda: (_shipped_distros(), self.store.list(DISTROS)))
        entries = {e["name"]: {**e, "origin": "kimchi"} for e in shipped}
        for obj in local:
            entry = {"os_arch": "x86_64", **obj.data, "name": obj.name}
            problem = obj.invalid or distro_problem(entry)
            if problem:
                if (obj.name, obj.version) not in self._bad_distros:
                    self._bad_distros.add((obj.name, obj.version))
                    log.warn("distros/{name}.json is left out: {problem}", name=obj.name,
                             problem=problem)
                continue
            entries[obj.name] = {**{k: entry[k] for k in DISTRO_FIELDS}, "origin": "local"}
        return sorted(entries.values(), key=lambda e: e["name"])

    @staticmethod
    def _check(data: dict[str, Any]) -> None:
        mem = data.get("memory", {})
        if mem.get("current", 0) > mem.get("maxmemory", mem.get("current", 0)):
            raise InvalidOperation("KCHTMPL0006E", current=mem.get("current"),
                                 maxmemory=mem.get("maxmemory"))
        cpu = data.get("cpu_info", {})
        if cpu.get("vcpus", 0) > cpu.get("maxvcpus", cpu.get("vcpus", 0)):
            raise InvalidOperation("KCHTMPL0007E", vcpus=cpu.get("vcpus"),
                                 maxvcpus=cpu.get("maxvcpus"))
        _check_machine(data)

    # -- hand edits ------------------------------------------------------------------

    def file_changed(self, kind: str, name: str, change: str, obj: StoredObject | None) -> None:
        """From the object watcher: publish what was changed by hand."""
        if kind != KIND:
            return
        if obj is not None and (name, obj.version) in self._ours:
            return  # our own write, already published
        if change == "removed" and name in self._removed:
            self._removed.discard(name)
            return
        if change == "removed":
            d = self.events.emit("template.deleted", {"name": name, "by": "file"})
        else:
            assert obj is not None
            etype = "template.created" if change == "added" else "template.updated"
            d = self.events.emit(etype, {**_public(obj, {}), "by": "file"})
        Deferred.fromCoroutine(d).addErrback(
            lambda f: log.warn("cannot publish a template change: {e}", e=f.getErrorMessage()))



async def _never_ended(task_id: str) -> bool:
    return False


def _with_base(disks: builtins.list[dict[str, Any]], image: images.Image
               ) -> builtins.list[dict[str, Any]]:
    """The disks with the image as the first one's base."""
    out = sorted((dict(d) for d in disks), key=lambda d: d.get("index", 0))
    if out:
        out[0]["base"] = {"path": image.path, "format": image.format}
        out[0]["format"] = "qcow2"  # a leaf over the base (or a qcow2 copy of it)
    return out


def _keep_bases(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A change of an image template's disks keeps each disk's base (by index)."""
    was = {d.get("index", i): d["base"] for i, d in enumerate(old.get("disks") or [])
           if isinstance(d, dict) and d.get("base")}
    if not was:
        return new
    disks = []
    for i, d in enumerate(new.get("disks") or []):
        d = dict(d)
        if d.get("index", i) in was:
            d["base"] = was[d.get("index", i)]
            d["format"] = "qcow2"
        disks.append(d)
    return {**new, "disks": disks}


def _delete_files(conn: Any, paths: builtins.list[str], local: bool) -> builtins.list[str]:
    """Delete these files through libvirt (volumes) or, on this host, directly; the ones
    that stay (blocking: a libvirt thread)."""
    import libvirt

    left = []
    for path in paths:
        try:
            conn.storageVolLookupByPath(path).delete(0)
            continue
        except libvirt.libvirtError:
            pass
        if local:
            try:
                os.unlink(path)
                continue
            except FileNotFoundError:
                continue
            except OSError as e:
                left.append(f"{path} ({e.strerror})")
                continue
        left.append(path)
    return left


def _check_machine(data: dict[str, Any]) -> None:
    """The chipset, firmware and CPU topology asked for fit together (see osinfo)."""
    machine = str(data.get("machine") or "")
    q35 = "q35" in machine
    if data.get("firmware") == "uefi" and data.get("secure_boot") and not q35:
        raise InvalidOperation("KCHTMPL0030E", firmware="uefi", machine=machine or "pc")
    if data.get("secure_boot") and data.get("firmware") != "uefi":
        raise InvalidOperation("KCHTMPL0030E", firmware=data.get("firmware") or "bios",
                               machine=machine or "pc")
    if q35:
        if data.get("cdrom_bus", "ide") == "ide":
            raise InvalidOperation("KCHTMPL0031E", field="cdrom_bus")
        for i, disk in enumerate(data.get("disks") or []):
            if isinstance(disk, dict) and disk.get("bus") == "ide":
                raise InvalidOperation("KCHTMPL0031E", field=f"disks[{i}].bus")
    top = data.get("cpu_topology")
    if top:
        cpu = data.get("cpu_info", {})
        maxvcpus = cpu.get("maxvcpus", cpu.get("vcpus", 1))
        product = top["sockets"] * top["cores"] * top["threads"]
        if product != maxvcpus:
            raise InvalidOperation("KCHTMPL0032E", product=product, maxvcpus=maxvcpus,
                                   **{k: top[k] for k in ("sockets", "cores", "threads")})


def pools_named(store: ObjectStore) -> dict[str, list[str]]:
    """Storage pool name -> the templates whose disks go there (blocking: file reads)."""
    out: dict[str, list[str]] = {}
    for obj in store.list(KIND):
        for d in obj.data.get("disks") or []:
            pool = d.get("pool") if isinstance(d, dict) else None
            name = pool.get("name") if isinstance(pool, dict) else None
            if isinstance(name, str) and name:
                out.setdefault(name, []).append(obj.name)
    return out


def networks_named(store: ObjectStore) -> dict[str, list[str]]:
    """Network name -> the templates whose VMs join it (blocking: file reads)."""
    out: dict[str, list[str]] = {}
    for obj in store.list(KIND):
        for name in obj.data.get("networks") or []:
            if isinstance(name, str) and name:
                out.setdefault(name, []).append(obj.name)
    return out


@functools.cache
def _shipped_distros() -> tuple[dict[str, Any], ...]:
    """``kimchid/data/distros.json``, read once (from a pool thread)."""
    raw = resources.files("kimchid").joinpath("data/distros.json").read_text("utf-8")
    return tuple(json.loads(raw))


def distro_problem(entry: dict[str, Any]) -> str | None:
    """What is wrong with a catalogue entry, or None."""
    try:
        check_name(entry.get("name", ""))
    except InvalidName as e:
        return f"name: {e.reason}"
    for key in ("os_distro", "os_version", "os_arch"):
        value = entry.get(key)
        if not isinstance(value, str) or not 0 < len(value) <= 64:
            return f"{key}: a string of 1 to 64 characters"
    path = entry.get("path")
    if not isinstance(path, str) or not isoinfo.is_remote(path) or len(path) > 4096:
        return "path: an http, https, ftp or ftps URL"
    return None
