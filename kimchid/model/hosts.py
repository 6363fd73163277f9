"""The KVM hosts this kimchi manages: the local one and those an admin added.

The local host is the one of ``[libvirt] uri``, named ``local``, there from the start
and never removed.  The others are kept as JSON files in ``objects_dir/hosts/``
(``{"name", "uri"}``), like templates: added with ``POST /hosts`` or dropped in by hand,
and picked up by the object watcher either way.

Each host has its own :class:`LibvirtConnection` (its own threads, keep-alive, reconnect
and outage) and its own :class:`VmInventory`: a host that goes away degrades alone,
with its state (``connected``, ``connecting``, ``unreachable`` with libvirt's reason) in
``GET /hosts`` and a ``host.state`` event, and comes back by itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from kimchi.bus import LOCAL_HOST
from kimchi.errors import Conflict, InvalidOperation, NotFound, ServiceUnavailable
from kimchid.adapters.libvirt import ConnectionFailed, LibvirtConnection
from kimchid.adapters.objectstore import Exists, ObjectStore, StoredObject
from kimchid.model.events import EventHub
from kimchid.model.host import HostStats
from kimchid.model.networks import Networks
from kimchid.model.snapshots import Snapshots
from kimchid.model.storage import Storage
from kimchid.model.vmdevices import VmDevices
from kimchid.model.vms import VmActions, VmInventory
from kimchid.model.vmstats import VmStats

log = Logger()

LOCAL = LOCAL_HOST
KIND = "hosts"
CONNECT_TIMEOUT = 20.0  # seconds POST /hosts waits for the first connection


class Host:
    """One host: its connection, its VMs, and what it is."""

    def __init__(self, name: str, uri: str, local: bool, conn: LibvirtConnection,
                 events: EventHub, vms: VmInventory | None = None,
                 template_pools: Callable[[], dict[str, list[str]]] = dict,
                 template_networks: Callable[[], dict[str, list[str]]] = dict) -> None:
        """``template_pools``, ``template_networks``: which templates name each pool and
        network (blocking): the local host's templates; another host's are none (kimchi
        makes VMs from templates on the local host only, for now)."""
        self.name = name
        self.uri = uri
        self.local = local
        self.conn = conn
        self.events = events
        self.vms = vms if vms is not None else VmInventory(conn, events, host=name)
        self.actions = VmActions(self.vms)
        self.stats: VmStats | None = None  # the VM figures (the local host's: kimchid's)
        self.figures: HostStats | None = None  # the host's own (the local host's: kimchid's)
        self.storage = Storage(conn, events, self.vms, template_pools, host=name)
        self.networks = Networks(conn, events, self.vms, template_networks, host=name,
                                 local=local)
        self.snapshots = Snapshots(conn, events, host=name)
        self.devices = VmDevices(conn, events, host=name, local=local)
        self.cpus = 0
        self.memory = 0  # bytes
        self._told: str | None = None  # the state last published
        conn.connect_listeners.append(self._connected)
        conn.down_listeners.append(self._down)

    @property
    def state(self) -> str:
        if self.conn.up:
            return "connected"
        if self.conn.attempts_failed:
            return "unreachable"
        return "connecting"

    @property
    def reason(self) -> str:
        return "" if self.conn.up else self.conn.error

    def view(self, workers: int = 0) -> dict[str, Any]:
        vms = self.vms.vms.values() if self.vms.loaded else ()
        return {"name": self.name, "uri": self.uri, "local": self.local, "state": self.state,
                "reason": self.reason, "cpus": self.cpus, "memory": self.memory,
                "vms": {"running": sum(v["state"] == "running" for v in vms),
                        "total": len(vms)},
                "workers": workers}

    def _connected(self) -> None:
        d = defer.Deferred.fromCoroutine(self._read_info())
        d.addErrback(lambda f: log.warn("host {name}: {e}", name=self.name,
                                        e=f.getErrorMessage()))
        self._publish()

    async def _read_info(self) -> None:
        info = await self.conn.run(lambda c: c.getInfo())
        self.cpus, self.memory = int(info[2]), int(info[1]) * 1024 * 1024

    def _down(self, error: str) -> None:
        self._publish()

    def _publish(self) -> None:
        state = self.state
        if state == self._told:
            return
        self._told = state
        d = defer.Deferred.fromCoroutine(self.events.emit(
            "host.state", {"host": self.name, "state": state, "reason": self.reason}))
        d.addErrback(lambda f: log.warn("host {name}: {e}", name=self.name,
                                        e=f.getErrorMessage()))


class Hosts:
    """Every host by name, the local one first."""

    def __init__(self, local: Host, store: ObjectStore, events: EventHub,
                 make_connection: Callable[[str], LibvirtConnection],
                 clock: Any = None, stats_interval: float = 5.0,
                 host_stats: tuple[float, int] = (5.0, 120)) -> None:
        """``clock`` and ``stats_interval``: the VM figures of the hosts added (sampled
        every ``[libvirt] stats_interval`` s, as the local host's); ``host_stats``: the
        interval and the history of their own figures (``[host]``, as the local host's);
        without a clock, none."""
        self.host_stats = host_stats
        self.clock = clock
        self.stats_interval = stats_interval
        self.local = local
        self.store = store
        self.events = events
        self.make_connection = make_connection
        self._hosts: dict[str, Host] = {local.name: local}
        self._ours: set[tuple[str, str]] = set()  # (name, version) of files we wrote
        self._removing: set[str] = set()
        self._listing: tuple[tuple[int, ...], list[bytes], bytes] | None = None

    # -- reading --------------------------------------------------------------------

    def __iter__(self) -> Iterator[Host]:
        return iter(sorted(self._hosts.values(), key=lambda h: (not h.local, h.name)))

    def __len__(self) -> int:
        return len(self._hosts)

    def get(self, name: str) -> Host:
        host = self._hosts.get(name)
        if host is None:
            raise NotFound("KCHHOST0001E", name=name)
        return host

    def reachable(self) -> list[Host]:
        """The hosts whose VMs can be listed now; 503 when none can (one host away
        degrades that host alone)."""
        up = [h for h in self if h.vms.loaded and h.conn.up]
        if not up:
            self.local.vms.list()  # raises its ServiceUnavailable
        return up

    def reachable_objects(self) -> list[Host]:
        """The hosts whose pools and networks a root listing reads: the connected ones (the
        local host alone, whatever its state, when it is the only one: its 503 then)."""
        if len(self._hosts) == 1:
            return [self.local]
        return [h for h in self if h.conn.up] or [self.local]

    async def addressed(self, args: Mapping[str, Any], kind: str, collection: str,
                        probe: Callable[[Host, str], Awaitable[Any]]) -> Host:
        """The host of a pool's or a network's address (``args``, the path's arguments):
        its own (``/hosts/<host>/...``); at the root, the local host for a collection
        (``/storagepools``) and for an item the host :meth:`holder` finds (``probe(host,
        name)`` answers when that host has the item)."""
        if "host" in args:
            return self.get(args["host"])
        name = args.get("name")
        if name is None or len(self._hosts) == 1:
            return self.local
        return await self.holder(kind, name, collection, lambda h: probe(h, name))

    async def gather(self, args: Mapping[str, Any],
                     read: Callable[[Host], Awaitable[list[dict[str, Any]]]]
                     ) -> list[dict[str, Any]]:
        """A listing: the host's of ``/hosts/<host>/...``, at the root every reachable
        host's, one after another."""
        if "host" in args:
            return await read(self.get(args["host"]))
        out: list[dict[str, Any]] = []
        for h in self.reachable_objects():
            out += await read(h)
        return out

    async def holder(self, kind: str, name: str, collection: str,
                     probe: Callable[[Host], Awaitable[Any]]) -> Host:
        """The host a root item path (/<collection>/<name>) means: the local host when it
        has one (``probe`` answers), else the one connected host that has one; 409 when
        several do; the local host (and its 404) when none does."""
        have = []
        for h in self:
            if not h.local and not h.conn.up:
                continue
            try:
                await probe(h)
            except (NotFound, ServiceUnavailable):
                continue
            if h.local:
                return h
            have.append(h)
        if len(have) == 1:
            return have[0]
        if not have:
            return self.local
        raise Conflict("KCHHOST0007E", kind=kind, name=name,
                       addresses=", ".join(f"/hosts/{h.name}/{collection}/{name}"
                                           for h in have))

    def vm_list(self) -> list[dict[str, Any]]:
        """Every reachable host's VMs: the local host's first, each host's by name."""
        if len(self._hosts) == 1:
            return self.local.vms.list()
        return [vm for h in self.reachable() for vm in h.vms.list()]

    def listing_json(self) -> bytes:
        """:meth:`vm_list` as JSON, made again only when a host's own listing changed."""
        if len(self._hosts) == 1:
            return self.local.vms.listing_json()
        parts = [h.vms.listing_json() for h in self.reachable()]
        key = tuple(map(id, parts))
        if self._listing is None or self._listing[0] != key:
            body = b"[" + b",".join(p[1:-1] for p in parts if len(p) > 2) + b"]"
            self._listing = (key, parts, body)  # the parts held: their ids stay theirs
        return self._listing[2]

    def known(self, name: str) -> Host:
        """The host ``name`` for a request that names it in its body: 400 if none."""
        host = self._hosts.get(name)
        if host is None:
            raise InvalidOperation("KCHHOST0008E", name=name)
        return host

    def vm_host(self, name: str) -> Host:
        """The host of the VM ``name`` as a root path (``/vms/<name>``) means it: the local
        host's when it has one, else the one host that has one; 409 when several do, 404
        when none does."""
        if len(self._hosts) == 1 or self.local.vms.has(name):
            return self.local
        have = [h for h in self if not h.local and h.vms.has(name)]
        if len(have) == 1:
            return have[0]
        if not have:
            return self.local  # its 404 (or 503 while it is away)
        raise Conflict("KCHHOST0007E", kind="virtual machine", name=name,
                       addresses=", ".join(f"/hosts/{h.name}/vms/{name}" for h in have))

    # -- changing -------------------------------------------------------------------

    def load(self) -> None:
        """The hosts kept in ``objects_dir`` (at start)."""
        for obj in self.store.list(KIND):
            self._take(obj)

    async def add(self, name: str, uri: str) -> Host:
        """Connect to ``uri``; once connected, keep it as ``name`` (file and all)."""
        if name in self._hosts or name == LOCAL:
            raise InvalidOperation("KCHHOST0002E", name=name)
        for h in self._hosts.values():
            if h.uri == uri:
                raise InvalidOperation("KCHHOST0003E", name=uri, other=h.name)
        host = self._start(name, uri)
        self._hosts[name] = host
        try:
            await host.conn.first_attempt(CONNECT_TIMEOUT)
            try:
                obj = await self._write(name, uri)
            except Exists:
                raise InvalidOperation("KCHHOST0002E", name=name) from None
        except BaseException as e:
            self._hosts.pop(name, None)
            host.conn.stopService()
            if isinstance(e, ConnectionFailed):
                raise InvalidOperation("KCHHOST0004E", name=name, uri=uri,
                                       error=e.error) from None
            raise
        self._ours.add((name, obj.version))
        await self.events.emit("host.created", host.view())
        log.info("host {name} added: {uri}", name=name, uri=uri)
        return host

    async def remove(self, name: str) -> None:
        host = self.get(name)
        if host.local:
            raise InvalidOperation("KCHHOST0005E")
        self._removing.add(name)
        try:
            await self._delete(name)
        finally:
            self._removing.discard(name)
        self._drop(name)
        await self.events.emit("host.deleted", {"name": name})

    def file_changed(self, kind: str, name: str, change: str, obj: StoredObject | None) -> None:
        """From the object watcher: a host file added, changed or removed by hand."""
        if kind != KIND or name == LOCAL:
            return
        if obj is not None and (name, obj.version) in self._ours:
            return
        if change == "removed":
            if name in self._hosts and name not in self._removing:
                self._drop(name)
                self._emit("host.deleted", {"name": name, "by": "file"})
            return
        assert obj is not None
        old = self._hosts.get(name)
        if old is not None and old.uri == obj.data.get("uri"):
            return
        if old is not None:
            self._drop(name)
        host = self._take(obj)
        if host is not None:
            self._emit("host.created", {**host.view(), "by": "file"})

    # -- inside -----------------------------------------------------------------------

    def _take(self, obj: StoredObject) -> Host | None:
        uri = obj.data.get("uri")
        if obj.invalid or not isinstance(uri, str) or not uri or obj.name == LOCAL:
            log.warn("hosts/{name}.json is not a host: {why}", name=obj.name,
                     why=obj.invalid or "no uri")
            return None
        if any(h.uri == uri for h in self._hosts.values()):
            log.warn("hosts/{name}.json: {uri} is managed already", name=obj.name, uri=uri)
            return None
        host = self._start(obj.name, uri)
        self._hosts[obj.name] = host
        return host

    def _start(self, name: str, uri: str) -> Host:
        conn = self.make_connection(uri)
        host = Host(name, uri, False, conn, self.events)
        conn.startService()
        if self.clock is not None:
            host.stats = VmStats(host.vms, self.events, self.clock, self.stats_interval)
            host.stats.start()
            host.figures = HostStats(conn, self.events, self.clock, *self.host_stats,
                                     host=name, local=False)
            host.figures.start()
        return host

    def _drop(self, name: str) -> None:
        host = self._hosts.pop(name, None)
        if host is not None:
            for sampler in (host.stats, host.figures):
                if sampler is not None:
                    sampler.stop()
            host.conn.stopService()
            log.info("host {name} forgotten", name=name)

    async def _write(self, name: str, uri: str) -> StoredObject:
        from twisted.internet import threads

        return await threads.deferToThread(self.store.create, KIND, name,
                                           {"name": name, "uri": uri})

    async def _delete(self, name: str) -> None:
        from twisted.internet import threads

        try:
            await threads.deferToThread(self.store.delete, KIND, name)
        except KeyError:
            pass  # removed by hand meanwhile

    def _emit(self, etype: str, data: dict[str, Any]) -> None:
        d = defer.Deferred.fromCoroutine(self.events.emit(etype, data))
        d.addErrback(lambda f: log.warn("{t}: {e}", t=etype, e=f.getErrorMessage()))

    def stop(self) -> None:
        for host in list(self._hosts.values()):
            if not host.local:
                for sampler in (host.stats, host.figures):
                    if sampler is not None:
                        sampler.stop()
                host.conn.stopService()
