"""Tasks: the user-visible record of every job, kept in Redis by the bus scripts."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from kimchi import bus
from kimchi.bus import kinds
from kimchi.bus.sync import SyncBus, connect
from kimchi.bus.text import TaskText
from kimchi.bus.twisted import RedisClient
from kimchi.errors import InvalidOperation, InvalidRequest, NotFound, message

log = Logger()


class TaskService:
    def __init__(self, redis: RedisClient, keys: bus.Keys, clock: IReactorTime,
                 max_len: int, keep_seconds: int) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.max_len = max_len
        self.keep_seconds = keep_seconds
        self._blocking: SyncBus | None = None
        self._indexed = False
        self._index_lock = defer.DeferredLock()

    async def ensure_group(self) -> None:
        for stream in (self.keys.jobs, self.keys.daemon_jobs,
                       self.keys.host_jobs(bus.LOCAL_HOST)):
            try:
                await self.redis.call("XGROUP", "CREATE", stream, bus.GROUP, "0", "MKSTREAM")
            except Exception as e:
                if "BUSYGROUP" not in str(e):
                    raise
        await self.ensure_index()

    def blocking(self) -> SyncBus:
        """The same bus for the blocking code of the daemon's job runner threads (a job
        that queues and follows a job of its own): one client, made when first asked."""
        if self._blocking is None:
            self._blocking = SyncBus(connect(self.redis.url, self.redis.timeout), self.keys,
                                     self.max_len)
        return self._blocking

    async def submit(self, kind: str, params: dict[str, Any], target_uri: str,
                     owner: str = "", *, host: str = bus.LOCAL_HOST) -> dict[str, Any]:
        """Record a task and queue its job in one step; returns the task.

        The job goes where its kind runs (kimchi/bus/kinds.py): the shared queue, the
        daemon's, or ``host``'s, whose workers alone take it; while none serves that host,
        the task says so (and :meth:`expire_unserved` fails it after a while).
        """
        task_id = uuid.uuid4().hex
        now = self.clock.seconds()
        k = self.keys
        live = await self.live_workers(host) if kinds.kind(kind).where == kinds.HOST else 1
        waiting = bus.waiting_message(kind, host, live).argv()
        await self.redis.script(
            "submit", [k.task(task_id), k.tasks, k.queue(kind, host), k.events],
            [task_id, kind, json.dumps(params), target_uri, bus.now_iso(now), int(now * 1000),
             self.max_len, waiting[0], owner, host, *waiting[1:]],
        )
        return await self.get(task_id)

    async def expire_unserved(self, hosts: list[str], wait: float) -> int:
        """Fail the jobs that waited more than ``wait`` s on the queue of a host that no
        worker serves, with that reason; how many were failed."""
        failed = 0
        now = self.clock.seconds()
        for host in hosts:
            if await self.live_workers(host):
                continue
            stream = self.keys.host_jobs(host)
            for entry_id, flat in await self.redis.call("XRANGE", stream, "-", "+", "COUNT",
                                                        "100"):
                fields = bus.fields_of(flat)
                if int(entry_id.split("-")[0]) / 1000.0 > now - wait:
                    break  # the rest are younger
                reason = TaskText.error("KCHTASK0009E", host=host, seconds=f"{wait:g}").argv()
                res = await self.redis.script(
                    "expire", [self.keys.task(fields["task"]), self.keys.events, stream],
                    [bus.now_iso(now), self.max_len, reason[0], entry_id, *reason[1:]])
                failed += res[0] == "failed"
        return failed

    async def get(self, task_id: str) -> dict[str, Any]:
        if not re.fullmatch(r"[0-9a-f]{32}", task_id):
            raise NotFound("KCHTASK0001E", id=task_id)
        h = await self.redis.call("HGETALL", self.keys.task(task_id))
        if not h:
            raise NotFound("KCHTASK0001E", id=task_id)
        return bus.task_from_hash(dict(zip(h[::2], h[1::2], strict=True)))

    async def ensure_index(self) -> None:
        """Build the task indexes once when Redis holds tasks from before them (an upgrade,
        or a Redis restored from an old copy); otherwise one GET."""
        async with self._index_lock:
            k = self.keys
            await self.redis.call("SET", k.task_keep, str(self.keep_seconds))
            if await self.redis.call("GET", k.task_index_version) == bus.TASK_INDEX_VERSION:
                self._indexed = True
                return
            start, page = 0, 1000
            while True:
                read = int(await self.redis.script(
                    "index_tasks", [k.tasks, k.task_index_version],
                    [start, page, bus.TASK_INDEX_VERSION]))
                start += read
                if read < page:
                    break
            self._indexed = True
            log.info("task indexes built for {n} kept task(s)", n=start)

    async def list(self, status: str | None = None, kind: str | None = None,
                   target_uri: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Newest first, filtered; ids whose record has expired are forgotten on the way.

        Status and kind are read from their index (the cost is that of what matches);
        ``target_uri`` is a regular expression matched here, page by page.
        """
        try:
            target = re.compile(target_uri) if target_uri else None
        except re.error as e:
            raise InvalidRequest("KCHAPI0008E", param="target_uri", error=str(e)) from e
        if not self._indexed:
            await self.ensure_index()
        k = self.keys
        cutoff = int((self.clock.seconds() - self.keep_seconds) * 1000)
        await self.redis.script("trim_tasks", [k.tasks], [cutoff])
        index = k.task_index(status, kind)
        out: list[dict[str, Any]] = []
        start = 0
        page = 500 if target else max(1, min(limit, 500))
        while len(out) < limit:
            read, dropped, *found = await self.redis.script(
                "task_page", [index, k.tasks], [start, page, status or "", kind or ""])
            for raw in found:
                t = json.loads(raw)
                if t["progress"] is not None:  # as bus.task_from_hash gives it
                    t["progress"] = float(t["progress"])
                if target and not target.search(t["target_uri"]):
                    continue
                out.append(t)
            if int(read) < page:
                break
            start += int(read) - int(dropped)
        return out[:limit]

    async def ended(self, task_id: str) -> bool:
        """Whether the task has ended (a task whose record expired has, too)."""
        try:
            return (await self.get(task_id))["status"] in bus.TERMINAL
        except NotFound:
            return True

    async def cancel(self, task_id: str) -> dict[str, Any]:
        """Ask a running task to stop (a task not started yet is cancelled at once)."""
        await self.get(task_id)
        res = await self.redis.script(
            "cancel", [self.keys.task(task_id), self.keys.events],
            [bus.now_iso(self.clock.seconds()), self.max_len,
             *TaskText("Cancelled before it started").argv()],
        )
        if res[0] == "ended":
            raise InvalidOperation("KCHTASK0002E", id=task_id, status=res[1])
        if res[0] == "missing":
            raise NotFound("KCHTASK0001E", id=task_id)
        return await self.get(task_id)

    async def live_workers(self, host: str | None = None,
                           window: float = bus.LIVE_WINDOW) -> int:
        """The workers that sent a heartbeat in the last ``window`` s (serving ``host``)."""
        now = self.clock.seconds()
        key = self.keys.workers if host is None else self.keys.host_workers(host)
        return int(await self.redis.call("ZCOUNT", key, str(now - window), "+inf"))


__all__ = ["TaskService", "message"]
