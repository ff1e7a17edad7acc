-- Shared helpers, prepended to every script. ARGV[1] is the repository's key base
-- "<prefix>{<repo>}:" (every key below shares the hash tag, so one script = one slot),
-- ARGV[2] this replica's id, ARGV[3] the dispatch lease in ms.
-- Layout (compact on purpose; a held lock costs one hash field, one zset entry, one set member):
--   h        hash  lock field -> "pull\ttoken\tacquired\texpires\trank\tuser"
--   e        zset  lock field by expiry (ms)
--   p:<pull> set   lock fields held by the pull
--   q:<f>    zset  waiter ids queued on lock field f, by static order score
--   t        zset  queued waiter ids by queue deadline
--   w:<id>   hash  waiter / dispatch record
--   d        zset  dispatch ids by lease deadline
--   g:<f>    set   dispatch ids whose replay holds lock field f in flight (one pull's)
--   r        hash  request identity -> waiter / dispatch id (idempotent enqueue)
--   x:<rid>  string  a forgotten request identity (expires); such a request is never queued
--   l        hash  pull -> until (ms): its release is on its way to Atlantis, so hand-offs that
--                  count on its locks wait (expires with the longest entry)
--   f, s     counters: fencing token, waiter sequence
--   k        list  deadlock records (JSON, newest first)
--   u        hash  usage: n stored requests (waiter records with 'm'), b their bytes
-- KEYS[2], when given (standalone Redis only: a Cluster script cannot reach a second slot), is
-- the global usage hash (n, b) kept in step with every repository's `u`.
-- Every key is under the repository's hash tag, a digest of its name (never the raw name, so a
-- name holding '{' or '}' cannot move keys to other slots).
local B = ARGV[1]
local G = KEYS[2]
local OWNER = ARGV[2]
local LEASE = tonumber(ARGV[3])
local T = redis.call('TIME')
local NOW = tonumber(T[1]) * 1000 + math.floor(tonumber(T[2]) / 1000)

local function split(s, sep)
  local out = {}
  if s == nil or s == '' then return out end
  local from = 1
  while true do
    local i = string.find(s, sep, from, true)
    if not i then
      out[#out + 1] = string.sub(s, from)
      return out
    end
    out[#out + 1] = string.sub(s, from, i - 1)
    from = i + #sep
  end
end

local function holder(f)
  local v = redis.call('HGET', B .. 'h', f)
  if not v then return nil end
  local p = split(v, '\t')
  return { pull = p[1], token = p[2], acq = p[3], exp = tonumber(p[4]), rank = p[5], user = p[6] }
end

local function take(f, pull, token, exp, rank, user)
  redis.call('HSET', B .. 'h', f, pull .. '\t' .. token .. '\t' .. NOW .. '\t' .. exp .. '\t' .. rank .. '\t' .. user)
  redis.call('ZADD', B .. 'e', exp, f)
  redis.call('SADD', B .. 'p:' .. pull, f)
end

local function drop(f, pull)
  redis.call('HDEL', B .. 'h', f)
  redis.call('ZREM', B .. 'e', f)
  redis.call('SREM', B .. 'p:' .. pull, f)
end

-- Drops the locks of `locks` that `pull` holds under fencing token `tok` (one grant, not a
-- newer one of the same pull); returns those dropped. Waiters are not served.
local function drop_grant(locks, pull, tok)
  local dropped = {}
  for _, f in ipairs(locks) do
    local h = holder(f)
    if h and h.pull == pull and h.token == tok then
      drop(f, pull)
      dropped[#dropped + 1] = f
    end
  end
  return dropped
end

local function head(f)
  return redis.call('ZRANGE', B .. 'q:' .. f, 0, 0)[1]
end

-- A pull other than `pull` with a dispatch of lock field f in flight, if any.
local function in_flight_other(f, pull)
  for _, id in ipairs(redis.call('SMEMBERS', B .. 'g:' .. f)) do
    local p = redis.call('HGET', B .. 'w:' .. id, 'p')
    if not p then
      redis.call('SREM', B .. 'g:' .. f, id)
    elseif p ~= pull then
      return p
    end
  end
  return nil
end

-- Whether `pull` has a dispatch of lock field f in flight.
local function in_flight_of(f, pull)
  for _, id in ipairs(redis.call('SMEMBERS', B .. 'g:' .. f)) do
    if redis.call('HGET', B .. 'w:' .. id, 'p') == pull then return true end
  end
  return false
end

-- Whether `pull`'s release is on its way to Atlantis (hand-offs counting on its locks wait).
local function releasing(pull)
  local t = redis.call('HGET', B .. 'l', pull)
  return t ~= false and tonumber(t) > NOW
end

local function set_in_flight(id, locks)
  for _, f in ipairs(locks) do redis.call('SADD', B .. 'g:' .. f, id) end
end

local function clear_in_flight(id, locks)
  for _, f in ipairs(locks) do redis.call('SREM', B .. 'g:' .. f, id) end
end

-- Whether the repository holds nothing that needs maintenance: no lock, waiter, dispatch or
-- deadlock record (then it is pruned, and a writer that finds it so lists it again).
local function idle()
  return redis.call('HLEN', B .. 'h') == 0 and redis.call('ZCARD', B .. 't') == 0
    and redis.call('ZCARD', B .. 'd') == 0 and redis.call('LLEN', B .. 'k') == 0
end

-- A repository pruned while idle kept its counters for a day (tokens and waiter ids keep
-- growing); one that has state again keeps them for good.
local function revive()
  redis.call('PERSIST', B .. 'f')
  redis.call('PERSIST', B .. 's')
end

-- Counts stored requests and their bytes, in the repository and (standalone) globally.
local function account(n, b)
  redis.call('HINCRBY', B .. 'u', 'n', n)
  redis.call('HINCRBY', B .. 'u', 'b', b)
  if G then
    redis.call('HINCRBY', G, 'n', n)
    redis.call('HINCRBY', G, 'b', b)
  end
end

-- Deletes a waiter / dispatch record, uncounting its stored request.
local function delete_record(id)
  local k = B .. 'w:' .. id
  if redis.call('HEXISTS', k, 'm') == 1 then account(-1, -redis.call('HSTRLEN', k, 'b')) end
  redis.call('DEL', k)
end

-- Forgets a dispatch record (confirmed, cancelled or dropped); its locks go to `touched`.
local function finish(id, touched)
  local w = redis.call('HMGET', B .. 'w:' .. id, 'l', 'i')
  local locks = split(w[1], '\n')
  clear_in_flight(id, locks)
  for _, f in ipairs(locks) do touched[#touched + 1] = f end
  if w[2] and w[2] ~= '' then redis.call('HDEL', B .. 'r', w[2]) end
  redis.call('ZREM', B .. 'd', id)
  delete_record(id)
end

-- Puts a dispatched waiter back into its queues at its old score and deadline.
local function requeue(id)
  local w = redis.call('HMGET', B .. 'w:' .. id, 'l', 'c', 'q', 't')
  local locks = split(w[1], '\n')
  clear_in_flight(id, locks)
  redis.call('ZREM', B .. 'd', id)
  redis.call('HDEL', B .. 'w:' .. id, 'z', 'k', 'x', 'o', 'a')
  local score = tonumber(w[2]) or tonumber(w[4]) or NOW
  local deadline = tonumber(w[3]) or NOW
  redis.call('ZADD', B .. 't', deadline, id)
  for _, f in ipairs(locks) do redis.call('ZADD', B .. 'q:' .. f, score, id) end
end

-- Takes a waiter out of its queues and leases it as a dispatch with `reason`.
local function to_dispatch(id, locks, reason, token, preempted)
  for _, f in ipairs(locks) do
    redis.call('ZREM', B .. 'q:' .. f, id)
  end
  redis.call('ZREM', B .. 't', id)
  redis.call('HSET', B .. 'w:' .. id, 'z', reason, 'k', token, 'x', preempted, 'o', OWNER)
  redis.call('ZADD', B .. 'd', NOW + LEASE, id)
end

-- Grants the waiter `id` if all its locks are free (or its pull's) and it heads every queue of a
-- lock its pull does not hold.
local function try_grant(id, out)
  local w = redis.call('HMGET', B .. 'w:' .. id, 'p', 'u', 'r', 'l', 'h')
  if not w[1] then return end
  local pull = w[1]
  local locks = split(w[4], '\n')
  local pre = {}
  for _, f in ipairs(locks) do
    local h = holder(f)
    -- A lock the pull already holds is not contended, whoever queues for it.
    if not (h and h.pull == pull) then
      if head(f) ~= id then return end
      if h then
        if h.exp > NOW then return end
        pre[#pre + 1] = f .. '\t' .. h.pull
      end
    end
    -- One grant in flight per lock: the next pull waits until that replay is confirmed.
    if in_flight_other(f, pull) then return end
  end
  local token = redis.call('INCR', B .. 'f')
  local exp = NOW + tonumber(w[5])
  for _, p in ipairs(pre) do
    local fp = split(p, '\t')
    drop(fp[1], fp[2])
  end
  for _, f in ipairs(locks) do
    take(f, pull, token, exp, w[3], w[2])
  end
  to_dispatch(id, locks, 'granted', token, table.concat(pre, '\n'))
  set_in_flight(id, locks)
  out[#out + 1] = id
  return true
end

-- Visits the queues of `fields` in byte order (as the memory engine does), so both backends hand
-- out fencing tokens in the same order.
local function grant_pass(fields, out)
  local sorted, dup = {}, {}
  for _, f in ipairs(fields) do
    if not dup[f] then
      dup[f] = true
      sorted[#sorted + 1] = f
    end
  end
  table.sort(sorted)
  for _, f in ipairs(sorted) do
    -- A grant can unblock the next head too: the same pull's extra waiter (re-entrant).
    while true do
      local id = head(f)
      -- A granted head leaves the queue, so this ends; a waiter that failed at an earlier
      -- field is tried again here, as the memory engine does (a grant meanwhile may be its own
      -- pull's).
      if not id or not try_grant(id, out) then break end
    end
  end
end

-- Removes a queued waiter with `reason`; appends its locks to `touched`. False if not queued.
local function remove_waiter(id, reason, out, touched)
  if not redis.call('ZSCORE', B .. 't', id) then return false end
  local locks = split(redis.call('HGET', B .. 'w:' .. id, 'l'), '\n')
  to_dispatch(id, locks, reason, '', '')
  out[#out + 1] = id
  for _, f in ipairs(locks) do touched[#touched + 1] = f end
  return true
end

-- Dispatch records as flat arrays: id, reason, pull, user, rank, locks, payload, token, preempted,
-- enqueued, attempt.
local function emit(ids)
  local res = {}
  for _, id in ipairs(ids) do
    local w = redis.call('HMGET', B .. 'w:' .. id, 'z', 'p', 'u', 'r', 'l', 'b', 'k', 'x', 't', 'a')
    res[#res + 1] = { id, w[1] or '', w[2] or '', w[3] or '', w[4] or '0', w[5] or '', w[6] or '', w[7] or '', w[8] or '', w[9] or '0', w[10] or '0' }
  end
  return res
end
