"""The daemon's Redis client: txredisapi with a timeout on every call and an honest health state.

txredisapi queues commands silently while it reconnects; here every call has
a deadline, and while Redis is known to be away calls fail at once with
:class:`~kimchi.errors.ServiceUnavailable` instead of piling up.  Blocking
stream reads use a connection of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlparse

import txredisapi
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from kimchi import bus
from kimchi.errors import ServiceUnavailable

log = Logger()


class RedisDown(ServiceUnavailable):
    def __init__(self, error: str) -> None:
        super().__init__("KCHSVC0001E", error=error)


def _connect(url: str, timeout: float) -> Any:
    u = urlparse(url)
    common = dict(reconnect=True, convertNumbers=False, replyTimeout=None,
                  connectTimeout=timeout, password=unquote(u.password) if u.password else None)
    db = int(u.path.strip("/") or 0) if u.scheme == "redis" else 0
    if u.scheme == "unix":
        conn = txredisapi.lazyUnixConnection(u.path, dbid=db, **common)
    else:
        conn = txredisapi.lazyConnection(u.hostname or "localhost", u.port or 6379, dbid=db,
                                         **common)
    conn._factory.maxDelay = 2  # reconnect quickly once Redis is back
    return conn


class RedisClient(Service):
    """Commands and scripts with deadlines; ``up`` says whether Redis answers."""

    name = "redis-client"  # type: ignore[assignment]

    def __init__(self, url: str, timeout: float, clock: IReactorTime) -> None:
        self.url = url
        self.timeout = timeout
        self.clock = clock
        self.up = False
        self.error = "not connected yet"
        self._conn: Any = None
        self._reader: Any = None
        self._watch: task.LoopingCall | None = None
        self._listeners: list[Callable[[bool, str], None]] = []

    def on_change(self, listener: Callable[[bool, str], None]) -> None:
        """Call ``listener(up, error)`` whenever Redis comes or goes."""
        self._listeners.append(listener)

    def startService(self) -> None:
        super().startService()
        self._conn = _connect(self.url, self.timeout)
        self._reader = _connect(self.url, self.timeout)
        self._watch = task.LoopingCall(self._check)
        self._watch.clock = self.clock
        self._watch.start(1.0, now=True)

    async def _stop(self) -> None:
        if self._watch and self._watch.running:
            self._watch.stop()
        for c in (self._conn, self._reader):
            if c is not None:
                try:
                    await defer.Deferred.fromCoroutine(self._quiet(c.disconnect()))
                except Exception:
                    pass

    @staticmethod
    async def _quiet(d: Any) -> None:
        try:
            await d
        except Exception:
            pass

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _check(self) -> None:
        try:
            await self._deadline(self._conn.execute_command("PING"), min(self.timeout, 2.0))
            self._set(True, "")
        except Exception as e:
            self._set(False, str(e) or type(e).__name__)

    def _set(self, up: bool, error: str) -> None:
        if up == self.up:
            return
        self.up, self.error = up, error
        if up:
            log.info("redis {url} connected", url=self.url)
        else:
            log.warn("redis {url} unreachable: {error}", url=self.url, error=error)
        for listener in self._listeners:
            listener(up, error)

    async def _deadline(self, d: defer.Deferred[Any], seconds: float) -> Any:
        d.addTimeout(seconds, self.clock)
        return await d

    async def call(self, *args: Any, timeout: float | None = None, reader: bool = False) -> Any:
        """One command; raise :class:`RedisDown` when Redis is away or too slow."""
        if not self.up and not reader:
            raise RedisDown(self.error)
        conn = self._reader if reader else self._conn
        try:
            return await self._deadline(conn.execute_command(*args), timeout or self.timeout)
        except defer.TimeoutError as e:
            self._set(False, "timed out")
            raise RedisDown("timed out") from e
        except (txredisapi.ConnectionError, ConnectionError) as e:
            self._set(False, str(e))
            raise RedisDown(str(e)) from e

    async def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one of :data:`kimchi.bus.SCRIPTS`, loading it on first use."""
        s = bus.SCRIPTS[name]
        try:
            return await self.call("EVALSHA", s.sha, len(keys), *keys, *args)
        except txredisapi.ResponseError as e:
            if "NOSCRIPT" not in str(e):
                raise
            return await self.call("EVAL", s.source, len(keys), *keys, *args)
