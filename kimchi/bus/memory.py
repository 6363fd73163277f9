"""The bus in memory: the task state machine of the Lua scripts, in Python, for fast tests.

:class:`MemoryBus` has :class:`~kimchi.bus.sync.SyncBus`'s task operations (submit,
start, progress, found, heartbeat, handback, finish, cancel, emit) and readings (task,
events, queued, handbacks), with the same answers: the contract test
``tests/integration/test_bus_state_machine.py`` runs every random interleaving of
workers racing for a task against both.  What Redis alone does is left out: leases and
their reclaiming, trimming, the listing indexes.  A pipeline is a list: each call runs
at once and its answer is what :meth:`execute` returns, in order.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from typing import Any

from kimchi import bus
from kimchi.bus.text import TaskText


def _said(text: TaskText) -> dict[str, str]:
    """A message's fields of the task hash, as the scripts' ``set_message`` writes them."""
    rendered, template, args, errcode = text.argv()
    return {"message": rendered, "message_id": template, "message_args": args,
            "errcode": errcode}


class MemoryBus:
    """One bus's state in this process; thread-safe (one lock, as Redis runs one script
    at a time)."""

    def __init__(self, keys: bus.Keys | None = None, maxlen: int = 100_000) -> None:
        self.keys = keys or bus.Keys()
        self.maxlen = maxlen
        self._lock = threading.RLock()
        self._tasks: dict[str, dict[str, str]] = {}
        self._jobs: dict[str, list[tuple[str, str]]] = {}  # stream -> [(entry, task id)]
        self._events: list[tuple[str, dict[str, str]]] = []
        self._found: dict[str, set[str]] = {}
        self._libraries: dict[str, dict[str, str]] = {}
        self.dead: list[tuple[str, str]] = []  # (task id, reason)
        self._ids = itertools.count(1)

    # -- plumbing --------------------------------------------------------------------

    def pipeline(self) -> list[Any]:
        return []

    def execute(self, pipe: list[Any]) -> list[Any]:
        return list(pipe)

    def ensure_group(self, stream: str | None = None) -> None:
        self._jobs.setdefault(stream or self.keys.jobs, [])

    def _answer(self, result: Any, pipe: list[Any] | None) -> Any:
        if pipe is not None:
            pipe.append(result)
        return result

    def _entry(self) -> str:
        return f"{int(time.time() * 1000)}-{next(self._ids)}"

    def _emit(self, etype: str, data: str, task_id: str = "") -> str:
        eid = self._entry()
        self._events.append((eid, {"type": etype, "time": bus.now_iso(time.time()),
                                   "data": data, "task": task_id}))
        del self._events[:-self.maxlen]
        return eid

    def _json(self, task_id: str) -> str:
        return json.dumps(bus.task_from_hash(self._tasks[task_id]))

    def _owns(self, task_id: str, attempt: str) -> bool:
        h = self._tasks.get(task_id)
        return (h is not None and h["status"] == "running" and h["attempt"] == str(attempt)
                and str(attempt) != "0" and h["worker"] != "")

    def _drop(self, stream: str, entry_id: str) -> None:
        self._jobs[stream] = [e for e in self._jobs.get(stream, []) if e[0] != entry_id]

    # -- the scripts -------------------------------------------------------------------

    def submit(self, kind: str, params: dict[str, Any] | None = None, target_uri: str = "",
               task_id: str | None = None, pipe: Any = None,
               host: str = bus.LOCAL_HOST) -> str:
        task_id = task_id or uuid.uuid4().hex
        with self._lock:
            if task_id in self._tasks:
                raise ValueError("EXISTS")
            now = bus.now_iso(time.time())
            self._tasks[task_id] = {
                "id": task_id, "kind": kind, "params": json.dumps(params or {}),
                "target_uri": target_uri, "created": now, "updated": now,
                "status": "running", "progress": "",
                "result": "", "details": "", "attempt": "0", "worker": "", "cancel": "0",
                "owner": "", "host": host,
                **_said(bus.waiting_message(kind, host, 1))}
            self._jobs.setdefault(self.keys.queue(kind, host), []).append(
                (self._entry(), task_id))
            self._emit("task.created", self._json(task_id), task_id)
        if pipe is not None:
            pipe.append(task_id)
        return task_id

    def start(self, entry_id: str, task_id: str, worker: str, max_attempts: int,
              lost_message: TaskText, cancelled_message: TaskText, stream: str | None = None,
              pipe: Any = None) -> Any:
        stream = stream or self.keys.jobs
        with self._lock:
            h = self._tasks.get(task_id)
            if h is None or h["status"] != "running":
                self._drop(stream, entry_id)
                return self._answer(["skip", h["status"] if h else "missing"], pipe)
            now = bus.now_iso(time.time())
            if h["cancel"] == "1":
                h.update(status="cancelled", updated=now, **_said(cancelled_message))
                self._drop(stream, entry_id)
                self._emit("task.cancelled", self._json(task_id), task_id)
                return self._answer(["skip", "cancelled"], pipe)
            attempt = int(h["attempt"]) + 1
            if attempt - int(h.get("handbacks", "0")) > int(max_attempts):
                h.update(status="failed", updated=now, worker="", **_said(lost_message))
                self._drop(stream, entry_id)
                self.dead.append((task_id, str(lost_message)))
                self._emit("task.failed", self._json(task_id), task_id)
                return self._answer(["skip", "failed"], pipe)
            h.update(attempt=str(attempt), worker=worker, updated=now)
            self._emit("task.started", json.dumps(
                {"id": task_id, "attempt": attempt, "worker": worker}), task_id)
            return self._answer(["run", str(attempt), h["kind"], h["params"]], pipe)

    def progress(self, task_id: str, attempt: str, percent: float | None, text: TaskText,
                 details: dict[str, Any] | None = None, pipe: Any = None) -> Any:
        with self._lock:
            if not self._owns(task_id, attempt):
                return self._answer(0, pipe)
            h = self._tasks[task_id]
            h.update(progress="" if percent is None else str(percent),
                     details=json.dumps(details) if details else "",
                     updated=bus.now_iso(time.time()), **_said(text))
            self._emit("task.progress", json.dumps(
                {"id": task_id, "progress": None if percent is None else float(percent),
                 **text.fields(), "details": details or None, "attempt": int(attempt)}),
                task_id)
            return self._answer(2 if h["cancel"] == "1" else 1, pipe)

    def found(self, task_id: str, attempt: str, item_key: str, event_type: str,
              event_json: str, library: bus.Library | None = None, field: str = "",
              value: Any = None, pipe: Any = None) -> Any:
        with self._lock:
            if not self._owns(task_id, attempt):
                return self._answer(0, pipe)
            if field and library is not None:
                self._libraries.setdefault(library.name, {})[field] = json.dumps(value)
            seen = self._found.setdefault(task_id, set())
            if item_key in seen:
                return self._answer(2, pipe)
            seen.add(item_key)
            self._emit(event_type, event_json, task_id)
            return self._answer(1, pipe)

    def heartbeat(self, task_id: str, attempt: str, entry_id: str, worker: str,
                  stream: str | None = None, pipe: Any = None) -> Any:
        with self._lock:
            if not self._owns(task_id, attempt):
                return self._answer(0, pipe)
            return self._answer(2 if self._tasks[task_id]["cancel"] == "1" else 1, pipe)

    def handback(self, task_id: str, attempt: str, entry_id: str, text: TaskText,
                 stream: str | None = None, pipe: Any = None) -> Any:
        stream = stream or self.keys.jobs
        with self._lock:
            if not self._owns(task_id, attempt):
                return self._answer(0, pipe)
            h = self._tasks[task_id]
            h["handbacks"] = str(int(h.get("handbacks", "0")) + 1)
            h.update(worker="", updated=bus.now_iso(time.time()), **_said(text))
            self._drop(stream, entry_id)
            self._jobs.setdefault(stream, []).append((self._entry(), task_id))
            self._emit("task.progress", json.dumps(
                {"id": task_id, "progress": None, **text.fields(), "details": None,
                 "attempt": int(attempt)}), task_id)
            return self._answer(1, pipe)

    def finish(self, task_id: str, attempt: str, status: str, text: TaskText, result: Any,
               entry_id: str, keep_seconds: int, percent: float | None = None,
               stream: str | None = None, pipe: Any = None) -> Any:
        with self._lock:
            if not self._owns(task_id, attempt):
                return self._answer(0, pipe)
            h = self._tasks[task_id]
            h.update(status=status, updated=bus.now_iso(time.time()),
                     result=json.dumps(result) if result is not None else "", cancel="0",
                     **_said(text))
            if percent is not None:
                h["progress"] = str(percent)
            self._drop(stream or self.keys.jobs, entry_id)
            self._emit(f"task.{status}", self._json(task_id), task_id)
            return self._answer(1, pipe)

    def _not_running(self, task_id: str) -> list[str] | None:
        """Why a task cannot be cancelled or expired (the scripts' first answers), or None."""
        h = self._tasks.get(task_id)
        if h is None:
            return ["missing"]
        return None if h["status"] == "running" else ["ended", h["status"]]

    def cancel(self, task_id: str) -> list[str]:
        with self._lock:
            why = self._not_running(task_id)
            if why:
                return why
            h = self._tasks[task_id]
            now = bus.now_iso(time.time())
            if h["attempt"] == "0":
                h.update(status="cancelled", updated=now, **_said(
                    TaskText.error("KCHTASK0002E", id=task_id, status="cancelled")))
                self._emit("task.cancelled", self._json(task_id), task_id)
                return ["cancelled"]
            if h["cancel"] != "1":
                h.update(cancel="1", updated=now)
                self._emit("task.cancelling", self._json(task_id), task_id)
            return ["requested"]

    def emit(self, etype: str, data: dict[str, Any], task_id: str = "",
             pipe: Any = None) -> Any:
        with self._lock:
            return self._answer(self._emit(etype, json.dumps(data), task_id), pipe)

    # -- reading -------------------------------------------------------------------------

    def task(self, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            h = self._tasks.get(task_id)
            return bus.task_from_hash(dict(h)) if h else None

    def events(self, since: str = "0", count: int = 1000) -> list[dict[str, Any]]:
        after = (0, 0) if since == "0" else bus.parse_event_id(since)
        with self._lock:
            return [json.loads(bus.event_json(eid, fields)) for eid, fields in self._events
                    if bus.parse_event_id(eid) > after][:count]

    def expire(self, task_id: str, reason: TaskText) -> list[str]:
        with self._lock:
            why = self._not_running(task_id)
            if why:
                return why
            h = self._tasks[task_id]
            if h["attempt"] != "0":
                return ["started"]
            h.update(status="failed", updated=bus.now_iso(time.time()), **_said(reason))
            self._emit("task.failed", self._json(task_id), task_id)
            return ["failed"]

    def queued(self, stream: str | None = None) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._jobs.get(stream or self.keys.jobs, []))

    def handbacks(self, task_id: str) -> int:
        with self._lock:
            h = self._tasks.get(task_id)
            return int(h.get("handbacks", "0")) if h else 0

    def library(self, library: bus.Library) -> dict[str, Any]:
        """A library's entries, field -> value."""
        with self._lock:
            return {k: json.loads(v) for k, v in self._libraries.get(library.name, {}).items()}
