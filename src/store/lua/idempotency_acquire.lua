-- KEYS[1] record; ARGV[1] fingerprint, ARGV[2] owner token, ARGV[3] in-flight TTL (ms).
-- Fingerprint first: a different request under the same key is a conflict whether or not the
-- first one has finished. Our own in-flight record (a retried call) counts as acquired.
local r = redis.call('HMGET', KEYS[1], 'fp', 'state', 'status', 'ct', 'body')
if not r[1] then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'inflight', 'owner', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'acquired'}
end
if r[1] ~= ARGV[1] then return {'conflict'} end
if r[2] ~= 'done' then
  if redis.call('HGET', KEYS[1], 'owner') == ARGV[2] then return {'acquired'} end
  return {'inflight'}
end
return {'done', r[3] or '', r[4] or '', r[5] or ''}
