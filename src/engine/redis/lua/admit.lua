-- ARGV[4] dispatch id. Decides, atomically, what the dispatcher may send (DESIGN.md §10.2-3).
-- Replies {'done'} | {'grant', token, preempted text} | {'dropped', dispatches} |
-- {'requeued', dispatches} | {'busy'} | {'handoff', {field, holder, ...} blocked, {field...} taken, token or ''}
local id = ARGV[4]
if not redis.call('ZSCORE', B .. 'd', id) then return { 'done' } end
local w = redis.call('HMGET', B .. 'w:' .. id, 'z', 'p', 'l', 'k', 'u', 'r', 'h', 'x')
local reason, pull, token = w[1], w[2], w[4]
local locks = split(w[3], '\n')
if reason == 'granted' then
  local current, taken_by_other = true, false
  for _, f in ipairs(locks) do
    local h = holder(f)
    if not (h and h.pull == pull and h.token == token) then current = false end
    if h and h.pull ~= pull then taken_by_other = true end
  end
  if current then return { 'grant', token, w[8] or '' } end
  -- What is left of the stale grant goes; the lock is not granted to this pull.
  drop_grant(locks, pull, token)
  local out = {}
  if taken_by_other then
    requeue(id)
    grant_pass(locks, out)
    return { 'requeued', emit(out) }
  end
  local touched = {}
  finish(id, touched)
  grant_pass(touched, out)
  return { 'dropped', emit(out) }
end
if reason == 'dropped' then
  local touched, out = {}, {}
  finish(id, touched)
  grant_pass(touched, out)
  return { 'dropped', emit(out) }
end
if reason ~= 'timeout' and reason ~= 'deadlock' and reason ~= 'removed' then return { 'done' } end
-- A hand-off: Atlantis will refuse the locks other pulls hold, and take the free ones. A lock is
-- blocked by its holder (live, or with a grant in flight); a free lock that another pull's
-- hand-off is in flight for is neither: the hand-off waits ('busy', nothing changed).
local blocked, free, pre = {}, {}, {}
for _, f in ipairs(locks) do
  local h = holder(f)
  if h and h.pull == pull then
    -- already the pull's
  elseif h and (h.exp > NOW or in_flight_of(f, h.pull)) then
    -- Its holder's release is on its way to Atlantis, which might carry it out first and then
    -- give the lock to this hand-off: wait for the release.
    if releasing(h.pull) then return { 'busy' } end
    blocked[#blocked + 1] = f
    blocked[#blocked + 1] = h.pull
  elseif in_flight_other(f, pull) then
    return { 'busy' }
  else
    if h then pre[#pre + 1] = f .. '\t' .. h.pull end
    free[#free + 1] = f
  end
end
local tok = ''
if #free > 0 then
  tok = redis.call('INCR', B .. 'f')
  local exp = NOW + tonumber(w[7] or '0')
  for _, p in ipairs(pre) do
    local fp = split(p, '\t')
    drop(fp[1], fp[2])
  end
  for _, f in ipairs(free) do take(f, pull, tok, exp, w[6], w[5]) end
  set_in_flight(id, free)
end
if #blocked == 0 then
  if tok == '' then
    -- Every lock was the pull's already: a grant under a fresh token.
    tok = redis.call('INCR', B .. 'f')
    for _, f in ipairs(locks) do
      local h = holder(f)
      redis.call('HSET', B .. 'h', f, h.pull .. '\t' .. tok .. '\t' .. h.acq .. '\t' .. h.exp .. '\t' .. h.rank .. '\t' .. h.user)
    end
    set_in_flight(id, locks)
  end
  local pre_text = table.concat(pre, '\n')
  redis.call('HSET', B .. 'w:' .. id, 'z', 'granted', 'k', tok, 'x', pre_text)
  return { 'grant', tok, pre_text }
end
-- Until Atlantis has carried out the hand-off, the blocked locks are not granted to anyone else
-- even if their holders release: Atlantis might give them to this pull.
for i = 1, #blocked, 2 do redis.call('SADD', B .. 'g:' .. blocked[i], id) end
-- When it was admitted: a release of a blocking holder waits until it reached Atlantis.
redis.call('HSET', B .. 'w:' .. id, 'o', NOW)
return { 'handoff', blocked, free, tok }
