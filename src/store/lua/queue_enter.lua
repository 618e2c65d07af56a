-- ARGV[6] seq, [7] secret, [8] caller digest or '', [9] reservation token, [10] its TTL (ms).
-- Returns {state, position, event id, waiting, expired}.
if not ev then return {'expired', 0, '', 0, 0} end
if estate == 'closed' then return {'expired', 0, ev, 0, 0} end
sweep()
advance()
local state, pos = 'expired', 0
local found, seq, seen, digest = lookup(ARGV[6], ARGV[7])
if found == 'admitted' then
  state = 'admitted'
elseif found == 'live' then
  pos = position(seq)
  if pos ~= 0 then
    touch(seq, ARGV[7], seen, digest, math.max(seen, now))
    state = 'waiting'
    if pos < 0 then pos = 0 end
  elseif digest ~= '' and ARGV[8] ~= '' and digest ~= ARGV[8] then
    state = 'other'
  else
    -- The ready place becomes an admitted session: same slot, now held by the token.
    local r = rank_of(seq)
    if r then redis.call('ZREM', Q, fmt(seq)) end
    ready = math.max(0, ready - 1)
    local exp = now + tonumber(ARGV[10])
    local bk = blockkey(seq)
    redis.call('HSET', bk, fmt(seq), ARGV[7] .. '|!' .. fmt(exp) .. '|' .. digest .. '|' .. ARGV[9])
    redis.call('PEXPIRE', bk, keep)
    -- Ended sessions leave the set here too (one trim per grant keeps it at the live ones).
    redis.call('ZREMRANGEBYSCORE', A, '-inf', fmt(now))
    redis.call('ZADD', A, exp, fmt(seq))
    redis.call('SET', P .. ':r:' .. ARGV[9], '0|' .. digest .. '|' .. fmt(seq) .. '|' .. fmt(epoch),
      'PX', ARGV[10])
    state = 'granted'
  end
end
save()
return {state, pos, ev, waiting(), expired}
