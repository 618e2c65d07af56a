//! The in-memory backend: the same contract as Redis for one replica (`REDIS_ADDR` unset,
//! `--demo`, tests). Each policy's state lives in that policy's file beside its Lua twin; this
//! struct only owns them. Sharded maps, no global lock on the request path.
use super::{idempotency, queue, ratelimit};

#[derive(Default)]
pub struct MemoryStore {
    pub(crate) ratelimit: ratelimit::MemoryBuckets,
    pub(crate) idempotency: idempotency::MemoryRecords,
    pub(crate) queue: queue::MemoryQueues,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops what has expired in every policy's state and gives the memory back; `queue` says
    /// when a waiting-room place expires.
    pub fn sweep(&self, queue: &queue::QueueSettings) {
        self.ratelimit.sweep();
        self.idempotency.sweep();
        self.queue.sweep(queue);
    }
}
