//! Event definitions in the memory store (SPEC §5a; `store/events.rs` calls these): put,
//! delete, read and list, with the same effects on the event's places as the Lua.
use std::sync::atomic::Ordering;

use super::{MemoryDefinition, MemoryQueues, effective_of};
use crate::queue::EventTag;
use crate::queue::adaptive::Factor;
use crate::queue::events::{EventDefinition, EventFigures, EventPatch, EventState};
use crate::store::queue::{MEMORY_MAX_DEFINITIONS, QueueSettings};

impl MemoryQueues {
    /// Creates or patches a definition; `None` when at `MEMORY_MAX_DEFINITIONS`. A change to
    /// `closed` ends every place and token of the event.
    pub(crate) fn put_definition(
        &self,
        s: &QueueSettings,
        event_id: &str,
        patch: &EventPatch,
        now: u64,
    ) -> Option<EventDefinition> {
        let tag = EventTag::of(event_id);
        // Admission up to now at the old settings: the change applies from this instant.
        let (_, old) = self.effective(
            &QueueSettings {
                observation: None,
                ..*s
            },
            &tag,
            now,
        );
        if let Some(queue) = self.get(&tag) {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            q.sweep(s, now);
            q.advance(&old, now);
        }
        let mut defs = self.defs.write().unwrap_or_else(|e| e.into_inner());
        if !defs.contains_key(&tag) && defs.len() >= MEMORY_MAX_DEFINITIONS {
            return None;
        }
        let entry = defs.entry(tag).or_insert_with(|| MemoryDefinition {
            def: EventDefinition::defaults(event_id, s.rate),
            factor: Factor::default(),
        });
        let was_closed = entry.def.state == EventState::Closed;
        entry.def.apply(patch);
        if patch.adaptive == Some(false) {
            entry.factor = Factor::default();
        }
        let def = entry.def.clone();
        drop(defs);
        if def.state == EventState::Closed && !was_closed {
            self.reset(&tag);
        }
        Some(def)
    }

    /// Removes a definition and everything of the event; `false` when it was not defined.
    pub(crate) fn delete_definition(&self, event_id: &str) -> bool {
        let tag = EventTag::of(event_id);
        let removed = self
            .defs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&tag)
            .is_some();
        if removed {
            self.reset(&tag);
        }
        removed
    }

    /// Ends every place and token of the event at once.
    fn reset(&self, tag: &EventTag) {
        let mut shard = self.shard(tag).write().unwrap_or_else(|e| e.into_inner());
        if shard.remove(tag).is_some() {
            self.events.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn definition(
        &self,
        s: &QueueSettings,
        event_id: &str,
        now: u64,
    ) -> Option<(EventDefinition, EventFigures)> {
        let tag = EventTag::of(event_id);
        let (def, factor) = {
            let defs = self.defs.read().unwrap_or_else(|e| e.into_inner());
            let d = defs.get(&tag)?;
            (d.def.clone(), d.factor)
        };
        let e = effective_of(&def, factor);
        let mut figures = EventFigures {
            admission_factor: if def.adaptive { factor.value } else { 1.0 },
            ..EventFigures::default()
        };
        if let Some(queue) = self.get(&tag) {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            q.sweep(s, now);
            if e.state != EventState::Closed {
                q.advance(&e, now);
            }
            figures.waiting = q.waiting();
            figures.prequeue = if q.opened_at_seq.is_none() {
                q.prequeue.len() as u64
            } else {
                0
            };
            figures.active = q.ready + q.sessions.len() as u64;
            figures.admitted_total = q.total;
            figures.admission_rate_measured = q.window.rate(now);
        }
        Some((def, figures))
    }

    pub(crate) fn definitions(&self) -> Vec<String> {
        let defs = self.defs.read().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = defs.values().map(|d| d.def.event_id.clone()).collect();
        ids.sort();
        ids
    }
}
