"""The bus as seen from a blocking Python process: workers, tests and benchmarks.

A thin layer over redis-py that calls the scripts of :mod:`kimchi.bus` by
name.  The daemon has its own (Twisted) client for the same scripts.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from typing import Any

import redis

from kimchi import bus
from kimchi.bus.text import TaskText


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
        host: str = bus.LOCAL_HOST,
    ) -> str:
        """Queue a job (on ``host``'s queue when its kind runs on a host); returns the task
        id (or, with ``pipe``, queues the call on it)."""
        task_id = task_id or uuid.uuid4().hex
        now = time.time()
        k = self.keys
        live = 1
        if bus.kinds.kind(kind).where == bus.kinds.HOST:
            live = int(self.client.zcount(k.host_workers(host), now - bus.LIVE_WINDOW, "+inf"))
        waiting = bus.waiting_message(kind, host, live).argv()
        args: list[Any] = [
            task_id, kind, json.dumps(params or {}), target_uri, bus.now_iso(now),
            int(now * 1000), self.maxlen, waiting[0], "", host, *waiting[1:],
        ]
        self.scripts["submit"](
            keys=[k.task(task_id), k.tasks, k.queue(kind, host), k.events], args=args,
            client=pipe)
        return task_id

    def put_file(self, key: str, path: str) -> dict[str, Any]:
        """Send the file ``path`` over the bus as ``key`` (chunks in a list that expires
        after :data:`kimchi.bus.UPLOAD_TTL`); returns ``{"key", "size", "sha256"}``."""
        digest = hashlib.sha256()
        size = 0
        self.client.delete(key)
        with open(path, "rb") as f:
            while True:
                pipe = self.client.pipeline(transaction=False)
                n = 0
                for chunk in iter(lambda: f.read(bus.UPLOAD_CHUNK), b""):
                    digest.update(chunk)
                    size += len(chunk)
                    pipe.rpush(key, chunk)
                    n += 1
                    if n == 16:
                        break
                pipe.expire(key, bus.UPLOAD_TTL)
                pipe.execute()
                if n < 16:
                    break
        return {"key": key, "size": size, "sha256": digest.hexdigest()}

    def take_file(self, sent: dict[str, Any], path: str) -> None:
        """Write what :meth:`put_file` sent to ``path`` (checked: its size and sha256, else
        ValueError, and ``path`` is removed); the chunks are deleted once it is written."""
        digest = hashlib.sha256()
        size, i = 0, 0
        pool = self.client.connection_pool  # the same server, bytes as they are
        raw = redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class,
            **{**pool.connection_kwargs, "decode_responses": False}))
        try:
            with open(path, "wb") as f:
                while True:
                    chunks: list[bytes] = raw.lrange(sent["key"], i, i + 15)  # type: ignore[assignment]
                    for chunk in chunks:
                        digest.update(chunk)
                        size += len(chunk)
                        f.write(chunk)
                    i += len(chunks)
                    if len(chunks) < 16:
                        break
            if (size, digest.hexdigest()) != (sent["size"], sent["sha256"]):
                raise ValueError(f"{size} bytes came, not the {sent['size']} sent, or damaged")
        except BaseException:
            os.unlink(path)
            raise
        finally:
            raw.close()
        self.client.delete(sent["key"])

    def cancel(self, task_id: str) -> list[str]:
        k = self.keys
        answer: list[str] = self.scripts["cancel"](
            keys=[k.task(task_id), k.events],
            args=[bus.now_iso(time.time()), self.maxlen,
                  *TaskText.error("KCHTASK0002E", id=task_id, status="cancelled").argv()],
        )
        return answer

    def expire(self, task_id: str, reason: TaskText) -> list[str]:
        """Fail a task that no worker has started (its host has none): ``['failed']``, or
        why not: ``['started']``, ``['ended', status]``, ``['missing']``."""
        k = self.keys
        answer: list[str] = self.scripts["expire"](
            keys=[k.task(task_id), k.events],
            args=[bus.now_iso(time.time()), self.maxlen, str(reason), "",
                  *reason.argv()[1:]])
        return answer

    # -- what a worker does to a task: one script each (see scripts/<name>.lua).  With
    # ``pipe``, the call is queued on that pipeline (its result comes from execute()).

    def start(self, entry_id: str, task_id: str, worker: str, max_attempts: int,
              lost_message: TaskText, cancelled_message: TaskText, stream: str | None = None,
              pipe: Any = None) -> Any:
        """Take a job just read: ``['run', attempt, kind, params]`` or ``['skip', status]``."""
        k = self.keys
        return self.scripts["start"](
            keys=[k.task(task_id), stream or k.jobs, k.events, k.dead],
            args=[entry_id, worker, bus.now_iso(time.time()), max_attempts, self.maxlen,
                  str(lost_message), str(cancelled_message), *lost_message.argv()[1:],
                  *cancelled_message.argv()[1:]], client=pipe)

    def progress(self, task_id: str, attempt: str, percent: float | None, text: TaskText,
                 details: dict[str, Any] | None = None, pipe: Any = None) -> Any:
        """0: the attempt lost the task; 1: carry on; 2: a cancel was asked."""
        k = self.keys
        return self.scripts["progress"](
            keys=[k.task(task_id), k.events],
            args=[attempt, bus.now_iso(time.time()), "" if percent is None else percent,
                  str(text), json.dumps(details) if details else "", self.maxlen,
                  *text.argv()[1:]], client=pipe)

    def found(self, task_id: str, attempt: str, item_key: str, event_type: str,
              event_json: str, library: bus.Library | None = None, field: str = "",
              value: Any = None, pipe: Any = None) -> Any:
        """0: lost; 1: reported; 2: reported by an earlier attempt already."""
        k = self.keys
        return self.scripts["found"](
            keys=[k.task(task_id), k.found(task_id), k.events,
                  k.library(library) if library else ""],
            args=[attempt, item_key, bus.now_iso(time.time()), event_type, event_json,
                  field, json.dumps(value) if field else "", self.maxlen], client=pipe)

    def heartbeat(self, task_id: str, attempt: str, entry_id: str, worker: str,
                  stream: str | None = None, pipe: Any = None) -> Any:
        """Keep the job's lease: 0 lost, 1 carry on, 2 a cancel was asked."""
        k = self.keys
        return self.scripts["heartbeat"](
            keys=[k.task(task_id), stream or k.jobs], args=[attempt, entry_id, worker],
            client=pipe)

    def handback(self, task_id: str, attempt: str, entry_id: str, text: TaskText,
                 stream: str | None = None, pipe: Any = None) -> Any:
        """Give a running job back to the queue (a worker stopping): 0 lost, 1 done."""
        k = self.keys
        return self.scripts["handback"](
            keys=[k.task(task_id), stream or k.jobs, k.events],
            args=[attempt, entry_id, bus.now_iso(time.time()), str(text), self.maxlen,
                  *text.argv()[1:]],
            client=pipe)

    def finish(self, task_id: str, attempt: str, status: str, text: TaskText, result: Any,
               entry_id: str, keep_seconds: int, percent: float | None = None,
               stream: str | None = None, pipe: Any = None) -> Any:
        """End the task (finished, failed, cancelled): 0 lost, 1 ended."""
        k = self.keys
        return self.scripts["finish"](
            keys=[k.task(task_id), stream or k.jobs, k.events, k.found(task_id)],
            args=[attempt, status, bus.now_iso(time.time()), str(text),
                  json.dumps(result) if result is not None else "", entry_id, keep_seconds,
                  self.maxlen, "" if percent is None else percent, *text.argv()[1:]],
            client=pipe)

    def emit(self, etype: str, data: dict[str, Any], task_id: str = "",
             pipe: Any = None) -> Any:
        """An event of no task's state (``iso.removed``, ...)."""
        return self.scripts["emit"](
            keys=[self.keys.events],
            args=[etype, bus.now_iso(time.time()), json.dumps(data), self.maxlen, task_id],
            client=pipe)

    # -- reading -------------------------------------------------------------------

    def queued(self, stream: str | None = None) -> list[tuple[str, str]]:
        """The jobs on the queue, oldest first: (entry id, task id)."""
        return [(eid, f.get("task", "")) for eid, f in
                self.client.xrange(stream or self.keys.jobs)]

    def handbacks(self, task_id: str) -> int:
        """How often the task was handed back (those attempts are not counted as lost)."""
        return int(self.client.hget(self.keys.task(task_id), "handbacks") or 0)

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
