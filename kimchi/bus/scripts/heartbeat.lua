-- Keep a running job's lease: reset its idle time so no other worker reclaims it.
-- -> 0 lost | 1 carry on | 2 cancel requested
local task = KEYS[1]
local jobs = KEYS[2]
local attempt = ARGV[1]
local entry_id = ARGV[2]
local worker = ARGV[3]
if not owns(task, attempt) then return 0 end
redis.call('XCLAIM', jobs, 'workers', worker, 0, entry_id, 'JUSTID')
if redis.call('HGET', task, 'cancel') == '1' then return 2 end
return 1
