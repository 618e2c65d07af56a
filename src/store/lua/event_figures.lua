-- After the prelude: ARGV[6] event id. Returns {defined (0|1), waiting, prequeue, active,
-- admitted total, measured rate, factor, event id matches (0|1)}.
if not defined then return {0} end
if redis.call('HGET', DEF, 'ev') ~= ARGV[6] then return {0} end
if ev and estate ~= 'closed' then
  sweep()
  advance()
  save()
end
local active = 0
if ev then active = ready + admitted_now() end
return {1, waiting(), prequeued(), active, total, tostring(measured()), tostring(factor)}
