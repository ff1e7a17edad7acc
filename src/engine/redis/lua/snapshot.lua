-- Replies {now, holders {field, value}..., queues {field, {id, pull, user, rank, enqueued}...}...,
-- fields whose grant is in flight}.
local holders = redis.call('HGETALL', B .. 'h')
local fields, seen = {}, {}
local waiters = {}
for _, id in ipairs(redis.call('ZRANGE', B .. 't', 0, -1)) do
  local w = redis.call('HMGET', B .. 'w:' .. id, 'p', 'u', 'r', 'l', 't')
  waiters[id] = { id, w[1], w[2], w[3], w[5] }
  for _, f in ipairs(split(w[4], '\n')) do
    if not seen[f] then
      seen[f] = true
      fields[#fields + 1] = f
    end
  end
end
local queues = {}
for _, f in ipairs(fields) do
  local q = { f }
  for _, id in ipairs(redis.call('ZRANGE', B .. 'q:' .. f, 0, -1)) do
    if waiters[id] then q[#q + 1] = waiters[id] end
  end
  queues[#queues + 1] = q
end
local inflight = {}
for i = 1, #holders, 2 do
  if in_flight_pull(holders[i]) then inflight[#inflight + 1] = holders[i] end
end
return { NOW, holders, queues, inflight }
