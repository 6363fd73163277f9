-- A worker that stops (SIGTERM) gives a running job back at once.
local task = KEYS[1]
local jobs = KEYS[2]
local events = KEYS[3]
local attempt = ARGV[1]
local entry_id = ARGV[2]
local now_iso = ARGV[3]
local message = ARGV[4]
local maxlen = ARGV[5]
local message_id, message_args, errcode = ARGV[6], ARGV[7], ARGV[8]
if not owns(task, attempt) then return 0 end
local id = redis.call('HGET', task, 'id')
-- the attempt number is never reused (fencing); the hand-back is counted instead
redis.call('HINCRBY', task, 'handbacks', 1)
redis.call('HSET', task, 'worker', '', 'updated', now_iso)
set_message(task, message, message_id, message_args, errcode)
redis.call('XACK', jobs, 'workers', entry_id)
redis.call('XDEL', jobs, entry_id)
redis.call('XADD', jobs, '*', 'task', id, 'kind', redis.call('HGET', task, 'kind'))
emit(events, maxlen, 'task.progress', now_iso,
     '{"id":' .. cjson.encode(id) .. ',"progress":null,' ..
     message_json(message, message_id, message_args, errcode) ..
     ',"details":null,"attempt":' .. attempt .. '}', id)
return 1
