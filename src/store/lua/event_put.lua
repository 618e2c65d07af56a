-- After the prelude and event_reset: ARGV[6] event id, [7] default rate, [8..] field, value
-- pairs (the fields sent; '' = null). Admission is first brought up to now at the old settings
-- (so a new rate or state applies from this instant: admissions are integrated over the
-- changing rate), then the definition is created with the defaults or the fields sent are
-- changed; a change to 'closed' ends every token. Returns the definition's fields.
local old = redis.call('HMGET', DEF, 'ev', 'st')
if old[1] and old[1] ~= ARGV[6] then return redis.error_reply('ERR event tag collision') end
if ev and ev ~= ARGV[6] then return redis.error_reply('ERR event tag collision') end
if ev then
  sweep()
  advance()
  save()
end
if not old[1] then
  redis.call('HSET', DEF, 'ev', ARGV[6], 'rps', ARGV[7], 'max', '', 'open', '', 'st', 'open',
    'ad', '0', 'f', '1', 'fc', '0', 'fu', '0')
end
local st = old[2] or 'open'
for i = 8, #ARGV, 2 do
  redis.call('HSET', DEF, ARGV[i], ARGV[i + 1])
  if ARGV[i] == 'st' then st = ARGV[i + 1] end
  if ARGV[i] == 'ad' and ARGV[i + 1] == '0' then
    redis.call('HSET', DEF, 'f', '1', 'fc', '0', 'fu', '0')
  end
end
if st == 'closed' and old[2] ~= 'closed' then reset() end
return redis.call('HMGET', DEF, 'rps', 'max', 'open', 'st', 'ad')
