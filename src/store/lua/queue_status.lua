-- ARGV[6] seq, [7] secret. Returns {state, position, event id, waiting, expired, eta rate,
-- extra ms, event state}: extra is the time to the opening (prequeue), the reservation token's
-- remaining life (admitted) or the wait before the next allowed poll (limited).
if not ev then return {'expired', 0, '', 0, 0, '0', 0, estate} end
if estate == 'closed' then return {'expired', 0, ev, 0, 0, '0', 0, estate} end
sweep()
advance()
local state, pos, extra = 'expired', 0, 0
local found, seq, seen, digest = lookup(ARGV[6], ARGV[7])
if found == 'admitted' then
  state = 'admitted'
  extra = seen - now
elseif found == 'live' then
  local v = math.max(seen + POLL_IV, now)
  if v - now > POLL_TOL then
    state = 'limited'
    extra = v - now - POLL_TOL
  else
    touch(seq, ARGV[7], seen, digest, v)
    pos = position(seq)
    if pos < 0 then
      state = 'prequeue'
      pos = 0
      extra = math.max(0, opens - now)
    elseif pos == 0 then
      state = 'ready'
    else
      state = 'waiting'
    end
  end
end
save()
return {state, pos, ev, waiting(), expired, tostring(eta_rate()), extra, estate}
