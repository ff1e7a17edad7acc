-- Replica leases (no prelude: one global key, its own slot). KEYS[1] the members hash,
-- ARGV[1] this replica's id, ARGV[2] '1' in step / '0' out of step / '' leaving,
-- ARGV[3] how long (ms) an entry not refreshed is kept before it is forgotten.
-- Each field holds '<u|o>:<server ms>'. Replies {now_ms, id, state, age_ms, ...} for the
-- other replicas, after forgetting entries older than ARGV[3].
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1]
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], me)
  return { now }
end
redis.call('HSET', KEYS[1], me, (ARGV[2] == '1' and 'u:' or 'o:') .. now)
local forget = tonumber(ARGV[3])
local out = { now }
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local id, v = all[i], all[i + 1]
  local state, at = string.match(v, '^(%a):(%d+)$')
  at = tonumber(at)
  if at == nil or now - at > forget then
    redis.call('HDEL', KEYS[1], id)
  elseif id ~= me then
    out[#out + 1] = id
    out[#out + 1] = state
    out[#out + 1] = now - at
  end
end
return out
