-- ARGV[4] mode: 'key' (ARGV[5] field, ARGV[6] pull or '' to force) | 'pull' (ARGV[5] pull).
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
for _, f in ipairs(redis.call('SMEMBERS', B .. 'p:' .. pull)) do
  drop(f, pull)
  released[#released + 1] = f
  touched[#touched + 1] = f
end
for _, id in ipairs(redis.call('ZRANGE', B .. 't', 0, -1)) do
  if redis.call('HGET', B .. 'w:' .. id, 'p') == pull then
    remove_waiter(id, 'dropped', out, touched)
    removed[#removed + 1] = id
  end
end
grant_pass(touched, out)
return { 1, pull, released, removed, emit(out) }
