-- One page of a task index, newest first, as public JSON.  Ids whose record has expired,
-- or that the index holds under a status or kind they no longer have, leave the index.
-- -> {ids read, ids dropped, task_json...}
local index = KEYS[1]
local tasks = KEYS[2]
local start = ARGV[1]
local count = ARGV[2]
local status = ARGV[3]
local kind = ARGV[4]
local ids = redis.call('ZREVRANGE', index, start, tonumber(start) + tonumber(count) - 1)
local base = string.sub(tasks, 1, #tasks - #'tasks')
local out = {#ids, 0}
for _, id in ipairs(ids) do
  local key = base .. 'task:' .. id
  local st = redis.call('HMGET', key, 'status', 'kind')
  if not st[1] then
    redis.call('ZREM', index, id)
    redis.call('ZREM', tasks, id)
    out[2] = out[2] + 1
  elseif (status ~= '' and st[1] ~= status) or (kind ~= '' and st[2] ~= kind) then
    redis.call('ZREM', index, id)
    out[2] = out[2] + 1
  else
    out[#out + 1] = task_json(key)
  end
end
return out
