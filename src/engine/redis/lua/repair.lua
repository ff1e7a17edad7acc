-- Repairs toward Atlantis. ARGV[4] mode:
--   'adopt': ARGV[5] field, [6] pull, [7] user, [8] hold ms, [9] expected holder pull or '' (free),
--            [10] expected token. Makes pull the holder if the lock is as expected and its holder's
--            grant is not being replayed; serves no waiter. Replies {adopted 0/1, {}, fresh 0/1}
--            (fresh: the repository had no state before, so it must be listed again).
--   'back':  ARGV[5] dispatch id, [6] token or '', [7] hold ms, [8..] triples field, pull, user.
--            Releases the dispatch's locks held under token, queues its waiter again in its old
--            place, adopts each listed holder where the lock is free. Replies {0 gone / 1
--            queued / 2 dropped (its pull was released meanwhile: finished, not queued again), dispatches}.
--   'grant': ARGV[5] pull, [6] token, [7..] fields. Releases those the pull holds under token.
--            Replies {released count, dispatches}.
--   'defer': ARGV[5] dispatch id, [6] token or '', [7] ms until it is offered again. Releases the
--            dispatch's locks held under token and takes it out of flight; it stays a dispatch.
--            Replies {0/1, dispatches}.
--   'forget': ARGV[5] request identity, [6] ms to keep refusing it. Replies {removed 0/1, dispatches}.
--   'fence': ARGV[5] pull, [6] ms to hold back hand-offs that count on its locks, [7] settle ms.
--            Replies {ms the hand-offs admitted before may still be on their way, {}}.
--   'lift':  ARGV[5] pull. Ends its fence. Replies {0, {}}.
local mode = ARGV[4]
if mode == 'fence' then
  local pull, hold, settle = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
  redis.call('HSET', B .. 'l', pull, NOW + hold)
  if redis.call('PTTL', B .. 'l') < hold then redis.call('PEXPIRE', B .. 'l', hold) end
  local wait = 0
  for _, f in ipairs(redis.call('SMEMBERS', B .. 'p:' .. pull)) do
    for _, id in ipairs(redis.call('SMEMBERS', B .. 'g:' .. f)) do
      local w = redis.call('HMGET', B .. 'w:' .. id, 'p', 'o')
      if w[1] and w[1] ~= pull and w[2] then
        local left = tonumber(w[2]) + settle - NOW
        if left > wait then wait = left end
      end
    end
  end
  return { wait, {} }
end
if mode == 'lift' then
  redis.call('HDEL', B .. 'l', ARGV[5])
  return { 0, {} }
end
if mode == 'adopt' then
  local f, pull = ARGV[5], ARGV[6]
  local FRESH = idle() and 1 or 0
  local h = holder(f)
  -- A grant being replayed is the dispatcher's to settle; a hand-off in flight is not.
  if h and in_flight_of(f, h.pull) then return { 0 } end
  if ARGV[9] == '' then
    if h then return { 0 } end
  elseif not h or h.pull ~= ARGV[9] or h.token ~= ARGV[10] then
    return { 0 }
  end
  if h and h.pull == pull then return { 0 } end
  if h then drop(f, h.pull) end
  local tok = redis.call('INCR', B .. 'f')
  take(f, pull, tok, NOW + tonumber(ARGV[8]), 1, ARGV[7])
  if FRESH == 1 then revive() end
  return { 1, {}, FRESH }
end
local out = {}
if mode == 'back' then
  local id = ARGV[5]
  if not redis.call('ZSCORE', B .. 'd', id) then return { 0, {} } end
  local pull = redis.call('HGET', B .. 'w:' .. id, 'p')
  local locks = split(redis.call('HGET', B .. 'w:' .. id, 'l'), '\n')
  if ARGV[6] ~= '' then drop_grant(locks, pull, ARGV[6]) end
  if redis.call('HGET', B .. 'w:' .. id, 'z') == 'dropped' then
    -- Its pull was closed or unlocked meanwhile: the waiter is not queued again.
    local touched = {}
    finish(id, touched)
    for _, f in ipairs(locks) do touched[#touched + 1] = f end
    grant_pass(touched, out)
    return { 2, emit(out) }
  end
  requeue(id)
  for i = 8, #ARGV - 2, 3 do
    local f, p, u = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local h = holder(f)
    -- Atlantis's holder replaces this pull's (whichever of its grants held it); a lock another
    -- pull holds or has in flight is the reconciler's to repair.
    if p ~= pull and (not h or h.pull == pull) and not in_flight_other(f, pull) then
      if h then drop(f, pull) end
      local tok = redis.call('INCR', B .. 'f')
      take(f, p, tok, NOW + tonumber(ARGV[7]), 1, u)
    end
  end
  grant_pass(locks, out)
  return { 1, emit(out) }
end
if mode == 'defer' then
  local id = ARGV[5]
  local lease = redis.call('ZSCORE', B .. 'd', id)
  if not lease then return { 0, {} } end
  local w = redis.call('HMGET', B .. 'w:' .. id, 'p', 'l', 'z', 'k')
  local pull, locks = w[1], split(w[2], '\n')
  -- Another replica admitted it as a grant meanwhile (its lease ran out here): that grant is
  -- its own to send, and stays in flight.
  if w[3] == 'granted' and w[4] ~= ARGV[6] then return { 0, {} } end
  if ARGV[6] ~= '' then drop_grant(locks, pull, ARGV[6]) end
  clear_in_flight(id, locks)
  local again = NOW + tonumber(ARGV[7])
  if again < tonumber(lease) then redis.call('ZADD', B .. 'd', again, id) end
  grant_pass(locks, out)
  return { 1, emit(out) }
end
if mode == 'grant' then
  local released = drop_grant({ unpack(ARGV, 7) }, ARGV[5], ARGV[6])
  grant_pass(released, out)
  return { #released, emit(out) }
end
if mode == 'forget' then
  local rid = ARGV[5]
  redis.call('SET', B .. 'x:' .. rid, '1', 'PX', ARGV[6])
  local id = redis.call('HGET', B .. 'r', rid)
  if not id then return { 0, {} } end
  redis.call('HDEL', B .. 'r', rid)
  local touched = {}
  if redis.call('ZSCORE', B .. 't', id) then
    local locks = split(redis.call('HGET', B .. 'w:' .. id, 'l'), '\n')
    for _, f in ipairs(locks) do
      redis.call('ZREM', B .. 'q:' .. f, id)
      touched[#touched + 1] = f
    end
    redis.call('ZREM', B .. 't', id)
    delete_record(id)
    grant_pass(touched, out)
    return { 1, emit(out) }
  end
  if redis.call('ZSCORE', B .. 'd', id) then
    local w = redis.call('HMGET', B .. 'w:' .. id, 'p', 'k', 'l')
    if w[2] and w[2] ~= '' then drop_grant(split(w[3], '\n'), w[1], w[2]) end
    finish(id, touched)
    grant_pass(touched, out)
    return { 1, emit(out) }
  end
  return { 0, {} }
end
return redis.error_reply('unknown repair mode')
