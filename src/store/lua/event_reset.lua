-- Shared by event_put and event_delete: ends every place and token of the event at once, in
-- O(1): the join sequence so far becomes the base (older places are unknown from now on), the
-- epoch moves (older reservation tokens are refused), and the per-epoch sets are unlinked.
-- The places' own keys expire with their TTL.
local P = KEYS[1]
local M = P .. ':m'
local function reset()
  if redis.call('EXISTS', M) == 0 then return end
  local n = redis.call('HGET', M, 'n') or '0'
  local g = tonumber(redis.call('HGET', M, 'g') or '0') + 1
  redis.call('HSET', M, 'b', n, 'c', n, 'g', string.format('%.0f', g), 'no', '-1', 'pc', '-1',
    'rd', '0', 'tot', '0', 'a', '0', 'fa', '0', 'w0', '0', 'w1', '0', 'w2', '0', 'w3', '0',
    'w4', '0', 'w5', '0')
  redis.call('UNLINK', P .. ':d', P .. ':q', P .. ':a')
end
