"""The message bus shared by the daemon and the workers: Redis keys, Lua scripts, encodings.

Everything that changes a task happens in one Lua script, so the task record,
the job stream and the event stream never disagree:

* ``{p}jobs`` — a stream read by the consumer group ``workers`` (at-least-once:
  an entry stays pending until the job has ended).
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
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GROUP = "workers"

# Bump when the task indexes change shape: a daemon that finds another version rebuilds them.
TASK_INDEX_VERSION = "1"

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
-- The task indexes ({p}tasks:status:<s>, {p}tasks:kind:<k>, {p}tasks:status:<s>:kind:<k>)
-- live under the prefix of the task's own key, so callers pass only that key.
local function tasks_key(key, id)
  local tail = 'task:' .. id
  if string.sub(key, -#tail) ~= tail then error('not a task key: ' .. key) end
  return string.sub(key, 1, #key - #tail) .. 'tasks'
end
-- Index a task under a status (and its kind) at its creation time; 'from' is the
-- status it leaves (nil for a new task).
local function index_status(key, from, to)
  local h = redis.call('HMGET', key, 'id', 'kind')
  local id, kind = h[1], h[2]
  if not id then return end
  local p = tasks_key(key, id)
  local score = false
  if from then
    score = redis.call('ZSCORE', p .. ':status:' .. from, id)
    redis.call('ZREM', p .. ':status:' .. from, id)
    redis.call('ZREM', p .. ':status:' .. from .. ':kind:' .. kind, id)
  end
  score = score or redis.call('ZSCORE', p, id)
  -- an ended record expires like one a worker ends (a cancel before the start, too)
  local keep = redis.call('GET', p .. ':keep')
  if to ~= 'running' and keep and redis.call('TTL', key) == -1 then
    redis.call('EXPIRE', key, keep)
    redis.call('EXPIRE', key .. ':found', keep)
  end
  if not score then return end  -- trimmed already: no longer listed
  redis.call('ZADD', p .. ':status:' .. to, score, id)
  redis.call('ZADD', p .. ':status:' .. to .. ':kind:' .. kind, score, id)
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
redis.call('ZADD', KEYS[2] .. ':kind:' .. ARGV[2], ARGV[6], ARGV[1])
redis.call('SADD', KEYS[2] .. ':kinds', ARGV[2])
index_status(KEYS[1], nil, 'running')
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
  index_status(KEYS[1], 'running', 'cancelled')
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
  index_status(KEYS[1], 'running', 'failed')
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
index_status(KEYS[1], 'running', ARGV[2])
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
  index_status(KEYS[1], 'running', 'cancelled')
  emit(KEYS[2], ARGV[2], 'task.cancelled', ARGV[1], task_json(KEYS[1]), st[3])
  return {'cancelled'}
end
if redis.call('HGET', KEYS[1], 'cancel') ~= '1' then
  redis.call('HSET', KEYS[1], 'cancel', '1', 'updated', ARGV[1])
  emit(KEYS[2], ARGV[2], 'task.cancelling', ARGV[1], task_json(KEYS[1]), st[3])
end
return {'requested'}
"""

# Forget tasks created before the cutoff: every index, by creation time.  A task still
# running stays listed whatever its age (it is not over; it has no expiry either).
# KEYS: tasks   ARGV: cutoff_ms   -> how many ids left {p}tasks
_TRIM_TASKS = r"""
local p, cutoff = KEYS[1], ARGV[1]
local base = string.sub(p, 1, #p - #'tasks')
local kinds = redis.call('SMEMBERS', p .. ':kinds')
for _, s in ipairs({'finished', 'failed', 'cancelled'}) do
  redis.call('ZREMRANGEBYSCORE', p .. ':status:' .. s, '-inf', cutoff)
  for _, k in ipairs(kinds) do
    redis.call('ZREMRANGEBYSCORE', p .. ':status:' .. s .. ':kind:' .. k, '-inf', cutoff)
  end
end
local removed = redis.call('ZREMRANGEBYSCORE', p, '-inf', cutoff)
if removed == 0 then return 0 end
local old = redis.call('ZRANGEBYSCORE', p .. ':status:running', '-inf', cutoff, 'WITHSCORES')
for _, k in ipairs(kinds) do
  redis.call('ZREMRANGEBYSCORE', p .. ':kind:' .. k, '-inf', cutoff)
end
for i = 1, #old, 2 do
  local kind = redis.call('HGET', base .. 'task:' .. old[i], 'kind')
  if kind then
    redis.call('ZADD', p, old[i + 1], old[i])
    redis.call('ZADD', p .. ':kind:' .. kind, old[i + 1], old[i])
    removed = removed - 1
  end
end
return removed
"""

# One page of a task index, newest first, as public JSON.  Ids whose record has expired,
# or that the index holds under a status or kind they no longer have, leave the index.
# KEYS: index, tasks   ARGV: start, count, status ('' = any), kind ('' = any)
# -> {ids read, ids dropped, task_json...}
_TASK_PAGE = r"""
local ids = redis.call('ZREVRANGE', KEYS[1], ARGV[1], tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1)
local base = string.sub(KEYS[2], 1, #KEYS[2] - #'tasks')
local out = {#ids, 0}
for _, id in ipairs(ids) do
  local key = base .. 'task:' .. id
  local st = redis.call('HMGET', key, 'status', 'kind')
  if not st[1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    out[2] = out[2] + 1
  elseif (ARGV[3] ~= '' and st[1] ~= ARGV[3]) or (ARGV[4] ~= '' and st[2] ~= ARGV[4]) then
    redis.call('ZREM', KEYS[1], id)
    out[2] = out[2] + 1
  else
    out[#out + 1] = task_json(key)
  end
end
return out
"""

# Build the indexes from {p}tasks, a page at a time, newest first (for data kept from
# before the indexes).  The first page clears what a build of another version left;
# the last one records the version.  The scripts that change a task keep every index
# right meanwhile: a page reads each task's status as it is at that moment.
# KEYS: tasks, version   ARGV: start, count, version   -> ids read
_INDEX_TASKS = r"""
local p = KEYS[1]
local base = string.sub(p, 1, #p - #'tasks')
local statuses = {'running', 'finished', 'failed', 'cancelled'}
if ARGV[1] == '0' then
  for _, k in ipairs(redis.call('SMEMBERS', p .. ':kinds')) do
    redis.call('DEL', p .. ':kind:' .. k)
    for _, s in ipairs(statuses) do redis.call('DEL', p .. ':status:' .. s .. ':kind:' .. k) end
  end
  for _, s in ipairs(statuses) do redis.call('DEL', p .. ':status:' .. s) end
  redis.call('DEL', p .. ':kinds')
end
local ids = redis.call('ZREVRANGE', p, ARGV[1], tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1,
                       'WITHSCORES')
for i = 1, #ids, 2 do
  local id, score = ids[i], ids[i + 1]
  local h = redis.call('HMGET', base .. 'task:' .. id, 'status', 'kind')
  if h[1] and h[2] then
    redis.call('SADD', p .. ':kinds', h[2])
    redis.call('ZADD', p .. ':kind:' .. h[2], score, id)
    redis.call('ZADD', p .. ':status:' .. h[1], score, id)
    redis.call('ZADD', p .. ':status:' .. h[1] .. ':kind:' .. h[2], score, id)
  end
end
if #ids / 2 < tonumber(ARGV[2]) then redis.call('SET', KEYS[2], ARGV[3]) end
return #ids / 2
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
        _script("trim_tasks", _TRIM_TASKS),
        _script("task_page", _TASK_PAGE),
        _script("index_tasks", _INDEX_TASKS),
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


#: An event id a client may name: ``0``, ``<ms>`` or ``<ms>-<seq>`` (each below 2**64, as
#: Redis takes them)
EVENT_ID_PATTERN = "^[0-9]{1,19}(-[0-9]{1,19})?$"


def parse_event_id(value: str) -> tuple[int, int]:
    """Validate an event id (EVENT_ID_PATTERN) and return it as a pair."""
    if not re.fullmatch(EVENT_ID_PATTERN, value):
        raise ValueError(value)
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)
