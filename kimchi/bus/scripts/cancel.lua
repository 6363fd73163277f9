-- -> {'cancelled'} (had not started) | {'requested'} | {'ended', status} | {'missing'}
local task = KEYS[1]
local events = KEYS[2]
local now_iso = ARGV[1]
local maxlen = ARGV[2]
local cancelled_message = ARGV[3]
local message_id, message_args, errcode = ARGV[4], ARGV[5], ARGV[6]
local st = redis.call('HMGET', task, 'status', 'attempt', 'id')
if not st[1] then return {'missing'} end
if st[1] ~= 'running' then return {'ended', st[1]} end
if st[2] == '0' then
  redis.call('HSET', task, 'status', 'cancelled', 'updated', now_iso)
  set_message(task, cancelled_message, message_id, message_args, errcode)
  index_status(task, 'running', 'cancelled')
  emit(events, maxlen, 'task.cancelled', now_iso, task_json(task), st[3])
  return {'cancelled'}
end
if redis.call('HGET', task, 'cancel') ~= '1' then
  redis.call('HSET', task, 'cancel', '1', 'updated', now_iso)
  emit(events, maxlen, 'task.cancelling', now_iso, task_json(task), st[3])
end
return {'requested'}
