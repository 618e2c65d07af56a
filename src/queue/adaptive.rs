//! Adaptive admission (SPEC §5a): the event's admission factor follows the reservation
//! upstream's health. Two pure parts, both with `now` passed in:
//! - [`HealthWindow`]: what one replica saw of its reservation calls over the last 10 s (share of
//!   5xx and timeouts, p99) and the verdict against `QUEUE_ADAPTIVE_MAX_ERRORS` / `_P99`;
//! - [`step`]: the AIMD rule applied to the shared factor (×0.7 at most once per 5 s while
//!   unhealthy, +0.1 per 5 s once healthy for 5 s, floor 0.1, cap 1).
//!
//! The factor lives in the store with the event's definition; each replica sends its verdict
//! with a queue call at most once a second and the store applies [`step`] on its own clock (the
//! Lua prelude in `store/lua/queue_prelude.lua` is the same rule), so every replica admits at
//! the same rate and the "once per 5 s" holds however many replicas report.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::QueueConfig;
use crate::queue::EventTag;

pub const DECREASE: f64 = 0.7;
pub const INCREASE: f64 = 0.1;
pub const FLOOR: f64 = 0.1;
pub const PERIOD_MS: u64 = 5_000;
/// The window a replica judges over.
pub const WINDOW_MS: u64 = 10_000;

/// One replica's verdict on the reservation upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
}

impl Health {
    /// The verdict as the Lua prelude reads it.
    pub fn as_arg(self) -> &'static str {
        match self {
            Health::Healthy => "h",
            Health::Unhealthy => "u",
        }
    }
}

/// The shared factor of one event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Factor {
    pub value: f64,
    /// When the value last changed (ms).
    pub changed_ms: u64,
    /// When a replica last reported unhealthy (ms).
    pub unhealthy_ms: u64,
}

impl Default for Factor {
    fn default() -> Self {
        Factor {
            value: 1.0,
            changed_ms: 0,
            unhealthy_ms: 0,
        }
    }
}

/// The AIMD rule: one observation at `now`. Growth is rounded to 1e-9 so ten steps of 0.1 reach
/// exactly 1 (the Lua twin rounds the same way). Growth steps keep a 5-s grid while they follow
/// each other (the next one is due 5 s after the previous one was due, not after the report
/// that happened to carry it), so reports once a second do not stretch "+0.1 per 5 s"; a
/// decrease is stamped with its own time, so it comes at most once per 5 s of real time.
pub fn step(f: Factor, h: Health, now: u64) -> Factor {
    let since_change = now.saturating_sub(f.changed_ms);
    let stamp = if since_change < 2 * PERIOD_MS {
        f.changed_ms + PERIOD_MS
    } else {
        now
    };
    match h {
        Health::Unhealthy => {
            let mut next = Factor {
                unhealthy_ms: now,
                ..f
            };
            if since_change >= PERIOD_MS && f.value > FLOOR {
                next.value = (f.value * DECREASE).max(FLOOR);
                // Strictly at most once per 5 s of real time.
                next.changed_ms = now;
            }
            next
        }
        Health::Healthy => {
            if f.value < 1.0
                && since_change >= PERIOD_MS
                && now.saturating_sub(f.unhealthy_ms) >= PERIOD_MS
            {
                Factor {
                    value: (((f.value + INCREASE) * 1e9).round() / 1e9).min(1.0),
                    changed_ms: stamp,
                    ..f
                }
            } else {
                f
            }
        }
    }
}

/// Latency bins of the p99 estimate: upper bounds in milliseconds (log scale).
const BINS_MS: [u64; 16] = [
    5,
    10,
    20,
    40,
    75,
    100,
    150,
    250,
    400,
    600,
    800,
    1000,
    1500,
    2500,
    5000,
    u64::MAX,
];

#[derive(Debug, Clone, Copy, Default)]
struct Second {
    at_s: u64,
    calls: u64,
    errors: u64,
    bins: [u64; 16],
}

/// One replica's last 10 s of reservation calls, one slot per second.
#[derive(Debug, Default)]
pub struct HealthWindow {
    slots: Mutex<[Second; 10]>,
}

impl HealthWindow {
    /// A call that ended at `now_ms` after `latency`; `failed` = 5xx or timeout.
    pub fn record(&self, now_ms: u64, latency: Duration, failed: bool) {
        let s = now_ms / 1000;
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        let slot = &mut slots[(s % 10) as usize];
        if slot.at_s != s {
            *slot = Second {
                at_s: s,
                ..Second::default()
            };
        }
        slot.calls += 1;
        slot.errors += u64::from(failed);
        let ms = latency.as_millis() as u64;
        let bin = BINS_MS.iter().position(|b| ms <= *b).unwrap_or(15);
        slot.bins[bin] += 1;
    }

    /// The verdict over the last 10 s: unhealthy when the share of failures exceeds
    /// `max_errors` or the p99 exceeds `max_p99`. No calls is healthy (nothing says otherwise).
    pub fn verdict(&self, now_ms: u64, max_errors: f64, max_p99: Duration) -> Health {
        let s = now_ms / 1000;
        let Ok(slots) = self.slots.lock() else {
            return Health::Healthy;
        };
        let (mut calls, mut errors, mut bins) = (0u64, 0u64, [0u64; 16]);
        for slot in slots.iter().filter(|x| x.at_s + 10 > s && x.at_s <= s) {
            calls += slot.calls;
            errors += slot.errors;
            for (b, n) in bins.iter_mut().zip(slot.bins) {
                *b += n;
            }
        }
        if calls == 0 {
            return Health::Healthy;
        }
        if errors as f64 / calls as f64 > max_errors {
            return Health::Unhealthy;
        }
        // p99: the bin holding the 99th percentile call; its upper bound is the estimate.
        let rank = (calls as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        for (i, n) in bins.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let bound = BINS_MS[i.saturating_sub(1)];
                // The bin's lower bound must exceed the limit: no false alarm from binning.
                if i > 0 && bound >= max_p99.as_millis() as u64 {
                    return Health::Unhealthy;
                }
                break;
            }
        }
        Health::Healthy
    }
}

/// How often a replica sends its verdict for one event.
pub const REPORT_EVERY_MS: u64 = 1_000;
/// Events whose last report time a replica remembers (then it forgets them all).
const MAX_REPORTED: usize = 4_096;

/// One replica's view of the reservation upstream, and when it last told the store about it
/// for each event (the thin, clock-reading shell around [`HealthWindow`]).
#[derive(Debug, Default)]
pub struct ReservationHealth {
    window: HealthWindow,
    reported: Mutex<HashMap<EventTag, u64>>,
}

impl ReservationHealth {
    /// A reservation call ended: `failed` = 5xx or timeout.
    pub fn record(&self, latency: Duration, failed: bool) {
        self.window.record(wall_ms(), latency, failed);
    }

    /// The verdict to send with a queue call on `tag`, at most once a second per event.
    pub fn observation(&self, tag: EventTag, cfg: &QueueConfig) -> Option<Health> {
        let now = wall_ms();
        let Ok(mut reported) = self.reported.lock() else {
            return None;
        };
        if reported
            .get(&tag)
            .is_some_and(|at| now.saturating_sub(*at) < REPORT_EVERY_MS)
        {
            return None;
        }
        if reported.len() >= MAX_REPORTED {
            reported.clear();
        }
        reported.insert(tag, now);
        drop(reported);
        Some(
            self.window
                .verdict(now, cfg.adaptive_max_errors, cfg.adaptive_p99),
        )
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_multiplies_at_most_once_per_period_down_to_the_floor() {
        let mut f = Factor::default();
        f = step(f, Health::Unhealthy, 10_000);
        assert!((f.value - 0.7).abs() < 1e-9);
        // Reports within 5 s change nothing.
        for t in (11_000..15_000).step_by(500) {
            f = step(f, Health::Unhealthy, t);
        }
        assert!((f.value - 0.7).abs() < 1e-9);
        f = step(f, Health::Unhealthy, 15_000);
        assert!((f.value - 0.49).abs() < 1e-9);
        for i in 0..40 {
            f = step(f, Health::Unhealthy, 20_000 + i * 5_000);
        }
        assert_eq!(f.value, FLOOR);
    }

    #[test]
    fn healthy_grows_by_a_tenth_per_period_after_five_quiet_seconds() {
        let mut f = Factor {
            value: 0.1,
            changed_ms: 0,
            unhealthy_ms: 100_000,
        };
        // Less than 5 s after the last unhealthy report: no growth.
        f = step(f, Health::Healthy, 104_000);
        assert_eq!(f.value, 0.1);
        let mut t = 105_000;
        let mut steps = 0;
        while f.value < 1.0 {
            let before = f.value;
            f = step(f, Health::Healthy, t);
            if f.value > before {
                steps += 1;
            }
            t += 1_000;
        }
        assert_eq!(steps, 9);
        // From the floor to full in 9 periods: 45 s.
        assert!(t - 105_000 <= 9 * PERIOD_MS + 1_000, "{t}");
        assert_eq!(step(f, Health::Healthy, t + 10_000).value, 1.0);
    }

    #[test]
    fn growth_keeps_a_five_second_grid_when_reports_come_late() {
        let mut f = Factor {
            value: 0.1,
            changed_ms: 100_000,
            unhealthy_ms: 0,
        };
        // Reports every 900 ms: a step comes at the first report after each 5-s mark and is
        // stamped with the mark, so 5 steps take 25 s, not 5 × 5.4 s.
        let mut changes = Vec::new();
        for t in (100_900..=126_000).step_by(900) {
            let before = f.value;
            f = step(f, Health::Healthy, t);
            if f.value != before {
                changes.push((t, f.changed_ms));
            }
        }
        let stamps: Vec<u64> = changes.iter().map(|c| c.1).collect();
        assert_eq!(stamps, [105_000, 110_000, 115_000, 120_000, 125_000]);
        // A decrease is stamped with its own time: the next one is 5 real seconds later.
        let d = step(f, Health::Unhealthy, 131_300);
        assert_eq!(d.changed_ms, 131_300);
        assert_eq!(step(d, Health::Unhealthy, 136_000).value, d.value);
    }

    #[test]
    fn the_window_judges_error_share_and_p99_over_ten_seconds() {
        let w = HealthWindow::default();
        let fast = Duration::from_millis(20);
        let limit = Duration::from_secs(1);
        assert_eq!(w.verdict(0, 0.05, limit), Health::Healthy);
        for i in 0..100 {
            w.record(1_000 + i, fast, i < 4);
        }
        assert_eq!(w.verdict(1_500, 0.05, limit), Health::Healthy);
        for i in 0..3 {
            w.record(2_000 + i, fast, true);
        }
        assert_eq!(w.verdict(2_500, 0.05, limit), Health::Unhealthy);
        // Ten seconds on, those calls are out of the window.
        assert_eq!(w.verdict(13_000, 0.05, limit), Health::Healthy);
        // Slow calls: p99 over the limit.
        for i in 0..50 {
            w.record(20_000 + i, Duration::from_millis(1_800), false);
        }
        assert_eq!(w.verdict(20_500, 0.05, limit), Health::Unhealthy);
        assert_eq!(
            w.verdict(20_500, 0.05, Duration::from_secs(3)),
            Health::Healthy
        );
    }
}
