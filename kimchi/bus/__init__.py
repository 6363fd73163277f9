"""The message bus shared by the daemon and the workers: Redis keys, Lua scripts, encodings.

Everything that changes a task happens in one Lua script, so the task record,
the job stream and the event stream never disagree:

* ``{p}jobs`` — a stream read by the consumer group ``workers`` (at-least-once:
  an entry stays pending until the job has ended): the jobs any worker may run;
  ``{p}jobs:host:<host>`` — the jobs that must run on that host, read by the workers
  serving it; ``{p}jobs:daemon`` — the daemon's own (kimchi/bus/kinds.py says which
  kind goes where).
* ``{p}task:<id>`` — the task record (a hash); ``{p}tasks`` — a sorted set of
  task ids by creation time; ``{p}task:<id>:found`` — what a job has already
  reported, so a re-run never reports it twice.
* ``{p}tasks:status:<status>``, ``{p}tasks:kind:<kind>`` and
  ``{p}tasks:status:<status>:kind:<kind>`` — the same ids by creation time, one
  index per status, kind and both (``{p}tasks:kinds`` names the kinds), kept by
  the scripts that change a task's status, so a filtered listing reads only what
  matches.  ``{p}tasks:indexed`` holds the version of these indexes: a daemon
  that finds it missing (data from before them) builds them once.
  ``{p}tasks:keep`` — how long an ended task is kept (the daemon's configuration),
  for the scripts that end a task without a worker (a cancel before the start).
* ``{p}events`` — the event stream, capped; its entry ids are the event ids.
* ``{p}workers`` — live workers by last heartbeat; ``{p}workers:host:<host>`` — those
  serving that host.

Every write a worker makes carries its ``attempt`` number; a script refuses the
write when the task has moved on to another attempt (fencing), so a worker that
was presumed dead and comes back cannot overwrite its successor's work.

Both sides call the scripts by name: the daemon through txredisapi, the workers
through redis-py; neither builds Lua on the fly.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from kimchi.bus import kinds
from kimchi.bus.kinds import LOCAL_HOST as LOCAL_HOST
from kimchi.bus.text import TaskText

GROUP = "workers"

# Bump when the task indexes change shape: a daemon that finds another version rebuilds them.
TASK_INDEX_VERSION = "1"

TERMINAL = frozenset({"finished", "failed", "cancelled"})


#: A file sent over the bus (:meth:`kimchi.bus.sync.SyncBus.put_file`) is kept this long
#: (seconds) for its reader, and sent in chunks of this many bytes.
UPLOAD_TTL = 24 * 3600
UPLOAD_CHUNK = 1 << 20

#: A worker is live while its last heartbeat is at most this old (seconds).
LIVE_WINDOW = 3.0


def waiting_message(kind: str, host: str, live_workers: int) -> TaskText:
    """What a new task says until a worker takes it: for a job that runs on ``host`` while
    no worker serves that host (``live_workers``), why it waits (KCHTASK0008E)."""
    if kinds.kind(kind).where == kinds.HOST and not live_workers:
        return TaskText.error("KCHTASK0008E", host=host)
    return TaskText("Waiting for a worker")


def now_iso(seconds: float) -> str:
    """ISO-8601 UTC with milliseconds, as used in every record and event."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


@dataclass(frozen=True)
class Library:
    """A store that jobs fill with what they find: a hash ``{p}<name>`` of path -> record,
    each entry added with the job's find (the ``found`` script) and pruned by a later run
    that no longer finds it (an event of type ``removed`` per entry).  The worker loop
    knows libraries only through this."""

    name: str
    removed: str


ISOS = Library("isos", "iso.removed")  # the ISO library: path -> what the scan read


def library_field(host: str, path: str) -> str:
    """A library's field for ``path`` on ``host``: the path itself on the local host (as
    before there were several), ``<host>:<path>`` on the others."""
    return path if host == LOCAL_HOST else f"{host}:{path}"


def split_field(field: str) -> tuple[str, str]:
    """(host, path) of a library field (see :func:`library_field`)."""
    if field.startswith("/"):
        return LOCAL_HOST, field
    host, _, path = field.partition(":")
    return host, path


@dataclass(frozen=True)
class Keys:
    """Redis key names under one prefix (several installs may share one Redis)."""

    prefix: str = "kimchi:"

    @property
    def jobs(self) -> str:
        return self.prefix + "jobs"

    @property
    def daemon_jobs(self) -> str:
        """Jobs the daemon runs itself: they need its libvirt connection."""
        return self.prefix + "jobs:daemon"

    def host_jobs(self, host: str) -> str:
        """The jobs that must run on ``host`` (read by the workers serving it)."""
        return f"{self.prefix}jobs:host:{host}"

    def host_workers(self, host: str) -> str:
        """The live workers serving ``host``, by last heartbeat."""
        return f"{self.prefix}workers:host:{host}"

    def queue(self, kind: str, host: str = LOCAL_HOST) -> str:
        """Where a job of ``kind`` about ``host`` is queued (see kimchi/bus/kinds.py)."""
        where = kinds.kind(kind).where
        if where == kinds.HOST:
            return self.host_jobs(host)
        return self.daemon_jobs if where == kinds.DAEMON else self.jobs

    @property
    def events(self) -> str:
        return self.prefix + "events"

    @property
    def tasks(self) -> str:
        return self.prefix + "tasks"

    @property
    def workers(self) -> str:
        return self.prefix + "workers"

    @property
    def dead(self) -> str:
        return self.prefix + "dead"

    @property
    def leases_lost(self) -> str:
        """How many jobs workers took over from a worker whose lease expired (a counter)."""
        return self.prefix + "stats:leases_lost"

    def library(self, library: Library) -> str:
        return self.prefix + library.name

    @property
    def task_kinds(self) -> str:
        """The kinds that have an index."""
        return self.prefix + "tasks:kinds"

    @property
    def task_keep(self) -> str:
        """Seconds an ended task is kept (set by the daemon from its configuration)."""
        return self.prefix + "tasks:keep"

    @property
    def task_index_version(self) -> str:
        return self.prefix + "tasks:indexed"

    def task_index(self, status: str | None = None, kind: str | None = None) -> str:
        """The sorted set of task ids (by creation time) with that status and/or kind."""
        key = self.tasks
        if status:
            key += f":status:{status}"
        if kind:
            key += f":kind:{kind}"
        return key

    def task(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    def upload(self, task_id: str, attempt: str) -> str:
        """A file one attempt of a job sent over the bus (a list of chunks, expiring)."""
        return f"{self.prefix}upload:{task_id}:{attempt}"

    def found(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}:found"
















@dataclass(frozen=True)
class Script:
    name: str
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


# Every change of state is one Lua script (scripts/<name>.lua, each opening with its KEYS
# and ARGV as named locals), run after the shared helpers of scripts/prelude.lua: the task
# record, its indexes, the job queue and the event stream change together or not at all.
SCRIPT_NAMES = ("submit", "start", "progress", "found", "finish", "handback", "heartbeat",
                "cancel", "expire", "emit", "trim_tasks", "task_page", "index_tasks")


def _load_scripts() -> dict[str, Script]:
    folder = resources.files(__name__) / "scripts"
    prelude = (folder / "prelude.lua").read_text()
    return {name: Script(name, prelude + (folder / f"{name}.lua").read_text())
            for name in SCRIPT_NAMES}


SCRIPTS: dict[str, Script] = _load_scripts()


def _raw(value: str | None) -> Any:
    return json.loads(value) if value else None


def task_from_hash(h: dict[str, str]) -> dict[str, Any]:
    """The public JSON of a task from its Redis hash (kept in step with ``task_json`` in Lua)."""
    return {
        "id": h["id"],
        "kind": h["kind"],
        "status": h["status"],
        "message": h.get("message", ""),
        "message_id": h.get("message_id") or None,
        "message_args": _raw(h.get("message_args")),
        "errcode": h.get("errcode") or None,
        "progress": float(h["progress"]) if h.get("progress") else None,
        "target_uri": h.get("target_uri", ""),
        "created": h["created"],
        "updated": h["updated"],
        "result": _raw(h.get("result")),
        "params": _raw(h.get("params")),
        "details": _raw(h.get("details")),
        "attempt": int(h.get("attempt") or 0),
        "worker": h.get("worker") or None,
        "owner": h.get("owner") or None,
        "host": h.get("host") or LOCAL_HOST,
    }


def event_json(entry_id: str, fields: dict[str, str]) -> str:
    """The wire form of one event, built without re-parsing its data."""
    etype = json.dumps(fields["type"])
    data = fields.get("data") or "null"
    return f'{{"id":"{entry_id}","type":{etype},"time":"{fields["time"]}","data":{data}}}'


def fields_of(flat: list[Any]) -> dict[str, str]:
    """A stream entry's field list ``[k1, v1, k2, v2]`` as a dict of str."""
    it = iter(flat)
    return {_s(k): _s(v) for k, v in zip(it, it, strict=True)}


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


#: An event id a client may name: ``0``, ``<ms>`` or ``<ms>-<seq>`` (each below 2**64, as
#: Redis takes them)
EVENT_ID_PATTERN = "^[0-9]{1,19}(-[0-9]{1,19})?$"


def parse_event_id(value: str) -> tuple[int, int]:
    """Validate an event id (EVENT_ID_PATTERN) and return it as a pair."""
    if not re.fullmatch(EVENT_ID_PATTERN, value):
        raise ValueError(value)
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)
