"""The audit log: who changed what, from where, with what result — kept bounded in Redis.

Every change a user asks for (a POST, PUT, PATCH or DELETE that reaches a route, logins
and failed logins included) is one entry of the stream ``{prefix}audit``, trimmed to about
``[audit] max_len`` entries, and one line of the daemon's log (logger ``kimchid.audit``,
so the journal keeps it even when Redis does not).

An answer that is a task (202) names the task; when that task ends, a second entry
(``kind: task.end``) records its final status, and ``{prefix}audit:task:<id>`` keeps that
status for the listing to show beside the request.  Tasks still running are kept in the
hash ``{prefix}audit:pending`` so that a task that ends while the daemon is down is still
recorded when it comes back; with several daemons on one Redis, whichever takes the task
out of that hash (HDEL) records its end, once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from kimchi import bus
from kimchi.bus.twisted import RedisClient, RedisDown
from kimchi.errors import InvalidOperation, NotFound
from kimchid.model.events import Event, EventFilter, EventHub, Watcher
from kimchid.model.tasks import TaskService

log = Logger()
trail = Logger(namespace="kimchid.audit")  # one line per entry, for the journal

REQUEST = "request"
TASK_END = "task.end"
ENDS = "task.finished,task.failed,task.cancelled"
SCAN_PAGES = 20  # pages of the stream one listing reads at most (a filter matching little)
PAGE = 200  # entries per read of the stream
PENDING_LIMIT = 10_000  # tasks followed at once; past it the oldest are no longer followed
TASK_STATUS_SECONDS = 90 * 86400  # how long a task's final status is kept for the listing
ENTRY_ID = r"[0-9]{1,15}-[0-9]{1,10}"  # a stream entry id, the listing's cursor (unanchored)

# The fields of an entry, in the order the stream keeps them.
FIELDS = ("kind", "time", "user", "address", "method", "route", "path", "target", "status",
          "errcode", "task", "task_status", "summary", "message")

# An ISO 8601 time, as the listing takes it: a date, or a date and a time (seconds and
# fractions optional), with Z or an offset (none: UTC).  Epoch seconds are taken too.
TIME_PATTERN = (
    r"(?:[0-9]{1,11}(?:\.[0-9]{1,6})?"
    r"|[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
    r"(?:Z|z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?)?)"
)  # unanchored: the schemas say ^(?:...)?$
_EPOCH = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")


def parse_time(value: str, param: str) -> float:
    """Seconds since the epoch of ``value`` (epoch seconds, or ISO 8601 in UTC unless it
    says otherwise); 400 (KCHAUDIT0001E) for a date that does not exist (February 30)."""
    if _EPOCH.match(value):
        return float(value)
    text = value.replace(" ", "T")
    if text[-1:] in "Zz":
        text = text[:-1] + "+00:00"
    elif re.search(r"[+-][0-9]{4}$", text):  # +0200: fromisoformat wants +02:00
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidOperation("KCHAUDIT0001E", param=param, value=value) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


MAX_SEQ = 2 ** 64 - 1


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _str(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _entry(entry_id: str, flat: list[Any]) -> dict[str, Any]:
    """An entry of the stream as the API shows it."""
    f = {_str(k): _str(v) for k, v in zip(flat[::2], flat[1::2], strict=False)}
    status = f.get("status") or ""
    summary: Any = None
    if f.get("summary"):
        try:
            summary = json.loads(f["summary"])
        except ValueError:
            summary = None
    return {
        "id": entry_id,
        "kind": f.get("kind") or REQUEST,
        "time": f.get("time") or bus.now_iso(int(entry_id.split("-")[0]) / 1000.0),
        "user": f.get("user") or "-",
        "address": f.get("address") or "",
        "method": f.get("method") or "",
        "route": f.get("route") or "",
        "path": f.get("path") or "",
        "target": f.get("target") or "",
        "status": int(status) if status.isdigit() else None,
        "errcode": f.get("errcode") or None,
        "task": f.get("task") or None,
        "task_status": f.get("task_status") or None,
        "summary": summary,
        "message": f.get("message") or None,
    }


class _TaskEnds(Watcher):
    """The event hub's news of tasks ending, handed to the audit log."""

    def __init__(self, audit: AuditLog) -> None:
        super().__init__(EventFilter(ENDS), buffer_limit=100_000)
        self.audit = audit

    def write(self, ev: Event) -> None:
        self.audit.task_event(ev)

    def write_reset(self) -> None:  # events were lost: look at each task followed
        self.audit.recheck()

    def drop(self, reason: str) -> None:
        self.audit.rewatch()


class AuditLog(Service):
    """The audit stream: :meth:`record` an entry, :meth:`entries` to list them."""

    name = "audit"  # type: ignore[assignment]

    def __init__(self, redis: RedisClient, keys: bus.Keys, hub: EventHub,
                 tasks: TaskService, clock: IReactorTime, max_len: int) -> None:
        self.redis = redis
        self.hub = hub
        self.tasks = tasks
        self.clock = clock
        self.max_len = max_len
        self.stream = keys.prefix + "audit"
        self.pending_key = keys.prefix + "audit:pending"
        self._status_prefix = keys.prefix + "audit:task:"
        # task ids of the pending hash, oldest first (a dict keeps the order)
        self._following: dict[str, None] = {}
        self._watcher: _TaskEnds | None = None
        self._running = False
        self._inflight: set[defer.Deferred[Any]] = set()
        self.recorded = 0

    # -- service ---------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._running = True
        self.rewatch()
        self.redis.on_change(lambda up, _error: self.recheck() if up else None)

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()
        self._running = False
        if self._watcher is not None:
            self.hub.unwatch(self._watcher)
            self._watcher = None
        # entries being written are awaited: the last changes before a stop are kept
        return defer.DeferredList(list(self._inflight), consumeErrors=True)

    def _spawn(self, coro: Any, what: str) -> defer.Deferred[Any]:
        d = defer.Deferred.fromCoroutine(coro)
        self._inflight.add(d)

        def done(result: Any) -> Any:
            self._inflight.discard(d)
            return result

        d.addBoth(done)
        d.addErrback(lambda f: log.warn("audit log: {what} failed: {e}", what=what,
                                        e=f.getErrorMessage()))
        return d

    def rewatch(self) -> None:
        """Follow the end of tasks through the event hub (again, after a drop)."""
        if not self._running:
            return
        d = defer.Deferred.fromCoroutine(self._watch())  # not awaited by a stop: it waits
        d.addErrback(lambda f: log.warn("audit log: following task ends failed: {e}",
                                        e=f.getErrorMessage()))

    async def _watch(self) -> None:
        delay = 0.5
        while self._running:
            w = _TaskEnds(self)
            try:
                await self.hub.watch(w, None)
            except Exception as e:
                log.debug("audit log: cannot follow task ends yet: {e}", e=str(e))
                await task.deferLater(self.clock, delay)
                delay = min(delay * 2, 5.0)
                continue
            if self._watcher is not None:
                self.hub.unwatch(self._watcher)
            self._watcher = w
            break
        # tasks that ended while no one was following
        await self._recheck()

    def recheck(self) -> None:
        if self._running:
            self._spawn(self._recheck(), "looking at the tasks followed")

    async def _recheck(self) -> None:
        """Record the end of every followed task that has ended (the daemon was down,
        events were lost)."""
        flat = await self.redis.call("HGETALL", self.pending_key)
        pending = {_str(k): _str(v) for k, v in zip(flat[::2], flat[1::2], strict=False)}
        self._following.update(dict.fromkeys(pending))
        for task_id in list(pending):
            try:
                t = await self.tasks.get(task_id)
            except NotFound:
                await self._ended(task_id, "unknown", "", "the task's record has expired")
                continue
            if t["status"] in bus.TERMINAL:
                await self._ended(task_id, t["status"], t.get("target_uri") or "",
                                  t.get("message") or "")

    # -- recording -------------------------------------------------------------------

    async def record(self, entry: dict[str, Any]) -> str | None:
        """Keep one entry (the fields of :data:`FIELDS`): logged, then appended to the
        stream; its id, or None when Redis could not take it (the log line stays)."""
        now = self.clock.seconds()
        entry = {**entry, "kind": entry.get("kind") or REQUEST, "time": bus.now_iso(now)}
        self._log(entry)
        self.recorded += 1
        task_id = entry.get("task") or ""
        try:
            if task_id:  # followed before it is written: its end cannot come in between
                self._following[task_id] = None
                await self._follow(task_id, entry)
            entry_id = await self._append(entry)
        except RedisDown as e:
            log.warn("audit log: Redis did not take the entry ({e}); it is in the log only",
                     e=str(e))
            return None
        if task_id:
            await self._check_ended(task_id)
        return str(entry_id)

    def record_soon(self, entry: dict[str, Any]) -> defer.Deferred[Any]:
        """:meth:`record`, awaited by :meth:`stopService` if still running then."""
        return self._spawn(self.record(entry), "recording an entry")

    async def _append(self, entry: dict[str, Any]) -> Any:
        flat: list[Any] = []
        for k in FIELDS:
            v = entry.get(k)
            if v is None or v == "":
                continue
            flat += [k, json.dumps(v, separators=(",", ":")) if k == "summary" else str(v)]
        return await self.redis.call("XADD", self.stream, "MAXLEN", "~", str(self.max_len),
                                     "*", *flat)

    async def _follow(self, task_id: str, entry: dict[str, Any]) -> None:
        about = {k: entry.get(k) or "" for k in ("user", "address", "method", "route",
                                                 "path", "target")}
        await self.redis.call("HSET", self.pending_key, task_id, json.dumps(about))
        if len(self._following) > PENDING_LIMIT:  # never more than this many followed
            oldest = next(iter(self._following))
            del self._following[oldest]
            await self.redis.call("HDEL", self.pending_key, oldest)

    async def _check_ended(self, task_id: str) -> None:
        """A quick task may have ended before it was followed."""
        try:
            t = await self.tasks.get(task_id)
        except NotFound:
            return
        if t["status"] in bus.TERMINAL:
            await self._ended(task_id, t["status"], t.get("target_uri") or "",
                              t.get("message") or "")

    def task_event(self, ev: Event) -> None:
        """A task ended (an event of the hub): record it if it is one followed."""
        if ev.task not in self._following:
            return
        try:
            data = json.loads(ev.text).get("data") or {}
        except ValueError:
            data = {}
        status = ev.type.removeprefix("task.")
        self._spawn(self._ended(ev.task, status, data.get("target_uri") or "",
                                data.get("message") or ""), "recording a task's end")

    async def _ended(self, task_id: str, status: str, target: str, message: str) -> None:
        self._following.pop(task_id, None)
        about = await self.redis.call("HGET", self.pending_key, task_id)
        if about is None or not int(await self.redis.call("HDEL", self.pending_key, task_id)):
            return  # recorded already (by this daemon or another on the same Redis)
        try:
            was = json.loads(_str(about))
        except ValueError:
            was = {}
        await self.redis.call("SET", self._status_prefix + task_id, status, "EX",
                              str(TASK_STATUS_SECONDS))
        now = self.clock.seconds()
        entry = {**was, "kind": TASK_END, "time": bus.now_iso(now), "task": task_id,
                 "task_status": status, "target": target or was.get("target") or "",
                 "message": message[:300] if status != "finished" else ""}
        self._log(entry)
        await self._append(entry)

    def _log(self, e: dict[str, Any]) -> None:
        # "message" is the log line's own (the rendered text): the task's is "task_message"
        fields = {k: e.get(k) for k in FIELDS if k not in ("kind", "time", "message")}
        fields["task_message"] = e.get("message") or None
        if e.get("kind") == TASK_END:
            trail.info("{user} from {address}: task {task} of {method} {path} ended: "
                       "{task_status}", audit=TASK_END, **fields)
            return
        result = f"{e.get('status')}" + (f" {e['errcode']}" if e.get("errcode") else "")
        trail.info("{user} from {address}: {method} {path} -> {result}",
                   audit=REQUEST, result=result, **fields)

    # -- listing ---------------------------------------------------------------------

    async def entries(self, user: str | None = None, since: float | None = None,
                      until: float | None = None, before: str | None = None,
                      limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
        """Entries, newest first: by ``user``, at or after ``since`` and at or before
        ``until`` (epoch seconds), older than the entry ``before``; at most ``limit``.
        Also where to go on from (an entry id) when there may be more, else None.

        One call reads at most SCAN_PAGES pages of the stream, matching or not."""
        start = "+" if until is None else f"{int(until * 1000)}-{MAX_SEQ}"
        if before is not None and (until is None or _key(before) <= (int(until * 1000),
                                                                     MAX_SEQ)):
            start = "(" + before
        end = "-" if since is None else f"{int(since * 1000)}-0"
        out: list[dict[str, Any]] = []
        for _ in range(SCAN_PAGES):
            page = await self.redis.call("XREVRANGE", self.stream, start, end,
                                         "COUNT", str(PAGE))
            for eid, flat in page:
                entry_id = _str(eid)
                start = "(" + entry_id
                entry = _entry(entry_id, flat)
                if user is not None and entry["user"] != user:
                    continue
                out.append(entry)
                if len(out) >= limit:
                    await self._task_statuses(out)
                    return out, entry_id
            if len(page) < PAGE:
                await self._task_statuses(out)
                return out, None
        await self._task_statuses(out)
        return out, start[1:]

    async def _task_statuses(self, entries: Iterable[dict[str, Any]]) -> None:
        """The final status of each request's task, where it has ended."""
        asking = [e for e in entries if e["task"] and e["kind"] == REQUEST]
        if not asking:
            return
        got = await self.redis.call("MGET", *[self._status_prefix + e["task"]
                                              for e in asking])
        for e, status in zip(asking, got, strict=True):
            if status is not None:
                e["task_status"] = _str(status)
