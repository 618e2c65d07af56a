-- KEYS[1] prefix; ARGV[1] event id, [2] default rate, [3..] field, value pairs (the fields sent;
-- '' = null). Creates the definition with the defaults or changes the fields sent; a change to
-- 'closed' ends every token. Returns the definition as field, value pairs.
local DEF = P .. ':def'
local old = redis.call('HMGET', DEF, 'ev', 'st')
if old[1] and old[1] ~= ARGV[1] then return redis.error_reply('ERR event tag collision') end
local ev = redis.call('HGET', M, 'ev')
if ev and ev ~= ARGV[1] then return redis.error_reply('ERR event tag collision') end
if not old[1] then
  redis.call('HSET', DEF, 'ev', ARGV[1], 'rps', ARGV[2], 'max', '', 'open', '', 'st', 'open',
    'ad', '0', 'f', '1', 'fc', '0', 'fu', '0')
end
local st = old[2] or 'open'
for i = 3, #ARGV, 2 do
  redis.call('HSET', DEF, ARGV[i], ARGV[i + 1])
  if ARGV[i] == 'st' then st = ARGV[i + 1] end
  if ARGV[i] == 'ad' and ARGV[i + 1] == '0' then
    redis.call('HSET', DEF, 'f', '1', 'fc', '0', 'fu', '0')
  end
end
if st == 'closed' and old[2] ~= 'closed' then reset() end
return redis.call('HMGET', DEF, 'rps', 'max', 'open', 'st', 'ad')
