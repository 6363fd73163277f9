-- Build the indexes from {p}tasks, a page at a time, newest first (for data kept from
-- before the indexes).  The first page clears what a build of another version left;
-- the last one records the version.  The scripts that change a task keep every index
-- right meanwhile: a page reads each task's status as it is at that moment.
local p = KEYS[1]  -- {p}tasks
local version_key = KEYS[2]
local start = ARGV[1]
local count = ARGV[2]
local version = ARGV[3]
local base = string.sub(p, 1, #p - #'tasks')
local statuses = {'running', 'finished', 'failed', 'cancelled'}
if start == '0' then
  for _, k in ipairs(redis.call('SMEMBERS', p .. ':kinds')) do
    redis.call('DEL', p .. ':kind:' .. k)
    for _, s in ipairs(statuses) do redis.call('DEL', p .. ':status:' .. s .. ':kind:' .. k) end
  end
  for _, s in ipairs(statuses) do redis.call('DEL', p .. ':status:' .. s) end
  redis.call('DEL', p .. ':kinds')
end
local ids = redis.call('ZREVRANGE', p, start, tonumber(start) + tonumber(count) - 1,
                       'WITHSCORES')
for i = 1, #ids, 2 do
  local id, score = ids[i], ids[i + 1]
  local h = redis.call('HMGET', base .. 'task:' .. id, 'status', 'kind')
  if h[1] and h[2] then
    redis.call('SADD', p .. ':kinds', h[2])
    redis.call('ZADD', p .. ':kind:' .. h[2], score, id)
    redis.call('ZADD', p .. ':status:' .. h[1], score, id)
    redis.call('ZADD', p .. ':status:' .. h[1] .. ':kind:' .. h[2], score, id)
  end
end
if #ids / 2 < tonumber(count) then redis.call('SET', version_key, version) end
return #ids / 2
