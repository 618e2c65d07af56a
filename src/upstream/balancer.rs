//! Which instance of an upstream gets a request, and which instances are out (SPEC §7a).
//!
//! - Choice: power of two choices on in-flight requests among the instances not ejected.
//! - Passive health: `eject_after` consecutive failures (connect error, timeout, protocol error,
//!   5xx) eject an instance for `eject_base`, doubled on each repeat ejection up to `eject_max`.
//!   A success resets both. Once its cooldown is over the instance is back on probation: it
//!   still counts its old failures, so one more failure ejects it again for twice as long.
//! - Never more than half the set (`n / 2`) is ejected at once, so a false positive cannot take
//!   most of the capacity away; a failing instance held in by that cap keeps its share.
//! - Circuit: when every instance has reached `eject_after` consecutive failures the circuit
//!   opens and requests fail at once. After `eject_base` it half-opens: one request at a time
//!   (a probe, rotating over the instances) goes through; a success closes the circuit, a
//!   failure keeps it open for another `eject_base`.
//!
//! Pure state machine: no HTTP, no metrics, no clock (every method takes `now` in milliseconds
//! since the balancer's epoch). Lock-free on the paths every request takes (`pick`, a success);
//! a short lock serialises ejection decisions (only past the failure threshold) so the half cap
//! holds under concurrent failures. `Upstream::send` turns the returned transitions into
//! metrics and logs.
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::RoutingConfig;

/// The state machine's settings, in milliseconds: failures that eject an instance, and how long
/// an ejection (or an open circuit) lasts.
#[derive(Debug, Clone, Copy)]
pub struct EjectionPolicy {
    pub eject_after: u32,
    pub eject_base_ms: u64,
    pub eject_max_ms: u64,
}

impl From<&RoutingConfig> for EjectionPolicy {
    fn from(c: &RoutingConfig) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        EjectionPolicy {
            eject_after: c.eject_after.max(1),
            eject_base_ms: ms(c.eject_base),
            eject_max_ms: ms(c.eject_max).max(ms(c.eject_base)),
        }
    }
}

impl EjectionPolicy {
    /// Cooldown of the `level`-th ejection in a row (0 = first): base × 2^level, capped.
    pub fn cooldown_ms(&self, level: u32) -> u64 {
        let factor = 1u64 << level.min(32);
        self.eject_base_ms
            .saturating_mul(factor)
            .min(self.eject_max_ms)
    }
}

/// The health of one instance. All fields are atomics: read on every pick.
#[derive(Debug, Default)]
struct Instance {
    in_flight: AtomicUsize,
    /// Consecutive failures since the last success.
    failures: AtomicU32,
    /// Ejected while `now < ejected_until`; 0 = not ejected since the last success.
    ejected_until: AtomicU64,
    /// Ejections since the last success (the cooldown's exponent).
    level: AtomicU32,
}

impl Instance {
    fn ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Acquire) > now
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Send to this instance. `probe`: the one request a half-open circuit lets through.
    Instance { index: usize, probe: bool },
    /// Every instance is failing: refuse now, without touching the network.
    CircuitOpen,
}

/// What a recorded outcome changed, for metrics and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transitions {
    /// The instance was ejected for this long.
    pub ejected_for_ms: Option<u64>,
    /// The circuit opened (every instance failing).
    pub circuit_opened: bool,
    /// The circuit closed (a success while it was open or half-open).
    pub circuit_closed: bool,
}

#[derive(Debug)]
pub struct Balancer {
    policy: EjectionPolicy,
    epoch: Instant,
    instances: Box<[Instance]>,
    /// 0 = closed; otherwise open until this time (half-open from then on).
    open_until: AtomicU64,
    /// A half-open probe is in flight.
    probing: AtomicBool,
    probe_cursor: AtomicUsize,
    /// Serialises ejection decisions so that the half cap holds (failure path only).
    eject_lock: Mutex<()>,
}

impl Balancer {
    pub fn new(instances: usize, policy: EjectionPolicy) -> Self {
        Balancer {
            policy,
            epoch: Instant::now(),
            instances: (0..instances.max(1)).map(|_| Instance::default()).collect(),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            probe_cursor: AtomicUsize::new(0),
            eject_lock: Mutex::new(()),
        }
    }

    /// Milliseconds since this balancer was built: the `now` of every other method.
    pub fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    pub fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }

    pub fn is_ejected(&self, index: usize, now: u64) -> bool {
        self.instances.get(index).is_some_and(|i| i.ejected(now))
    }

    /// Chooses the instance for a new request (or refuses it when the circuit is open).
    pub fn pick(&self, now: u64) -> Pick {
        let open_until = self.open_until.load(Ordering::Acquire);
        if open_until != 0 {
            if now < open_until
                || self
                    .probing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                return Pick::CircuitOpen;
            }
            // Rotate probes so that whichever instance comes back first is found.
            let index = self.probe_cursor.fetch_add(1, Ordering::Relaxed) % self.instances.len();
            return Pick::Instance { index, probe: true };
        }
        let index = self.choose(now, None).unwrap_or(0);
        Pick::Instance {
            index,
            probe: false,
        }
    }

    /// Another instance than `not`, not ejected, for a retry; `None` when there is none.
    pub fn pick_other(&self, now: u64, not: usize) -> Option<usize> {
        self.choose(now, Some(not))
    }

    /// Power of two choices on in-flight requests, skipping ejected instances and `exclude`.
    fn choose(&self, now: u64, exclude: Option<usize>) -> Option<usize> {
        let n = self.instances.len();
        let usable = |i: usize| Some(i) != exclude && !self.instances[i].ejected(now);
        if n == 1 {
            return usable(0).then_some(0);
        }
        let a = rand::random_range(0..n);
        let b = (a + 1 + rand::random_range(0..n - 1)) % n;
        match (usable(a), usable(b)) {
            (true, true) => {
                let load = |i: usize| self.instances[i].in_flight.load(Ordering::Relaxed);
                Some(if load(b) < load(a) { b } else { a })
            }
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => (1..n).map(|k| (a + k) % n).find(|&i| usable(i)),
        }
    }

    /// Counts a request as in flight on `index` until the returned guard is dropped. Also
    /// releases the probe slot when a probe is dropped before its outcome was recorded.
    pub fn begin(self: &Arc<Self>, index: usize, probe: bool) -> InFlight {
        self.instances[index]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        InFlight {
            balancer: self.clone(),
            index,
            probe,
        }
    }

    /// A success: the instance is healthy again, and so is the upstream.
    pub fn record_success(&self, index: usize, probe: bool) -> Transitions {
        let inst = &self.instances[index];
        // Plain loads first: the common case (already healthy) writes nothing shared.
        if inst.failures.load(Ordering::Relaxed) != 0 {
            inst.failures.store(0, Ordering::Relaxed);
        }
        if inst.ejected_until.load(Ordering::Relaxed) != 0 {
            inst.ejected_until.store(0, Ordering::Release);
            inst.level.store(0, Ordering::Relaxed);
        }
        let mut t = Transitions::default();
        if self.open_until.load(Ordering::Acquire) != 0 {
            t.circuit_closed = self.open_until.swap(0, Ordering::AcqRel) != 0;
        }
        if probe {
            self.probing.store(false, Ordering::Release);
        }
        t
    }

    /// A failure (connect error, timeout, protocol error, 5xx) on `index`.
    pub fn record_failure(&self, index: usize, probe: bool, now: u64) -> Transitions {
        let mut t = Transitions::default();
        let inst = &self.instances[index];
        let failures = inst
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        let threshold = self.policy.eject_after;
        if failures >= threshold && !inst.ejected(now) {
            t.ejected_for_ms = self.try_eject(index, now);
        }
        if probe {
            // Still open (unless another request's success closed it meanwhile): for another
            // cooldown, after which the next probe may go.
            let until = now.saturating_add(self.policy.eject_base_ms);
            let _ = self
                .open_until
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                    (open != 0).then_some(until)
                });
            self.probing.store(false, Ordering::Release);
        } else if !self.is_open()
            && self
                .instances
                .iter()
                .all(|i| i.failures.load(Ordering::Acquire) >= threshold)
        {
            t.circuit_opened = self
                .open_until
                .compare_exchange(
                    0,
                    now.saturating_add(self.policy.eject_base_ms),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok();
        }
        t
    }

    /// Ejects `index` unless that would put more than half the set out. Returns the cooldown.
    fn try_eject(&self, index: usize, now: u64) -> Option<u64> {
        let _serial = self
            .eject_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let inst = &self.instances[index];
        if inst.ejected(now) {
            return None; // a concurrent failure got here first
        }
        let out = self.instances.iter().filter(|i| i.ejected(now)).count();
        if out + 1 > self.instances.len() / 2 {
            return None;
        }
        let level = inst.level.fetch_add(1, Ordering::Relaxed);
        let cooldown = self.policy.cooldown_ms(level);
        inst.ejected_until
            .store(now.saturating_add(cooldown).max(1), Ordering::Release);
        Some(cooldown)
    }
}

/// A request in flight on one instance (see [`Balancer::begin`]).
#[derive(Debug)]
pub struct InFlight {
    balancer: Arc<Balancer>,
    index: usize,
    probe: bool,
}

impl InFlight {
    pub fn index(&self) -> usize {
        self.index
    }

    /// Records the outcome (at most once; the probe slot is released by it).
    pub fn finish(&mut self, ok: bool, now: u64) -> Transitions {
        let probe = std::mem::take(&mut self.probe);
        if ok {
            self.balancer.record_success(self.index, probe)
        } else {
            self.balancer.record_failure(self.index, probe, now)
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.balancer.instances[self.index]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
        if self.probe {
            // Cancelled before an outcome: let the next request probe instead.
            self.balancer.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const POLICY: EjectionPolicy = EjectionPolicy {
        eject_after: 3,
        eject_base_ms: 1_000,
        eject_max_ms: 5_000,
    };

    fn balancer(n: usize) -> Arc<Balancer> {
        Arc::new(Balancer::new(n, POLICY))
    }

    fn fail(b: &Balancer, i: usize, times: u32, now: u64) -> Transitions {
        let mut last = Transitions::default();
        for _ in 0..times {
            let t = b.record_failure(i, false, now);
            last.ejected_for_ms = last.ejected_for_ms.or(t.ejected_for_ms);
            last.circuit_opened |= t.circuit_opened;
        }
        last
    }

    fn picks(b: &Balancer, now: u64, rounds: usize) -> Vec<usize> {
        let mut seen = vec![0; b.len()];
        for _ in 0..rounds {
            match b.pick(now) {
                Pick::Instance { index, probe } => {
                    assert!(!probe);
                    seen[index] += 1;
                }
                Pick::CircuitOpen => panic!("circuit open"),
            }
        }
        seen
    }

    #[test]
    fn cooldown_doubles_and_is_capped() {
        assert_eq!(POLICY.cooldown_ms(0), 1_000);
        assert_eq!(POLICY.cooldown_ms(1), 2_000);
        assert_eq!(POLICY.cooldown_ms(2), 4_000);
        assert_eq!(POLICY.cooldown_ms(3), 5_000);
        assert_eq!(POLICY.cooldown_ms(200), 5_000);
    }

    #[test]
    fn healthy_instances_share_the_load() {
        let b = balancer(3);
        let seen = picks(&b, 0, 3_000);
        assert!(seen.iter().all(|&c| (700..1300).contains(&c)), "{seen:?}");
    }

    #[test]
    fn the_instance_with_fewer_requests_in_flight_wins() {
        let b = balancer(2);
        let _busy = b.begin(0, false);
        let seen = picks(&b, 0, 100);
        assert_eq!(seen, vec![0, 100]);
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_resets_the_count() {
        let b = balancer(3);
        fail(&b, 0, 2, 0);
        b.record_success(0, false);
        assert_eq!(fail(&b, 0, 2, 0).ejected_for_ms, None);
        assert!(!b.is_ejected(0, 0));
        assert_eq!(fail(&b, 0, 1, 10).ejected_for_ms, Some(1_000));
        assert!(b.is_ejected(0, 10));
        assert_eq!(picks(&b, 10, 200)[0], 0, "ejected instance gets nothing");
        assert!(!b.is_ejected(0, 1_010), "back after the cooldown");
    }

    #[test]
    fn repeat_ejections_grow_until_a_success() {
        let b = balancer(2);
        assert_eq!(fail(&b, 0, 3, 0).ejected_for_ms, Some(1_000));
        // On probation after the cooldown: one more failure ejects it again, for longer.
        assert_eq!(fail(&b, 0, 1, 1_000).ejected_for_ms, Some(2_000));
        assert_eq!(fail(&b, 0, 1, 3_000).ejected_for_ms, Some(4_000));
        assert_eq!(fail(&b, 0, 1, 7_000).ejected_for_ms, Some(5_000));
        assert_eq!(fail(&b, 0, 1, 12_000).ejected_for_ms, Some(5_000));
        b.record_success(0, false);
        assert!(!b.is_ejected(0, 12_001));
        assert_eq!(fail(&b, 0, 3, 20_000).ejected_for_ms, Some(1_000));
    }

    #[test]
    fn never_more_than_half_the_set_is_ejected() {
        for n in 1..=6 {
            let b = balancer(n);
            for i in 0..n {
                fail(&b, i, 3, 0);
            }
            let out = (0..n).filter(|&i| b.is_ejected(i, 0)).count();
            assert_eq!(out, n / 2, "n = {n}");
        }
    }

    #[test]
    fn half_cap_holds_under_concurrent_failures() {
        let b = balancer(4);
        std::thread::scope(|s| {
            for i in 0..4 {
                let b = &b;
                s.spawn(move || {
                    fail(b, i, 3, 0);
                });
            }
        });
        assert_eq!((0..4).filter(|&i| b.is_ejected(i, 0)).count(), 2);
    }

    #[test]
    fn a_retry_goes_to_another_usable_instance() {
        let b = balancer(3);
        for _ in 0..100 {
            assert_ne!(b.pick_other(0, 1), Some(1));
        }
        fail(&b, 2, 3, 0);
        for _ in 0..100 {
            assert_eq!(b.pick_other(0, 1), Some(0));
        }
        assert_eq!(balancer(1).pick_other(0, 0), None);
    }

    #[test]
    fn circuit_opens_when_every_instance_fails_and_a_probe_closes_it() {
        let b = balancer(2);
        assert!(!fail(&b, 0, 3, 0).circuit_opened);
        let t = fail(&b, 1, 3, 100);
        assert!(t.circuit_opened);
        assert_eq!(t.ejected_for_ms, None, "the half cap keeps instance 1 in");
        assert!(b.is_open());
        assert_eq!(b.pick(100), Pick::CircuitOpen);
        assert_eq!(b.pick(1_099), Pick::CircuitOpen);

        // Half-open: exactly one probe at a time.
        let Pick::Instance { index, probe: true } = b.pick(1_100) else {
            panic!("expected a probe");
        };
        assert_eq!(b.pick(1_100), Pick::CircuitOpen);
        // The probe fails: open for another cooldown.
        b.record_failure(index, true, 1_200);
        assert_eq!(b.pick(1_300), Pick::CircuitOpen);
        let Pick::Instance { index, probe: true } = b.pick(2_200) else {
            panic!("expected a probe");
        };
        // The probe succeeds: closed, traffic flows again.
        let t = b.record_success(index, true);
        assert!(t.circuit_closed);
        assert!(!b.is_open());
        assert!(matches!(b.pick(2_201), Pick::Instance { probe: false, .. }));
    }

    #[test]
    fn a_failed_probe_does_not_reopen_a_circuit_another_success_closed() {
        let b = balancer(2);
        fail(&b, 0, 3, 0);
        fail(&b, 1, 3, 0);
        let Pick::Instance { index, probe: true } = b.pick(1_000) else {
            panic!("expected a probe");
        };
        // A request sent before the circuit opened comes back fine from the other instance.
        assert!(b.record_success(1 - index, false).circuit_closed);
        b.record_failure(index, true, 1_100);
        assert!(!b.is_open());
        assert!(matches!(b.pick(1_100), Pick::Instance { probe: false, .. }));
    }

    #[test]
    fn probes_rotate_over_the_instances() {
        let b = balancer(3);
        for i in 0..3 {
            fail(&b, i, 3, 0);
        }
        assert!(b.is_open());
        let mut probed = Vec::new();
        for k in 0..3 {
            let now = 1_000 * (k + 1) + 500;
            let Pick::Instance { index, probe: true } = b.pick(now) else {
                panic!("expected a probe at {now}");
            };
            probed.push(index);
            b.record_failure(index, true, now);
        }
        probed.sort_unstable();
        assert_eq!(probed, vec![0, 1, 2]);
    }

    #[test]
    fn a_dropped_probe_frees_the_slot() {
        let b = balancer(1);
        fail(&b, 0, 3, 0);
        let Pick::Instance { index, probe: true } = b.pick(1_000) else {
            panic!("expected a probe");
        };
        let guard = b.begin(index, true);
        assert_eq!(b.pick(1_000), Pick::CircuitOpen);
        drop(guard);
        assert!(matches!(b.pick(1_000), Pick::Instance { probe: true, .. }));
    }

    #[test]
    fn a_single_instance_is_never_ejected_but_its_circuit_opens() {
        let b = balancer(1);
        let t = fail(&b, 0, 3, 0);
        assert_eq!(t.ejected_for_ms, None);
        assert!(t.circuit_opened);
        assert_eq!(b.pick(1), Pick::CircuitOpen);
    }

    #[test]
    fn in_flight_is_counted_until_the_guard_drops() {
        let b = balancer(2);
        let mut g = b.begin(1, false);
        assert_eq!(b.instances[1].in_flight.load(Ordering::Relaxed), 1);
        g.finish(true, 0);
        assert_eq!(b.instances[1].in_flight.load(Ordering::Relaxed), 1);
        drop(g);
        assert_eq!(b.instances[1].in_flight.load(Ordering::Relaxed), 0);
    }
}
