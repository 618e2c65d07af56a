//! Waiting-room state in the store (SPEC §5, §5a): join, status, enter and leave as one Lua
//! script each (one round trip, on the Redis server clock), the reservation-token claim and
//! settle, and their in-memory twins with the same semantics.
//!
//! Layout of one event in Redis, every key under the hash tag `{q:<tag>}` (`tag` = 8 bytes of
//! SHA-256 of the event id, carried in the waiting token, so `status?token=` finds the event):
//! - `:def` hash: the operator's definition (SPEC §5a; `store/events.rs` writes it) and the
//!   adaptive factor. No TTL: definitions outlive restarts and idle time.
//! - `:m` hash: event id, `n` last join sequence, `c` admitted-up-to sequence, `a`/`at` the
//!   admission allowance and when it was computed, `h`/`hl` oldest and newest heartbeat bucket,
//!   `b` base (places up to it belong to an ended epoch: close or delete), `g` epoch, `no` the
//!   join sequence at opening (-1 = prequeue), `pc` prequeue rank admitted up to, `rd` ready
//!   count, `tot` admitted total, `wb`/`w0..w5`/`fa` the 60-s window of admissions.
//! - `:p:<seq/64>` hash, seq → `secret|seen_ms|user_digest` (or, once entered,
//!   `secret|!expiry_ms|user_digest|reservation_token`): the places, 64 per key so each stays a
//!   compact listpack (~45 bytes per person instead of a sorted-set node). `seen` is also the
//!   per-token poll bucket (`queue::polling`), so the poll limit costs no byte.
//! - `:q` sorted set, seq scored by a random rank drawn by the gateway at join: the prequeue
//!   (only people who joined before the opening are in it).
//! - `:d` sorted set of sequences that left or expired *after* the cursor: the position of `seq`
//!   is `seq - c - |departed in (c, seq)|`, an O(log N) `ZCOUNT`; entries the cursor has passed
//!   are trimmed, a bounded number per call.
//! - `:a` sorted set of entered sessions scored by their expiry: with `rd`, the active count
//!   `max_active` caps.
//! - `:h:<bucket>` lists of sequences seen in that heartbeat bucket (a bucket is an eighth of the
//!   heartbeat TTL). Buckets older than the TTL are swept, at most `SWEEP_BUDGET` entries per
//!   call: a place whose last poll is older than the TTL is dropped and counted as departed.
//! - `:u:<4 hex>` hashes, user digest → seq, for known users (join again → same place).
//! - `:r:<reservation token>` string `0|digest|seq|epoch` (`1|…` while a create is in flight),
//!   with its TTL.
//!
//! Every key but `:def` gets a TTL refreshed when touched, so an abandoned event cleans itself
//! up. No KEYS or SCAN anywhere; every call does O(log N) work plus bounded sweeping and
//! trimming; opening the prequeue is O(1) (the random order was drawn at join time).
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use redis::Script;

use super::{Store, StoreError};
use crate::config::QueueConfig;
use crate::queue::adaptive::{self, Factor, Health};
use crate::queue::admission::{Admission, AdmissionWindow, heartbeat_bucket_ms, is_expired};
use crate::queue::events::{EventDefinition, EventFigures, EventPatch, EventState};
use crate::queue::polling;
use crate::queue::token::{decode_secret, encode_secret};
use crate::queue::{EventTag, ReservationToken, WaitingToken};

/// Expired places examined (and departures trimmed) per call, at most: keeps every call bounded.
pub const SWEEP_BUDGET: u64 = 64;

/// The memory store's bounds: live events, places per event, defined events.
pub const MEMORY_MAX_EVENTS: usize = 100_000;
pub const MEMORY_MAX_PLACES: usize = 2_000_000;
pub const MEMORY_MAX_DEFINITIONS: usize = 10_000;

/// The waiting-room settings the store needs, from `QueueConfig`, and this call's health
/// observation for adaptive events.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// The default rate of an event nobody defined.
    pub rate: f64,
    pub heartbeat_ttl_ms: u64,
    pub reservation_ttl_ms: u64,
    /// `QUEUE_EVENTS_OPEN`.
    pub events_open: bool,
    /// This replica's verdict on the reservation upstream, sent at most once a second.
    pub observation: Option<Health>,
}

impl From<&QueueConfig> for QueueSettings {
    fn from(c: &QueueConfig) -> Self {
        QueueSettings {
            rate: c.admission_rps,
            heartbeat_ttl_ms: (c.heartbeat_ttl.as_millis() as u64).max(1),
            reservation_ttl_ms: (c.reservation_token_ttl.as_millis() as u64).max(1),
            events_open: c.events_open,
            observation: None,
        }
    }
}

/// Where a token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Joined before the opening; `opens_in_ms` until it.
    Prequeue {
        opens_in_ms: u64,
    },
    /// 1-based position among those still waiting.
    Waiting(u64),
    Ready,
    /// Entered: the reservation token lives `ttl_ms` more.
    Admitted {
        ttl_ms: u64,
    },
    /// Unknown, tampered, left, used, or not polled within the heartbeat TTL; every token of a
    /// closed or deleted event.
    Expired,
    /// Polled too often: retry after `retry_ms`.
    Limited {
        retry_ms: u64,
    },
}

/// A status answer: the place, the rate an eta is computed with (0 = unknown), and the event's
/// state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Status {
    pub place: Place,
    pub eta_rate: f64,
    pub event_state: EventState,
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

/// How a join went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinState {
    Waiting,
    Prequeue,
    /// A returning user whose turn has come.
    Ready,
    /// A returning user who entered and whose session is alive.
    Admitted,
    /// `QUEUE_EVENTS_OPEN=false` and nobody defined the event.
    NotFound,
    Closed,
    /// The memory store is at its bound.
    Full,
}

#[derive(Debug, Clone)]
pub struct Joined {
    pub token: WaitingToken,
    /// Position at the moment of joining (0 if ready; `None` in the prequeue).
    pub position: Option<u64>,
    pub state: JoinState,
    /// `false` when a known user joined again and got their place back.
    pub new_place: bool,
    pub stats: QueueStats,
}

#[derive(Debug, Clone)]
pub enum Entry {
    Granted(ReservationToken),
    Waiting(u64),
    Expired,
    /// Entered already; the session is alive.
    Admitted,
    /// The token belongs to another verified user.
    OtherUser,
}

/// How a leave went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    Left,
    Limited { retry_ms: u64 },
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
        let rank = prequeue_rank();
        match self {
            Store::Memory(m) => Ok(m.queue.join(s, tag, event_id, user, fresh, rank, now_ms())),
            Store::Redis(r) => {
                let (seq, secret, position, waiting, expired, new_place, state): (
                    u64,
                    String,
                    i64,
                    u64,
                    u64,
                    u8,
                    String,
                ) = r
                    .eval(
                        common(&JOIN, &tag, s)
                            .arg(event_id)
                            .arg(user.unwrap_or(""))
                            .arg(encode_secret(&fresh))
                            .arg(if s.events_open { "1" } else { "0" })
                            .arg(rank),
                    )
                    .await?;
                let state = match state.as_str() {
                    "waiting" => JoinState::Waiting,
                    "prequeue" => JoinState::Prequeue,
                    "ready" => JoinState::Ready,
                    "admitted" => JoinState::Admitted,
                    "not_found" => JoinState::NotFound,
                    "closed" => JoinState::Closed,
                    other => return Err(StoreError::Protocol(format!("join state {other:?}"))),
                };
                let secret = if matches!(state, JoinState::NotFound | JoinState::Closed) {
                    fresh
                } else {
                    decode_secret(&secret)
                        .ok_or_else(|| StoreError::Protocol("bad waiting-token secret".into()))?
                };
                Ok(Joined {
                    token: WaitingToken::new(tag, seq, secret),
                    position: u64::try_from(position).ok(),
                    state,
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

    /// Where `token` stands; a poll is the heartbeat, limited per token.
    pub async fn queue_status(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
    ) -> Result<(Status, QueueStats), StoreError> {
        match self {
            Store::Memory(m) => Ok(m.queue.status(s, token, now_ms())),
            Store::Redis(r) => {
                let (state, position, event_id, waiting, expired, rate, extra, estate): (
                    String,
                    u64,
                    String,
                    u64,
                    u64,
                    String,
                    i64,
                    String,
                ) = r
                    .eval(
                        common(&STATUS, &token.tag, s)
                            .arg(token.seq)
                            .arg(token.secret()),
                    )
                    .await?;
                let extra = extra.max(0) as u64;
                let place = match state.as_str() {
                    "prequeue" => Place::Prequeue { opens_in_ms: extra },
                    "waiting" => Place::Waiting(position),
                    "ready" => Place::Ready,
                    "admitted" => Place::Admitted { ttl_ms: extra },
                    "expired" => Place::Expired,
                    "limited" => Place::Limited { retry_ms: extra },
                    other => return Err(StoreError::Protocol(format!("queue state {other:?}"))),
                };
                Ok((
                    Status {
                        place,
                        eta_rate: rate.parse().unwrap_or(0.0),
                        event_state: EventState::parse(&estate).unwrap_or(EventState::Open),
                    },
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
                    "admitted" => Entry::Admitted,
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

    /// Frees the place at once, or ends the session of an entered one (unknown tokens are fine:
    /// leaving twice is leaving).
    pub async fn queue_leave(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
    ) -> Result<(Left, QueueStats), StoreError> {
        match self {
            Store::Memory(m) => Ok(m.queue.leave(s, token, now_ms())),
            Store::Redis(r) => {
                let (state, event_id, waiting, expired, retry): (String, String, u64, u64, u64) = r
                    .eval(
                        common(&LEAVE, &token.tag, s)
                            .arg(token.seq)
                            .arg(token.secret()),
                    )
                    .await?;
                let left = if state == "limited" {
                    Left::Limited { retry_ms: retry }
                } else {
                    Left::Left
                };
                Ok((
                    left,
                    QueueStats {
                        event_id,
                        waiting,
                        expired,
                    },
                ))
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

    /// After the create: `used` (upstream said 2xx) consumes the token and ends the session,
    /// otherwise it is released and stays valid until its TTL.
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

/// A uniformly random prequeue rank, drawn by the gateway at join time: 52 bits, so the store's
/// score (a double) holds it exactly.
pub fn prequeue_rank() -> u64 {
    rand::random::<u64>() >> 12
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// KEYS[1] = the event's prefix; ARGV[1..5] = default rate, heartbeat TTL, bucket width, sweep
/// budget, health observation.
pub(crate) fn common<'a>(
    script: &'a Script,
    tag: &EventTag,
    s: &QueueSettings,
) -> redis::ScriptInvocation<'a> {
    let mut inv = script.key(tag.key_prefix());
    inv.arg(s.rate)
        .arg(s.heartbeat_ttl_ms)
        .arg(heartbeat_bucket_ms(s.heartbeat_ttl_ms))
        .arg(SWEEP_BUDGET)
        .arg(s.observation.map(Health::as_arg).unwrap_or(""));
    inv
}

pub(crate) const PRELUDE: &str = include_str!("lua/queue_prelude.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

static JOIN: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/queue_join.lua")));
static STATUS: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/queue_status.lua")));
static ENTER: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/queue_enter.lua")));
static LEAVE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/queue_leave.lua")));
static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/reservation_claim.lua")));
static SETTLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/reservation_settle.lua")));

// ---------------------------------------------------------------------------------------------
// The in-memory twin: one `EventQueue` per event behind its own lock (events are found through a
// sharded map, so there is no global lock on the request path), and the definitions beside it.
//
// Bounded by time and count: an event's runtime state is dropped once its last place and
// session have expired (an idle sweep runs at most once a second), and at most
// `MEMORY_MAX_EVENTS` live events, `MEMORY_MAX_PLACES` places per event and
// `MEMORY_MAX_DEFINITIONS` definitions are kept (beyond: 503 / 400, never unbounded growth).

const SHARDS: usize = 16;

type Shard = RwLock<HashMap<EventTag, Arc<Mutex<EventQueue>>>>;

/// Per-event queues and definitions of the memory store.
pub struct MemoryQueues {
    shards: [Shard; SHARDS],
    defs: RwLock<HashMap<EventTag, MemoryDefinition>>,
    /// Live events (the sum of the shards' lengths).
    events: AtomicU64,
    /// When the idle sweep last ran (ms).
    last_idle_sweep: AtomicU64,
}

impl Default for MemoryQueues {
    fn default() -> Self {
        MemoryQueues {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::new())),
            defs: RwLock::new(HashMap::new()),
            events: AtomicU64::new(0),
            last_idle_sweep: AtomicU64::new(0),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct MemoryDefinition {
    pub(crate) def: EventDefinition,
    pub(crate) factor: Factor,
}

/// The definition's settings for one call.
#[derive(Debug, Clone, Copy)]
struct Effective {
    rate: f64,
    state: EventState,
    opens_ms: u64,
    max_active: Option<u64>,
    factor: f64,
}

impl Effective {
    fn eff(&self) -> f64 {
        if self.state == EventState::Open {
            self.rate * self.factor
        } else {
            0.0
        }
    }
}

struct Seat {
    secret: [u8; 16],
    seen_ms: u64,
    user: Option<String>,
    /// Prequeue rank (joined before the opening).
    rank: Option<u64>,
    /// Entered: (session expiry, reservation token).
    admitted: Option<(u64, String)>,
}

struct Reservation {
    user: String,
    seq: u64,
    expires_ms: u64,
    in_use: bool,
}

struct EventQueue {
    event_id: String,
    /// Last join sequence handed out.
    last: u64,
    /// Admitted up to this sequence (FIFO).
    cursor: u64,
    /// The join sequence at opening (`None`: the prequeue is still open).
    opened_at_seq: Option<u64>,
    admission: Admission,
    seats: BTreeMap<u64, Seat>,
    by_seen: BTreeSet<(u64, u64)>,
    /// Sequences after the cursor that left or expired (the same bookkeeping as Redis's `:d`).
    departed: BTreeSet<u64>,
    /// The prequeue by (rank, seq), and the rank admitted up to.
    prequeue: BTreeSet<(u64, u64)>,
    prequeue_cursor: Option<(u64, u64)>,
    /// Ready places (turn come, not entered).
    ready: u64,
    /// Entered sessions by (expiry, seq).
    sessions: BTreeSet<(u64, u64)>,
    users: HashMap<String, u64>,
    reservations: HashMap<String, Reservation>,
    total: u64,
    window: AdmissionWindow,
}

impl EventQueue {
    fn new(event_id: &str, now: u64) -> Self {
        EventQueue {
            event_id: event_id.to_owned(),
            last: 0,
            cursor: 0,
            opened_at_seq: None,
            admission: Admission::new(now),
            seats: BTreeMap::new(),
            by_seen: BTreeSet::new(),
            departed: BTreeSet::new(),
            prequeue: BTreeSet::new(),
            prequeue_cursor: None,
            ready: 0,
            sessions: BTreeSet::new(),
            users: HashMap::new(),
            reservations: HashMap::new(),
            total: 0,
            window: AdmissionWindow::default(),
        }
    }

    fn is_idle(&self) -> bool {
        self.seats.is_empty() && self.reservations.is_empty()
    }

    fn pq_after_cursor(&self) -> std::collections::btree_set::Range<'_, (u64, u64)> {
        use std::ops::Bound::{Excluded, Unbounded};
        match self.prequeue_cursor {
            Some(c) => self.prequeue.range((Excluded(c), Unbounded)),
            None => self.prequeue.range(..),
        }
    }

    fn rank_ready(&self, key: (u64, u64)) -> bool {
        self.opened_at_seq.is_some() && self.prequeue_cursor.is_some_and(|c| key <= c)
    }

    fn drop_seat(&mut self, seq: u64) {
        let Some(seat) = self.seats.remove(&seq) else {
            return;
        };
        self.by_seen.remove(&(seat.seen_ms, seq));
        if let Some((exp, rtok)) = &seat.admitted {
            self.sessions.remove(&(*exp, seq));
            self.reservations.remove(rtok);
        } else if let Some(r) = seat.rank {
            if self.rank_ready((r, seq)) {
                self.ready = self.ready.saturating_sub(1);
            }
            self.prequeue.remove(&(r, seq));
        } else if seq > self.cursor {
            self.departed.insert(seq);
        } else {
            self.ready = self.ready.saturating_sub(1);
        }
        if let Some(u) = seat.user
            && self.users.get(&u) == Some(&seq)
        {
            self.users.remove(&u);
        }
    }

    /// Drops every place not seen for the TTL and every ended session; returns how many places.
    fn sweep(&mut self, s: &QueueSettings, now: u64) -> u64 {
        let mut n = 0;
        while let Some(&(seen, seq)) = self.by_seen.first() {
            if !is_expired(seen, now, s.heartbeat_ttl_ms) {
                break;
            }
            self.drop_seat(seq);
            n += 1;
        }
        while let Some(&(exp, seq)) = self.sessions.first() {
            if exp > now {
                break;
            }
            self.sessions.remove(&(exp, seq));
            self.drop_seat(seq);
        }
        // Reservation tokens whose place is gone (used, left) expire by time too.
        if self.reservations.len() > 64 {
            self.reservations.retain(|_, r| r.expires_ms > now);
        }
        n
    }

    fn advance(&mut self, e: &Effective, now: u64) {
        if self.opened_at_seq.is_none() {
            if now < e.opens_ms || e.state == EventState::Closed {
                self.admission = Admission::new(now);
                return;
            }
            self.opened_at_seq = Some(self.last);
            self.cursor = self.cursor.max(self.last);
            self.admission = Admission::new(now);
        }
        let eff = e.eff();
        let credit = self.admission.refill(eff, now);
        let mut k = credit.max(0.0).floor() as u64;
        if let Some(max) = e.max_active {
            k = k.min(max.saturating_sub(self.ready + self.sessions.len() as u64));
        }
        let mut got = 0;
        if k > 0 {
            if let Some(&key) = self.pq_after_cursor().take(k as usize).last() {
                got = self.pq_after_cursor().take_while(|x| **x <= key).count() as u64;
                self.prequeue_cursor = Some(key);
            }
            let k2 = k - got;
            if k2 > 0 {
                let seqs: Vec<u64> = self
                    .seats
                    .range(self.cursor + 1..)
                    .take(k2 as usize)
                    .map(|(&seq, _)| seq)
                    .collect();
                if let Some(&nth) = seqs.last() {
                    got += seqs.len() as u64;
                    self.cursor = nth;
                    let cursor = self.cursor;
                    self.departed = self.departed.split_off(&(cursor + 1));
                }
            }
        }
        self.ready += got;
        self.total += got;
        self.window.record(now, got);
        self.admission = Admission {
            credit: (credit - got as f64).min(eff),
            at_ms: now.max(self.admission.at_ms),
        };
    }

    fn pq_waiting(&self) -> u64 {
        if self.opened_at_seq.is_none() {
            return 0;
        }
        self.pq_after_cursor().count() as u64
    }

    fn waiting(&self) -> u64 {
        if self.opened_at_seq.is_none() {
            return 0;
        }
        self.pq_waiting() + self.seats.range(self.cursor + 1..).count() as u64
    }

    /// `None` in the prequeue, 0 once ready.
    fn position(&self, seq: u64) -> Option<u64> {
        let seat = self.seats.get(&seq)?;
        if let Some(r) = seat.rank {
            self.opened_at_seq?;
            if self.rank_ready((r, seq)) {
                return Some(0);
            }
            let ahead = self
                .pq_after_cursor()
                .take_while(|x| **x < (r, seq))
                .count();
            return Some(ahead as u64 + 1);
        }
        if seq <= self.cursor {
            return Some(0);
        }
        let gone = self.departed.range(self.cursor + 1..seq).count() as u64;
        Some(self.pq_waiting() + seq - self.cursor - gone)
    }

    fn touch(&mut self, seq: u64, seen: u64) {
        if let Some(seat) = self.seats.get_mut(&seq) {
            self.by_seen.remove(&(seat.seen_ms, seq));
            seat.seen_ms = seen;
            self.by_seen.insert((seen, seq));
        }
    }

    /// The live seat of `token`, after dropping it if its heartbeat ran out.
    fn lookup(&mut self, s: &QueueSettings, token: &WaitingToken, now: u64) -> Option<u64> {
        let seat = self.seats.get(&token.seq)?;
        if encode_secret(&seat.secret) != token.secret() {
            return None;
        }
        if seat.admitted.is_none() && is_expired(seat.seen_ms, now, s.heartbeat_ttl_ms) {
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
    fn shard(&self, tag: &EventTag) -> &Shard {
        use std::hash::{BuildHasher, RandomState};
        static HASHER: LazyLock<RandomState> = LazyLock::new(RandomState::new);
        &self.shards[(HASHER.hash_one(tag) as usize) % SHARDS]
    }

    fn get(&self, tag: &EventTag) -> Option<Arc<Mutex<EventQueue>>> {
        let shard = self.shard(tag).read().unwrap_or_else(|e| e.into_inner());
        shard.get(tag).cloned()
    }

    /// `None` when at `MEMORY_MAX_EVENTS` even after dropping the idle ones.
    fn get_or_create(
        &self,
        s: &QueueSettings,
        tag: EventTag,
        event_id: &str,
        now: u64,
    ) -> Option<Arc<Mutex<EventQueue>>> {
        if let Some(q) = self.get(&tag) {
            return Some(q);
        }
        if self.events.load(Ordering::Relaxed) as usize >= MEMORY_MAX_EVENTS {
            self.drop_idle(s, now);
            if self.events.load(Ordering::Relaxed) as usize >= MEMORY_MAX_EVENTS {
                return None;
            }
        }
        let mut shard = self.shard(&tag).write().unwrap_or_else(|e| e.into_inner());
        let q = shard.entry(tag).or_insert_with(|| {
            self.events.fetch_add(1, Ordering::Relaxed);
            Arc::new(Mutex::new(EventQueue::new(event_id, now)))
        });
        Some(q.clone())
    }

    /// Drops the runtime state of every event whose last place and session have expired. Runs
    /// at most once a second unless forced by the event bound.
    fn maybe_drop_idle(&self, s: &QueueSettings, now: u64) {
        let last = self.last_idle_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1_000 {
            return;
        }
        if self
            .last_idle_sweep
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.drop_idle(s, now);
        }
    }

    /// The memory store's periodic sweep: idle events go even when no request comes to drop
    /// them, and the maps give their memory back.
    pub fn sweep(&self, s: &QueueSettings) {
        let now = now_ms();
        self.last_idle_sweep.store(now, Ordering::Relaxed);
        self.drop_idle(s, now);
        for shard in &self.shards {
            let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
            if map.capacity() > 4 * map.len().max(16) {
                map.shrink_to_fit();
            }
        }
    }

    fn drop_idle(&self, s: &QueueSettings, now: u64) {
        for shard in &self.shards {
            let mut map = shard.write().unwrap_or_else(|e| e.into_inner());
            let before = map.len();
            map.retain(|_, q| {
                let mut q = q.lock().unwrap_or_else(|e| e.into_inner());
                q.sweep(s, now);
                !q.is_idle()
            });
            let dropped = before - map.len();
            self.events.fetch_sub(dropped as u64, Ordering::Relaxed);
        }
    }

    /// Live events, places and reservation tokens (for the bound tests and figures).
    pub fn entry_counts(&self) -> (usize, usize, usize) {
        let (mut events, mut places, mut tokens) = (0, 0, 0);
        for shard in &self.shards {
            let map = shard.read().unwrap_or_else(|e| e.into_inner());
            events += map.len();
            for q in map.values() {
                let q = q.lock().unwrap_or_else(|e| e.into_inner());
                places += q.seats.len();
                tokens += q.reservations.len();
            }
        }
        (events, places, tokens)
    }

    fn effective(&self, s: &QueueSettings, tag: &EventTag, now: u64) -> (bool, Effective) {
        let defs = self.defs.read().unwrap_or_else(|e| e.into_inner());
        match defs.get(tag) {
            None => (
                false,
                Effective {
                    rate: s.rate,
                    state: EventState::Open,
                    opens_ms: 0,
                    max_active: None,
                    factor: 1.0,
                },
            ),
            Some(d) => {
                let mut factor = d.factor;
                if d.def.adaptive
                    && let Some(h) = s.observation
                {
                    drop(defs);
                    let mut defs = self.defs.write().unwrap_or_else(|e| e.into_inner());
                    if let Some(d) = defs.get_mut(tag) {
                        d.factor = adaptive::step(d.factor, h, now);
                        factor = d.factor;
                    }
                    let d = defs.get(tag).map(|d| d.def.clone());
                    return match d {
                        Some(def) => (true, effective_of(&def, factor)),
                        None => self.effective(s, tag, now),
                    };
                }
                (true, effective_of(&d.def, factor))
            }
        }
    }

    /// Runs `f` on the event's queue with the sweep and admission already applied.
    fn with_event<T>(
        &self,
        s: &QueueSettings,
        e: &Effective,
        queue: Arc<Mutex<EventQueue>>,
        now: u64,
        f: impl FnOnce(&mut EventQueue, u64) -> T,
    ) -> T {
        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
        let expired = q.sweep(s, now);
        q.advance(e, now);
        f(&mut q, expired)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn join(
        &self,
        s: &QueueSettings,
        tag: EventTag,
        event_id: &str,
        user: Option<&str>,
        fresh: [u8; 16],
        rank: u64,
        now: u64,
    ) -> Joined {
        self.maybe_drop_idle(s, now);
        let (defined, e) = self.effective(s, &tag, now);
        let refused = |state| Joined {
            token: WaitingToken::new(tag, 0, fresh),
            position: None,
            state,
            new_place: false,
            stats: QueueStats::default(),
        };
        if !defined && !s.events_open {
            return refused(JoinState::NotFound);
        }
        if e.state == EventState::Closed {
            return refused(JoinState::Closed);
        }
        let Some(queue) = self.get_or_create(s, tag, event_id, now) else {
            return refused(JoinState::Full);
        };
        self.with_event(s, &e, queue, now, |q, expired| {
            let existing = user
                .and_then(|u| q.users.get(u).copied())
                .filter(|seq| q.seats.contains_key(seq));
            let (seq, new_place) = match existing {
                Some(seq) => {
                    let seen = q.seats.get(&seq).map(|x| x.seen_ms).unwrap_or(now);
                    if q.seats.get(&seq).is_some_and(|x| x.admitted.is_none()) {
                        q.touch(seq, seen.max(now));
                    }
                    (seq, false)
                }
                None if q.seats.len() >= MEMORY_MAX_PLACES => {
                    return Joined {
                        token: WaitingToken::new(tag, 0, fresh),
                        position: None,
                        state: JoinState::Full,
                        new_place: false,
                        stats: q.stats(expired),
                    };
                }
                None => {
                    q.last += 1;
                    let seq = q.last;
                    let rank = q.opened_at_seq.is_none().then_some(rank);
                    q.seats.insert(
                        seq,
                        Seat {
                            secret: fresh,
                            seen_ms: now,
                            user: user.map(str::to_owned),
                            rank,
                            admitted: None,
                        },
                    );
                    if let Some(r) = rank {
                        q.prequeue.insert((r, seq));
                    }
                    q.by_seen.insert((now, seq));
                    if let Some(u) = user {
                        q.users.insert(u.to_owned(), seq);
                    }
                    (seq, true)
                }
            };
            let seat = q.seats.get(&seq);
            let secret = seat.map(|s| s.secret).unwrap_or(fresh);
            let admitted = seat.is_some_and(|s| s.admitted.is_some());
            let position = if admitted { Some(0) } else { q.position(seq) };
            let state = match position {
                _ if admitted => JoinState::Admitted,
                None => JoinState::Prequeue,
                Some(0) => JoinState::Ready,
                Some(_) => JoinState::Waiting,
            };
            Joined {
                token: WaitingToken::new(tag, seq, secret),
                position,
                state,
                new_place,
                stats: q.stats(expired),
            }
        })
    }

    pub(crate) fn status(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
        now: u64,
    ) -> (Status, QueueStats) {
        let (_, e) = self.effective(s, &token.tag, now);
        let expired_status = Status {
            place: Place::Expired,
            eta_rate: 0.0,
            event_state: e.state,
        };
        let Some(queue) = self.get(&token.tag) else {
            return (expired_status, QueueStats::default());
        };
        if e.state == EventState::Closed {
            let q = queue.lock().unwrap_or_else(|e| e.into_inner());
            return (
                expired_status,
                QueueStats {
                    event_id: q.event_id.clone(),
                    ..QueueStats::default()
                },
            );
        }
        self.with_event(s, &e, queue, now, |q, mut expired| {
            let before = q.seats.len();
            let place = match q.lookup(s, token, now) {
                None => Place::Expired,
                Some(seq) => {
                    let seat = q.seats.get(&seq);
                    let admitted = seat.and_then(|x| x.admitted.as_ref()).map(|(exp, _)| *exp);
                    let seen = seat.map(|x| x.seen_ms).unwrap_or(now);
                    match (admitted, polling::poll(seen, now)) {
                        (Some(exp), _) => Place::Admitted {
                            ttl_ms: exp.saturating_sub(now),
                        },
                        (None, Err(retry_ms)) => Place::Limited { retry_ms },
                        (None, Ok(v)) => {
                            q.touch(seq, v);
                            match q.position(seq) {
                                None => Place::Prequeue {
                                    opens_in_ms: e.opens_ms.saturating_sub(now),
                                },
                                Some(0) => Place::Ready,
                                Some(p) => Place::Waiting(p),
                            }
                        }
                    }
                }
            };
            expired += (before - q.seats.len()) as u64;
            let eta_rate = match e.state {
                EventState::Open if q.total >= 10 => q.window.rate(now),
                EventState::Open => e.eff(),
                _ => 0.0,
            };
            (
                Status {
                    place,
                    eta_rate,
                    event_state: e.state,
                },
                q.stats(expired),
            )
        })
    }

    pub(crate) fn enter(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
        caller: Option<&str>,
        rtok: ReservationToken,
        now: u64,
    ) -> (Entry, QueueStats) {
        let (_, e) = self.effective(s, &token.tag, now);
        let Some(queue) = self.get(&token.tag) else {
            return (Entry::Expired, QueueStats::default());
        };
        if e.state == EventState::Closed {
            return (Entry::Expired, QueueStats::default());
        }
        self.with_event(s, &e, queue, now, |q, mut expired| {
            let before = q.seats.len();
            let entry = match q.lookup(s, token, now) {
                None => Entry::Expired,
                Some(seq) if q.seats.get(&seq).is_some_and(|x| x.admitted.is_some()) => {
                    Entry::Admitted
                }
                Some(seq) => match q.position(seq) {
                    None | Some(1..) => {
                        let seen = q.seats.get(&seq).map(|x| x.seen_ms).unwrap_or(now);
                        q.touch(seq, seen.max(now));
                        Entry::Waiting(q.position(seq).unwrap_or(0))
                    }
                    Some(0) => {
                        let owner = q.seats.get(&seq).and_then(|s| s.user.clone());
                        match (owner, caller) {
                            (Some(o), Some(c)) if o != c => Entry::OtherUser,
                            (owner, _) => {
                                let exp = now + s.reservation_ttl_ms;
                                if let Some(seat) = q.seats.get_mut(&seq) {
                                    let seen = seat.seen_ms;
                                    let rank = seat.rank.take();
                                    seat.admitted = Some((exp, rtok.as_str().to_owned()));
                                    q.by_seen.remove(&(seen, seq));
                                    if let Some(r) = rank {
                                        q.prequeue.remove(&(r, seq));
                                    }
                                }
                                q.ready = q.ready.saturating_sub(1);
                                q.sessions.insert((exp, seq));
                                q.reservations.insert(
                                    rtok.as_str().to_owned(),
                                    Reservation {
                                        user: owner.unwrap_or_default(),
                                        seq,
                                        expires_ms: exp,
                                        in_use: false,
                                    },
                                );
                                Entry::Granted(rtok)
                            }
                        }
                    }
                },
            };
            expired += (before - q.seats.len()) as u64;
            (entry, q.stats(expired))
        })
    }

    pub(crate) fn leave(
        &self,
        s: &QueueSettings,
        token: &WaitingToken,
        now: u64,
    ) -> (Left, QueueStats) {
        let (_, e) = self.effective(s, &token.tag, now);
        let Some(queue) = self.get(&token.tag) else {
            return (Left::Left, QueueStats::default());
        };
        self.with_event(s, &e, queue, now, |q, expired| {
            if let Some(seq) = q.lookup(s, token, now) {
                let seat = q.seats.get(&seq);
                let admitted = seat.is_some_and(|x| x.admitted.is_some());
                let seen = seat.map(|x| x.seen_ms).unwrap_or(now);
                if !admitted && let Err(retry_ms) = polling::poll(seen, now) {
                    return (Left::Limited { retry_ms }, q.stats(expired));
                }
                q.drop_seat(seq);
            }
            (Left::Left, q.stats(expired))
        })
    }

    pub(crate) fn claim(
        &self,
        tag: EventTag,
        token: &ReservationToken,
        caller: &str,
        now: u64,
    ) -> Claim {
        let closed = self
            .defs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tag)
            .is_some_and(|d| d.def.state == EventState::Closed);
        let Some(queue) = self.get(&tag) else {
            return Claim::Missing;
        };
        if closed {
            return Claim::Missing;
        }
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

    pub(crate) fn settle(&self, tag: EventTag, token: &ReservationToken, caller: &str, used: bool) {
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
            if let Some(r) = q.reservations.remove(token.as_str()) {
                // The session ends: its active slot and its place are freed.
                q.drop_seat(r.seq);
            }
        } else if let Some(r) = q.reservations.get_mut(token.as_str()) {
            r.in_use = false;
        }
    }

    // -- definitions (store/events.rs) ---------------------------------------------------------

    /// Creates or patches a definition; `None` when at `MEMORY_MAX_DEFINITIONS`. A change to
    /// `closed` ends every place and token of the event.
    pub(crate) fn put_definition(
        &self,
        s: &QueueSettings,
        event_id: &str,
        patch: &EventPatch,
        now: u64,
    ) -> Option<EventDefinition> {
        let tag = EventTag::of(event_id);
        // Admission up to now at the old settings: the change applies from this instant.
        let (_, old) = self.effective(
            &QueueSettings {
                observation: None,
                ..*s
            },
            &tag,
            now,
        );
        if let Some(queue) = self.get(&tag) {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            q.sweep(s, now);
            q.advance(&old, now);
        }
        let mut defs = self.defs.write().unwrap_or_else(|e| e.into_inner());
        if !defs.contains_key(&tag) && defs.len() >= MEMORY_MAX_DEFINITIONS {
            return None;
        }
        let entry = defs.entry(tag).or_insert_with(|| MemoryDefinition {
            def: EventDefinition::defaults(event_id, s.rate),
            factor: Factor::default(),
        });
        let was_closed = entry.def.state == EventState::Closed;
        entry.def.apply(patch);
        if patch.adaptive == Some(false) {
            entry.factor = Factor::default();
        }
        let def = entry.def.clone();
        drop(defs);
        if def.state == EventState::Closed && !was_closed {
            self.reset(&tag);
        }
        Some(def)
    }

    /// Removes a definition and everything of the event; `false` when it was not defined.
    pub(crate) fn delete_definition(&self, event_id: &str) -> bool {
        let tag = EventTag::of(event_id);
        let removed = self
            .defs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&tag)
            .is_some();
        if removed {
            self.reset(&tag);
        }
        removed
    }

    /// Ends every place and token of the event at once.
    fn reset(&self, tag: &EventTag) {
        let mut shard = self.shard(tag).write().unwrap_or_else(|e| e.into_inner());
        if shard.remove(tag).is_some() {
            self.events.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn definition(
        &self,
        s: &QueueSettings,
        event_id: &str,
        now: u64,
    ) -> Option<(EventDefinition, EventFigures)> {
        let tag = EventTag::of(event_id);
        let (def, factor) = {
            let defs = self.defs.read().unwrap_or_else(|e| e.into_inner());
            let d = defs.get(&tag)?;
            (d.def.clone(), d.factor)
        };
        let e = effective_of(&def, factor);
        let mut figures = EventFigures {
            admission_factor: if def.adaptive { factor.value } else { 1.0 },
            ..EventFigures::default()
        };
        if let Some(queue) = self.get(&tag) {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            q.sweep(s, now);
            if e.state != EventState::Closed {
                q.advance(&e, now);
            }
            figures.waiting = q.waiting();
            figures.prequeue = if q.opened_at_seq.is_none() {
                q.prequeue.len() as u64
            } else {
                0
            };
            figures.active = q.ready + q.sessions.len() as u64;
            figures.admitted_total = q.total;
            figures.admission_rate_measured = q.window.rate(now);
        }
        Some((def, figures))
    }

    pub(crate) fn definitions(&self) -> Vec<String> {
        let defs = self.defs.read().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = defs.values().map(|d| d.def.event_id.clone()).collect();
        ids.sort();
        ids
    }
}

fn effective_of(def: &EventDefinition, factor: Factor) -> Effective {
    Effective {
        rate: def.admission_rps,
        state: def.state,
        opens_ms: def.opens_at_ms.unwrap_or(0),
        max_active: def.max_active,
        factor: if def.adaptive { factor.value } else { 1.0 },
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
            events_open: true,
            observation: None,
        }
    }

    #[test]
    fn memory_positions_are_fifo_and_close_up_when_people_leave_or_expire() {
        let q = MemoryQueues::default();
        let s = settings(0.001, 10_000);
        let tag = EventTag::of("e");
        let people: Vec<_> = (0..5)
            .map(|i| q.join(&s, tag, "e", None, [i as u8; 16], 0, 0))
            .collect();
        for (i, p) in people.iter().enumerate() {
            assert_eq!(p.position, Some(i as u64 + 1));
        }
        q.leave(&s, &people[1].token, 10);
        assert_eq!(
            q.status(&s, &people[2].token, 20).0.place,
            Place::Waiting(2)
        );
        // Only person 4 keeps polling; 0, 2 and 3 stop and expire after the TTL.
        q.status(&s, &people[4].token, 9_000);
        let (place, stats) = q.status(&s, &people[4].token, 12_000);
        assert_eq!(place.place, Place::Waiting(1));
        assert_eq!(stats.expired, 3);
        assert_eq!(
            q.status(&s, &people[0].token, 12_001).0.place,
            Place::Expired
        );
    }

    #[test]
    fn memory_admits_at_the_rate_in_order() {
        let q = MemoryQueues::default();
        let s = settings(10.0, 600_000);
        let tag = EventTag::of("e");
        let people: Vec<_> = (0..50)
            .map(|i| q.join(&s, tag, "e", None, [i as u8; 16], 0, 0))
            .collect();
        // 2 s later: 20 admitted, the first 20.
        let ready: Vec<bool> = people
            .iter()
            .map(|p| q.status(&s, &p.token, 2_000).0.place == Place::Ready)
            .collect();
        assert_eq!(ready.iter().filter(|r| **r).count(), 20);
        assert!(ready[..20].iter().all(|r| *r));
    }

    #[test]
    fn memory_known_users_keep_their_place() {
        let q = MemoryQueues::default();
        let s = settings(0.001, 600_000);
        let tag = EventTag::of("e");
        let a = q.join(&s, tag, "e", Some("alice"), [1; 16], 0, 0);
        q.join(&s, tag, "e", None, [2; 16], 0, 0);
        let again = q.join(&s, tag, "e", Some("alice"), [3; 16], 0, 5);
        assert_eq!(again.token, a.token);
        assert_eq!(again.position, Some(1));
        assert!(!again.new_place);
    }

    #[test]
    fn memory_reservation_tokens_are_claimed_once() {
        let q = MemoryQueues::default();
        let s = settings(1000.0, 600_000);
        let tag = EventTag::of("e");
        let a = q.join(&s, tag, "e", Some("alice"), [1; 16], 0, 0);
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

#[cfg(test)]
mod bound_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(ttl_ms: u64) -> QueueSettings {
        QueueSettings {
            rate: 0.001,
            heartbeat_ttl_ms: ttl_ms,
            reservation_ttl_ms: 1_000,
            events_open: true,
            observation: None,
        }
    }

    #[test]
    fn memory_drops_abandoned_events_once_their_last_member_expired() {
        // 100,000 one-person events, a 1 s heartbeat, one join per 0.1 ms of store time: the
        // structure never holds much more than a heartbeat's worth of events, and returns to
        // empty once the last member expired.
        let q = MemoryQueues::default();
        let s = settings(1_000);
        let mut peak = 0;
        for i in 0..100_000u64 {
            let now = 1_000_000 + i / 10;
            let id = format!("ev-{i}");
            let j = q.join(&s, EventTag::of(&id), &id, None, [1; 16], 0, now);
            assert_eq!(j.state, JoinState::Waiting);
            if i % 5_000 == 0 {
                peak = peak.max(q.entry_counts().0);
            }
        }
        assert!(peak <= 25_000, "peak {peak} live events");
        // After the TTL, the next call's idle sweep frees everything.
        let later = 1_000_000 + 10_000 + 5_000;
        q.join(&s, EventTag::of("probe"), "probe", None, [2; 16], 0, later);
        let (events, places, tokens) = q.entry_counts();
        assert_eq!((events, places, tokens), (1, 1, 0));
        assert_eq!(q.events.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn memory_refuses_new_events_beyond_its_bound_instead_of_growing() {
        let q = MemoryQueues::default();
        let s = settings(3_600_000);
        for i in 0..MEMORY_MAX_EVENTS {
            let id = format!("e{i}");
            q.join(&s, EventTag::of(&id), &id, None, [1; 16], 0, 1_000);
        }
        let j = q.join(
            &s,
            EventTag::of("one-more"),
            "one-more",
            None,
            [1; 16],
            0,
            1_000,
        );
        assert_eq!(j.state, JoinState::Full);
        assert_eq!(q.entry_counts().0, MEMORY_MAX_EVENTS);
    }

    #[test]
    fn memory_prequeue_opens_in_rank_order_then_fifo() {
        let q = MemoryQueues::default();
        let s = settings(3_600_000);
        let tag = EventTag::of("p");
        let patch = EventPatch {
            opens_at_ms: Some(Some(10_000)),
            admission_rps: Some(1000.0),
            ..EventPatch::default()
        };
        q.put_definition(&s, "p", &patch, 0).unwrap();
        let ranks = [50u64, 10, 40, 20, 30];
        let people: Vec<_> = ranks
            .iter()
            .map(|r| q.join(&s, tag, "p", None, [*r as u8; 16], *r, 1_000))
            .collect();
        assert!(people.iter().all(|p| p.state == JoinState::Prequeue));
        let late = q.join(&s, tag, "p", None, [9; 16], 1, 10_500);
        assert_eq!(late.position, Some(6));
        // Positions follow the ranks, not the join order.
        for (p, want) in people.iter().zip([5, 1, 4, 2, 3]) {
            assert_eq!(q.status(&s, &p.token, 10_500).0.place, Place::Waiting(want));
        }
        // 3 ms at 1000/s: the three best ranks are ready.
        let st: Vec<_> = people
            .iter()
            .map(|p| q.status(&s, &p.token, 10_503).0.place)
            .collect();
        assert_eq!(
            st.iter().filter(|p| **p == Place::Ready).count(),
            3,
            "{st:?}"
        );
        assert_eq!(st[1], Place::Ready);
        assert_eq!(st[0], Place::Waiting(2));
    }

    #[test]
    fn memory_caps_ready_plus_admitted_and_frees_slots_as_sessions_end() {
        let q = MemoryQueues::default();
        let s = settings(3_600_000);
        let tag = EventTag::of("c");
        let patch = EventPatch {
            max_active: Some(Some(2)),
            admission_rps: Some(1000.0),
            ..EventPatch::default()
        };
        q.put_definition(&s, "c", &patch, 0).unwrap();
        let people: Vec<_> = (0..5u8)
            .map(|i| q.join(&s, tag, "c", None, [i; 16], 0, 1_000))
            .collect();
        let ready = |now| {
            people
                .iter()
                .filter(|p| q.status(&s, &p.token, now).0.place == Place::Ready)
                .count()
        };
        assert_eq!(ready(2_000), 2);
        let (e, _) = q.enter(
            &s,
            &people[0].token,
            None,
            ReservationToken::generate(),
            2_100,
        );
        assert!(matches!(e, Entry::Granted(_)));
        // Still two active (one admitted, one ready): nobody new.
        assert_eq!(ready(2_200), 1);
        // The session ends on leave: one more is admitted.
        q.leave(&s, &people[0].token, 2_300);
        assert_eq!(ready(2_400), 2);
        // And on token expiry (reservation TTL 1 s).
        q.enter(
            &s,
            &people[1].token,
            None,
            ReservationToken::generate(),
            2_500,
        );
        assert_eq!(ready(2_600), 1);
        assert_eq!(ready(3_600), 2);
    }
}
