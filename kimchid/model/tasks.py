"""Tasks: the user-visible record of every job, kept in Redis by the bus scripts."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from twisted.internet.interfaces import IReactorTime

from kimchid import bus
from kimchid.adapters.redis import RedisClient
from kimchid.errors import InvalidOperation, InvalidRequest, NotFound, message


class TaskService:
    def __init__(self, redis: RedisClient, keys: bus.Keys, clock: IReactorTime,
                 max_len: int, keep_seconds: int) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.max_len = max_len
        self.keep_seconds = keep_seconds

    async def ensure_group(self) -> None:
        for stream in (self.keys.jobs, self.keys.daemon_jobs):
            try:
                await self.redis.call("XGROUP", "CREATE", stream, bus.GROUP, "0", "MKSTREAM")
            except Exception as e:
                if "BUSYGROUP" not in str(e):
                    raise

    async def submit(self, kind: str, params: dict[str, Any], target_uri: str,
                     owner: str = "", *, daemon: bool = False) -> dict[str, Any]:
        """Record a task and queue its job in one step; returns the task.

        ``daemon``: the daemon's own runner takes it (a job that needs libvirt).
        """
        task_id = uuid.uuid4().hex
        now = self.clock.seconds()
        k = self.keys
        await self.redis.script(
            "submit", [k.task(task_id), k.tasks, k.daemon_jobs if daemon else k.jobs, k.events],
            [task_id, kind, json.dumps(params), target_uri, bus.now_iso(now), int(now * 1000),
             self.max_len, "Waiting for a worker", owner],
        )
        return await self.get(task_id)

    async def get(self, task_id: str) -> dict[str, Any]:
        if not re.fullmatch(r"[0-9a-f]{32}", task_id):
            raise NotFound("KCHTASK0001E", id=task_id)
        h = await self.redis.call("HGETALL", self.keys.task(task_id))
        if not h:
            raise NotFound("KCHTASK0001E", id=task_id)
        return bus.task_from_hash(dict(zip(h[::2], h[1::2], strict=True)))

    async def list(self, status: str | None = None, kind: str | None = None,
                   target_uri: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Newest first, filtered; ids whose record has expired are forgotten on the way."""
        try:
            target = re.compile(target_uri) if target_uri else None
        except re.error as e:
            raise InvalidRequest("KCHAPI0008E", param="target_uri", error=str(e)) from e
        cutoff = int((self.clock.seconds() - self.keep_seconds) * 1000)
        await self.redis.call("ZREMRANGEBYSCORE", self.keys.tasks, "-inf", str(cutoff))
        out: list[dict[str, Any]] = []
        start = 0
        batch = 200
        while len(out) < limit:
            ids = await self.redis.call("ZREVRANGE", self.keys.tasks, str(start),
                                        str(start + batch - 1))
            if not ids:
                break
            start += batch
            hashes = [self.redis.call("HGETALL", self.keys.task(i)) for i in ids]
            gone = []
            for task_id, d in zip(ids, hashes, strict=True):
                h = await d
                if not h:
                    gone.append(task_id)
                    continue
                t = bus.task_from_hash(dict(zip(h[::2], h[1::2], strict=True)))
                if status and t["status"] != status:
                    continue
                if kind and t["kind"] != kind:
                    continue
                if target and not target.search(t["target_uri"]):
                    continue
                out.append(t)
                if len(out) >= limit:
                    break
            if gone:
                await self.redis.call("ZREM", self.keys.tasks, *gone)
        return out

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
            [bus.now_iso(self.clock.seconds()), self.max_len, "Cancelled before it started"],
        )
        if res[0] == "ended":
            raise InvalidOperation("KCHTASK0002E", id=task_id, status=res[1])
        if res[0] == "missing":
            raise NotFound("KCHTASK0001E", id=task_id)
        return await self.get(task_id)

    async def live_workers(self, window: float = 3.0) -> int:
        now = self.clock.seconds()
        return int(await self.redis.call("ZCOUNT", self.keys.workers, str(now - window), "+inf"))


__all__ = ["TaskService", "message"]
