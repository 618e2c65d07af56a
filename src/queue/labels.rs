//! Bounded metric labels for events (SPEC §5a). Event ids come from clients, so labelling
//! metrics with them freely would let anyone create unbounded Prometheus series. An event is
//! labelled by name only when an operator defined it; every other event is counted as `other`.
//! Each replica keeps the set of defined ids it last read from the store (refreshed at most
//! every [`REFRESH_MS`], and at once on this replica's own admin calls), capped at
//! [`MAX_EVENT_LABELS`].
use std::collections::HashSet;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub const MAX_EVENT_LABELS: usize = 1_000;
pub const OTHER: &str = "other";
/// How often a replica re-reads the defined events (and their gauges) from the store.
pub const REFRESH_MS: u64 = 5_000;

#[derive(Default)]
pub struct EventLabels {
    defined: RwLock<HashSet<String>>,
    refreshed_ms: AtomicU64,
}

impl EventLabels {
    /// The label to use for `event_id`: itself when defined, else `other`.
    pub fn label<'a>(&self, event_id: &'a str) -> &'a str {
        let defined = self.defined.read().unwrap_or_else(|e| e.into_inner());
        if defined.contains(event_id) {
            event_id
        } else {
            OTHER
        }
    }

    /// Replaces the defined set (the first [`MAX_EVENT_LABELS`] ids); returns the ids that
    /// are no longer defined, whose series should be removed.
    pub fn set_defined(&self, ids: &[String]) -> Vec<String> {
        let next: HashSet<String> = ids.iter().take(MAX_EVENT_LABELS).cloned().collect();
        let mut defined = self.defined.write().unwrap_or_else(|e| e.into_inner());
        let gone = defined.difference(&next).cloned().collect();
        *defined = next;
        gone
    }

    pub fn add(&self, event_id: &str) {
        let mut defined = self.defined.write().unwrap_or_else(|e| e.into_inner());
        if defined.len() < MAX_EVENT_LABELS {
            defined.insert(event_id.to_owned());
        }
    }

    pub fn remove(&self, event_id: &str) {
        let mut defined = self.defined.write().unwrap_or_else(|e| e.into_inner());
        defined.remove(event_id);
    }

    /// `true` at most once per [`REFRESH_MS`]: the caller refreshes.
    pub fn refresh_due(&self, now_ms: u64) -> bool {
        let last = self.refreshed_ms.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= REFRESH_MS
            && self
                .refreshed_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_defined_events_get_their_own_label() {
        let l = EventLabels::default();
        assert_eq!(l.label("gig"), OTHER);
        l.add("gig");
        assert_eq!(l.label("gig"), "gig");
        assert_eq!(l.label("made-up"), OTHER);
        let gone = l.set_defined(&["zoo".to_owned()]);
        assert_eq!(gone, ["gig"]);
        assert_eq!(l.label("gig"), OTHER);
        let many: Vec<String> = (0..MAX_EVENT_LABELS + 5).map(|i| format!("e{i}")).collect();
        l.set_defined(&many);
        assert_eq!(
            many.iter().filter(|id| l.label(id) != OTHER).count(),
            MAX_EVENT_LABELS
        );
    }

    #[test]
    fn refresh_is_due_once_per_period() {
        let l = EventLabels::default();
        assert!(l.refresh_due(10_000));
        assert!(!l.refresh_due(12_000));
        assert!(l.refresh_due(15_000));
    }
}
