-- Shared helpers, put before every script (kimchi/bus/__init__.py).
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
-- A task's message: its English text, and what translates it (kimchi/bus/text.py): the
-- template (a msgid) and its values (JSON), or an error's errcode and parameters.
local function set_message(key, text, id, args, errcode)
  redis.call('HSET', key, 'message', text, 'message_id', id or '', 'message_args', args or '',
             'errcode', errcode or '')
end
local function message_json(text, id, args, errcode)
  return '"message":' .. cjson.encode(text or '') .. ',"message_id":' .. str_or_null(id) ..
    ',"message_args":' .. raw_or_null(args) .. ',"errcode":' .. str_or_null(errcode)
end
-- The public JSON of a task, built from its hash (kept in step with
-- kimchi.bus.task_from_hash).
local function task_json(key)
  local h = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #h, 2 do t[h[i]] = h[i + 1] end
  return '{"id":' .. cjson.encode(t.id) ..
    ',"kind":' .. cjson.encode(t.kind) ..
    ',"status":' .. cjson.encode(t.status) ..
    ',' .. message_json(t.message, t.message_id, t.message_args, t.errcode) ..
    ',"progress":' .. num_or_null(t.progress) ..
    ',"target_uri":' .. cjson.encode(t.target_uri or '') ..
    ',"created":' .. cjson.encode(t.created) ..
    ',"updated":' .. cjson.encode(t.updated) ..
    ',"result":' .. raw_or_null(t.result) ..
    ',"params":' .. raw_or_null(t.params) ..
    ',"details":' .. raw_or_null(t.details) ..
    ',"attempt":' .. (t.attempt or '0') ..
    ',"worker":' .. str_or_null(t.worker) ..
    ',"owner":' .. str_or_null(t.owner) ..
    ',"host":' .. cjson.encode(t.host or 'local') .. '}'
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
