-- ARGV[4] dispatch id. Deletes a dispatched record (never a still-queued waiter); its locks stop
-- being in flight, so the waiters behind them may be granted.
-- Replies {confirmed 0/1, dispatches}.
if not redis.call('ZSCORE', B .. 'd', ARGV[4]) then return { 0, {} } end
local touched, out = {}, {}
finish(ARGV[4], touched)
grant_pass(touched, out)
return { 1, emit(out) }
