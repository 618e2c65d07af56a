//! The store's health as the gateway sees it (SPEC §2): whether it has answered at least once
//! since start (a readiness condition) and whether it answers now (shown in `/readyz`'s body, the
//! `store_up` gauge and one log line per change, never a readiness verdict: every replica shares
//! the store, so taking them all out of rotation would turn a degraded platform into an outage).
//!
//! One background probe per process, not one ping per `/readyz` call.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::IntGauge;

use super::Store;

/// Probe period once the store has answered; before that, faster, so a replica becomes ready
/// soon after its store does.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_EVERY_UNTIL_FIRST_ANSWER: Duration = Duration::from_millis(200);
/// A probe not answered within this counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub struct StoreHealth {
    answered_once: AtomicBool,
    up: AtomicBool,
}

impl StoreHealth {
    /// Whether the store has answered at least once since start.
    pub fn has_answered(&self) -> bool {
        self.answered_once.load(Ordering::Relaxed)
    }

    /// Whether the last probe was answered.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records one probe's outcome; returns whether the up/down state changed.
    fn record(&self, up: bool) -> bool {
        if up {
            self.answered_once.store(true, Ordering::Relaxed);
        }
        self.up.swap(up, Ordering::Relaxed) != up
    }

    /// Starts the probe loop; it ends when the last other handle to `self` is gone.
    pub fn watch(self: &Arc<Self>, store: Store, gauge: IntGauge) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(health) = weak.upgrade() else { return };
                let result = tokio::time::timeout(PROBE_TIMEOUT, store.ping()).await;
                let up = matches!(result, Ok(Ok(())));
                let first = !health.has_answered();
                if health.record(up) {
                    gauge.set(i64::from(up));
                    match (up, result) {
                        (true, _) => tracing::info!(store = store.kind(), "store is answering"),
                        (false, Ok(Err(e))) => {
                            tracing::warn!(store = store.kind(), error = %e, "store is down")
                        }
                        (false, _) => tracing::warn!(
                            store = store.kind(),
                            "store is down: probe not answered in time"
                        ),
                    }
                }
                let period = if first && !up {
                    PROBE_EVERY_UNTIL_FIRST_ANSWER
                } else {
                    PROBE_EVERY
                };
                drop(health);
                tokio::time::sleep(period).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_once_stays_true_through_an_outage() {
        let h = StoreHealth::default();
        assert!(!h.has_answered() && !h.is_up());
        assert!(!h.record(false), "down → down is no change");
        assert!(!h.has_answered());
        assert!(h.record(true));
        assert!(h.has_answered() && h.is_up());
        assert!(h.record(false));
        assert!(
            h.has_answered(),
            "a later outage does not undo the first answer"
        );
        assert!(!h.is_up());
    }
}
