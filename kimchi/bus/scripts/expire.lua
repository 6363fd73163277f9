-- A host job that no worker took in time: failed with the reason, as a cancel before the
-- start is cancelled (its queue entry is dropped by the worker that reads it, if any).
-- -> {'failed'} | {'started'} | {'ended', status} | {'missing'}
local task = KEYS[1]
local events = KEYS[2]
local jobs = KEYS[3]  -- its queue (optional)
local now_iso = ARGV[1]
local maxlen = ARGV[2]
local reason = ARGV[3]
local entry_id = ARGV[4]  -- its entry there, never delivered (optional)
local message_id, message_args, errcode = ARGV[5], ARGV[6], ARGV[7]
local st = redis.call('HMGET', task, 'status', 'attempt', 'id')
if not st[1] then return {'missing'} end
if st[1] ~= 'running' then return {'ended', st[1]} end
if st[2] ~= '0' then return {'started'} end
if jobs and entry_id and entry_id ~= '' then redis.call('XDEL', jobs, entry_id) end
redis.call('HSET', task, 'status', 'failed', 'updated', now_iso)
set_message(task, reason, message_id, message_args, errcode)
index_status(task, 'running', 'failed')
emit(events, maxlen, 'task.failed', now_iso, task_json(task), st[3])
return {'failed'}
