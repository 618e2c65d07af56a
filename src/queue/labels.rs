//! Bounded metric labels for events. Event ids come from clients, so labelling metrics with them
//! freely would let anyone create unbounded Prometheus series. Each replica labels the first
//! [`MAX_EVENT_LABELS`] distinct (valid) event ids it sees by name and folds the rest into
//! `other`. An on-sale has a handful of events; if more are live at once, they share `other`.
use std::collections::HashSet;
use std::sync::Mutex;

pub const MAX_EVENT_LABELS: usize = 64;
pub const OTHER: &str = "other";

#[derive(Default)]
pub struct EventLabels {
    seen: Mutex<HashSet<String>>,
}

impl EventLabels {
    /// The label to use for `event_id` (already validated by the caller).
    pub fn label<'a>(&self, event_id: &'a str) -> &'a str {
        let Ok(mut seen) = self.seen.lock() else {
            return OTHER;
        };
        if seen.contains(event_id) {
            return event_id;
        }
        if seen.len() < MAX_EVENT_LABELS {
            seen.insert(event_id.to_owned());
            return event_id;
        }
        OTHER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_capped() {
        let l = EventLabels::default();
        for i in 0..MAX_EVENT_LABELS {
            let id = format!("e{i}");
            assert_eq!(l.label(&id), id);
        }
        assert_eq!(l.label("one-too-many"), OTHER);
        assert_eq!(l.label("e0"), "e0");
    }
}
