//! The in-memory backend: the same contract as Redis for one replica (`REDIS_ADDR` unset,
//! `--demo`, tests). Each policy's state lives in that policy's file beside its Lua twin; this
//! struct only owns them. Sharded maps, no global lock on the request path.
use super::{idempotency, queue, ratelimit};

#[derive(Default)]
#[allow(dead_code)] // each policy's state is read by that policy's file as it lands
pub struct MemoryStore {
    pub(crate) ratelimit: ratelimit::MemoryBuckets,
    pub(crate) idempotency: idempotency::MemoryRecords,
    pub(crate) queue: queue::MemoryQueues,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops what has expired in every policy's state and gives the memory back.
    pub fn sweep(&self) {
        self.ratelimit.sweep();
        self.idempotency.sweep();
    }
}
