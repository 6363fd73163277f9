-- A worker takes a job it has just read (or reclaimed).
-- -> {'run', attempt, kind, params} | {'skip', status}
local task = KEYS[1]
local jobs = KEYS[2]
local events = KEYS[3]
local dead = KEYS[4]
local entry_id = ARGV[1]
local worker = ARGV[2]
local now_iso = ARGV[3]
local max_attempts = ARGV[4]
local maxlen = ARGV[5]
local lost_message = ARGV[6]
local cancelled_message = ARGV[7]
local lost_id, lost_args, lost_errcode = ARGV[8], ARGV[9], ARGV[10]
local cancelled_id, cancelled_args, cancelled_errcode = ARGV[11], ARGV[12], ARGV[13]
local st = redis.call('HMGET', task, 'status', 'cancel', 'kind', 'params', 'attempt')
local function drop()
  redis.call('XACK', jobs, 'workers', entry_id)
  redis.call('XDEL', jobs, entry_id)
end
if st[1] ~= 'running' then drop(); return {'skip', st[1] or 'missing'} end
if st[2] == '1' then
  redis.call('HSET', task, 'status', 'cancelled', 'updated', now_iso)
  set_message(task, cancelled_message, cancelled_id, cancelled_args, cancelled_errcode)
  index_status(task, 'running', 'cancelled')
  drop()
  emit(events, maxlen, 'task.cancelled', now_iso, task_json(task),
       redis.call('HGET', task, 'id'))
  return {'skip', 'cancelled'}
end
local attempt = tonumber(st[5]) + 1
-- hand-backs (a worker stopping cleanly) do not count against max_attempts
local handbacks = tonumber(redis.call('HGET', task, 'handbacks') or '0')
if attempt - handbacks > tonumber(max_attempts) then
  redis.call('HSET', task, 'status', 'failed', 'updated', now_iso, 'worker', '')
  set_message(task, lost_message, lost_id, lost_args, lost_errcode)
  index_status(task, 'running', 'failed')
  drop()
  local id = redis.call('HGET', task, 'id')
  redis.call('XADD', dead, 'MAXLEN', '~', 10000, '*', 'task', id, 'reason', lost_message)
  emit(events, maxlen, 'task.failed', now_iso, task_json(task), id)
  return {'skip', 'failed'}
end
redis.call('HSET', task, 'attempt', tostring(attempt), 'worker', worker, 'updated', now_iso)
local id = redis.call('HGET', task, 'id')
emit(events, maxlen, 'task.started', now_iso,
     '{"id":' .. cjson.encode(id) .. ',"attempt":' .. attempt .. ',"worker":' ..
     cjson.encode(worker) .. '}', id)
return {'run', tostring(attempt), st[3], st[4]}
