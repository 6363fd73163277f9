"""libvirt, on threads this adapter owns: one connection per URI, never the reactor thread.

libvirt-python is blocking, so every call runs on a small named thread pool
(one connection, reused; re-opened after libvirtd went away).  Lifecycle
events of domains, networks and storage pools arrive on libvirt's own
event-loop thread and are handed to the reactor; when the connection closes
(libvirtd restarted) it is re-opened with back-off and listeners are told to
re-read everything.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet import task, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from kimchid import isoinfo

log = Logger()
T = TypeVar("T")

_event_loop_lock = threading.Lock()
_event_loop_started = False


def start_event_loop() -> None:
    """Run libvirt's default event loop on a thread (once per process).

    It must be registered before the first connection is opened, or that
    connection never delivers events.
    """
    global _event_loop_started
    import libvirt

    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        # errors reach us as exceptions; libvirt's own printing to stderr is noise
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


# (event, detail) numbers of VIR_DOMAIN_EVENT_ID_LIFECYCLE, by name
LIFECYCLE = ("defined", "undefined", "started", "suspended", "resumed", "stopped", "shutdown",
             "pmsuspended", "crashed")
DomainListener = Callable[[str, str, str], None]  # (uuid, name, event name)
# VIR_NETWORK_EVENT_* and VIR_STORAGE_POOL_EVENT_* (lifecycle), by name
NETWORK_LIFECYCLE = ("defined", "undefined", "started", "stopped")
POOL_LIFECYCLE = ("defined", "undefined", "started", "stopped", "created", "deleted")
ObjectListener = Callable[[str, str], None]  # (name, event name)


class LibvirtConnection(Service):
    name = "libvirt"  # type: ignore[assignment]

    def __init__(self, uri: str, reactor: Any, pool_size: int = 2) -> None:
        self.uri = uri
        self.reactor = reactor  # IReactorThreads and IReactorTime
        self.pool = ThreadPool(1, pool_size, name=f"libvirt-{uri}")
        self._conn: Any = None
        self.up = False
        self.error = "not connected yet"
        self._probes: dict[tuple[str, int, int], isoinfo.IsoInfo | None] = {}
        self.domain_listeners: list[DomainListener] = []
        self.network_listeners: list[ObjectListener] = []
        self.pool_listeners: list[ObjectListener] = []
        self.down_listeners: list[Callable[[str], None]] = []  # told once per outage
        self.connect_listeners: list[Callable[[], None]] = []
        self._retry: task.LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        start_event_loop()
        self.pool.start()
        self._retry = task.LoopingCall(self._reconnect)
        self._retry.clock = self.reactor
        self._retry.start(2.0, now=True)

    async def _reconnect(self) -> None:
        """Keep a connection open: a new one means listeners must re-read everything."""
        if self._conn is not None:
            return
        try:
            await self.run(lambda conn: None)
        except Exception:
            return  # libvirtd still away; logged once by _connection
        for listener in self.connect_listeners:
            listener()

    def stopService(self) -> None:
        super().stopService()
        if self._retry is not None and self._retry.running:
            self._retry.stop()
        self.pool.stop()
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass

    async def run(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(connection)`` on the libvirt threads."""
        return await threads.deferToThreadPool(self.reactor, self.pool, self._call, fn)

    def call(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(connection)`` here and now: for the daemon's own job threads."""
        return self._call(fn)

    def _call(self, fn: Callable[[Any], T]) -> T:
        import libvirt

        for retry in (True, False):
            conn = self._connection()
            try:
                return fn(conn)
            except libvirt.libvirtError as e:
                broken = e.get_error_code() in (libvirt.VIR_ERR_SYSTEM_ERROR,
                                                libvirt.VIR_ERR_INTERNAL_ERROR,
                                                libvirt.VIR_ERR_RPC) or not conn.isAlive()
                if broken and retry:
                    self._conn = None
                    continue
                raise
        raise AssertionError("unreachable")

    def _connection(self) -> Any:
        import libvirt

        if self._conn is not None:
            return self._conn
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as e:
            if self.up or self.error == "not connected yet":
                log.warn("libvirt {uri} unreachable: {error}", uri=self.uri, error=str(e))
                self.reactor.callFromThread(self._went_down, str(e))
            self.up, self.error = False, str(e)
            raise
        try:
            conn.registerCloseCallback(self._closed, None)
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                        self._lifecycle, None)
            if not self.uri.startswith("test:"):
                conn.setKeepAlive(5, 3)
        except libvirt.libvirtError as e:
            log.warn("libvirt {uri}: no events ({error})", uri=self.uri, error=str(e))
        try:
            conn.networkEventRegisterAny(None, libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE,
                                         self._network_lifecycle, None)
            conn.storagePoolEventRegisterAny(None, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE,
                                             self._pool_lifecycle, None)
        except libvirt.libvirtError as e:  # an older libvirtd: the periodic checks remain
            log.warn("libvirt {uri}: no network or pool events ({error})", uri=self.uri,
                     error=str(e))
        log.info("libvirt {uri} connected", uri=self.uri)
        self._conn = conn
        self.up, self.error = True, ""
        return conn

    # Called on libvirt's event thread: hand everything to the reactor.
    def _closed(self, conn: Any, reason: int, opaque: Any) -> None:
        self.reactor.callFromThread(self._lost, conn, reason)

    def _lost(self, conn: Any, reason: int) -> None:
        if conn is self._conn:
            log.warn("libvirt {uri} connection closed (reason {r}); reconnecting",
                     uri=self.uri, r=reason)
            self._conn = None
            self.up, self.error = False, f"connection closed (reason {reason})"
            self._went_down(self.error)

    def _went_down(self, error: str) -> None:
        for listener in self.down_listeners:
            listener(error)

    def _lifecycle(self, conn: Any, dom: Any, event: int, detail: int, opaque: Any) -> None:
        self.reactor.callFromThread(self._domain_event, dom.UUIDString(), dom.name(),
                                    _named(LIFECYCLE, event))

    def _domain_event(self, uuid: str, name: str, event: str) -> None:
        for listener in self.domain_listeners:
            listener(uuid, name, event)

    def _network_lifecycle(self, conn: Any, net: Any, event: int, detail: int,
                           opaque: Any) -> None:
        self.reactor.callFromThread(self._object_event, self.network_listeners, net.name(),
                                    _named(NETWORK_LIFECYCLE, event))

    def _pool_lifecycle(self, conn: Any, pool: Any, event: int, detail: int,
                        opaque: Any) -> None:
        self.reactor.callFromThread(self._object_event, self.pool_listeners, pool.name(),
                                    _named(POOL_LIFECYCLE, event))

    @staticmethod
    def _object_event(listeners: list[ObjectListener], name: str, event: str) -> None:
        for listener in listeners:
            listener(name, event)

    # -- storage ----------------------------------------------------------------

    def _pool_isos(self, conn: Any) -> list[dict[str, Any]]:
        import libvirt

        out = []
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            try:
                vols = pool.listAllVolumes()
            except libvirt.libvirtError:
                continue
            for vol in vols:
                path = vol.path()
                if not path.lower().endswith(".iso"):
                    continue
                info = self._probe(path)
                if info is None:
                    continue
                out.append({
                    "name": vol.name(), "path": path, "size": vol.info()[1],
                    "os_distro": info.os_distro, "os_version": info.os_version,
                    "bootable": info.bootable, "volume_id": info.volume_id,
                    "found_by": "pool", "pool": pool.name(),
                })
        return out

    def _probe(self, path: str) -> isoinfo.IsoInfo | None:
        """Identify an ISO, remembering the answer while the file is unchanged."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in self._probes:
            try:
                self._probes[key] = isoinfo.probe_file(path)
            except (isoinfo.NotAnIso, OSError):
                self._probes[key] = None
        return self._probes[key]

    async def pool_isos(self) -> list[dict[str, Any]]:
        """ISOs in active storage pools: the shallow scan."""
        return await self.run(self._pool_isos)


def _named(names: tuple[str, ...], event: int) -> str:
    return names[event] if 0 <= event < len(names) else str(event)
