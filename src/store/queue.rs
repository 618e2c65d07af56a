//! Waiting-room state in the store (SPEC §5). Issue #6 fills this in: join, status, enter and
//! leave as one Lua script each, and their in-process twins.

/// Per-event queues of the memory store.
#[derive(Default)]
pub struct MemoryQueues {}
