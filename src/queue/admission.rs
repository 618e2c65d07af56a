//! Admission and eta arithmetic (SPEC §5), as pure functions of `now`.
//!
//! Admission is a token bucket measured in people: the allowance refills at `rate` per second
//! and each admitted person spends one; while nobody is waiting it holds at most `rate` (one
//! second's worth). It is evaluated lazily, on each call, from the store's clock: a call admits
//! what a continuous admitter would have admitted since the previous call, so a person's turn
//! comes at the same moment whether the queue is polled often or rarely. Over any window of T
//! seconds at most `rate × T + rate` turns come, whatever the number of replicas, because the
//! allowance lives in the store next to the queue. The Lua scripts in `store/queue.rs` compute
//! exactly this on the Redis server clock; the memory store calls these functions.

/// The shared allowance of one event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admission {
    /// People that may be admitted now (fractional: refills continuously).
    pub credit: f64,
    /// When `credit` was computed, in milliseconds of the store's clock.
    pub at_ms: u64,
}

impl Admission {
    /// A new event starts with no allowance: the first admission comes `1/rate` seconds after
    /// the first join, so a sale cannot open with a burst.
    pub fn new(now_ms: u64) -> Self {
        Admission {
            credit: 0.0,
            at_ms: now_ms,
        }
    }

    /// The allowance at `now_ms` before anyone is admitted: refilled for the time elapsed (never
    /// negative time). Not capped yet: people waiting since the last call were due their turns.
    pub fn refill(&self, rate: f64, now_ms: u64) -> f64 {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.credit + rate * elapsed
    }

    /// Admits up to `waiting` people at `now_ms`: returns how many, and the new allowance, of
    /// which at most one second's worth is kept (unused allowance does not pile up).
    pub fn admit(&self, rate: f64, now_ms: u64, waiting: u64) -> (u64, Admission) {
        let credit = self.refill(rate, now_ms);
        let admitted = (credit.max(0.0).floor() as u64).min(waiting);
        let next = Admission {
            credit: (credit - admitted as f64).min(rate),
            at_ms: now_ms.max(self.at_ms),
        };
        (admitted, next)
    }
}

/// `ceil(ahead / rate)` in whole seconds (SPEC §5); 0 with nobody ahead.
pub fn eta_secs(ahead: u64, rate: f64) -> u64 {
    if ahead == 0 || rate <= 0.0 {
        return 0;
    }
    (ahead as f64 / rate).ceil() as u64
}

/// Admissions over the last 60 s, in six 10-s buckets (SPEC §5: the eta uses the measured rate
/// once 10 people were admitted). The Lua prelude keeps the same buckets in the event's meta.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AdmissionWindow {
    /// Index (now / 10 s) of the newest bucket.
    pub newest: u64,
    pub buckets: [u64; 6],
    /// When the first person of the event was admitted (0 = nobody yet).
    pub first_ms: u64,
}

impl AdmissionWindow {
    fn roll(&mut self, now_ms: u64) -> usize {
        let bi = now_ms / 10_000;
        if bi > self.newest {
            for i in self.newest + 1..=bi.min(self.newest + 6) {
                self.buckets[(i % 6) as usize] = 0;
            }
            self.newest = bi;
        }
        (bi % 6) as usize
    }

    pub fn record(&mut self, now_ms: u64, admitted: u64) {
        if admitted == 0 {
            return;
        }
        if self.first_ms == 0 {
            self.first_ms = now_ms;
        }
        let i = self.roll(now_ms);
        self.buckets[i] += admitted;
    }

    /// People per second over the last 60 s (or since the first admission, when sooner).
    pub fn rate(&mut self, now_ms: u64) -> f64 {
        self.roll(now_ms);
        if self.first_ms == 0 {
            return 0.0;
        }
        let sum: u64 = self.buckets.iter().sum();
        let span = (now_ms.saturating_sub(self.first_ms) as f64 / 1000.0).clamp(1.0, 60.0);
        sum as f64 / span
    }
}

/// Heartbeat expiry: a place not seen for `ttl_ms` is gone.
pub fn is_expired(last_seen_ms: u64, now_ms: u64, ttl_ms: u64) -> bool {
    last_seen_ms.saturating_add(ttl_ms) <= now_ms
}

/// Width of the heartbeat buckets the Redis store sweeps (an eighth of the heartbeat TTL, at
/// least a second): a place expires between `ttl` and `ttl + width` after its last poll.
pub fn heartbeat_bucket_ms(ttl_ms: u64) -> u64 {
    (ttl_ms / 8).max(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_is_ceil_of_people_ahead_over_rate() {
        assert_eq!(eta_secs(0, 100.0), 0);
        assert_eq!(eta_secs(1, 100.0), 1);
        assert_eq!(eta_secs(100, 100.0), 1);
        assert_eq!(eta_secs(101, 100.0), 2);
        assert_eq!(eta_secs(999, 20.0), 50);
        assert_eq!(eta_secs(3, 0.5), 6);
    }

    #[test]
    fn a_new_event_admits_nobody_at_once() {
        let a = Admission::new(1_000);
        assert_eq!(a.admit(20.0, 1_000, 1_000).0, 0);
        assert_eq!(a.admit(20.0, 1_100, 1_000).0, 2);
    }

    #[test]
    fn idle_allowance_never_exceeds_one_second_of_rate() {
        // Nobody waiting for an hour: one second's worth is kept, not 72,000.
        let (n, idle) = Admission::new(0).admit(20.0, 3_600_000, 0);
        assert_eq!(n, 0);
        assert_eq!(idle.credit, 20.0);
        let (n, _) = idle.admit(20.0, 3_600_000, 1_000);
        assert_eq!(n, 20);
    }

    #[test]
    fn turns_come_at_the_rate_however_rarely_the_queue_is_polled() {
        // People waiting, no call for 5 s: the next call finds 100 turns come, as if polled.
        let (n, _) = Admission::new(0).admit(20.0, 5_000, 1_000);
        assert_eq!(n, 100);
    }

    #[test]
    fn over_any_window_at_most_rate_times_t_plus_rate() {
        // Calls at irregular times, always plenty waiting: the count admitted in [t0, t1]
        // never exceeds rate × (t1 - t0) + rate.
        let rate = 20.0;
        let mut state = Admission::new(0);
        let mut log = Vec::new();
        let mut now = 0u64;
        for i in 0..2_000u64 {
            now += (i * 7919) % 173; // irregular gaps, 0..172 ms
            let (n, next) = state.admit(rate, now, u64::MAX);
            state = next;
            log.push((now, n));
        }
        for (i, &(t0, _)) in log.iter().enumerate() {
            let mut total = 0;
            for &(t, n) in &log[i..] {
                total += n;
                let window = (t - t0) as f64 / 1000.0;
                assert!(total as f64 <= rate * window + rate, "{total} in {window}s");
            }
        }
        // And it does admit at the rate over the long run.
        let total: u64 = log.iter().map(|&(_, n)| n).sum();
        let expected = rate * now as f64 / 1000.0;
        assert!(
            (total as f64 - expected).abs() <= rate,
            "{total} vs {expected}"
        );
    }

    #[test]
    fn admission_is_bounded_by_who_is_waiting_and_keeps_the_rest() {
        let a = Admission::new(0);
        let (n, next) = a.admit(10.0, 1_000, 3);
        assert_eq!(n, 3);
        assert_eq!(next.credit, 7.0);
    }

    #[test]
    fn clock_going_backwards_adds_nothing() {
        let a = Admission {
            credit: 1.5,
            at_ms: 10_000,
        };
        assert_eq!(a.refill(10.0, 9_000), 1.5);
        assert_eq!(a.admit(10.0, 9_000, 5).1.at_ms, 10_000);
    }

    #[test]
    fn the_window_measures_the_last_minute() {
        let mut w = AdmissionWindow::default();
        assert_eq!(w.rate(5_000), 0.0);
        for t in 0..30u64 {
            w.record(100_000 + t * 1_000, 5);
        }
        // 150 admitted over 29 s.
        assert!((w.rate(129_000) - 150.0 / 29.0).abs() < 0.01);
        // A paused minute later the window is empty again.
        assert_eq!(w.rate(200_000), 0.0);
    }

    #[test]
    fn heartbeat_expiry_is_at_the_ttl() {
        assert!(!is_expired(1_000, 1_999, 1_000));
        assert!(is_expired(1_000, 2_000, 1_000));
        assert_eq!(heartbeat_bucket_ms(300_000), 37_500);
        assert_eq!(heartbeat_bucket_ms(1_000), 1_000);
    }
}
