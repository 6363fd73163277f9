"""The bus as seen from a blocking Python process: workers, tests and benchmarks.

A thin layer over redis-py that calls the scripts of :mod:`kimchi.bus` by
name.  The daemon has its own (Twisted) client for the same scripts.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from kimchi import bus
from kimchi.errors import message


class _Script:
    """One bus script, called by its SHA.

    redis-py's own Script objects ask SCRIPT EXISTS before every pipeline that
    holds one: a round trip per batch.  These assume the script is loaded and
    load it when Redis says it is not (after a Redis restart).
    """

    def __init__(self, client: Any, script: bus.Script) -> None:
        self.client = client
        self.sha = script.sha
        self.source = script.source

    def __call__(self, keys: list[str], args: list[Any], client: Any = None) -> Any:
        if client is not None:  # a pipeline: queued; SyncBus.execute() handles NOSCRIPT
            return client.evalsha(self.sha, len(keys), *keys, *args)
        try:
            return self.client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self.client.script_load(self.source)
            return self.client.evalsha(self.sha, len(keys), *keys, *args)


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
        self.scripts = {name: _Script(client, s) for name, s in bus.SCRIPTS.items()}
        try:
            self.load_scripts()
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # loaded on first use once Redis answers

    def load_scripts(self) -> None:
        for s in bus.SCRIPTS.values():
            self.client.script_load(s.source)

    def execute(self, pipe: Any) -> list[Any]:
        """Run a pipeline; commands refused for a script Redis forgot are re-run once loaded.

        A NOSCRIPT reply means that command did not run, so re-running it is safe.
        """
        stack = list(pipe.command_stack)
        results = pipe.execute(raise_on_error=False)
        missing = [i for i, r in enumerate(results)
                   if isinstance(r, redis.exceptions.NoScriptError)]
        if missing:
            self.load_scripts()
            for i in missing:
                cmd_args, options = stack[i]
                results[i] = self.client.execute_command(*cmd_args, **options)
        for r in results:
            if isinstance(r, Exception):
                raise r
        return list(results)

    def ensure_group(self, stream: str | None = None) -> None:
        try:
            self.client.xgroup_create(stream or self.keys.jobs, bus.GROUP, id="0", mkstream=True)
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
