-- ARGV[4] mode: 0 acquire, 1 acquire-or-enqueue, 2 enqueue; [5] pull; [6] user; [7] rank;
-- [8] order rank; [9] hold ms; [10] queue timeout ms; [11] max queue size; [12] aging per ms;
-- [13] payload; [14] request identity ('' none); [15] most stored requests per repository,
-- [16] most stored bytes per repository, [17] most stored requests in total, [18] most stored bytes
-- in total, [19] [20] the total requests and bytes stored as the caller last saw them (used on a
-- Cluster, where KEYS[2] cannot be given); [21..] lock fields.
-- Replies {1, token, expires, {field, holder, ...} preempted, dispatches, taken fields, fresh} |
-- {0, field, holder, ...} | {2, field} (queue full) | {3, id, {{field, position, holder}...},
-- dispatches, fresh} | {4} (the request was forgotten: not queued) | {5, cap} (a memory cap
-- is reached: 'repo_waiters', 'repo_bytes', 'total_waiters' or 'total_bytes'). fresh is 1 when
-- the repository had no state before (the caller lists it again).
local mode = ARGV[4]
local pull, user, rank = ARGV[5], ARGV[6], ARGV[7]
local hold = tonumber(ARGV[9])
local rid = ARGV[14]
local fields = {}
for i = 21, #ARGV do fields[#fields + 1] = ARGV[i] end
local FRESH = idle() and 1 or 0

local function positions_of(id)
  local positions = {}
  for _, f in ipairs(fields) do
    local h = holder(f)
    local r = redis.call('ZRANK', B .. 'q:' .. f, id)
    positions[#positions + 1] = { f, r and (r + 1) or 0, h and h.pull or '' }
  end
  return positions
end

if mode ~= '0' and rid ~= '' then
  if redis.call('EXISTS', B .. 'x:' .. rid) == 1 then return { 4 } end
  -- The same request again (a redelivery): it keeps its one waiter.
  local existing = redis.call('HGET', B .. 'r', rid)
  if existing and (redis.call('ZSCORE', B .. 't', existing) or redis.call('ZSCORE', B .. 'd', existing)) then
    return { 3, existing, positions_of(existing), {} }
  end
end

local blocked, preempt, held = {}, {}, {}
for _, f in ipairs(fields) do
  local h = holder(f)
  local ifp = in_flight_other(f, pull)
  -- Another pull's grant or hand-off of this lock is in flight: Atlantis may be giving it to that
  -- pull right now, even if its holder here is this pull.
  if ifp then
    blocked[#blocked + 1] = f
    blocked[#blocked + 1] = ifp
  elseif h and h.pull == pull then
    held[f] = true
  else
    local queued = redis.call('EXISTS', B .. 'q:' .. f) == 1
    if h and (h.exp > NOW or queued) then
      blocked[#blocked + 1] = f
      blocked[#blocked + 1] = h.pull
    elseif h then
      preempt[#preempt + 1] = f
      preempt[#preempt + 1] = h.pull
    elseif queued then
      blocked[#blocked + 1] = f
      blocked[#blocked + 1] = ''
    end
  end
end

local function taken_fields()
  local taken = {}
  for _, f in ipairs(fields) do
    if not held[f] then taken[#taken + 1] = f end
  end
  return taken
end

if mode ~= '2' and #blocked == 0 then
  local token = redis.call('INCR', B .. 'f')
  local exp = NOW + hold
  for i = 1, #preempt, 2 do drop(preempt[i], preempt[i + 1]) end
  for _, f in ipairs(fields) do take(f, pull, token, exp, rank, user) end
  if FRESH == 1 then revive() end
  return { 1, token, exp, preempt, {}, taken_fields(), FRESH }
end
if mode == '0' then
  local res = { 0 }
  for _, v in ipairs(blocked) do res[#res + 1] = v end
  return res
end

local max = tonumber(ARGV[11])
for _, f in ipairs(fields) do
  if redis.call('ZCARD', B .. 'q:' .. f) >= max then return { 2, f } end
end
-- Memory caps, checked in the same atomic step that stores the request.
local size = #ARGV[13]
local usage = redis.call('HMGET', B .. 'u', 'n', 'b')
if (tonumber(usage[1]) or 0) + 1 > tonumber(ARGV[15]) then return { 5, 'repo_waiters' } end
if (tonumber(usage[2]) or 0) + size > tonumber(ARGV[16]) then return { 5, 'repo_bytes' } end
local total_n, total_b = tonumber(ARGV[19]), tonumber(ARGV[20])
if G then
  local g = redis.call('HMGET', G, 'n', 'b')
  total_n, total_b = tonumber(g[1]) or 0, tonumber(g[2]) or 0
end
if total_n + 1 > tonumber(ARGV[17]) then return { 5, 'total_waiters' } end
if total_b + size > tonumber(ARGV[18]) then return { 5, 'total_bytes' } end
if FRESH == 1 then revive() end
local seq = redis.call('INCR', B .. 's')
local id = string.format('%012d', seq)
local score = tonumber(ARGV[12]) * NOW - tonumber(ARGV[8])
local deadline = NOW + tonumber(ARGV[10])
redis.call('HSET', B .. 'w:' .. id, 'p', pull, 'u', user, 'r', rank, 'l', table.concat(fields, '\n'),
  'b', ARGV[13], 't', NOW, 'h', hold, 'c', score, 'q', deadline, 'i', rid, 'm', 1)
account(1, size)
if rid ~= '' then redis.call('HSET', B .. 'r', rid, id) end
redis.call('ZADD', B .. 't', deadline, id)
local positions = {}
for _, f in ipairs(fields) do
  redis.call('ZADD', B .. 'q:' .. f, score, id)
  local h = holder(f)
  positions[#positions + 1] = { f, redis.call('ZRANK', B .. 'q:' .. f, id) + 1, h and h.pull or '' }
end
local out = {}
-- A newcomer may outrank the waiters that kept a free lock reserved: grant whoever heads now.
grant_pass(fields, out)
if mode == '1' then
  for i, gid in ipairs(out) do
    if gid == id then
      -- Granted at once: answer as a grant instead of dispatching the caller's own request.
      table.remove(out, i)
      local w = redis.call('HMGET', B .. 'w:' .. id, 'k', 'x')
      local ignored = {}
      finish(id, ignored)
      local pre = {}
      for _, line in ipairs(split(w[2], '\n')) do
        local fp = split(line, '\t')
        pre[#pre + 1] = fp[1]
        pre[#pre + 1] = fp[2]
      end
      return { 1, tonumber(w[1]), NOW + hold, pre, emit(out), taken_fields(), FRESH }
    end
  end
end
return { 3, id, positions, emit(out), FRESH }
