"""The bus as seen from a blocking Python process: workers, tests and benchmarks.

A thin layer over redis-py that calls the scripts of :mod:`kimchid.bus` by
name.  The daemon has its own (Twisted) client for the same scripts.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis

from kimchid import bus
from kimchid.errors import message


def connect(url: str, timeout: float = 5.0) -> redis.Redis:
    """A redis-py client for ``redis://`` or ``unix://`` URLs; every call times out."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        health_check_interval=0,
    )


class SyncBus:
    """Submit, watch and cancel tasks from blocking code."""

    def __init__(
        self, client: redis.Redis, keys: bus.Keys | None = None, maxlen: int = 100_000
    ) -> None:
        self.client: Any = client  # decode_responses=True: replies are str
        self.keys = keys or bus.Keys()
        self.maxlen = maxlen
        self.scripts = {name: client.register_script(s.source) for name, s in bus.SCRIPTS.items()}

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.keys.jobs, bus.GROUP, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def submit(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        target_uri: str = "",
        task_id: str | None = None,
        pipe: Any = None,
    ) -> str:
        """Queue a job; returns the task id (or, with ``pipe``, queues the call on it)."""
        task_id = task_id or uuid.uuid4().hex
        now = time.time()
        k = self.keys
        args: list[Any] = [
            task_id, kind, json.dumps(params or {}), target_uri, bus.now_iso(now),
            int(now * 1000), self.maxlen, "Waiting for a worker", "",
        ]
        self.scripts["submit"](
            keys=[k.task(task_id), k.tasks, k.jobs, k.events], args=args, client=pipe
        )
        return task_id

    def cancel(self, task_id: str) -> list[str]:
        k = self.keys
        return self.scripts["cancel"](
            keys=[k.task(task_id), k.events],
            args=[bus.now_iso(time.time()), self.maxlen, message("KCHTASK0002E", id=task_id,
                                                                  status="cancelled")],
        )

    def task(self, task_id: str) -> dict[str, Any] | None:
        h = self.client.hgetall(self.keys.task(task_id))
        return bus.task_from_hash(h) if h else None

    def events(self, since: str = "0", count: int = 1000) -> list[dict[str, Any]]:
        """Events after ``since`` (exclusive), decoded."""
        start = "-" if since == "0" else "(" + since
        return [
            json.loads(bus.event_json(eid, fields))
            for eid, fields in self.client.xrange(self.keys.events, start, "+", count=count)
        ]

    def follow(self, since: str = "$", block_ms: int = 1000) -> Iterator[dict[str, Any]]:
        """Yield events as they come, forever (the caller breaks out)."""
        last = since
        if last == "$":
            newest = self.client.xrevrange(self.keys.events, count=1)
            last = newest[0][0] if newest else "0"
        while True:
            reply = self.client.xread({self.keys.events: last}, count=1000, block=block_ms)
            for _stream, entries in reply or ():
                for eid, fields in entries:
                    last = eid
                    yield json.loads(bus.event_json(eid, fields))

    def wait(self, task_id: str, timeout: float = 30.0, poll: float = 0.05) -> dict[str, Any]:
        """Poll until the task has ended; raise TimeoutError with its last state otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            t = self.task(task_id)
            if t and t["status"] in bus.TERMINAL:
                return t
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} still {t and t['status']}: {t}")
            time.sleep(poll)
