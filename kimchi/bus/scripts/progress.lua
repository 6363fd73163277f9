-- -> 0 lost | 1 carry on | 2 cancel requested
local task = KEYS[1]
local events = KEYS[2]
local attempt = ARGV[1]
local now_iso = ARGV[2]
local progress = ARGV[3]
local message = ARGV[4]
local details_json = ARGV[5]
local maxlen = ARGV[6]
local message_id, message_args, errcode = ARGV[7], ARGV[8], ARGV[9]
if not owns(task, attempt) then return 0 end
redis.call('HSET', task, 'progress', progress, 'details', details_json, 'updated', now_iso)
set_message(task, message, message_id, message_args, errcode)
local id = redis.call('HGET', task, 'id')
emit(events, maxlen, 'task.progress', now_iso,
     '{"id":' .. cjson.encode(id) .. ',"progress":' .. num_or_null(progress) ..
     ',' .. message_json(message, message_id, message_args, errcode) ..
     ',"details":' .. raw_or_null(details_json) ..
     ',"attempt":' .. attempt .. '}', id)
if redis.call('HGET', task, 'cancel') == '1' then return 2 end
return 1
