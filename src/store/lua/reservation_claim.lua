-- KEYS[1] prefix; ARGV[1] reservation token, [2] caller digest. Marks the token in use.
-- A token of a closed event, or of an epoch before a close or delete, is refused.
local P = KEYS[1]
local k = P .. ':r:' .. ARGV[1]
local v = redis.call('GET', k)
if not v then return 'missing' end
if redis.call('HGET', P .. ':def', 'st') == 'closed' then return 'missing' end
local flag, digest, seq, g = string.match(v, '^(%d)|([^|]*)|(%d+)|(%d+)$')
if not flag then return 'missing' end
if g ~= (redis.call('HGET', P .. ':m', 'g') or '0') then return 'missing' end
if digest ~= ARGV[2] then return 'other' end
if flag == '1' then return 'in_use' end
redis.call('SET', k, '1|' .. digest .. '|' .. seq .. '|' .. g, 'KEEPTTL')
return 'ok'
