-- ARGV[4] mode: 'key' (ARGV[5] field, ARGV[6] pull or '' to force) | 'pull' (ARGV[5] pull,
-- then pairs of field and fencing token the pull keeps while it holds them under that token).
-- Replies {status, holder, released fields, removed ids, dispatches}; status 1 released,
-- 0 not held, -1 held by another pull. A released pull's waiters are dispatched 'dropped'.
local out, touched, released, removed = {}, {}, {}, {}
if ARGV[4] == 'key' then
  local f = ARGV[5]
  local h = holder(f)
  if not h then return { 0, '', released, removed, {} } end
  if ARGV[6] ~= '' and ARGV[6] ~= h.pull then return { -1, h.pull, released, removed, {} } end
  drop(f, h.pull)
  released[1] = f
  touched[1] = f
  grant_pass(touched, out)
  return { 1, h.pull, released, removed, emit(out) }
end
local pull = ARGV[5]
local keep = {}
for i = 6, #ARGV - 1, 2 do keep[ARGV[i]] = ARGV[i + 1] end
for _, f in ipairs(redis.call('SMEMBERS', B .. 'p:' .. pull)) do
  local h = holder(f)
  if not (h and keep[f] and keep[f] == h.token) then
    drop(f, pull)
    released[#released + 1] = f
    touched[#touched + 1] = f
  end
end
for _, id in ipairs(redis.call('ZRANGE', B .. 't', 0, -1)) do
  if redis.call('HGET', B .. 'w:' .. id, 'p') == pull then
    remove_waiter(id, 'dropped', out, touched)
    removed[#removed + 1] = id
  end
end
-- Grants and hand-offs of the pull not sent yet are dropped too: it is closed or unlocked (a
-- kept lock stays held until the caller releases it).
for _, id in ipairs(redis.call('ZRANGE', B .. 'd', 0, -1)) do
  local w = redis.call('HMGET', B .. 'w:' .. id, 'p', 'z')
  if w[1] == pull and (w[2] == 'granted' or w[2] == 'timeout' or w[2] == 'deadlock' or w[2] == 'removed') then
    redis.call('HSET', B .. 'w:' .. id, 'z', 'dropped')
  end
end
grant_pass(touched, out)
return { 1, pull, released, removed, emit(out) }
