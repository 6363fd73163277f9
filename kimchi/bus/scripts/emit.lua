-- An event that belongs to no task (service.degraded, vm.state, ...).
local events = KEYS[1]
local etype = ARGV[1]
local now_iso = ARGV[2]
local data_json = ARGV[3]
local maxlen = ARGV[4]
local task = ARGV[5]
return emit(events, maxlen, etype, now_iso, data_json, task)
