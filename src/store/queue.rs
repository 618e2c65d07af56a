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
//!
//! The files: `verbs` has the `Store` methods (each runs its Lua script, `scripts`, or calls
//! the in-memory twin, `memory`); this file holds the settings and answers they share.
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::QueueConfig;
use crate::queue::adaptive::Health;
use crate::queue::events::EventState;
use crate::queue::{ReservationToken, WaitingToken};

mod memory;
mod scripts;
mod verbs;

pub use self::memory::MemoryQueues;
pub(crate) use self::scripts::{PRELUDE, event_invocation};

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
