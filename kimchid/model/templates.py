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
from collections.abc import Iterable
from importlib import resources
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.logger import Logger

from kimchi import isoinfo
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
from kimchid.model import osinfo
from kimchid.model.events import EventHub

log = Logger()

KIND = "templates"
DISTROS = "distros"  # the admin's additions to the catalogue: <objects_dir>/distros/
DISTRO_FIELDS = ("name", "os_distro", "os_version", "os_arch", "path")
# A probe of a slow or silent server holds a pool thread for up to 20 s: a few at a
# time, so that the store's file I/O always finds a thread.
_REMOTE_PROBES = 3


def _public(obj: StoredObject, invalid: dict[str, Any]) -> dict[str, Any]:
    out = {**obj.data, "name": obj.name}
    if obj.invalid:
        invalid = {**invalid, "file": obj.invalid}
    out["invalid"] = invalid
    return out


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

    def prime(self) -> None:
        """Remember the templates there at start, so the watcher's first look is quiet."""
        for obj in self.store.list(KIND):
            self._ours.add((obj.name, obj.version))

    async def _io(self, fn: Any, *args: Any) -> Any:
        """The store does file I/O with fsync: never on the reactor thread."""
        return await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                               fn, *args)

    # -- reading --------------------------------------------------------------------

    async def list(self) -> list[dict[str, Any]]:
        known = await self._libvirt_names()
        # listing and the integrity checks stat files: both on a thread
        return await self._io(lambda: [_public(o, self._integrity(o.data, known))
                                       for o in self.store.list(KIND)])

    async def get(self, name: str) -> dict[str, Any]:
        obj = await self._load(name)
        known = await self._libvirt_names()
        return await self._io(lambda: _public(obj, self._integrity(obj.data, known)))

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
        # a URL is not looked at again: that would be network I/O at every listing
        if src and not media.get("remote") and not isoinfo.is_remote(src) \
                and not os.path.isfile(src):
            invalid["cdrom"] = [src]
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

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        data = await self._build(body)
        name = body.get("name") or await self._free_name(
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
        data = obj.data
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
        data = osinfo.merge(data, changes)
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
        await self._load(name)
        self._removed.add(name)
        try:
            await self._io(self.store.delete, KIND, name)
        except KeyError:
            raise NotFound("KCHTMPL0002E", name=name) from None
        await self.events.publish("template.deleted", {"name": name})

    async def clone(self, name: str) -> dict[str, Any]:
        obj = await self._load(name)
        if obj.invalid:
            raise InvalidOperation("KCHTMPL0008E", name=name, reason=obj.invalid)
        new = await self._free_name(f"{name}-clone")
        stored = await self._io(self.store.create, KIND, new, obj.data)
        self._ours.add((stored.name, stored.version))
        out = await self.get(new)
        await self.events.publish("template.created", out)
        return out

    async def _free_name(self, base: str) -> str:
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
        if source["type"] == "disk":
            source, info = await self._disk_media(source.get("path", ""), body)
            if info is not None:
                distro, version, bootable = info.os_distro, info.os_version, info.bootable
        distro = body.get("os_distro") or distro
        version = body.get("os_version") or version
        user = {k: v for k, v in body.items()
                if k not in ("name", "source_media", "cdrom", "os_distro", "os_version")}
        base = osinfo.defaults(distro, version)
        # Asking for more than a default maximum raises that maximum (not when it is given)
        cpu, mem = user.get("cpu_info", {}), user.get("memory", {})
        if "vcpus" in cpu and "maxvcpus" not in cpu:
            base["cpu_info"]["maxvcpus"] = max(base["cpu_info"]["maxvcpus"], cpu["vcpus"])
        if "current" in mem and "maxmemory" not in mem:
            base["memory"]["maxmemory"] = max(base["memory"]["maxmemory"], mem["current"])
        data = osinfo.merge(base, user)
        data.update(source_media=source, os_distro=distro, os_version=version)
        if bootable is not None:
            data["bootable"] = bootable
        self._check(data)
        return data

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
