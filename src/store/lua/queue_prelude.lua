-- Shared by the queue scripts (store/queue.rs): reads the event's definition and meta, sweeps
-- expired heartbeats, opens the prequeue, advances the admission cursors (the arithmetic of
-- queue::admission, queue::adaptive and queue::polling), and offers helpers.
-- KEYS[1] prefix; ARGV[1] default rate, [2] heartbeat TTL ms, [3] bucket width ms, [4] sweep
-- budget, [5] this replica's health observation ('' | 'h' | 'u').
local P = KEYS[1]
local M = P .. ':m'
local D = P .. ':d'
local Q = P .. ':q'
local A = P .. ':a'
local DEF = P .. ':def'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local W = tonumber(ARGV[3])
local BUDGET = tonumber(ARGV[4])
local obs = ARGV[5]
local keep = ttl * 2 + W * 2 + 60000
local POLL_IV = 500
local POLL_TOL = 2000

local function fmt(n) return string.format('%.0f', n) end
local function blockkey(seq) return P .. ':p:' .. fmt(math.floor(seq / 64)) end
local function userkey(d) return P .. ':u:' .. string.sub(d, 1, 4) end

-- The definition (absent = an undefined event with the defaults).
local def = redis.call('HMGET', DEF, 'rps', 'st', 'open', 'max', 'ad', 'f', 'fc', 'fu')
local defined = def[1] and true or false
if defined then rate = tonumber(def[1]) end
local estate = def[2] or 'open'
local opens = tonumber(def[3] or '') or 0
local maxa = tonumber(def[4] or '')
local factor = 1
if def[5] == '1' then
  -- AIMD (queue::adaptive::step): x0.7 at most once per 5 s while unhealthy, +0.1 per 5 s
  -- once healthy for 5 s; floor 0.1, cap 1.
  local f = tonumber(def[6] or '1') or 1
  local fc = tonumber(def[7] or '0') or 0
  local fu = tonumber(def[8] or '0') or 0
  local changed = false
  -- Growth keeps a 5-s grid while steps follow each other; a decrease is stamped now.
  local stamp = now
  if now - fc < 10000 then stamp = fc + 5000 end
  if obs == 'u' then
    fu = now
    changed = true
    if now - fc >= 5000 and f > 0.1 then
      f = math.max(0.1, f * 0.7)
      fc = now
    end
  elseif obs == 'h' and f < 1 and now - fc >= 5000 and now - fu >= 5000 then
    f = math.min(1, math.floor((f + 0.1) * 1e9 + 0.5) / 1e9)
    fc = stamp
    changed = true
  end
  if changed then redis.call('HSET', DEF, 'f', tostring(f), 'fc', fmt(fc), 'fu', fmt(fu)) end
  factor = f
end
local eff = rate * factor
if estate ~= 'open' then eff = 0 end

local meta = redis.call('HMGET', M, 'ev', 'n', 'c', 'a', 'at', 'h', 'hl', 'b', 'g', 'no', 'pc',
  'rd', 'tot', 'wb', 'w0', 'w1', 'w2', 'w3', 'w4', 'w5', 'fa')
local ev = meta[1]
local last = tonumber(meta[2] or '0')
local cur = tonumber(meta[3] or '0')
local credit = tonumber(meta[4] or '0')
local at = tonumber(meta[5] or fmt(now))
local hb = tonumber(meta[6] or '-1')
local hl = tonumber(meta[7] or '-1')
local base = tonumber(meta[8] or '0')
local epoch = tonumber(meta[9] or '0')
-- The join sequence at opening; -1 = not opened yet. An event from before prequeues existed
-- has no field: it opened long ago.
local nopen = tonumber(meta[10] or '0')
local pc = tonumber(meta[11] or '-1')
local ready = tonumber(meta[12] or '0')
local total = tonumber(meta[13] or '0')
local wb = tonumber(meta[14] or '0')
local win = {}
for i = 0, 5 do win[i] = tonumber(meta[15 + i] or '0') end
local fa = tonumber(meta[21] or '0')
local expired = 0

-- A place: 'secret|seen|digest' (seen: the virtual last poll, queue::polling), or once entered
-- 'secret|!expiry|digest|reservation token'.
local function parse(v)
  local secret = string.sub(v, 1, 22)
  local rest = string.sub(v, 24)
  local bar = string.find(rest, '|', 1, true)
  local x = string.sub(rest, 1, bar - 1)
  local tail = string.sub(rest, bar + 1)
  local bar2 = string.find(tail, '|', 1, true)
  local digest, rtok = tail, nil
  if bar2 then
    digest = string.sub(tail, 1, bar2 - 1)
    rtok = string.sub(tail, bar2 + 1)
  end
  if string.sub(x, 1, 1) == '!' then return secret, nil, digest, tonumber(string.sub(x, 2)), rtok end
  return secret, tonumber(x), digest
end

local function unuser(seq, digest)
  if digest ~= '' then
    local uk = userkey(digest)
    if redis.call('HGET', uk, digest) == fmt(seq) then redis.call('HDEL', uk, digest) end
  end
end

-- The prequeue rank of a live, not yet entered place (nil for a FIFO place).
local function rank_of(seq)
  if seq <= base then return nil end
  if nopen >= 0 and seq > nopen then return nil end
  local r = redis.call('ZSCORE', Q, fmt(seq))
  if r then return tonumber(r) end
  return nil
end

-- Removes a waiting or ready place: departures after the cursor are counted, a ready place
-- frees its active slot.
local function drop(seq, digest)
  redis.call('HDEL', blockkey(seq), fmt(seq))
  if seq > base then
    local r = rank_of(seq)
    if r then
      redis.call('ZREM', Q, fmt(seq))
      if nopen >= 0 and r <= pc then ready = math.max(0, ready - 1) end
    elseif seq > cur then
      redis.call('ZADD', D, seq, fmt(seq))
    else
      ready = math.max(0, ready - 1)
    end
  end
  unuser(seq, digest)
end

-- An entered place whose session ended.
local function drop_admitted(seq, digest, rtok)
  redis.call('HDEL', blockkey(seq), fmt(seq))
  redis.call('ZREM', A, fmt(seq))
  if rtok then redis.call('DEL', P .. ':r:' .. rtok) end
  unuser(seq, digest)
end

-- Writes a place seen (virtually) at `seen` and files it in that heartbeat bucket.
local function touch(seq, secret, seen_old, digest, seen)
  local bk = blockkey(seq)
  redis.call('HSET', bk, fmt(seq), secret .. '|' .. fmt(seen) .. '|' .. digest)
  redis.call('PEXPIRE', bk, keep)
  if digest ~= '' then redis.call('PEXPIRE', userkey(digest), keep) end
  local b = math.floor(seen / W)
  if seen_old == nil or math.floor(seen_old / W) ~= b then
    local hk = P .. ':h:' .. fmt(b)
    redis.call('RPUSH', hk, fmt(seq))
    redis.call('PEXPIRE', hk, keep)
    if b > hl then hl = b end
    if hb < 0 then hb = b end
  end
end

local function sweep()
  if hb < 0 then return end
  local limit = math.floor((now - ttl) / W) - 1
  local budget = BUDGET
  while hb <= limit and budget > 0 do
    if hb > hl then hb = limit + 1 break end
    local seqs = redis.call('LPOP', P .. ':h:' .. fmt(hb), budget)
    if not seqs then
      hb = hb + 1
      budget = budget - 1
    else
      budget = budget - #seqs
      for _, s in ipairs(seqs) do
        local seq = tonumber(s)
        local v = redis.call('HGET', blockkey(seq), s)
        if v then
          local _, seen, digest, aexp, rtok = parse(v)
          if seen == nil then
            if aexp <= now then drop_admitted(seq, digest, rtok) end
          elseif seq <= base then
            redis.call('HDEL', blockkey(seq), s)
          elseif seen + ttl <= now then
            drop(seq, digest)
            expired = expired + 1
          end
        end
      end
    end
  end
end

local function departed(lo, hi)
  return redis.call('ZCOUNT', D, '(' .. fmt(lo), hi)
end

local function pq_waiting()
  if nopen < 0 then return 0 end
  return redis.call('ZCOUNT', Q, '(' .. fmt(pc), '+inf')
end

local function fifo_waiting()
  if nopen < 0 or last <= cur then return 0 end
  return (last - cur) - departed(cur, fmt(last))
end

local function waiting()
  return pq_waiting() + fifo_waiting()
end

local function prequeued()
  if nopen >= 0 then return 0 end
  return redis.call('ZCARD', Q)
end

local function admitted_now()
  redis.call('ZREMRANGEBYSCORE', A, '-inf', fmt(now))
  return redis.call('ZCARD', A)
end

-- The 60-s window of admissions: six 10-s buckets.
local function roll()
  local bi = math.floor(now / 10000)
  if bi > wb then
    for i = wb + 1, math.min(bi, wb + 6) do win[i % 6] = 0 end
    wb = bi
  end
  return bi
end

local function measured()
  roll()
  if fa == 0 then return 0 end
  local sum = 0
  for i = 0, 5 do sum = sum + win[i] end
  local span = math.min(60, math.max(1, (now - fa) / 1000))
  return sum / span
end

local function advance()
  if nopen < 0 then
    if now < opens or estate == 'closed' then
      -- The prequeue: nobody is admitted before the opening.
      credit = 0
      at = now
      return
    end
    -- Opening: everyone who joined so far is in the prequeue (ranked), FIFO from here on.
    nopen = last
    if cur < last then cur = last end
    credit = 0
    at = now
  end
  credit = credit + eff * math.max(0, now - at) / 1000
  if now > at then at = now end
  local k = math.floor(credit)
  if k >= 1 and maxa then
    local slots = maxa - ready - admitted_now()
    if slots < k then k = math.max(0, slots) end
  end
  local got = 0
  if k >= 1 then
    local pw = pq_waiting()
    if pw > 0 then
      local take = math.min(k, pw)
      local r0 = redis.call('ZCOUNT', Q, '-inf', fmt(pc))
      local m = redis.call('ZRANGE', Q, r0 + take - 1, r0 + take - 1, 'WITHSCORES')
      if m[2] then
        pc = tonumber(m[2])
        got = take
      end
    end
    local k2 = k - got
    if k2 >= 1 and cur < last then
      local s = cur + k2
      for i = 1, 32 do
        if s >= last then break end
        local s2 = cur + k2 + departed(cur, fmt(s))
        if s2 == s then break end
        s = s2
      end
      if s > last then s = last end
      got = got + (s - cur) - departed(cur, fmt(s))
      cur = s
      local n = redis.call('ZCOUNT', D, '-inf', fmt(cur))
      if n > 0 then redis.call('ZREMRANGEBYRANK', D, 0, math.min(n, BUDGET) - 1) end
    end
  end
  if got > 0 then
    credit = credit - got
    ready = ready + got
    total = total + got
    if fa == 0 then fa = now end
    local bi = roll()
    win[bi % 6] = win[bi % 6] + got
  end
  credit = math.min(credit, eff)
end

-- The rate an eta is computed with: the configured (effective) one until ten were admitted,
-- then the one measured over the last 60 s.
local function eta_rate()
  if estate ~= 'open' then return 0 end
  if total >= 10 then return measured() end
  return eff
end

local function position(seq)
  local r = rank_of(seq)
  if r then
    if nopen < 0 then return -1 end
    if r <= pc then return 0 end
    return redis.call('ZCOUNT', Q, '(' .. fmt(pc), '(' .. fmt(r)) + 1
  end
  if seq <= cur then return 0 end
  return pq_waiting() + seq - cur - departed(cur, '(' .. fmt(seq))
end

-- Writes back only the meta fields this call changed (most calls change two or three).
local FIELDS = {'n', 'c', 'a', 'at', 'h', 'hl', 'b', 'g', 'no', 'pc', 'rd', 'tot', 'wb',
  'w0', 'w1', 'w2', 'w3', 'w4', 'w5', 'fa'}
local function save()
  roll()
  local vals = {fmt(last), fmt(cur), tostring(credit), fmt(at), fmt(hb), fmt(hl), fmt(base),
    fmt(epoch), fmt(nopen), fmt(pc), fmt(ready), fmt(total), fmt(wb), fmt(win[0]), fmt(win[1]),
    fmt(win[2]), fmt(win[3]), fmt(win[4]), fmt(win[5]), fmt(fa)}
  local args = {}
  for i = 1, #FIELDS do
    if meta[i + 1] ~= vals[i] then
      args[#args + 1] = FIELDS[i]
      args[#args + 1] = vals[i]
    end
  end
  if #args > 0 then redis.call('HSET', M, unpack(args)) end
  redis.call('PEXPIRE', M, keep)
  redis.call('PEXPIRE', D, keep)
  redis.call('PEXPIRE', Q, keep)
  redis.call('PEXPIRE', A, keep)
end

-- Looks up the place of (seq, secret): 'missing', 'expired' (dropped now), 'admitted' (entered,
-- session alive), or 'live'.
local function lookup(s, secret)
  local seq = tonumber(s)
  if seq <= base then return 'missing' end
  local v = redis.call('HGET', blockkey(seq), s)
  if not v then return 'missing' end
  local sec, seen, digest, aexp, rtok = parse(v)
  if sec ~= secret then return 'missing' end
  if seen == nil then
    if aexp <= now then
      drop_admitted(seq, digest, rtok)
      return 'missing'
    end
    return 'admitted', seq, aexp, digest, rtok
  end
  if seen + ttl <= now then
    drop(seq, digest)
    expired = expired + 1
    return 'expired'
  end
  return 'live', seq, seen, digest
end
