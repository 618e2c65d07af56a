//! Waiting-room state in the store (SPEC §5): join, status, enter and leave as one Lua script
//! each (one round trip, on the Redis server clock), the reservation-token claim and settle, and
//! their in-memory twins with the same semantics.
//!
//! Layout of one event in Redis, every key under the hash tag `{q:<tag>}` (`tag` = 8 bytes of
//! SHA-256 of the event id, carried in the waiting token, so `status?token=` finds the event):
//! - `:m` hash: event id, `n` last join sequence, `c` admitted-up-to sequence, `a`/`at` the
//!   admission allowance and when it was computed, `h`/`hl` oldest and newest heartbeat bucket.
//! - `:p:<seq/64>` hash, seq → `secret|last_seen_ms|user_digest`: the places, 64 per key so each
//!   stays a compact listpack (~45 bytes per person instead of a sorted-set node).
//! - `:d` sorted set of sequences that left or expired *after* the cursor: the position of `seq`
//!   is `seq - c - |departed in (c, seq)|`, an O(log N) `ZCOUNT`; entries the cursor has passed
//!   are trimmed, a bounded number per call.
//! - `:h:<bucket>` lists of sequences seen in that heartbeat bucket (a bucket is an eighth of the
//!   heartbeat TTL). Buckets older than the TTL are swept, at most `SWEEP_BUDGET` entries per
//!   call: a place whose last poll is older than the TTL is dropped and counted as departed.
//! - `:u:<4 hex>` hashes, user digest → seq, for known users (join again → same place).
//! - `:r:<reservation token>` string `0|digest` (`1|…` while a create is in flight), with its TTL.
//!
//! Every key gets a TTL refreshed when touched, so an abandoned event cleans itself up. No KEYS or
//! SCAN anywhere; every call does O(log N) work plus bounded sweeping and trimming.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use redis::Script;

use super::{Store, StoreError};
use crate::config::QueueConfig;
use crate::queue::admission::{Admission, heartbeat_bucket_ms, is_expired};
use crate::queue::token::{decode_secret, encode_secret};
use crate::queue::{EventTag, ReservationToken, WaitingToken};

/// Expired places examined (and departures trimmed) per call, at most: keeps every call bounded.
pub const SWEEP_BUDGET: u64 = 64;

/// The waiting-room settings the store needs, from `QueueConfig`.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub rate: f64,
    pub heartbeat_ttl_ms: u64,
    pub reservation_ttl_ms: u64,
}

impl From<&QueueConfig> for QueueSettings {
    fn from(c: &QueueConfig) -> Self {
        QueueSettings {
            rate: c.admission_rps,
            heartbeat_ttl_ms: (c.heartbeat_ttl.as_millis() as u64).max(1),
            reservation_ttl_ms: (c.reservation_token_ttl.as_millis() as u64).max(1),
        }
    }
}

/// Where a token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// 1-based position among those still waiting.
    Waiting(u64),
    Ready,
    /// Unknown, tampered, left, entered, or not polled within the heartbeat TTL.
    Expired,
}

/// What every queue call also reports, for metrics.
#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    /// The event id (empty when the event is unknown).
    pub event_id: String,
    /// People waiting (not yet admitted) in the event after this call.
    pub waiting: u64,
    /// Places this call found expired (heartbeat) and dropped.
    pub expired: u64,
}

#[derive(Debug, Clone)]
pub struct Joined {
    pub token: WaitingToken,
    /// Position at the moment of joining (0 if a returning user is already ready).
    pub position: u64,
    /// `false` when a known user joined again and got their place back.
    pub new_place: bool,
    pub stats: QueueStats,
}

#[derive(Debug, Clone)]
pub enum Entry {
    Granted(ReservationToken),
    Waiting(u64),
    Expired,
    /// The token belongs to another verified user.
    OtherUser,
}

/// Outcome of claiming a reservation token for a create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Marked in use: settle it when the create is done.
    Claimed,
    /// Unknown, expired or already used.
    Missing,
    /// Bound to another user.
    OtherUser,
    /// Another create with this token is in flight.
    InUse,
}

impl Store {
    /// Joins `event_id` as `user` (a digest from `Identity::digest`, `None` = anonymous).
    pub async fn queue_join(
        &self,
        s: &QueueSettings,
        event_id: &str,
        user: Option<&str>,
    ) -> Result<Joined, StoreError> {
        let tag = EventTag::of(event_id);
        let fresh = WaitingToken::fresh_secret();
        match self {
            Store::Memory(m) => Ok(m.queue.join(s, tag, event_id, user, fresh, now_ms())),
            Store::Redis(r) => {
                let (seq, secret, position, waiting, expired, new_place): (
                    u64,
                    String,
                    u64,
                    u64,
                    u64,
                    u8,
                ) = r
                    .eval(
                        common(&JOIN, &tag, s)
                            .arg(event_id)
                            .arg(user.unwrap_or(""))
                            .arg(encode_secret(&fresh)),
                    )
                    .await?;
                let secret = decode_secret(&secret)
                    .ok_or_else(|| StoreError::Protocol("bad waiting-token secret".into()))?;
                Ok(Joined {
                    token: WaitingToken::new(tag, seq, secret),
                    position,
                    new_place: new_place == 1,
                    stats: QueueStats {
                        event_id: event_id.to_owned(),
                        waiting,
                        expired,
                    },
                })
            }
        }
    }

    /// Where `token` stands; a poll is the heartbeat.
    pub async fn queue_status(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
    ) -> Result<(Place, QueueStats), StoreError> {
        match self {
            Store::Memory(m) => Ok(m.queue.status(s, token, now_ms())),
            Store::Redis(r) => {
                let (state, position, event_id, waiting, expired): (String, u64, String, u64, u64) =
                    r.eval(
                        common(&STATUS, &token.tag, s)
                            .arg(token.seq)
                            .arg(token.secret()),
                    )
                    .await?;
                Ok((
                    place(&state, position)?,
                    QueueStats {
                        event_id,
                        waiting,
                        expired,
                    },
                ))
            }
        }
    }

    /// Trades a ready place for a reservation token bound to the event and the joiner. `caller`
    /// is the verified caller's digest, if any: a verified user's place cannot be entered by
    /// another verified user.
    pub async fn queue_enter(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
        caller: Option<&str>,
    ) -> Result<(Entry, QueueStats), StoreError> {
        let rtok = ReservationToken::generate();
        match self {
            Store::Memory(m) => Ok(m.queue.enter(s, token, caller, rtok, now_ms())),
            Store::Redis(r) => {
                let (state, position, event_id, waiting, expired): (String, u64, String, u64, u64) =
                    r.eval(
                        common(&ENTER, &token.tag, s)
                            .arg(token.seq)
                            .arg(token.secret())
                            .arg(caller.unwrap_or(""))
                            .arg(rtok.as_str())
                            .arg(s.reservation_ttl_ms),
                    )
                    .await?;
                let entry = match state.as_str() {
                    "granted" => Entry::Granted(rtok),
                    "waiting" => Entry::Waiting(position),
                    "other" => Entry::OtherUser,
                    _ => Entry::Expired,
                };
                Ok((
                    entry,
                    QueueStats {
                        event_id,
                        waiting,
                        expired,
                    },
                ))
            }
        }
    }

    /// Frees the place at once (unknown tokens are fine: leaving twice is leaving).
    pub async fn queue_leave(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
    ) -> Result<QueueStats, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.queue.leave(s, token, now_ms())),
            Store::Redis(r) => {
                let (event_id, waiting, expired): (String, u64, u64) = r
                    .eval(
                        common(&LEAVE, &token.tag, s)
                            .arg(token.seq)
                            .arg(token.secret()),
                    )
                    .await?;
                Ok(QueueStats {
                    event_id,
                    waiting,
                    expired,
                })
            }
        }
    }

    /// Checks a reservation token for `event_id` and the caller (a digest) and marks it in use,
    /// so two concurrent creates cannot both pass. Settle it with [`Store::reservation_settle`].
    pub async fn reservation_claim(
        &self,
        event_id: &str,
        token: &ReservationToken,
        caller: &str,
    ) -> Result<Claim, StoreError> {
        let tag = EventTag::of(event_id);
        match self {
            Store::Memory(m) => Ok(m.queue.claim(tag, token, caller, now_ms())),
            Store::Redis(r) => {
                let out: String = r
                    .eval(CLAIM.key(tag.key_prefix()).arg(token.as_str()).arg(caller))
                    .await?;
                Ok(match out.as_str() {
                    "ok" => Claim::Claimed,
                    "other" => Claim::OtherUser,
                    "in_use" => Claim::InUse,
                    _ => Claim::Missing,
                })
            }
        }
    }

    /// After the create: `used` (upstream said 2xx) consumes the token, otherwise it is released
    /// and stays valid until its TTL.
    pub async fn reservation_settle(
        &self,
        event_id: &str,
        token: &ReservationToken,
        caller: &str,
        used: bool,
    ) -> Result<(), StoreError> {
        let tag = EventTag::of(event_id);
        match self {
            Store::Memory(m) => {
                m.queue.settle(tag, token, caller, used);
                Ok(())
            }
            Store::Redis(r) => {
                let _: i64 = r
                    .eval(
                        SETTLE
                            .key(tag.key_prefix())
                            .arg(token.as_str())
                            .arg(caller)
                            .arg(if used { "1" } else { "0" }),
                    )
                    .await?;
                Ok(())
            }
        }
    }
}

fn place(state: &str, position: u64) -> Result<Place, StoreError> {
    match state {
        "waiting" => Ok(Place::Waiting(position)),
        "ready" => Ok(Place::Ready),
        "expired" => Ok(Place::Expired),
        other => Err(StoreError::Protocol(format!("queue state {other:?}"))),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// KEYS[1] = the event's prefix; ARGV[1..4] = rate, heartbeat TTL, bucket width, sweep budget.
fn common<'a>(
    script: &'a Script,
    tag: &EventTag,
    s: &QueueSettings,
) -> redis::ScriptInvocation<'a> {
    let mut inv = script.key(tag.key_prefix());
    inv.arg(s.rate)
        .arg(s.heartbeat_ttl_ms)
        .arg(heartbeat_bucket_ms(s.heartbeat_ttl_ms))
        .arg(SWEEP_BUDGET);
    inv
}

/// Shared by the four queue scripts: reads the event's meta, sweeps expired heartbeats, advances
/// the admission cursor (the same arithmetic as `queue::admission`), and offers helpers.
const PRELUDE: &str = r#"
local P = KEYS[1]
local M = P .. ':m'
local D = P .. ':d'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local W = tonumber(ARGV[3])
local BUDGET = tonumber(ARGV[4])
local keep = ttl * 2 + W * 2 + 60000

local function fmt(n) return string.format('%.0f', n) end
local function blockkey(seq) return P .. ':p:' .. fmt(math.floor(seq / 64)) end
local function userkey(d) return P .. ':u:' .. string.sub(d, 1, 4) end

local meta = redis.call('HMGET', M, 'ev', 'n', 'c', 'a', 'at', 'h', 'hl')
local ev = meta[1]
local last = tonumber(meta[2] or '0')
local cur = tonumber(meta[3] or '0')
local credit = tonumber(meta[4] or '0')
local at = tonumber(meta[5] or fmt(now))
local hb = tonumber(meta[6] or '-1')
local hl = tonumber(meta[7] or '-1')
local expired = 0

local function parse(v)
  local secret = string.sub(v, 1, 22)
  local rest = string.sub(v, 24)
  local bar = string.find(rest, '|', 1, true)
  return secret, tonumber(string.sub(rest, 1, bar - 1)), string.sub(rest, bar + 1)
end

local function drop(seq, digest)
  redis.call('HDEL', blockkey(seq), fmt(seq))
  if seq > cur then redis.call('ZADD', D, seq, fmt(seq)) end
  if digest ~= '' then
    local uk = userkey(digest)
    if redis.call('HGET', uk, digest) == fmt(seq) then redis.call('HDEL', uk, digest) end
  end
end

local function touch(seq, secret, seen_old, digest)
  local bk = blockkey(seq)
  redis.call('HSET', bk, fmt(seq), secret .. '|' .. fmt(now) .. '|' .. digest)
  redis.call('PEXPIRE', bk, keep)
  if digest ~= '' then redis.call('PEXPIRE', userkey(digest), keep) end
  local b = math.floor(now / W)
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
          local _, seen, digest = parse(v)
          if seen + ttl <= now then
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

local function advance()
  credit = credit + rate * math.max(0, now - at) / 1000
  if now > at then at = now end
  if credit >= 1 and cur < last then
    local k = math.floor(credit)
    local s = cur + k
    for i = 1, 32 do
      if s >= last then break end
      local s2 = cur + k + departed(cur, fmt(s))
      if s2 == s then break end
      s = s2
    end
    if s > last then s = last end
    credit = credit - ((s - cur) - departed(cur, fmt(s)))
    cur = s
    local n = redis.call('ZCOUNT', D, '-inf', fmt(cur))
    if n > 0 then redis.call('ZREMRANGEBYRANK', D, 0, math.min(n, BUDGET) - 1) end
  end
  credit = math.min(credit, rate)
end

local function position(seq)
  if seq <= cur then return 0 end
  return seq - cur - departed(cur, '(' .. fmt(seq))
end

local function waiting()
  if last <= cur then return 0 end
  return (last - cur) - departed(cur, fmt(last))
end

local function save()
  redis.call('HSET', M, 'n', fmt(last), 'c', fmt(cur), 'a', tostring(credit), 'at', fmt(at),
    'h', fmt(hb), 'hl', fmt(hl))
  redis.call('PEXPIRE', M, keep)
  redis.call('PEXPIRE', D, keep)
end

-- Looks up the place of (seq, secret): 'missing', 'expired' (dropped now), or 'live'.
local function lookup(s, secret)
  local seq = tonumber(s)
  local v = redis.call('HGET', blockkey(seq), s)
  if not v then return 'missing' end
  local sec, seen, digest = parse(v)
  if sec ~= secret then return 'missing' end
  if seen + ttl <= now then
    drop(seq, digest)
    expired = expired + 1
    return 'expired'
  end
  return 'live', seq, seen, digest
end
"#;

/// ARGV[5] event id, [6] user digest or '', [7] secret for a new place.
const JOIN_BODY: &str = r#"
if ev and ev ~= ARGV[5] then return redis.error_reply('ERR event tag collision') end
if not ev then
  redis.call('HSET', M, 'ev', ARGV[5])
  credit = 0
  at = now
end
sweep()
advance()
local digest = ARGV[6]
local seq, secret
local new_place = 0
if digest ~= '' then
  local s = redis.call('HGET', userkey(digest), digest)
  if s then
    local v = redis.call('HGET', blockkey(tonumber(s)), s)
    if v then
      local sec, seen, d = parse(v)
      if d ~= digest then
        -- a different user's place: leave it alone
      elseif seen + ttl <= now then
        drop(tonumber(s), d)
        expired = expired + 1
      else
        seq = tonumber(s)
        secret = sec
        touch(seq, secret, seen, digest)
      end
    end
  end
end
if not seq then
  last = last + 1
  seq = last
  secret = ARGV[7]
  new_place = 1
  touch(seq, secret, nil, digest)
  if digest ~= '' then
    redis.call('HSET', userkey(digest), digest, fmt(seq))
    redis.call('PEXPIRE', userkey(digest), keep)
  end
end
save()
return {fmt(seq), secret, position(seq), waiting(), expired, new_place}
"#;

/// ARGV[5] seq, [6] secret.
const STATUS_BODY: &str = r#"
if not ev then return {'expired', 0, '', 0, 0} end
sweep()
advance()
local state, pos = 'expired', 0
local found, seq, seen, digest = lookup(ARGV[5], ARGV[6])
if found == 'live' then
  touch(seq, ARGV[6], seen, digest)
  if seq <= cur then state = 'ready' else state = 'waiting' pos = position(seq) end
end
save()
return {state, pos, ev, waiting(), expired}
"#;

/// ARGV[5] seq, [6] secret, [7] caller digest or '', [8] reservation token, [9] its TTL (ms).
const ENTER_BODY: &str = r#"
if not ev then return {'expired', 0, '', 0, 0} end
sweep()
advance()
local state, pos = 'expired', 0
local found, seq, seen, digest = lookup(ARGV[5], ARGV[6])
if found == 'live' then
  if seq > cur then
    touch(seq, ARGV[6], seen, digest)
    state = 'waiting'
    pos = position(seq)
  elseif digest ~= '' and ARGV[7] ~= '' and digest ~= ARGV[7] then
    state = 'other'
  else
    drop(seq, digest)
    redis.call('SET', P .. ':r:' .. ARGV[8], '0|' .. digest, 'PX', ARGV[9])
    state = 'granted'
  end
end
save()
return {state, pos, ev, waiting(), expired}
"#;

/// ARGV[5] seq, [6] secret.
const LEAVE_BODY: &str = r#"
if not ev then return {'', 0, 0} end
sweep()
advance()
local found, seq, seen, digest = lookup(ARGV[5], ARGV[6])
if found == 'live' then drop(seq, digest) end
save()
return {ev, waiting(), expired}
"#;

static JOIN: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{PRELUDE}{JOIN_BODY}")));
static STATUS: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{PRELUDE}{STATUS_BODY}")));
static ENTER: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{PRELUDE}{ENTER_BODY}")));
static LEAVE: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{PRELUDE}{LEAVE_BODY}")));

/// KEYS[1] prefix; ARGV[1] reservation token, [2] caller digest. Marks the token in use.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local k = KEYS[1] .. ':r:' .. ARGV[1]
local v = redis.call('GET', k)
if not v then return 'missing' end
if string.sub(v, 3) ~= ARGV[2] then return 'other' end
if string.sub(v, 1, 1) == '1' then return 'in_use' end
redis.call('SET', k, '1|' .. ARGV[2], 'KEEPTTL')
return 'ok'
"#,
    )
});

/// KEYS[1] prefix; ARGV[1] token, [2] caller digest, [3] '1' consume or '0' release.
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local k = KEYS[1] .. ':r:' .. ARGV[1]
if redis.call('GET', k) ~= '1|' .. ARGV[2] then return 0 end
if ARGV[3] == '1' then
  redis.call('DEL', k)
else
  redis.call('SET', k, '0|' .. ARGV[2], 'KEEPTTL')
end
return 1
"#,
    )
});

// ---------------------------------------------------------------------------------------------
// The in-memory twin: one `EventQueue` per event behind its own lock (events are found through a
// sharded map, so there is no global lock on the request path).

const SHARDS: usize = 16;

/// Per-event queues of the memory store.
pub struct MemoryQueues {
    shards: [RwLock<HashMap<EventTag, Arc<Mutex<EventQueue>>>>; SHARDS],
}

impl Default for MemoryQueues {
    fn default() -> Self {
        MemoryQueues {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
        }
    }
}

struct Seat {
    secret: [u8; 16],
    seen_ms: u64,
    user: Option<String>,
}

struct Reservation {
    user: String,
    expires_ms: u64,
    in_use: bool,
}

struct EventQueue {
    event_id: String,
    /// Last join sequence handed out.
    last: u64,
    /// Admitted up to this sequence.
    cursor: u64,
    admission: Admission,
    seats: BTreeMap<u64, Seat>,
    by_seen: BTreeSet<(u64, u64)>,
    /// Sequences after the cursor that left or expired (the same bookkeeping as Redis's `:d`).
    departed: BTreeSet<u64>,
    users: HashMap<String, u64>,
    reservations: HashMap<String, Reservation>,
}

impl EventQueue {
    fn new(event_id: &str, now: u64) -> Self {
        EventQueue {
            event_id: event_id.to_owned(),
            last: 0,
            cursor: 0,
            admission: Admission::new(now),
            seats: BTreeMap::new(),
            by_seen: BTreeSet::new(),
            departed: BTreeSet::new(),
            users: HashMap::new(),
            reservations: HashMap::new(),
        }
    }

    fn drop_seat(&mut self, seq: u64) {
        if let Some(seat) = self.seats.remove(&seq) {
            self.by_seen.remove(&(seat.seen_ms, seq));
            if seq > self.cursor {
                self.departed.insert(seq);
            }
            if let Some(u) = seat.user
                && self.users.get(&u) == Some(&seq)
            {
                self.users.remove(&u);
            }
        }
    }

    /// Drops every place not seen for the TTL; returns how many.
    fn sweep(&mut self, s: &QueueSettings, now: u64) -> u64 {
        let mut n = 0;
        while let Some(&(seen, seq)) = self.by_seen.first() {
            if !is_expired(seen, now, s.heartbeat_ttl_ms) {
                break;
            }
            self.drop_seat(seq);
            n += 1;
        }
        n
    }

    fn advance(&mut self, s: &QueueSettings, now: u64) {
        let waiting = self.waiting();
        let (admitted, next) = self.admission.admit(s.rate, now, waiting);
        self.admission = next;
        if admitted > 0 {
            let nth = self
                .seats
                .range(self.cursor + 1..)
                .nth(admitted as usize - 1)
                .map(|(&seq, _)| seq);
            self.cursor = nth.unwrap_or(self.last);
            let cursor = self.cursor;
            self.departed = self.departed.split_off(&(cursor + 1));
        }
    }

    fn waiting(&self) -> u64 {
        self.seats.range(self.cursor + 1..).count() as u64
    }

    fn position(&self, seq: u64) -> u64 {
        if seq <= self.cursor {
            return 0;
        }
        let gone = self.departed.range(self.cursor + 1..seq).count() as u64;
        seq - self.cursor - gone
    }

    fn touch(&mut self, seq: u64, now: u64) {
        if let Some(seat) = self.seats.get_mut(&seq) {
            self.by_seen.remove(&(seat.seen_ms, seq));
            seat.seen_ms = now;
            self.by_seen.insert((now, seq));
        }
    }

    /// The live seat of `token`, after dropping it if its heartbeat ran out.
    fn lookup(&mut self, s: &QueueSettings, token: &WaitingToken, now: u64) -> Option<u64> {
        let seat = self.seats.get(&token.seq)?;
        if encode_secret(&seat.secret) != token.secret() {
            return None;
        }
        if is_expired(seat.seen_ms, now, s.heartbeat_ttl_ms) {
            self.drop_seat(token.seq);
            return None;
        }
        Some(token.seq)
    }

    fn stats(&self, expired: u64) -> QueueStats {
        QueueStats {
            event_id: self.event_id.clone(),
            waiting: self.waiting(),
            expired,
        }
    }
}

impl MemoryQueues {
    fn shard(&self, tag: &EventTag) -> &RwLock<HashMap<EventTag, Arc<Mutex<EventQueue>>>> {
        use std::hash::{BuildHasher, RandomState};
        static HASHER: LazyLock<RandomState> = LazyLock::new(RandomState::new);
        &self.shards[(HASHER.hash_one(tag) as usize) % SHARDS]
    }

    fn get(&self, tag: &EventTag) -> Option<Arc<Mutex<EventQueue>>> {
        let shard = self.shard(tag).read().unwrap_or_else(|e| e.into_inner());
        shard.get(tag).cloned()
    }

    fn get_or_create(&self, tag: EventTag, event_id: &str, now: u64) -> Arc<Mutex<EventQueue>> {
        if let Some(q) = self.get(&tag) {
            return q;
        }
        let mut shard = self.shard(&tag).write().unwrap_or_else(|e| e.into_inner());
        shard
            .entry(tag)
            .or_insert_with(|| Arc::new(Mutex::new(EventQueue::new(event_id, now))))
            .clone()
    }

    /// Runs `f` on the event's queue with the sweep and admission already applied.
    fn with_event<T>(
        &self,
        s: &QueueSettings,
        queue: Arc<Mutex<EventQueue>>,
        now: u64,
        f: impl FnOnce(&mut EventQueue, u64) -> T,
    ) -> T {
        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
        let expired = q.sweep(s, now);
        q.advance(s, now);
        f(&mut q, expired)
    }

    fn join(
        &self,
        s: &QueueSettings,
        tag: EventTag,
        event_id: &str,
        user: Option<&str>,
        fresh: [u8; 16],
        now: u64,
    ) -> Joined {
        let queue = self.get_or_create(tag, event_id, now);
        self.with_event(s, queue, now, |q, expired| {
            let existing = user
                .and_then(|u| q.users.get(u).copied())
                .filter(|seq| q.seats.contains_key(seq));
            let (seq, new_place) = match existing {
                Some(seq) => {
                    q.touch(seq, now);
                    (seq, false)
                }
                None => {
                    q.last += 1;
                    let seq = q.last;
                    q.seats.insert(
                        seq,
                        Seat {
                            secret: fresh,
                            seen_ms: now,
                            user: user.map(str::to_owned),
                        },
                    );
                    q.by_seen.insert((now, seq));
                    if let Some(u) = user {
                        q.users.insert(u.to_owned(), seq);
                    }
                    (seq, true)
                }
            };
            let secret = q.seats.get(&seq).map(|s| s.secret).unwrap_or(fresh);
            Joined {
                token: WaitingToken::new(tag, seq, secret),
                position: q.position(seq),
                new_place,
                stats: q.stats(expired),
            }
        })
    }

    fn status(&self, s: &QueueSettings, token: &WaitingToken, now: u64) -> (Place, QueueStats) {
        let Some(queue) = self.get(&token.tag) else {
            return (Place::Expired, QueueStats::default());
        };
        self.with_event(s, queue, now, |q, mut expired| {
            let before = q.seats.len();
            let place = match q.lookup(s, token, now) {
                None => Place::Expired,
                Some(seq) => {
                    q.touch(seq, now);
                    match q.position(seq) {
                        0 => Place::Ready,
                        p => Place::Waiting(p),
                    }
                }
            };
            expired += (before - q.seats.len()) as u64;
            (place, q.stats(expired))
        })
    }

    fn enter(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
        caller: Option<&str>,
        rtok: ReservationToken,
        now: u64,
    ) -> (Entry, QueueStats) {
        let Some(queue) = self.get(&token.tag) else {
            return (Entry::Expired, QueueStats::default());
        };
        self.with_event(s, queue, now, |q, mut expired| {
            let before = q.seats.len();
            let entry = match q.lookup(s, token, now) {
                None => Entry::Expired,
                Some(seq) if seq > q.cursor => {
                    q.touch(seq, now);
                    Entry::Waiting(q.position(seq))
                }
                Some(seq) => {
                    let owner = q.seats.get(&seq).and_then(|s| s.user.clone());
                    match (owner, caller) {
                        (Some(o), Some(c)) if o != c => Entry::OtherUser,
                        (owner, _) => {
                            q.drop_seat(seq);
                            if q.reservations.len() > 1024 {
                                q.reservations.retain(|_, r| r.expires_ms > now);
                            }
                            q.reservations.insert(
                                rtok.as_str().to_owned(),
                                Reservation {
                                    user: owner.unwrap_or_default(),
                                    expires_ms: now + s.reservation_ttl_ms,
                                    in_use: false,
                                },
                            );
                            Entry::Granted(rtok)
                        }
                    }
                }
            };
            // Seats dropped by the lookup's own expiry check count as expirations too.
            let dropped = before - q.seats.len();
            if !matches!(entry, Entry::Granted(_)) {
                expired += dropped as u64;
            }
            (entry, q.stats(expired))
        })
    }

    fn leave(&self, s: &QueueSettings, token: &WaitingToken, now: u64) -> QueueStats {
        let Some(queue) = self.get(&token.tag) else {
            return QueueStats::default();
        };
        self.with_event(s, queue, now, |q, expired| {
            if let Some(seq) = q.lookup(s, token, now) {
                q.drop_seat(seq);
            }
            q.stats(expired)
        })
    }

    fn claim(&self, tag: EventTag, token: &ReservationToken, caller: &str, now: u64) -> Claim {
        let Some(queue) = self.get(&tag) else {
            return Claim::Missing;
        };
        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
        match q.reservations.get_mut(token.as_str()) {
            None => Claim::Missing,
            Some(r) if r.expires_ms <= now => Claim::Missing,
            Some(r) if r.user != caller => Claim::OtherUser,
            Some(r) if r.in_use => Claim::InUse,
            Some(r) => {
                r.in_use = true;
                Claim::Claimed
            }
        }
    }

    fn settle(&self, tag: EventTag, token: &ReservationToken, caller: &str, used: bool) {
        let Some(queue) = self.get(&tag) else {
            return;
        };
        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
        let ours =
            matches!(q.reservations.get(token.as_str()), Some(r) if r.in_use && r.user == caller);
        if !ours {
            return;
        }
        if used {
            q.reservations.remove(token.as_str());
        } else if let Some(r) = q.reservations.get_mut(token.as_str()) {
            r.in_use = false;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(rate: f64, ttl_ms: u64) -> QueueSettings {
        QueueSettings {
            rate,
            heartbeat_ttl_ms: ttl_ms,
            reservation_ttl_ms: 30_000,
        }
    }

    #[test]
    fn memory_positions_are_fifo_and_close_up_when_people_leave_or_expire() {
        let q = MemoryQueues::default();
        let s = settings(0.001, 10_000);
        let tag = EventTag::of("e");
        let people: Vec<_> = (0..5)
            .map(|i| q.join(&s, tag, "e", None, [i as u8; 16], 0))
            .collect();
        for (i, p) in people.iter().enumerate() {
            assert_eq!(p.position, i as u64 + 1);
        }
        q.leave(&s, &people[1].token, 10);
        assert_eq!(q.status(&s, &people[2].token, 20).0, Place::Waiting(2));
        // Only person 4 keeps polling; 0, 2 and 3 stop and expire after the TTL.
        q.status(&s, &people[4].token, 9_000);
        let (place, stats) = q.status(&s, &people[4].token, 12_000);
        assert_eq!(place, Place::Waiting(1));
        assert_eq!(stats.expired, 3);
        assert_eq!(q.status(&s, &people[0].token, 12_001).0, Place::Expired);
    }

    #[test]
    fn memory_admits_at_the_rate_in_order() {
        let q = MemoryQueues::default();
        let s = settings(10.0, 600_000);
        let tag = EventTag::of("e");
        let people: Vec<_> = (0..50)
            .map(|i| q.join(&s, tag, "e", None, [i as u8; 16], 0))
            .collect();
        // 2 s later: 20 admitted, the first 20.
        let ready: Vec<bool> = people
            .iter()
            .map(|p| q.status(&s, &p.token, 2_000).0 == Place::Ready)
            .collect();
        assert_eq!(ready.iter().filter(|r| **r).count(), 20);
        assert!(ready[..20].iter().all(|r| *r));
    }

    #[test]
    fn memory_known_users_keep_their_place() {
        let q = MemoryQueues::default();
        let s = settings(0.001, 600_000);
        let tag = EventTag::of("e");
        let a = q.join(&s, tag, "e", Some("alice"), [1; 16], 0);
        q.join(&s, tag, "e", None, [2; 16], 0);
        let again = q.join(&s, tag, "e", Some("alice"), [3; 16], 5);
        assert_eq!(again.token, a.token);
        assert_eq!(again.position, 1);
        assert!(!again.new_place);
    }

    #[test]
    fn memory_reservation_tokens_are_claimed_once() {
        let q = MemoryQueues::default();
        let s = settings(1000.0, 600_000);
        let tag = EventTag::of("e");
        let a = q.join(&s, tag, "e", Some("alice"), [1; 16], 0);
        let (entry, _) = q.enter(
            &s,
            &a.token,
            Some("alice"),
            ReservationToken::generate(),
            1_000,
        );
        let Entry::Granted(rtok) = entry else {
            panic!("{entry:?}")
        };
        assert_eq!(q.claim(tag, &rtok, "bob", 1_001), Claim::OtherUser);
        assert_eq!(q.claim(tag, &rtok, "alice", 1_001), Claim::Claimed);
        assert_eq!(q.claim(tag, &rtok, "alice", 1_001), Claim::InUse);
        q.settle(tag, &rtok, "alice", false);
        assert_eq!(q.claim(tag, &rtok, "alice", 1_002), Claim::Claimed);
        q.settle(tag, &rtok, "alice", true);
        assert_eq!(q.claim(tag, &rtok, "alice", 1_003), Claim::Missing);
    }
}
