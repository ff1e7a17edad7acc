-- ARGV[4] dispatch id. Deletes a dispatched record (never a still-queued waiter).
if redis.call('ZREM', B .. 'd', ARGV[4]) == 1 then
  redis.call('DEL', B .. 'w:' .. ARGV[4])
  return 1
end
return 0
