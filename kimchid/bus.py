"""The message bus shared by the daemon and the workers: Redis keys, Lua scripts, encodings.

Everything that changes a task happens in one Lua script, so the task record,
the job stream and the event stream never disagree:

* ``{p}jobs`` — a stream read by the consumer group ``workers`` (at-least-once:
  an entry stays pending until the job has ended).
* ``{p}task:<id>`` — the task record (a hash); ``{p}tasks`` — a sorted set of
  task ids by creation time; ``{p}task:<id>:found`` — what a job has already
  reported, so a re-run never reports it twice.
* ``{p}events`` — the event stream, capped; its entry ids are the event ids.
* ``{p}workers`` — live workers by last heartbeat.

Every write a worker makes carries its ``attempt`` number; a script refuses the
write when the task has moved on to another attempt (fencing), so a worker that
was presumed dead and comes back cannot overwrite its successor's work.

Both sides call the scripts by name: the daemon through txredisapi, the workers
through redis-py; neither builds Lua on the fly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GROUP = "workers"

TERMINAL = frozenset({"finished", "failed", "cancelled"})


def now_iso(seconds: float) -> str:
    """ISO-8601 UTC with milliseconds, as used in every record and event."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


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
    def isos(self) -> str:
        return self.prefix + "isos"

    def task(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    def found(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}:found"


# Shared Lua helpers, prepended to every script.
_PRELUDE = r"""
local function raw_or_null(s)
  if s == nil or s == false or s == '' then return 'null' end
  return s
end
local function num_or_null(s)
  if s == nil or s == false or s == '' then return 'null' end
  return s
end
local function str_or_null(s)
  if s == nil or s == false or s == '' then return 'null' end
  return cjson.encode(s)
end
-- The public JSON of a task, built from its hash (kept in step with
-- kimchid.bus.task_from_hash).
local function task_json(key)
  local h = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #h, 2 do t[h[i]] = h[i + 1] end
  return '{"id":' .. cjson.encode(t.id) ..
    ',"kind":' .. cjson.encode(t.kind) ..
    ',"status":' .. cjson.encode(t.status) ..
    ',"message":' .. cjson.encode(t.message or '') ..
    ',"progress":' .. num_or_null(t.progress) ..
    ',"target_uri":' .. cjson.encode(t.target_uri or '') ..
    ',"created":' .. cjson.encode(t.created) ..
    ',"updated":' .. cjson.encode(t.updated) ..
    ',"result":' .. raw_or_null(t.result) ..
    ',"params":' .. raw_or_null(t.params) ..
    ',"details":' .. raw_or_null(t.details) ..
    ',"attempt":' .. (t.attempt or '0') ..
    ',"worker":' .. str_or_null(t.worker) ..
    ',"owner":' .. str_or_null(t.owner) .. '}'
end
local function emit(events, maxlen, etype, time, data, task)
  return redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*',
                    'type', etype, 'time', time, 'data', data, 'task', task or '')
end
-- true when this attempt still owns the running task
local function owns(key, attempt)
  local st = redis.call('HMGET', key, 'status', 'attempt', 'worker')
  return st[1] == 'running' and st[2] == attempt and attempt ~= '0' and st[3] ~= ''
end
"""

# KEYS: task, tasks, jobs, events
# ARGV: id, kind, params_json, target_uri, now_iso, now_ms, maxlen, message, owner
_SUBMIT = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('EXISTS') end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'kind', ARGV[2], 'params', ARGV[3],
  'target_uri', ARGV[4], 'created', ARGV[5], 'updated', ARGV[5], 'status', 'running',
  'message', ARGV[8], 'progress', '', 'result', '', 'details', '', 'attempt', '0',
  'worker', '', 'cancel', '0', 'owner', ARGV[9])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'task', ARGV[1], 'kind', ARGV[2])
return emit(KEYS[4], ARGV[7], 'task.created', ARGV[5], task_json(KEYS[1]), ARGV[1])
"""

# A worker takes a job it has just read (or reclaimed).
# KEYS: task, jobs, events, dead
# ARGV: entry_id, worker, now_iso, max_attempts, maxlen, lost_message, cancelled_message
# -> {'run', attempt, kind, params} | {'skip', status}
_START = r"""
local st = redis.call('HMGET', KEYS[1], 'status', 'cancel', 'kind', 'params', 'attempt')
local function drop()
  redis.call('XACK', KEYS[2], 'workers', ARGV[1])
  redis.call('XDEL', KEYS[2], ARGV[1])
end
if st[1] ~= 'running' then drop(); return {'skip', st[1] or 'missing'} end
if st[2] == '1' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'message', ARGV[7], 'updated', ARGV[3])
  drop()
  emit(KEYS[3], ARGV[5], 'task.cancelled', ARGV[3], task_json(KEYS[1]),
       redis.call('HGET', KEYS[1], 'id'))
  return {'skip', 'cancelled'}
end
local attempt = tonumber(st[5]) + 1
-- hand-backs (a worker stopping cleanly) do not count against max_attempts
local handbacks = tonumber(redis.call('HGET', KEYS[1], 'handbacks') or '0')
if attempt - handbacks > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'message', ARGV[6], 'updated', ARGV[3],
             'worker', '')
  drop()
  local id = redis.call('HGET', KEYS[1], 'id')
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', 10000, '*', 'task', id, 'reason', ARGV[6])
  emit(KEYS[3], ARGV[5], 'task.failed', ARGV[3], task_json(KEYS[1]), id)
  return {'skip', 'failed'}
end
redis.call('HSET', KEYS[1], 'attempt', tostring(attempt), 'worker', ARGV[2], 'updated', ARGV[3])
local id = redis.call('HGET', KEYS[1], 'id')
emit(KEYS[3], ARGV[5], 'task.started', ARGV[3],
     '{"id":' .. cjson.encode(id) .. ',"attempt":' .. attempt .. ',"worker":' ..
     cjson.encode(ARGV[2]) .. '}', id)
return {'run', tostring(attempt), st[3], st[4]}
"""

# KEYS: task, events
# ARGV: attempt, now_iso, progress ('' = unknown), message, details_json, maxlen
# -> 0 lost | 1 carry on | 2 cancel requested
_PROGRESS = r"""
if not owns(KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[3], 'message', ARGV[4], 'details', ARGV[5],
           'updated', ARGV[2])
local id = redis.call('HGET', KEYS[1], 'id')
emit(KEYS[2], ARGV[6], 'task.progress', ARGV[2],
     '{"id":' .. cjson.encode(id) .. ',"progress":' .. num_or_null(ARGV[3]) ..
     ',"message":' .. cjson.encode(ARGV[4]) .. ',"details":' .. raw_or_null(ARGV[5]) ..
     ',"attempt":' .. ARGV[1] .. '}', id)
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return 2 end
return 1
"""

# Report something a job found, once per task whatever the number of attempts.
# KEYS: task, found, events, library (hash; may be '' for none)
# ARGV: attempt, item_key, now_iso, event_type, event_json, library_field, library_json, maxlen
# -> 0 lost | 1 reported | 2 already reported
_FOUND = r"""
if not owns(KEYS[1], ARGV[1]) then return 0 end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[4], ARGV[6], ARGV[7]) end
if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return 2 end
emit(KEYS[3], ARGV[8], ARGV[4], ARGV[3], ARGV[5], redis.call('HGET', KEYS[1], 'id'))
return 1
"""

# KEYS: task, jobs, events, found
# ARGV: attempt, status, now_iso, message, result_json, entry_id, keep_seconds, maxlen, progress
# -> 0 lost | 1 ended
_FINISH = r"""
if not owns(KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'message', ARGV[4], 'result', ARGV[5],
           'updated', ARGV[3], 'cancel', '0')
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[9]) end
redis.call('XACK', KEYS[2], 'workers', ARGV[6])
redis.call('XDEL', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('EXPIRE', KEYS[4], ARGV[7])
emit(KEYS[3], ARGV[8], 'task.' .. ARGV[2], ARGV[3], task_json(KEYS[1]),
     redis.call('HGET', KEYS[1], 'id'))
return 1
"""

# A worker that stops (SIGTERM) gives a running job back at once.
# KEYS: task, jobs, events
# ARGV: attempt, entry_id, now_iso, message, maxlen
_HANDBACK = r"""
if not owns(KEYS[1], ARGV[1]) then return 0 end
local id = redis.call('HGET', KEYS[1], 'id')
-- the attempt number is never reused (fencing); the hand-back is counted instead
redis.call('HINCRBY', KEYS[1], 'handbacks', 1)
redis.call('HSET', KEYS[1], 'worker', '', 'message', ARGV[4], 'updated', ARGV[3])
redis.call('XACK', KEYS[2], 'workers', ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[2], '*', 'task', id, 'kind', redis.call('HGET', KEYS[1], 'kind'))
emit(KEYS[3], ARGV[5], 'task.progress', ARGV[3],
     '{"id":' .. cjson.encode(id) .. ',"progress":null,"message":' .. cjson.encode(ARGV[4]) ..
     ',"details":null,"attempt":' .. ARGV[1] .. '}', id)
return 1
"""

# Keep a running job's lease: reset its idle time so no other worker reclaims it.
# KEYS: task, jobs
# ARGV: attempt, entry_id, worker
# -> 0 lost | 1 carry on | 2 cancel requested
_HEARTBEAT = r"""
if not owns(KEYS[1], ARGV[1]) then return 0 end
redis.call('XCLAIM', KEYS[2], 'workers', ARGV[3], 0, ARGV[2], 'JUSTID')
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return 2 end
return 1
"""

# KEYS: task, events
# ARGV: now_iso, maxlen, message_cancelled
# -> {'cancelled'} (had not started) | {'requested'} | {'ended', status} | {'missing'}
_CANCEL = r"""
local st = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'id')
if not st[1] then return {'missing'} end
if st[1] ~= 'running' then return {'ended', st[1]} end
if st[2] == '0' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'message', ARGV[3], 'updated', ARGV[1])
  emit(KEYS[2], ARGV[2], 'task.cancelled', ARGV[1], task_json(KEYS[1]), st[3])
  return {'cancelled'}
end
if redis.call('HGET', KEYS[1], 'cancel') ~= '1' then
  redis.call('HSET', KEYS[1], 'cancel', '1', 'updated', ARGV[1])
  emit(KEYS[2], ARGV[2], 'task.cancelling', ARGV[1], task_json(KEYS[1]), st[3])
end
return {'requested'}
"""

# An event that belongs to no task (service.degraded, vm.state, ...).
# KEYS: events   ARGV: type, now_iso, data_json, maxlen, task
_EMIT = r"""
return emit(KEYS[1], ARGV[4], ARGV[1], ARGV[2], ARGV[3], ARGV[5])
"""


@dataclass(frozen=True)
class Script:
    name: str
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


def _script(name: str, body: str) -> Script:
    return Script(name, _PRELUDE + body)


SCRIPTS: dict[str, Script] = {
    s.name: s
    for s in (
        _script("submit", _SUBMIT),
        _script("start", _START),
        _script("progress", _PROGRESS),
        _script("found", _FOUND),
        _script("finish", _FINISH),
        _script("handback", _HANDBACK),
        _script("heartbeat", _HEARTBEAT),
        _script("cancel", _CANCEL),
        _script("emit", _EMIT),
    )
}


def _raw(value: str | None) -> Any:
    return json.loads(value) if value else None


def task_from_hash(h: dict[str, str]) -> dict[str, Any]:
    """The public JSON of a task from its Redis hash (kept in step with ``task_json`` in Lua)."""
    return {
        "id": h["id"],
        "kind": h["kind"],
        "status": h["status"],
        "message": h.get("message", ""),
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


def parse_event_id(value: str) -> tuple[int, int]:
    """Validate an event id (``0``, ``<ms>`` or ``<ms>-<seq>``) and return it as a pair."""
    ms, _, seq = value.partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()) or len(value) > 41:
        raise ValueError(value)
    return int(ms), int(seq or 0)
