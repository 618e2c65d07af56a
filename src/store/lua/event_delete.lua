-- KEYS[1] prefix; ARGV[1] event id. Removes the definition and ends every place and token.
-- Returns 1 when the event was defined.
local DEF = P .. ':def'
local ev = redis.call('HGET', DEF, 'ev')
if ev ~= ARGV[1] then return 0 end
redis.call('DEL', DEF)
reset()
return 1
