-- A new task: its record and indexes, its job on the queue, and task.created.
local task = KEYS[1]
local tasks = KEYS[2]
local jobs = KEYS[3]
local events = KEYS[4]
local id = ARGV[1]
local kind = ARGV[2]
local params_json = ARGV[3]
local target_uri = ARGV[4]
local now_iso = ARGV[5]
local now_ms = ARGV[6]
local maxlen = ARGV[7]
local message = ARGV[8]
local owner = ARGV[9]
local host = ARGV[10]
local message_id, message_args, errcode = ARGV[11], ARGV[12], ARGV[13]
if redis.call('EXISTS', task) == 1 then return redis.error_reply('EXISTS') end
redis.call('HSET', task, 'id', id, 'kind', kind, 'params', params_json,
  'target_uri', target_uri, 'created', now_iso, 'updated', now_iso, 'status', 'running',
  'progress', '', 'result', '', 'details', '', 'attempt', '0',
  'worker', '', 'cancel', '0', 'owner', owner, 'host', host)
set_message(task, message, message_id, message_args, errcode)
redis.call('ZADD', tasks, now_ms, id)
redis.call('ZADD', tasks .. ':kind:' .. kind, now_ms, id)
redis.call('SADD', tasks .. ':kinds', kind)
index_status(task, nil, 'running')
redis.call('XADD', jobs, '*', 'task', id, 'kind', kind)
return emit(events, maxlen, 'task.created', now_iso, task_json(task), id)
