//! Event definitions in the store (SPEC §5a): create or patch, read with live figures, list,
//! delete. Redis keeps each definition in the event's own `{q:<tag>}:def` hash (so the queue
//! scripts read it in the same round trip, and every replica follows a change at once) and the
//! list of defined event ids in one set, `gwq:events`, read only by the admin list. The memory
//! store keeps them beside its queues (`store/queue.rs`).
use std::sync::LazyLock;

use redis::Script;

use super::queue::{PRELUDE, QueueSettings, event_invocation};
use super::redis::ScriptCall;
use super::{Store, StoreError};
use crate::queue::EventTag;
use crate::queue::events::{EventDefinition, EventFigures, EventPatch};

/// The set of defined event ids (admin list only; never on a request path).
pub const INDEX_KEY: &str = "gwq:events";

/// A put the store refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutRefused {
    /// The memory store's bound on definitions.
    TooMany,
}

impl Store {
    /// Creates the event with the defaults or changes the fields `patch` sends.
    pub async fn event_put(
        &self,
        s: &QueueSettings,
        event_id: &str,
        patch: &EventPatch,
    ) -> Result<Result<EventDefinition, PutRefused>, StoreError> {
        let default_rps = s.rate;
        match self {
            Store::Memory(m) => Ok(m
                .queue
                .put_definition(s, event_id, patch, now_ms())
                .ok_or(PutRefused::TooMany)),
            Store::Redis(r) => {
                let tag = EventTag::of(event_id);
                // Only the fields sent, in the store's form ('' = null).
                let mut sent = EventDefinition::defaults(event_id, default_rps);
                sent.apply(patch);
                let fields = sent.to_fields();
                let wanted = [
                    patch.admission_rps.is_some(),
                    patch.max_active.is_some(),
                    patch.opens_at_ms.is_some(),
                    patch.state.is_some(),
                    patch.adaptive.is_some(),
                ];
                let mut inv = event_invocation(&PUT, &tag, s);
                inv.arg(event_id).arg(default_rps.to_string());
                for ((k, v), w) in fields.iter().zip(wanted) {
                    if w {
                        inv.arg(*k).arg(v.as_str());
                    }
                }
                let got: Vec<Option<String>> = r.eval(&inv).await?;
                let keys = ["rps", "max", "open", "st", "ad"];
                let def = EventDefinition::from_fields(event_id, |k| {
                    keys.iter()
                        .position(|x| *x == k)
                        .and_then(|i| got.get(i).cloned().flatten())
                })
                .ok_or_else(|| StoreError::Protocol("bad event definition".into()))?;
                // The list is a second key (another cluster slot): a second, idempotent call.
                let _: i64 = r
                    .query(redis::cmd("SADD").arg(INDEX_KEY).arg(event_id))
                    .await?;
                Ok(Ok(def))
            }
        }
    }

    /// One defined event with its live figures; `None` when nobody defined it.
    pub async fn event_get(
        &self,
        s: &QueueSettings,
        event_id: &str,
    ) -> Result<Option<(EventDefinition, EventFigures)>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.queue.definition(s, event_id, now_ms())),
            Store::Redis(r) => {
                let tag = EventTag::of(event_id);
                let def: Vec<Option<String>> = r
                    .query(
                        redis::cmd("HMGET")
                            .arg(format!("{}:def", tag.key_prefix()))
                            .arg(&["ev", "rps", "max", "open", "st", "ad"]),
                    )
                    .await?;
                if def.first().cloned().flatten().as_deref() != Some(event_id) {
                    return Ok(None);
                }
                let keys = ["ev", "rps", "max", "open", "st", "ad"];
                let Some(definition) = EventDefinition::from_fields(event_id, |k| {
                    keys.iter()
                        .position(|x| *x == k)
                        .and_then(|i| def.get(i).cloned().flatten())
                }) else {
                    return Ok(None);
                };
                let out: Vec<redis::Value> = r
                    .eval(event_invocation(&FIGURES, &tag, s).arg(event_id))
                    .await?;
                let num = |i: usize| -> f64 {
                    match out.get(i) {
                        Some(redis::Value::Int(n)) => *n as f64,
                        Some(redis::Value::BulkString(b)) => std::str::from_utf8(b)
                            .ok()
                            .and_then(|x| x.parse().ok())
                            .unwrap_or(0.0),
                        _ => 0.0,
                    }
                };
                if num(0) != 1.0 {
                    return Ok(None);
                }
                let figures = EventFigures {
                    waiting: num(1) as u64,
                    prequeue: num(2) as u64,
                    active: num(3) as u64,
                    admitted_total: num(4) as u64,
                    admission_rate_measured: num(5),
                    admission_factor: if definition.adaptive { num(6) } else { 1.0 },
                };
                Ok(Some((definition, figures)))
            }
        }
    }

    /// The ids of every defined event, sorted.
    pub async fn event_ids(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.queue.definitions()),
            Store::Redis(r) => {
                let mut ids: Vec<String> = r.query(redis::cmd("SMEMBERS").arg(INDEX_KEY)).await?;
                ids.sort();
                Ok(ids)
            }
        }
    }

    /// Removes the event and everything of it; `false` when it was not defined.
    pub async fn event_delete(&self, event_id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.queue.delete_definition(event_id)),
            Store::Redis(r) => {
                let tag = EventTag::of(event_id);
                let existed: i64 = r
                    .eval(ScriptCall::new(&DELETE, &[tag.key_prefix()]).arg(event_id))
                    .await?;
                let _: i64 = r
                    .query(redis::cmd("SREM").arg(INDEX_KEY).arg(event_id))
                    .await?;
                Ok(existed == 1)
            }
        }
    }
}

fn now_ms() -> u64 {
    crate::queue::events::unix_ms(std::time::SystemTime::now())
}

const RESET: &str = include_str!("lua/event_reset.lua");

static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}\n{RESET}\n{}",
        include_str!("lua/event_put.lua")
    ))
});
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{RESET}\n{}",
        include_str!("lua/event_delete.lua")
    ))
});
static FIGURES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}\n{}",
        include_str!("lua/event_figures.lua")
    ))
});
