//! Rate-limit buckets in the store (SPEC §7): one GCRA bucket per client, as a plain decision
//! function ([`decide`]), the Redis Lua script that runs it on the Redis server clock, and its
//! in-process twin ([`MemoryBuckets`]). Not the HTTP side: headers, fallback and metrics live in
//! `middleware/ratelimit.rs`.
//!
//! GCRA keeps one number per client, the theoretical arrival time (TAT) of the next request in
//! microseconds. A bucket of `burst` tokens refilled every `interval` µs admits a request at `now`
//! when `TAT + interval - burst × interval <= now`, and then moves TAT on by one interval. A full
//! bucket is a TAT in the past, which is the same as no key at all: idle clients cost nothing.
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use super::redis::ScriptCall;
use super::{RedisStore, Store, StoreError};

/// The bucket's shape: one token every `interval_us`, at most `burst` stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub interval_us: u64,
    pub burst: u64,
}

impl Params {
    /// The interval is rounded up to whole microseconds, so the real rate is never above `rps`
    /// (rates over 1,000,000/s are 1,000,000/s).
    pub fn new(rps: f64, burst: u32) -> Params {
        let interval = (1_000_000.0 / rps).ceil();
        Params {
            interval_us: if interval.is_finite() && interval >= 1.0 {
                interval as u64
            } else {
                1
            },
            burst: u64::from(burst.max(1)),
        }
    }
}

/// What [`decide`] concluded, and the bucket's new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Whole tokens left after this request.
    pub remaining: u64,
    /// When refused: the time until one token is back (a retry after it succeeds).
    pub retry_after: Duration,
    /// The time until the bucket is full again.
    pub reset: Duration,
    /// The new theoretical arrival time, µs (unchanged when refused).
    pub tat: u64,
}

/// The GCRA decision for a bucket whose TAT is `tat` (0: no bucket yet) at `now` (µs on any
/// clock that only moves forward). The Lua script below is this function, line for line.
pub fn decide(tat: u64, now: u64, p: Params) -> Verdict {
    let tat = tat.max(now);
    let new_tat = tat.saturating_add(p.interval_us);
    let window = p.burst.saturating_mul(p.interval_us);
    let allow_at = new_tat.saturating_sub(window);
    if now < allow_at {
        Verdict {
            allowed: false,
            remaining: 0,
            retry_after: Duration::from_micros(allow_at - now),
            reset: Duration::from_micros(tat - now),
            tat,
        }
    } else {
        Verdict {
            allowed: true,
            // = (now - allow_at) / interval, without going below zero near the clock's origin.
            remaining: (now.saturating_add(window) - new_tat) / p.interval_us,
            retry_after: Duration::ZERO,
            reset: Duration::from_micros(new_tat - now),
            tat: new_tat,
        }
    }
}

/// The Redis key of a client's bucket. The client is the hash tag, so the key is Redis-Cluster
/// safe (one key per script call in any case).
pub fn key(client: IpAddr) -> String {
    String::from_utf8_lossy(key_bytes(client, &mut [0u8; KEY_BUF])).into_owned()
}

/// Room for `rl:{` + the longest IPv6 text (45 bytes) + `}`.
const KEY_BUF: usize = 64;

/// [`key`], written into `buf` (no allocation per request).
fn key_bytes(client: IpAddr, buf: &mut [u8; KEY_BUF]) -> &[u8] {
    let mut w = &mut buf[..];
    // Cannot fail: the longest key is 51 bytes.
    let _ = write!(w, "rl:{{{client}}}");
    let len = KEY_BUF - w.len();
    &buf[..len]
}

/// [`decide`] on the Redis server clock, so replicas with skewed clocks agree. TAT is kept as
/// an integer string (`%d`: Lua's default number format would round 16-digit microseconds);
/// the key lives until the bucket would be full again. Returns
/// `{allowed, remaining, retry_after_us, reset_us}`.
const SCRIPT: &str = include_str!("lua/ratelimit.lua");

static REDIS_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SCRIPT));

/// Takes a token from `client`'s shared bucket: one round trip (or none, in memory).
pub async fn take(store: &Store, client: IpAddr, p: Params) -> Result<Verdict, StoreError> {
    match store {
        Store::Memory(m) => Ok(m.ratelimit.take(client, p)),
        Store::Redis(r) => take_redis(r, client, p).await,
    }
}

/// One EVALSHA: take a token from `client`'s shared bucket.
async fn take_redis(redis: &RedisStore, client: IpAddr, p: Params) -> Result<Verdict, StoreError> {
    let mut buf = [0u8; KEY_BUF];
    let mut call = ScriptCall::new(&REDIS_SCRIPT, &[key_bytes(client, &mut buf)]);
    call.arg(p.interval_us).arg(p.burst);
    let reply: Vec<i64> = redis.eval(&call).await?;
    let [allowed, remaining, retry_after, reset] = reply[..] else {
        return Err(StoreError::Protocol(format!(
            "rate-limit script returned {} values",
            reply.len()
        )));
    };
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    Ok(Verdict {
        allowed: allowed == 1,
        remaining: u64::try_from(remaining).unwrap_or(0),
        retry_after: micros(retry_after),
        reset: micros(reset),
        tat: 0,
    })
}

const SHARDS: usize = 64;

/// Per-client buckets in process: the memory store's, and each replica's fallback while Redis
/// is down. Sharded maps (a client touches one shard's lock, briefly, never across an await);
/// full buckets are swept out as a shard grows, so idle clients cost nothing here either.
pub struct MemoryBuckets {
    /// Buckets one shard holds at most.
    per_shard: usize,
    epoch: Instant,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<Shard>]>,
}

struct Shard {
    tats: HashMap<IpAddr, u64>,
    sweep_at: usize,
}

const MIN_SWEEP: usize = 1024;
/// Buckets held at most (bounded by count as well as by time). Past it, one bucket is dropped to
/// make room: that client starts again with a full bucket, which errs towards letting a request
/// through rather than growing without bound under a flood of spoofed or rotating addresses.
pub const MAX_MEMORY_BUCKETS: usize = 1 << 20;

impl Default for MemoryBuckets {
    fn default() -> Self {
        Self::with_capacity(MAX_MEMORY_BUCKETS)
    }
}

impl MemoryBuckets {
    /// Holds at most about `max` buckets (rounded to whole shards).
    fn with_capacity(max: usize) -> Self {
        let per_shard = (max / SHARDS).max(1);
        MemoryBuckets {
            per_shard,
            epoch: Instant::now(),
            hasher: Default::default(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        tats: HashMap::new(),
                        sweep_at: MIN_SWEEP.min(per_shard),
                    })
                })
                .collect(),
        }
    }
}

impl Shard {
    fn sweep(&mut self, now: u64, per_shard: usize) {
        self.tats.retain(|_, tat| *tat > now);
        if self.tats.capacity() > 4 * self.tats.len().max(64) {
            self.tats.shrink_to_fit();
        }
        self.sweep_at = (self.tats.len() * 2).clamp(MIN_SWEEP.min(per_shard), per_shard);
    }
}

impl MemoryBuckets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a token from `client`'s bucket now.
    pub fn take(&self, client: IpAddr, p: Params) -> Verdict {
        // +1: TAT 0 means "no bucket", and the epoch's first microsecond is a real time.
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1;
        self.take_at(client, now, p)
    }

    fn take_at(&self, client: IpAddr, now: u64, p: Params) -> Verdict {
        let i = (self.hasher.hash_one(client) as usize) % self.shards.len();
        let mut shard = self.shards[i].lock().unwrap_or_else(|e| e.into_inner());
        let tat = shard.tats.get(&client).copied().unwrap_or(0);
        let v = decide(tat, now, p);
        if v.allowed {
            if shard.tats.len() >= shard.sweep_at && !shard.tats.contains_key(&client) {
                shard.sweep(now, self.per_shard);
                if shard.tats.len() >= self.per_shard
                    && let Some(victim) = shard.tats.keys().next().copied()
                {
                    shard.tats.remove(&victim);
                }
            }
            shard.tats.insert(client, v.tat);
        }
        v
    }

    /// Drops every full bucket (its TAT is in the past: the same as no bucket) and gives the
    /// memory back. Run on growth and by the memory store's periodic sweep.
    pub fn sweep(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1;
        self.sweep_at(now);
    }

    fn sweep_at(&self, now: u64) {
        for shard in self.shards.iter() {
            shard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sweep(now, self.per_shard);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.tats.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SEC: u64 = 1_000_000;

    fn p(rps: f64, burst: u32) -> Params {
        Params::new(rps, burst)
    }

    #[test]
    fn a_full_bucket_admits_burst_then_refuses() {
        let p = p(5.0, 10);
        let mut tat = 0;
        let now = 100 * SEC;
        for i in 0..10 {
            let v = decide(tat, now, p);
            assert!(v.allowed, "request {i}");
            assert_eq!(v.remaining, 9 - i);
            tat = v.tat;
        }
        let v = decide(tat, now, p);
        assert!(!v.allowed);
        assert_eq!(v.remaining, 0);
        assert_eq!(v.retry_after, Duration::from_millis(200));
        assert_eq!(v.reset, Duration::from_secs(2));
        assert_eq!(v.tat, tat, "a refusal costs nothing");
    }

    #[test]
    fn the_clock_origin_is_a_time_like_any_other() {
        let v = decide(0, 1, p(5.0, 3));
        assert!(v.allowed);
        assert_eq!(v.remaining, 2);
    }

    #[test]
    fn retry_after_is_honest() {
        let p = p(5.0, 2);
        let now = 7 * SEC;
        let tat = decide(decide(0, now, p).tat, now, p).tat;
        let refused = decide(tat, now, p);
        assert!(!refused.allowed);
        let later = now + refused.retry_after.as_micros() as u64;
        assert!(decide(tat, later, p).allowed);
        assert!(!decide(tat, later - 1, p).allowed);
    }

    #[test]
    fn the_bucket_refills_at_the_rate_up_to_burst() {
        let p = p(5.0, 10);
        let now = 10 * SEC;
        let mut tat = 0;
        for _ in 0..10 {
            tat = decide(tat, now, p).tat;
        }
        // One second later: five tokens back.
        let v = decide(tat, now + SEC, p);
        assert!(v.allowed);
        assert_eq!(v.remaining, 4);
        // A long idle time never stores more than burst.
        let v = decide(tat, now + 3600 * SEC, p);
        assert_eq!(v.remaining, 9);
    }

    #[test]
    fn rates_round_down_never_up() {
        assert_eq!(p(3.0, 1).interval_us, 333_334);
        assert_eq!(p(1e9, 1).interval_us, 1);
        assert_eq!(p(0.5, 1).interval_us, 2 * SEC);
        assert_eq!(p(5.0, 0).burst, 1);
    }

    /// Property (randomised, many cases): over any run of arrivals, a bucket admits at most
    /// `burst + rate × T` requests in T seconds, and exactly `burst` from a full bucket at once.
    #[test]
    fn bucket_never_admits_more_than_burst_plus_rate_times_t() {
        for case in 0..500 {
            let rps = rand::random_range(0.5..200.0);
            let burst = rand::random_range(1..50u32);
            let p = p(rps, burst);
            let start = rand::random_range(1..1_000 * SEC);
            let mut now = start;
            let mut tat = 0;
            let mut admitted = Vec::new();
            for _ in 0..rand::random_range(1..600) {
                now += rand::random_range(0..(3 * p.interval_us));
                let v = decide(tat, now, p);
                if v.allowed {
                    admitted.push(now);
                    tat = v.tat;
                }
            }
            // Every window [a, b] of the admitted arrivals.
            for (i, &a) in admitted.iter().enumerate() {
                for (j, &b) in admitted.iter().enumerate().skip(i) {
                    let count = (j - i + 1) as f64;
                    let t = (b - a) as f64 / SEC as f64;
                    let bound = f64::from(burst) + t * 1e6 / p.interval_us as f64;
                    assert!(
                        count <= bound + 1e-9,
                        "case {case}: {count} admitted in {t}s, rps {rps}, burst {burst}"
                    );
                }
            }
        }
    }

    #[test]
    fn memory_buckets_are_per_client_and_sweep_idle_ones() {
        let b = MemoryBuckets::new();
        let p = p(1.0, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let c: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(b.take_at(a, SEC, p).allowed);
        assert!(b.take_at(a, SEC, p).allowed);
        assert!(!b.take_at(a, SEC, p).allowed);
        assert!(
            b.take_at(c, SEC, p).allowed,
            "another client has its own bucket"
        );
        // Many clients, then long idle: the map does not keep full buckets.
        let n = (SHARDS * MIN_SWEEP * 2) as u32;
        for i in 0..n {
            b.take_at(IpAddr::from(i.to_be_bytes()), 2 * SEC, p);
        }
        for i in 0..2 * n {
            let v6 = u128::from(i) + (1u128 << 100);
            b.take_at(IpAddr::from(v6.to_be_bytes()), 100 * SEC, p);
        }
        assert!(b.len() < 3 * n as usize, "{}", b.len());
        // Once every bucket is full again, a sweep leaves nothing behind.
        b.sweep_at(1_000 * SEC);
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn memory_buckets_are_bounded_by_count() {
        let max = SHARDS * 64;
        let b = MemoryBuckets::with_capacity(max);
        let p = p(1.0, 5);
        // Every bucket stays live (not full) for the whole test: only the cap bounds them.
        for i in 0..(max * 4) as u32 {
            b.take_at(IpAddr::from(i.to_be_bytes()), SEC, p);
        }
        assert!(b.len() <= max, "{}", b.len());
        assert!(b.len() >= max / 2, "the cap is not a purge: {}", b.len());
    }

    #[test]
    fn keys_are_cluster_safe() {
        assert_eq!(key("192.0.2.1".parse().unwrap()), "rl:{192.0.2.1}");
        assert_eq!(key("2001:db8::".parse().unwrap()), "rl:{2001:db8::}");
        // The longest address text still fits the buffer.
        let long: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        assert_eq!(key(long), format!("rl:{{{long}}}"));
    }
}

/// Property tests (issue #15) for [`decide`]: never more than `burst + rate × T` in any window,
/// and the numbers it reports (remaining, retry-after, reset) are the ones it then keeps to.
#[cfg(test)]
mod proptests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    const SEC: u64 = 1_000_000;

    fn params() -> impl Strategy<Value = (f64, u32)> {
        (
            prop_oneof![
                4 => 0.5f64..200.0,
                1 => 200.0f64..20_000.0,
                1 => prop::sample::select(vec![1.0, 3.0, 7.0, 0.3, 1e-3, 999_999.0, 1e7]),
            ],
            prop_oneof![3 => 1u32..50, 1 => 50u32..300, 1 => Just(1u32)],
        )
    }

    /// Gaps between arrivals, in units of the bucket's interval / 8: bursts at one instant,
    /// arrivals near the rate, idle stretches.
    fn gaps() -> impl Strategy<Value = Vec<u64>> {
        vec(
            prop_oneof![3 => Just(0u64), 4 => 0u64..24, 1 => 0u64..2000],
            1..300,
        )
    }

    /// The admitted arrival times of one client sending at `start + gaps…`; a refusal must
    /// leave the bucket as it was (only the clock moved).
    fn run(p: Params, start: u64, gaps: &[u64]) -> Result<Vec<u64>, TestCaseError> {
        let step = (p.interval_us / 8).max(1);
        let mut now = start;
        let mut tat = 0;
        let mut admitted = Vec::new();
        for g in gaps {
            now += g * step;
            let v = decide(tat, now, p);
            if v.allowed {
                admitted.push(now);
                tat = v.tat;
            } else {
                prop_assert_eq!(v.tat, tat.max(now), "a refusal changed the TAT");
            }
        }
        Ok(admitted)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Over every window [a, b] (a and b admitted arrivals, which is where the worst
        /// windows start and end), at most `burst + ⌊(b − a) / interval⌋` are admitted, so at
        /// most BURST + RPS × T with T = b − a: the interval is RPS rounded up to whole µs.
        #[test]
        fn no_window_admits_more_than_burst_plus_rate_times_t(
            (rps, burst) in params(),
            start in 1u64..1_000_000 * SEC,
            gaps in gaps(),
        ) {
            let p = Params::new(rps, burst);
            let admitted = run(p, start, &gaps)?;
            for (i, &a) in admitted.iter().enumerate() {
                for (j, &b) in admitted.iter().enumerate().skip(i) {
                    let count = (j - i + 1) as u64;
                    let t = b - a;
                    prop_assert!(
                        count <= p.burst + t / p.interval_us,
                        "{} admitted in [{}, {}] µs; interval {} µs, burst {}",
                        count, a, b, p.interval_us, p.burst
                    );
                    let by_rps = f64::from(burst.max(1)) + rps * t as f64 / SEC as f64;
                    prop_assert!(
                        count as f64 <= by_rps * (1.0 + 1e-12),
                        "{} admitted in {} µs at {} rps, burst {}", count, t, rps, burst
                    );
                }
            }
        }

        /// The bound is met by admitting, not by refusing: a full bucket admits exactly
        /// `burst` at one instant, then one per interval; a client at the rate is never refused.
        #[test]
        fn a_full_bucket_admits_burst_and_then_the_rate(
            (rps, burst) in params(),
            start in 1u64..1_000_000 * SEC,
            later in 0u64..400,
        ) {
            let p = Params::new(rps, burst);
            let mut tat = 0;
            for _ in 0..p.burst {
                let v = decide(tat, start, p);
                prop_assert!(v.allowed);
                tat = v.tat;
            }
            prop_assert!(!decide(tat, start, p).allowed);
            // `later` intervals on: exactly min(later, burst) more at that instant.
            let now = start + later * p.interval_us;
            let mut more = 0;
            loop {
                let v = decide(tat, now, p);
                if !v.allowed {
                    break;
                }
                tat = v.tat;
                more += 1;
                prop_assert!(more <= p.burst);
            }
            prop_assert_eq!(more, later.min(p.burst));
            // Then exactly at the rate: always admitted.
            let mut t = now;
            for _ in 0..50 {
                t += p.interval_us;
                let v = decide(tat, t, p);
                prop_assert!(v.allowed);
                tat = v.tat;
            }
        }

        /// `remaining` is how many more are admitted at that instant; a refusal's retry-after
        /// is the first instant that is admitted; `reset` is when the bucket is full again.
        #[test]
        fn the_reported_numbers_are_kept(
            (rps, burst) in params(),
            start in 1u64..1_000_000 * SEC,
            gaps in gaps(),
        ) {
            let p = Params::new(rps, burst);
            let step = (p.interval_us / 8).max(1);
            let mut now = start;
            let mut tat = 0;
            for g in gaps {
                now += g * step;
                let v = decide(tat, now, p);
                if v.allowed {
                    prop_assert!(v.remaining < p.burst);
                    prop_assert_eq!(v.retry_after, Duration::ZERO);
                    // Exactly `remaining` more now.
                    let mut t = v.tat;
                    for _ in 0..v.remaining {
                        let w = decide(t, now, p);
                        prop_assert!(w.allowed);
                        t = w.tat;
                    }
                    prop_assert!(!decide(t, now, p).allowed);
                    tat = v.tat;
                } else {
                    prop_assert_eq!(v.remaining, 0);
                    let retry = u64::try_from(v.retry_after.as_micros()).unwrap_or(u64::MAX);
                    prop_assert!(retry > 0);
                    prop_assert!(decide(tat, now + retry, p).allowed);
                    prop_assert!(!decide(tat, now + retry - 1, p).allowed);
                }
                // At `reset` the bucket is full: `burst` admitted at that instant.
                let reset = u64::try_from(v.reset.as_micros()).unwrap_or(u64::MAX);
                let full = decide(v.tat, now + reset, p);
                prop_assert_eq!(full.remaining + 1, p.burst);
            }
        }

        /// Any clock values and any parameters: no panic, sane numbers.
        #[test]
        fn any_input_is_decided_without_panic(
            tat in any::<u64>(),
            now in any::<u64>(),
            rps in any::<f64>(),
            burst in any::<u32>(),
        ) {
            let p = Params::new(rps, burst);
            prop_assert!(p.interval_us >= 1 && p.burst >= 1);
            let v = decide(tat, now, p);
            if v.allowed {
                prop_assert!(v.remaining < p.burst);
                prop_assert!(v.tat >= now);
            } else {
                prop_assert_eq!(v.tat, tat.max(now));
            }
        }
    }
}
