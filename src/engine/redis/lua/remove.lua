-- ARGV[4] waiter id, ARGV[5] reason ('removed' | 'deadlock' | 'dropped'), ARGV[6] deadlock record JSON or ''.
-- Replies {removed 0/1, dispatches}.
local out, touched = {}, {}
if not remove_waiter(ARGV[4], ARGV[5], out, touched) then return { 0, {} } end
if ARGV[6] ~= '' then
  redis.call('LPUSH', B .. 'k', ARGV[6])
  redis.call('LTRIM', B .. 'k', 0, 99)
end
grant_pass(touched, out)
return { 1, emit(out) }
