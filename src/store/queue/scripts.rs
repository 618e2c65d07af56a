//! The waiting room's Lua scripts (`store/lua/queue_*.lua`, each behind the shared prelude) and
//! the arguments every event script takes.
use std::sync::LazyLock;

use redis::Script;

use super::{QueueSettings, SWEEP_BUDGET};
use crate::queue::EventTag;
use crate::queue::adaptive::Health;
use crate::queue::admission::heartbeat_bucket_ms;
use crate::store::redis::ScriptCall;

/// The call of an event script: KEYS[1] = the event's prefix; ARGV[1..5] = default rate,
/// heartbeat TTL, bucket width, sweep budget, health observation. Callers add their own
/// arguments after these.
pub(crate) fn event_invocation<'a>(
    script: &'a Script,
    tag: &EventTag,
    s: &QueueSettings,
) -> ScriptCall<'a> {
    let mut inv = ScriptCall::new(script, &[tag.key_prefix()]);
    inv.arg(s.rate)
        .arg(s.heartbeat_ttl_ms)
        .arg(heartbeat_bucket_ms(s.heartbeat_ttl_ms))
        .arg(SWEEP_BUDGET)
        .arg(s.observation.map(Health::as_arg).unwrap_or(""));
    inv
}

/// The helpers every event script starts with (here and in `store/events.rs`).
pub(crate) const PRELUDE: &str = include_str!("../lua/queue_prelude.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

pub(super) static JOIN: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/queue_join.lua")));
pub(super) static STATUS: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/queue_status.lua")));
pub(super) static ENTER: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/queue_enter.lua")));
pub(super) static LEAVE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../lua/queue_leave.lua")));
pub(super) static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/reservation_claim.lua")));
pub(super) static SETTLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/reservation_settle.lua")));
