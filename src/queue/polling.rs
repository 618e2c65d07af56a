//! How often a waiting token may poll and should poll (SPEC §5), as pure functions of `now`.
//!
//! Each waiting token has a bucket of [`POLL_BURST`] polls refilled at [`POLL_RATE`] per second.
//! It is kept as one number, with no extra byte per person: the place's `seen` time doubles as
//! the bucket's state (GCRA). `seen` is the *virtual* time of the last poll: a poll moves it to
//! `max(seen + interval, now)` and is allowed while that stays within `(burst − 1) × interval`
//! of `now`. A place polled at a sane pace has `seen = now`; a burst pushes it at most 2 s into
//! the future, so heartbeat expiry (`seen + ttl`) comes at most 2 s later than the last poll's
//! TTL. The Lua scripts in `store/queue.rs` compute exactly this.

/// Polls a token may make at once.
pub const POLL_BURST: u64 = 5;
/// Polls per second refilled.
pub const POLL_RATE: u64 = 2;
/// Milliseconds per refilled poll.
pub const POLL_INTERVAL_MS: u64 = 1000 / POLL_RATE;
/// How far `seen` may run ahead of `now`.
pub const POLL_TOLERANCE_MS: u64 = (POLL_BURST - 1) * POLL_INTERVAL_MS;

/// A poll at `now` by a token last seen (virtually) at `seen`: `Ok(new seen)` or
/// `Err(milliseconds until the next poll is allowed)`.
pub fn poll(seen: u64, now: u64) -> Result<u64, u64> {
    let next = (seen + POLL_INTERVAL_MS).max(now);
    if next - now > POLL_TOLERANCE_MS {
        Err(next - now - POLL_TOLERANCE_MS)
    } else {
        Ok(next)
    }
}

/// Seconds until the next poll (`poll_after_sec`): 1 s when the turn is due within ~10 s,
/// a tenth of the distance beyond that, never more than 30 s and never more than a quarter of
/// the heartbeat TTL (so a client following it never expires). `eta` `None` = unknown (paused):
/// poll every 5 s.
pub fn poll_after_secs(eta: Option<u64>, heartbeat_ttl_ms: u64) -> u64 {
    let want = match eta {
        None => 5,
        Some(e) if e <= 10 => 1,
        Some(e) => e.div_ceil(10),
    };
    let ceiling = (heartbeat_ttl_ms / 4000).clamp(1, 30);
    want.clamp(1, ceiling)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn five_polls_at_once_then_two_per_second() {
        let mut seen = 0;
        for _ in 0..5 {
            seen = poll(seen, 10_000).unwrap_or_else(|e| panic!("refused, retry in {e}"));
        }
        assert_eq!(poll(seen, 10_000), Err(500));
        // 500 ms later one more, then refused again.
        seen = poll(seen, 10_500).unwrap();
        assert!(poll(seen, 10_500).is_err());
        // A steady 2/s never hits the limit, and `seen` stays at `now`.
        let mut seen = 0;
        for i in 0..100 {
            seen = poll(seen, 20_000 + i * 500).unwrap();
        }
        assert_eq!(seen, 20_000 + 99 * 500);
    }

    #[test]
    fn seen_never_runs_more_than_the_tolerance_ahead() {
        let mut seen = 0;
        for _ in 0..50 {
            if let Ok(s) = poll(seen, 1_000) {
                seen = s;
            }
        }
        assert!(seen <= 1_000 + POLL_TOLERANCE_MS);
    }

    #[test]
    fn poll_after_grows_with_the_distance_and_stays_inside_the_heartbeat() {
        let ttl = 300_000;
        assert_eq!(poll_after_secs(Some(0), ttl), 1);
        assert_eq!(poll_after_secs(Some(10), ttl), 1);
        assert_eq!(poll_after_secs(Some(60), ttl), 6);
        assert_eq!(poll_after_secs(Some(10_000), ttl), 30);
        assert_eq!(poll_after_secs(None, ttl), 5);
        // A short heartbeat caps it: 20 s TTL → at most 5 s.
        assert_eq!(poll_after_secs(Some(10_000), 20_000), 5);
        assert_eq!(poll_after_secs(Some(10_000), 1_000), 1);
    }
}
