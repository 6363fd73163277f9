"""libvirt, on threads this adapter owns: one connection per URI, never the reactor thread.

libvirt-python is blocking, so every call runs on a small named thread pool
(one connection, reused).  Lifecycle events of domains, networks and storage
pools arrive on libvirt's own event-loop thread and are handed to the reactor.

The connection has one owner, :class:`LibvirtConnection`, on the reactor
thread: it alone opens it (at start, every two seconds while libvirtd is away,
and at once when a connection breaks), a call that finds none waits for that
one attempt instead of opening its own, and each connection that opens runs
the connect listeners once, before any waiting call gets it, so every view
(the VMs, the default network and pool) is read again after each reconnect.
While libvirtd is away calls fail with ``ServiceUnavailable`` (503 KCHSVC0002E).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadable import isInIOThread
from twisted.python.threadpool import ThreadPool

from kimchi import isoinfo
from kimchi.errors import ServiceUnavailable

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
    """The one owner of the connection to one URI and of its listeners.

    Only this object opens the connection, on the reactor's word (never a request
    thread on its own): whoever needs it while it is closed waits for the one attempt
    in flight, and every connection that opens runs the connect listeners exactly
    once before anyone uses it, so every view is read again after each reconnect.
    While libvirtd is away calls fail with :class:`ServiceUnavailable` (a 503).
    """

    name = "libvirt"  # type: ignore[assignment]

    def __init__(self, uri: str, reactor: Any, pool_size: int = 2) -> None:
        self.uri = uri
        self.reactor = reactor  # IReactorThreads and IReactorTime
        self.pool = ThreadPool(1, pool_size, name=f"libvirt-{uri}")
        self._conn: Any = None  # set and cleared on the reactor thread only
        self.up = False
        self.error = "not connected yet"
        self._told_down = False  # down listeners are told once per outage
        self._opening: list[defer.Deferred[Any]] | None = None  # waiters of the attempt
        self._failed_at: float | None = None  # when the last attempt failed
        self._probes: dict[tuple[str, int, int], isoinfo.IsoInfo | None] = {}
        self.domain_listeners: list[DomainListener] = []
        self.network_listeners: list[ObjectListener] = []
        self.pool_listeners: list[ObjectListener] = []
        self.down_listeners: list[Callable[[str], None]] = []  # told once per outage
        self.connect_listeners: list[Callable[[], None]] = []  # once per connection
        # whether the open connection delivers domain lifecycle events
        self.lifecycle_events = False
        # who waits for the answer to answering()'s question in flight (None: none is)
        self._probing: list[defer.Deferred[Any]] | None = None
        self._retry: task.LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        start_event_loop()
        self.pool.start()
        self._retry = task.LoopingCall(self._reconnect)
        self._retry.clock = self.reactor
        self._retry.start(RETRY_SECONDS, now=True)

    def _reconnect(self) -> defer.Deferred[None] | None:
        """Keep a connection open (every few seconds while libvirtd is away)."""
        if self._conn is not None or not self.running:
            return None
        d = self._connect(eager=True)
        d.addCallbacks(lambda _conn: None, lambda _f: None)  # told by _attempt_done
        return d

    def stopService(self) -> None:
        super().stopService()
        if self._retry is not None and self._retry.running:
            self._retry.stop()
        self.pool.stop()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    # -- the connection: opened here, and only here --------------------------------------

    def _connect(self, eager: bool = False) -> defer.Deferred[Any]:
        """The open connection; else join the one attempt to open it (reactor thread).

        An attempt that failed less than ``RETRY_SECONDS / 2`` ago answers at once
        (unless ``eager``), so a burst of requests while libvirtd is away does not
        knock on its socket once each.
        """
        if self._conn is not None:
            return defer.succeed(self._conn)
        waiter: defer.Deferred[Any] = defer.Deferred()
        if self._opening is not None:
            self._opening.append(waiter)
            return waiter
        recent = (self._failed_at is not None
                  and self.reactor.seconds() - self._failed_at < RETRY_SECONDS / 2)
        if not self.running or (recent and not eager):
            return defer.fail(self._unavailable())
        self._opening = [waiter]
        threads.deferToThreadPool(self.reactor, self.pool, self._open).addBoth(
            self._attempt_done)
        return waiter

    def _attempt_done(self, result: Any) -> None:
        waiters, self._opening = self._opening or [], None
        if isinstance(result, Failure):
            self._failed_at = self.reactor.seconds()
            error = _why(result.value)
            self.up, self.error = False, error
            if not self._told_down:
                log.warn("libvirt {uri} unreachable: {error}", uri=self.uri, error=error)
                self._went_down(error)
            for w in waiters:
                w.errback(self._unavailable())
            return
        conn = result
        if not self.running:  # stopped while it opened
            try:
                conn.close()
            except Exception:
                pass
            for w in waiters:
                w.errback(self._unavailable())
            return
        self._conn = conn
        self.up, self.error = True, ""
        self._told_down, self._failed_at = False, None
        log.info("libvirt {uri} connected", uri=self.uri)
        # A new connection: whatever was known may be stale (a restarted libvirtd keeps
        # nothing of the test driver), so every listener reads again, once, before
        # anyone waiting for this connection uses it.
        for listener in self.connect_listeners:
            try:
                listener()
            except Exception:
                log.failure("libvirt {uri}: a connect listener failed", uri=self.uri)
        for w in waiters:
            w.callback(conn)

    @property
    def attempts_failed(self) -> bool:
        """Whether the last attempt to connect failed (and none has succeeded since)."""
        return self._failed_at is not None

    async def first_attempt(self, timeout: float) -> None:
        """Wait for this (started) connection's first attempt: :class:`ConnectionFailed`
        with libvirt's reason when it failed or took longer than ``timeout`` seconds."""
        d = self._connect(eager=True)
        d.addTimeout(timeout, self.reactor)
        try:
            await d
        except defer.TimeoutError:
            raise ConnectionFailed(f"no answer in {timeout:g} s") from None
        except ServiceUnavailable:
            raise ConnectionFailed(self.error or "not connected") from None

    def _unavailable(self) -> ServiceUnavailable:
        return ServiceUnavailable("KCHSVC0002E", error=self.error or "not connected")

    def _open(self) -> Any:
        """Open and subscribe (a libvirt thread; only ever through :meth:`_connect`)."""
        import libvirt

        conn = libvirt.open(self.uri)
        self.lifecycle_events = False
        try:
            conn.registerCloseCallback(self._closed, None)
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                        self._lifecycle, None)
            self.lifecycle_events = True
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
        return conn

    # -- calls --------------------------------------------------------------------------

    async def run(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(connection)`` on the libvirt threads (from the reactor thread).

        While libvirtd is away: :class:`ServiceUnavailable`.
        """
        conn = await self._connect()
        try:
            return await threads.deferToThreadPool(self.reactor, self.pool, _on, conn, fn)
        except _Broken as e:
            self._lost(conn, e.error)
            raise self._unavailable() from None

    async def answering(self, timeout: float) -> None:
        """Whether libvirtd answers now: :class:`ServiceUnavailable` unless it does within
        ``timeout`` seconds.  Asked on a thread of the reactor's pool, not this
        connection's, so calls queued there (a host's every VM read at once) are not
        taken for libvirtd's silence.  One question at a time: while libvirtd is silent
        its thread waits, and whoever asks meanwhile waits for that same answer instead of
        holding a thread of its own."""
        conn = await self._connect()
        d: defer.Deferred[Any] = defer.Deferred()
        if self._probing is None:
            self._probing = []
            threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _on, conn,
                                      lambda c: c.getLibVersion()).addBoth(self._answered)
        self._probing.append(d)
        d.addTimeout(timeout, self.reactor)
        try:
            await d
        except defer.TimeoutError:
            raise ServiceUnavailable("KCHSVC0002E",
                                     error=f"no answer within {timeout:g} s") from None
        except _Broken as e:
            self._lost(conn, e.error)
            raise self._unavailable() from None

    def _answered(self, result: Any) -> None:
        waiting, self._probing = self._probing or [], None
        for d in waiting:
            if not d.called:  # else it gave up waiting (its timeout)
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(result)

    def call(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(connection)`` here and now: for the daemon's own job threads (never
        the reactor's).  While libvirtd is away: :class:`ServiceUnavailable`."""
        conn = self._conn
        if conn is None:
            if isInIOThread():  # waiting here for the reactor would never end
                raise self._unavailable()
            conn = threads.blockingCallFromThread(self.reactor, self._connect)
        try:
            return _on(conn, fn)
        except _Broken as e:
            self.reactor.callFromThread(self._lost, conn, e.error)
            raise ServiceUnavailable("KCHSVC0002E", error=e.error) from None

    # Called on libvirt's event thread: hand everything to the reactor.
    def _closed(self, conn: Any, reason: int, opaque: Any) -> None:
        self.reactor.callFromThread(self._lost, conn, f"connection closed (reason {reason})")

    def _lost(self, conn: Any, error: str) -> None:
        """``conn`` broke (reactor thread): say so once, and open a new one at once."""
        if conn is not self._conn:
            return  # an older connection: already replaced
        log.warn("libvirt {uri} connection lost ({error}); reconnecting", uri=self.uri,
                 error=error)
        self._conn = None
        self.up, self.error = False, error
        self._went_down(error)
        # not closed here: calls in flight on other threads still hold it (it is closed
        # when the last of them lets go)
        if self.running:
            self._connect(eager=True).addErrback(lambda _f: None)  # told by _attempt_done

    def _went_down(self, error: str) -> None:
        self._told_down = True
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


RETRY_SECONDS = 2.0  # between attempts to reach libvirtd while it is away


class _Broken(Exception):
    """The connection itself failed (libvirtd went away), not the call."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class ConnectionFailed(Exception):
    """A connection could not be opened: ``error`` is libvirt's reason."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _on(conn: Any, fn: Callable[[Any], T]) -> T:
    """``fn(conn)``, telling a broken connection from libvirt's refusal (any thread)."""
    import libvirt

    try:
        return fn(conn)
    except libvirt.libvirtError as e:
        if not _alive(conn):  # libvirtd went away under the call
            raise _Broken(_why(e)) from e
        raise


def _alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except Exception:
        return False


def _why(e: BaseException) -> str:
    get = getattr(e, "get_error_message", None)
    return str((get() if get else None) or e)


def _named(names: tuple[str, ...], event: int) -> str:
    return names[event] if 0 <= event < len(names) else str(event)
