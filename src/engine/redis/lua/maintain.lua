-- ARGV[4] cleanup (1 releases expired locks nobody waits for).
-- Replies {{depth low, normal, high, critical}, new dispatches, re-offered dispatches,
-- {stored requests, stored bytes}, pruned 0/1}. A repository left with nothing (no lock, waiter,
-- dispatch or deadlock record) is pruned: its remaining keys go, its counters expire in a day,
-- and the caller takes it off the repository index.
local out, touched = {}, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', B .. 't', '-inf', NOW)) do
  remove_waiter(id, 'timeout', out, touched)
end
local notices = {}
for _, f in ipairs(redis.call('ZRANGEBYSCORE', B .. 'e', '-inf', NOW)) do
  if redis.call('EXISTS', B .. 'q:' .. f) == 1 then
    touched[#touched + 1] = f
  elseif ARGV[4] == '1' then
    local h = holder(f)
    if h then
      drop(f, h.pull)
      notices[h.pull] = notices[h.pull] or {}
      table.insert(notices[h.pull], f)
    end
  end
end
grant_pass(touched, out)
for pull, fs in pairs(notices) do
  local id = string.format('%012d', redis.call('INCR', B .. 's'))
  local locks = table.concat(fs, '\n')
  local pre = {}
  for _, f in ipairs(fs) do pre[#pre + 1] = f .. '\t' .. pull end
  redis.call('HSET', B .. 'w:' .. id, 'p', pull, 'u', '', 'r', 1, 'l', locks, 'b', '', 't', NOW, 'h', 0,
    'z', 'expired', 'k', '', 'x', table.concat(pre, '\n'), 'o', OWNER)
  redis.call('ZADD', B .. 'd', NOW + LEASE, id)
  out[#out + 1] = id
end
local again = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', B .. 'd', '-inf', NOW)) do
  redis.call('ZADD', B .. 'd', NOW + LEASE, id)
  redis.call('HSET', B .. 'w:' .. id, 'o', OWNER)
  redis.call('HINCRBY', B .. 'w:' .. id, 'a', 1)
  again[#again + 1] = id
end
local depth = { 0, 0, 0, 0 }
for _, id in ipairs(redis.call('ZRANGE', B .. 't', 0, -1)) do
  local r = tonumber(redis.call('HGET', B .. 'w:' .. id, 'r')) or 1
  depth[r + 1] = depth[r + 1] + 1
end
local usage = redis.call('HMGET', B .. 'u', 'n', 'b')
local n, b = tonumber(usage[1]) or 0, tonumber(usage[2]) or 0
local pruned = 0
if #out == 0 and idle() then
  -- Nothing is stored any more; a count left over (a record deleted by an older version) goes.
  if n ~= 0 or b ~= 0 then account(-n, -b) end
  n, b = 0, 0
  redis.call('DEL', B .. 'u', B .. 'r', B .. 'e')
  redis.call('PEXPIRE', B .. 'f', 86400000)
  redis.call('PEXPIRE', B .. 's', 86400000)
  pruned = 1
end
return { depth, emit(out), emit(again), { n, b }, pruned }
