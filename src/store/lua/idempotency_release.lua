-- KEYS[1] record; ARGV[1] owner. Only an in-flight record has an owner.
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
