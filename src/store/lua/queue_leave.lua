-- ARGV[6] seq, [7] secret. Returns {state ('left' | 'limited'), event id, waiting, expired,
-- retry ms}.
if not ev then return {'left', '', 0, 0, 0} end
sweep()
advance()
local found, seq, seen, digest, rtok = lookup(ARGV[6], ARGV[7])
if found == 'live' then
  local v = math.max(seen + POLL_IV, now)
  if v - now > POLL_TOL then
    save()
    return {'limited', ev, waiting(), expired, v - now - POLL_TOL}
  end
  drop(seq, digest)
elseif found == 'admitted' then
  drop_admitted(seq, digest, rtok)
end
save()
return {'left', ev, waiting(), expired, 0}
