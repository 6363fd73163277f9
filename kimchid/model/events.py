"""The event hub: one reader of the Redis event stream, fanned out to every watcher.

Every change is an entry of the ``events`` stream, whose entry ids are the
event ids.  The daemon reads the stream once (XREAD BLOCK) and hands each
event to the watchers (WebSocket, SSE) whose filters take it.  A watcher that
resumes (``since``) is registered for live events first, then back-filled from
the stream with XRANGE, and its live events are released after that, skipping
those the back-fill already sent: no gap, no duplicate.  When ``since`` is
older than what the stream keeps, the watcher gets ``{"type": "reset"}``.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from kimchi import bus
from kimchi.bus.twisted import RedisClient, RedisDown
from kimchi.errors import InvalidRequest

log = Logger()

RESET = '{"type":"reset"}'
SCAN_PAGES = 20  # pages of the stream one JSON answer reads at most (EventHub.page)
# A fan-out that took longer than LINGER_FROM seconds (hundreds of watchers) is followed by
# a pause of LINGER_SHARE of the time it took, at most MAX_LINGER: the events that come
# meanwhile go out together, one write per socket for several, and the reactor spends at
# most about 57 % of its time fanning out.  A few watchers (a fan-out of well under a
# millisecond) never wait.  Measured with 500 TLS watchers at 100 ev/s (bench/fanout.py,
# 3 runs each, same run): a pause as long as the fan-out, p99 44.5 ms and 8.3 us of CPU
# per frame; 0.75 of it, 41.4 ms and 9.3 us; 0.5, 35.1 ms and 10.8 us (too near the
# 12 us target).
LINGER_FROM = 0.002
LINGER_SHARE = 0.75
MAX_LINGER = 0.025


class Event:
    """One event as read from the stream, with its wire text built once."""

    __slots__ = ("id", "key", "type", "task", "text", "prepared")

    def __init__(self, event_id: str, fields: dict[str, str]) -> None:
        self.id = event_id
        self.key = bus.parse_event_id(event_id)
        self.type = fields["type"]
        self.task = fields.get("task", "")
        self.text = bus.event_json(event_id, fields)
        self.prepared: Any = None  # a WebSocket frame prepared once for every socket


class EventFilter:
    """``?types=task.*,vm.state`` and ``?task=<id>``."""

    _TYPE = "[a-z0-9_.*?-]+"
    #: ``?types=``: comma-separated types (``*`` and ``?`` wildcards), blanks around each
    #: ignored, at least one; the schema's pattern and the check here
    PATTERN = rf"^(\s*,)*\s*{_TYPE}\s*(,(\s*{_TYPE})?\s*)*$"

    def __init__(self, types: str | None = None, task_id: str | None = None,
                 access: Any = None) -> None:
        """``access``: a further check of each event (what a non-admin user may see)."""
        self.access = access
        self.patterns: list[str] | None = None
        if types:
            if not re.fullmatch(self.PATTERN, types):
                raise InvalidRequest("KCHEVT0002E", types=types)
            pats = [t.strip() for t in types.split(",") if t.strip()]
            self.patterns = pats
        self.task = task_id or None
        self._exact = {p for p in self.patterns or () if "*" not in p and "?" not in p}
        # Watchers whose filters share this key see the same events: a fan-out filters
        # (and frames) each batch once per key.  A per-user check has no key.
        self.key: tuple[Any, ...] | None = (
            None if access is not None else (tuple(self.patterns or ()), self.task))

    def wants_type(self, etype: str) -> bool:
        """For notices outside the stream (no task): does this watcher want the type?"""
        if self.task is not None:
            return False
        if self.access is not None and not self.access.wants_notice(etype):
            return False
        if self.patterns is None or etype in self._exact:
            return True
        return any(fnmatch.fnmatchcase(etype, p) for p in self.patterns)

    def __call__(self, ev: Event) -> bool:
        if self.task is not None and ev.task != self.task:
            return False
        if not (self.patterns is None or ev.type in self._exact
                or any(fnmatch.fnmatchcase(ev.type, p) for p in self.patterns)):
            return False
        return self.access is None or bool(self.access(ev))


class Batch:
    """One read of the stream as the hub offers it to every watcher.

    ``shared``: what watchers with the same filter key reuse (the filtered events, their
    wire bytes), made by the first of them.  ``then``: work to do once every watcher has
    been offered the batch, in that order (the socket watchers' writes: made for every
    socket first, then sent, which keeps each phase's code and data in the CPU's cache)."""

    __slots__ = ("shared", "then")

    def __init__(self) -> None:
        self.shared: dict[Any, Any] = {}
        self.then: list[Callable[[], None]] = []


class Watcher:
    """A connected client: override :meth:`write` (and :meth:`write_reset`, :meth:`drop`)."""

    transport = ""  # how the client follows: "websocket" or "sse" (counted in /metrics)

    def __init__(self, wants: EventFilter, buffer_limit: int) -> None:
        self.wants = wants
        self.buffer_limit = buffer_limit
        self.last: tuple[int, int] = (0, 0)
        self.ready = False
        self.paused = False
        self._held: deque[Event] = deque()
        self.dropped = False

    # called by the hub
    def offer(self, ev: Event) -> None:
        if self.dropped or not self.wants(ev):
            return
        if not self.ready or self.paused:
            self._held.append(ev)
            if len(self._held) > self.buffer_limit:
                self.dropped = True
                self._held.clear()
                self.drop("too slow: reconnect with since=<last id> to resume")
            return
        if ev.key > self.last:
            self.last = ev.key
            self.write(ev)

    def offer_many(self, events: list[Event], batch: Batch) -> None:
        """Several events at once (one read of the stream); subclasses may write them as
        one, and use what ``batch`` shares."""
        for ev in events:
            self.offer(ev)

    def fresh(self, events: list[Event], batch: Batch) -> tuple[list[Event], bool]:
        """The events of a batch this watcher wants and has not had, its ``last`` moved
        past them; and whether that list is the one every watcher with the same filter key
        gets (then what is made from it can be kept in ``batch.shared`` too)."""
        key = self.wants.key
        if key is not None and self.last < events[0].key:
            got = batch.shared.get(key)
            if got is None:
                got = batch.shared[key] = [ev for ev in events if self.wants(ev)]
            if got:
                self.last = got[-1].key
            return got, True
        out = []
        for ev in events:
            if ev.key > self.last and self.wants(ev):
                self.last = ev.key
                out.append(ev)
        return out, False

    def wire(self, events: list[Event], batch: Batch, tag: str,
             make: Callable[[list[Event]], bytes]) -> bytes | None:
        """The bytes for the events of a batch this watcher has not had (None: none),
        made by ``make`` from them once per filter key and kind of wire (``tag``): every
        watcher sharing the key gets the same bytes from ``batch.shared``."""
        got, same = self.fresh(events, batch)
        if not got:
            return None
        if not same:
            return make(got)
        key = (tag, self.wants.key)
        out: bytes | None = batch.shared.get(key)
        if out is None:
            out = batch.shared[key] = make(got)
        return out

    def release(self) -> None:
        """Send what was held (during back-fill or while the client was slow)."""
        while self._held and not self.paused and not self.dropped:
            ev = self._held.popleft()
            if ev.key > self.last:
                self.last = ev.key
                self.write(ev)

    # flow control, from the transport (IPushProducer)
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self.ready:
            self.release()

    def stopProducing(self) -> None:
        self.dropped = True

    # to override
    def write(self, ev: Event) -> None:
        raise NotImplementedError

    def write_reset(self) -> None:
        raise NotImplementedError

    def write_ephemeral(self, text: str) -> None:
        """A notice with no id (it is not in the stream): service.degraded while Redis is away."""

    def drop(self, reason: str) -> None:
        raise NotImplementedError


class EventHub(Service):
    name = "events"  # type: ignore[assignment]

    def __init__(self, redis: RedisClient, keys: bus.Keys, clock: IReactorTime,
                 max_len: int, page_size: int) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.max_len = max_len
        self.page_size = page_size
        self.watchers: set[Watcher] = set()
        self.last_id: str | None = None
        self.prepare: Callable[[Event], Any] | None = None
        # in-process readers of every batch, before the watchers (the metrics' task ends)
        self.listeners: list[Callable[[list[Event]], None]] = []
        self._loop: defer.Deferred[None] | None = None
        self._running = False
        self.delivered = 0

    # -- service -----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._running = True
        self._loop = defer.Deferred.fromCoroutine(self._read_loop())
        self._loop.addErrback(lambda f: log.failure("event reader crashed", f))

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        self._running = False
        for w in list(self.watchers):
            w.drop("server stopping")
        self.watchers.clear()
        return self._loop

    async def _read_loop(self) -> None:
        backoff = 0.1
        while self._running:
            try:
                if self.last_id is None:
                    newest = await self.redis.call("XREVRANGE", self.keys.events, "+", "-",
                                                   "COUNT", "1")
                    self.last_id = newest[0][0] if newest else "0"
                reply = await self.redis.call(
                    # small reads: the reactor writes out one batch before the next is fanned out
                    "XREAD", "COUNT", "100", "BLOCK", "1000", "STREAMS", self.keys.events,
                    self.last_id, reader=True, timeout=self.redis.timeout + 1.0,
                )
                backoff = 0.1
            except RedisDown:
                await task.deferLater(self.clock, backoff)
                backoff = min(2.0, backoff * 2)
                continue
            except Exception:
                log.failure("reading the event stream failed")
                await task.deferLater(self.clock, 1.0)
                continue
            if reply:
                started = time.perf_counter()
                self._dispatch(reply[0][1])
                took = time.perf_counter() - started
                if took > LINGER_FROM:
                    await task.deferLater(self.clock, min(took * LINGER_SHARE, MAX_LINGER))

    def _dispatch(self, entries: Iterable[Any]) -> None:
        events = [Event(eid, bus.fields_of(flat)) for eid, flat in entries]
        if not events:
            return
        self.last_id = events[-1].id
        self.delivered += len(events)
        for listen in self.listeners:
            listen(events)
        batch = Batch()
        for w in list(self.watchers):
            w.offer_many(events, batch)
        for then in batch.then:
            then()

    # -- watchers ----------------------------------------------------------------

    async def watch(self, w: Watcher, since: str | None) -> None:
        """Start delivering to ``w``: back-fill after ``since`` (None: from now on)."""
        self.watchers.add(w)
        try:
            if since is None:
                # "From now on", decided now, without waiting on Redis: the hub's position,
                # or (before the hub has read anything) the clock less a margin for a
                # Redis on another host — a few events too many, never one missing.
                since = self.last_id or f"{int(self.clock.seconds() * 1000) - 2000}-0"
            if self.last_id is None:
                # The hub has not started reading: make it start where this watcher does,
                # or what happens between now and its first read would reach nobody.
                self.last_id = since
            if since is not None:
                if await self.too_old(since):
                    w.write_reset()
                else:
                    w.last = bus.parse_event_id(since)
                    cursor = since
                    while not w.dropped:
                        page = await self._range_after(cursor, self.page_size)
                        for eid, flat in page:
                            ev = Event(eid, bus.fields_of(flat))
                            cursor = eid
                            if w.wants(ev) and ev.key > w.last:
                                w.last = ev.key
                                w.write(ev)
                        if len(page) < self.page_size:
                            break
            w.ready = True
            w.release()
        except BaseException:
            self.watchers.discard(w)
            raise

    def unwatch(self, w: Watcher) -> None:
        self.watchers.discard(w)

    async def _range_after(self, since: str, count: int) -> list[Any]:
        start = "-" if since == "0" else "(" + since
        rows: list[Any] = await self.redis.call("XRANGE", self.keys.events, start, "+", "COUNT",
                                                str(count))
        return rows

    async def too_old(self, since: str) -> bool:
        """True when events after ``since`` may have been trimmed away.

        Trimming removes the oldest entries, so anything before the first kept
        entry is gone once any entry was ever trimmed (``entries-added`` greater
        than ``length``).  A client exactly at the last trimmed entry gets a
        reset it did not strictly need: harmless, it lists again.
        """
        if since == "0":
            return False
        try:
            info = await self.redis.call("XINFO", "STREAM", self.keys.events)
        except RedisDown:
            raise
        except Exception:  # no stream yet: nothing was ever trimmed
            return False
        fields = dict(zip(info[::2], info[1::2], strict=False))
        if int(fields.get("entries-added") or 0) <= int(fields.get("length") or 0):
            return False
        first = fields.get("first-entry")
        if not first:
            return True
        return bus.parse_event_id(since) < bus.parse_event_id(first[0])

    async def page(self, since: str, wants: EventFilter, limit: int
                   ) -> tuple[list[Any], str | None]:
        """Events after ``since`` for polling clients (a reset first when too old), and
        where to go on from when the stream holds more than one answer reads (else None).

        One answer reads at most SCAN_PAGES pages of the stream, whatever matches: a filter
        that matches little costs one bounded read per request, not the whole stream."""
        out: list[Any] = []
        if await self.too_old(since):
            return [{"type": "reset"}], None
        cursor = since
        for _ in range(SCAN_PAGES):
            page = await self._range_after(cursor, self.page_size)
            for eid, flat in page:
                cursor = eid
                ev = Event(eid, bus.fields_of(flat))
                if wants(ev):
                    out.append(json.loads(ev.text))
                    if len(out) >= limit:
                        return out, cursor
            if len(page) < self.page_size:
                return out, None
        return out, cursor

    async def cursor(self) -> str:
        """The id of the newest event: list, then watch from here (no event is missed)."""
        newest = await self.redis.call("XREVRANGE", self.keys.events, "+", "-", "COUNT", "1")
        return newest[0][0] if newest else "0"

    # -- producing -----------------------------------------------------------------

    async def emit(self, etype: str, data: dict[str, Any], task_id: str = "") -> str:
        """Append an event to the stream; returns its id."""
        event_id: str = await self.redis.script(
            "emit", [self.keys.events],
            [etype, bus.now_iso(self.clock.seconds()), json.dumps(data), self.max_len, task_id],
        )
        return event_id

    async def publish(self, etype: str, data: dict[str, Any]) -> None:
        """Emit the news of a change already made; while Redis is away it is logged and
        lost, never an error: the change itself stands."""
        try:
            await self.emit(etype, data)
        except Exception as e:
            log.warn("cannot publish {type}: {e}", type=etype, e=str(e))

    def ephemeral(self, etype: str, data: dict[str, Any]) -> None:
        """Tell live watchers something that is not kept in the stream (no id, no replay):
        ``service.degraded`` while Redis is away, ``vm.stats`` figures."""
        text = ""
        for w in list(self.watchers):
            if w.ready and not w.dropped and not w.paused and w.wants.wants_type(etype):
                text = text or json.dumps({"id": None, "type": etype,
                                           "time": bus.now_iso(self.clock.seconds()),
                                           "data": data})
                w.write_ephemeral(text)
