-- -> 0 lost | 1 ended
local task = KEYS[1]
local jobs = KEYS[2]
local events = KEYS[3]
local found = KEYS[4]
local attempt = ARGV[1]
local status = ARGV[2]
local now_iso = ARGV[3]
local message = ARGV[4]
local result_json = ARGV[5]
local entry_id = ARGV[6]
local keep_seconds = ARGV[7]
local maxlen = ARGV[8]
local progress = ARGV[9]
local message_id, message_args, errcode = ARGV[10], ARGV[11], ARGV[12]
if not owns(task, attempt) then return 0 end
redis.call('HSET', task, 'status', status, 'result', result_json, 'updated', now_iso,
           'cancel', '0')
set_message(task, message, message_id, message_args, errcode)
if progress ~= '' then redis.call('HSET', task, 'progress', progress) end
index_status(task, 'running', status)
redis.call('XACK', jobs, 'workers', entry_id)
redis.call('XDEL', jobs, entry_id)
redis.call('EXPIRE', task, keep_seconds)
redis.call('EXPIRE', found, keep_seconds)
emit(events, maxlen, 'task.' .. status, now_iso, task_json(task),
     redis.call('HGET', task, 'id'))
return 1
