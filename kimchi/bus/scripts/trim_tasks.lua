-- Forget tasks created before the cutoff: every index, by creation time.  A task still
-- running stays listed whatever its age (it is not over; it has no expiry either).
local p = KEYS[1]  -- {p}tasks
local cutoff = ARGV[1]  -- ms
local base = string.sub(p, 1, #p - #'tasks')
local kinds = redis.call('SMEMBERS', p .. ':kinds')
for _, s in ipairs({'finished', 'failed', 'cancelled'}) do
  redis.call('ZREMRANGEBYSCORE', p .. ':status:' .. s, '-inf', cutoff)
  for _, k in ipairs(kinds) do
    redis.call('ZREMRANGEBYSCORE', p .. ':status:' .. s .. ':kind:' .. k, '-inf', cutoff)
  end
end
local removed = redis.call('ZREMRANGEBYSCORE', p, '-inf', cutoff)
if removed == 0 then return 0 end
local old = redis.call('ZRANGEBYSCORE', p .. ':status:running', '-inf', cutoff, 'WITHSCORES')
for _, k in ipairs(kinds) do
  redis.call('ZREMRANGEBYSCORE', p .. ':kind:' .. k, '-inf', cutoff)
end
for i = 1, #old, 2 do
  local kind = redis.call('HGET', base .. 'task:' .. old[i], 'kind')
  if kind then
    redis.call('ZADD', p, old[i + 1], old[i])
    redis.call('ZADD', p .. ':kind:' .. kind, old[i + 1], old[i])
    removed = removed - 1
  end
end
return removed
