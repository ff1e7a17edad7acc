-- One-time move of a repository's keys from the layout whose hash tag was the raw repository
-- name ("<prefix>{owner/repo}:") to the digest tag. Runs in the old keys' slot; standalone script
-- (no prelude). ARGV[1] the old key base, ARGV[2] mode:
--   'export': replies {suffix, pttl, DUMP payload, ...} for every key of the repository, found by
--             following the records (the per-lock and per-pull keys are named in them). Forgotten
--             request markers (x:<rid>, one hour of life) are not carried over.
--   'drop':   ARGV[3..] suffixes to delete. Replies the number deleted.
local B, mode = ARGV[1], ARGV[2]
if mode == 'drop' then
  local n = 0
  for i = 3, #ARGV do n = n + redis.call('DEL', B .. ARGV[i]) end
  return n
end
local suffixes, seen = {}, {}
local function add(s)
  if not seen[s] and redis.call('EXISTS', B .. s) == 1 then
    seen[s] = true
    suffixes[#suffixes + 1] = s
  end
end
local function lines(s)
  local out = {}
  if not s or s == '' then return out end
  for line in string.gmatch(s, '[^\n]+') do out[#out + 1] = line end
  return out
end
for _, s in ipairs({ 'h', 'e', 't', 'd', 'r', 'f', 's', 'k', 'u' }) do add(s) end
local h = redis.call('HGETALL', B .. 'h')
for i = 1, #h, 2 do
  add('q:' .. h[i])
  add('g:' .. h[i])
  add('p:' .. string.match(h[i + 1], '^[^\t]*'))
end
local ids = redis.call('ZRANGE', B .. 't', 0, -1)
for _, id in ipairs(redis.call('ZRANGE', B .. 'd', 0, -1)) do ids[#ids + 1] = id end
for _, id in ipairs(ids) do
  add('w:' .. id)
  for _, f in ipairs(lines(redis.call('HGET', B .. 'w:' .. id, 'l'))) do
    add('q:' .. f)
    add('g:' .. f)
  end
end
local out = {}
for _, s in ipairs(suffixes) do
  out[#out + 1] = s
  out[#out + 1] = redis.call('PTTL', B .. s)
  out[#out + 1] = redis.call('DUMP', B .. s)
end
return out
