-- KEYS[1] record; ARGV[1] owner, ARGV[2] status, ARGV[3] content type, ARGV[4] body,
-- ARGV[5] TTL (ms), ARGV[6] fingerprint. 1: ours, stored; 2: gone, written anew; 0: taken.
local result = 1
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
  result = 2
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[6], 'state', 'done', 'status', ARGV[2], 'ct', ARGV[3], 'body', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return result
