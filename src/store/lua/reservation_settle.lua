-- KEYS[1] prefix; ARGV[1] token, [2] caller digest, [3] '1' consume or '0' release. Consuming
-- ends the session: its active slot and its place are freed.
local P = KEYS[1]
local k = P .. ':r:' .. ARGV[1]
local v = redis.call('GET', k)
if not v then return 0 end
local flag, digest, seq, g = string.match(v, '^(%d)|([^|]*)|(%d+)|(%d+)$')
if flag ~= '1' or digest ~= ARGV[2] then return 0 end
if ARGV[3] == '1' then
  redis.call('DEL', k)
  redis.call('ZREM', P .. ':a', seq)
  redis.call('HDEL', P .. ':p:' .. string.format('%.0f', math.floor(tonumber(seq) / 64)), seq)
else
  redis.call('SET', k, '0|' .. digest .. '|' .. seq .. '|' .. g, 'KEEPTTL')
end
return 1
