-- ARGV[6] event id, [7] user digest or '', [8] secret for a new place, [9] '1' when undefined
-- events are queued (QUEUE_EVENTS_OPEN), [10] prequeue rank for a new place (drawn by the
-- gateway). Returns {seq, secret, position (-1 in the prequeue), waiting, expired, new place,
-- state}.
if ev and ev ~= ARGV[6] then return redis.error_reply('ERR event tag collision') end
if not defined and ARGV[9] ~= '1' then return {0, '', 0, 0, 0, 0, 'not_found'} end
if estate == 'closed' then return {0, '', 0, 0, 0, 0, 'closed'} end
if not ev then
  redis.call('HSET', M, 'ev', ARGV[6])
  credit = 0
  at = now
  nopen = -1
end
sweep()
advance()
local digest = ARGV[7]
local seq, secret
local new_place = 0
local state = 'waiting'
if digest ~= '' then
  local s = redis.call('HGET', userkey(digest), digest)
  if s and tonumber(s) > base then
    local v = redis.call('HGET', blockkey(tonumber(s)), s)
    if v then
      local sec, seen, d, aexp, rtok = parse(v)
      if d ~= digest then
        -- a different user's place: leave it alone
      elseif seen == nil then
        if aexp > now then
          seq = tonumber(s)
          secret = sec
          state = 'admitted'
        else
          drop_admitted(tonumber(s), d, rtok)
        end
      elseif seen + ttl <= now then
        drop(tonumber(s), d)
        expired = expired + 1
      else
        seq = tonumber(s)
        secret = sec
        touch(seq, secret, seen, digest, math.max(seen, now))
      end
    end
  end
end
if not seq then
  last = last + 1
  seq = last
  secret = ARGV[8]
  new_place = 1
  touch(seq, secret, nil, digest, now)
  if nopen < 0 then redis.call('ZADD', Q, ARGV[10], fmt(seq)) end
  if digest ~= '' then
    redis.call('HSET', userkey(digest), digest, fmt(seq))
    redis.call('PEXPIRE', userkey(digest), keep)
  end
end
local pos = 0
if state ~= 'admitted' then
  pos = position(seq)
  if pos < 0 then state = 'prequeue' elseif pos == 0 then state = 'ready' end
end
save()
return {fmt(seq), secret, pos, waiting(), expired, new_place, state}
