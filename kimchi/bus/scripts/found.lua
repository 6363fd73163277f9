-- Report something a job found, once per task whatever the number of attempts.
-- -> 0 lost | 1 reported | 2 already reported
local task = KEYS[1]
local found = KEYS[2]
local events = KEYS[3]
local library = KEYS[4]
local attempt = ARGV[1]
local item_key = ARGV[2]
local now_iso = ARGV[3]
local event_type = ARGV[4]
local event_json = ARGV[5]
local library_field = ARGV[6]
local library_json = ARGV[7]
local maxlen = ARGV[8]
if not owns(task, attempt) then return 0 end
if library_field ~= '' then redis.call('HSET', library, library_field, library_json) end
if redis.call('SADD', found, item_key) == 0 then return 2 end
emit(events, maxlen, event_type, now_iso, event_json, redis.call('HGET', task, 'id'))
return 1
