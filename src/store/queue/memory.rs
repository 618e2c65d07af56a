//! The in-memory twin: one `EventQueue` per event behind its own lock (events are found through a
//! sharded map, so there is no global lock on the request path), and the definitions beside it.
//!
//! Bounded by time and count: an event's runtime state is dropped once its last place and
//! session have expired (an idle sweep runs at most once a second), and at most
//! `MEMORY_MAX_EVENTS` live events, `MEMORY_MAX_PLACES` places per event and
//! `MEMORY_MAX_DEFINITIONS` definitions are kept (beyond: 503 / 400, never unbounded growth).
//!
//! This file holds the structures and the sweep and admission steps; the calls the `Store`
//! methods make are in `verbs`, the operator's definitions in `definitions`.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use super::{MEMORY_MAX_EVENTS, QueueSettings, QueueStats, now_ms};
use crate::queue::adaptive::{self, Factor};
use crate::queue::admission::{Admission, AdmissionWindow, is_expired};
use crate::queue::events::{EventDefinition, EventState};
use crate::queue::token::encode_secret;
use crate::queue::{EventTag, WaitingToken};

mod definitions;
mod verbs;

#[cfg(test)]
mod bound_tests;
#[cfg(test)]
mod tests;

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
