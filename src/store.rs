//! The store: where replicas share state (rate-limit buckets, idempotency records, the waiting
//! room). Two backends with one contract: Redis (or Redis Cluster) and an in-memory store for a
//! single replica and `--demo`.
//!
//! `Store` is an enum rather than a trait object: no boxing per call, and each policy keeps both
//! backends side by side in its own file (`store/ratelimit.rs`, `store/idempotency.rs`,
//! `store/queue.rs`: the Lua script next to its in-process twin), so the two cannot drift apart.
//! Every policy operation is one store round trip.
use std::sync::Arc;

use crate::config::RedisConfig;

/// How often the memory store drops what has expired (see [`Store::start_maintenance`]).
const MEMORY_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

pub mod events;
pub mod health;
pub mod idempotency;
pub mod memory;
pub mod queue;
pub mod ratelimit;
pub mod redis;

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;

#[derive(Clone)]
pub enum Store {
    Memory(Arc<MemoryStore>),
    Redis(RedisStore),
}

/// The store did not do what was asked. Callers decide what that means for the request
/// (fail closed for idempotency, local fallback for rate limits).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store call timed out")]
    Timeout,
    #[error("unexpected store reply: {0}")]
    Protocol(String),
}

impl Store {
    /// `None` → the in-memory store. Redis connects in the background, so a gateway started
    /// before Redis becomes ready when Redis does (`/readyz` says which).
    pub fn from_config(redis: Option<&RedisConfig>) -> Result<Store, StoreError> {
        match redis {
            None => Ok(Store::Memory(Arc::new(MemoryStore::new()))),
            Some(cfg) => Ok(Store::Redis(RedisStore::new(cfg)?)),
        }
    }

    pub fn memory() -> Store {
        Store::Memory(Arc::new(MemoryStore::new()))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(r) if r.is_cluster() => "redis-cluster",
            Store::Redis(_) => "redis",
        }
    }

    /// The memory store forgets by itself: a background sweep every few seconds drops what has
    /// expired (full rate-limit buckets, expired idempotency records, idle waiting rooms) and
    /// gives the memory back, traffic or not. It ends when the store is dropped. Redis expires
    /// its own keys.
    pub fn start_maintenance(&self, queue: queue::QueueSettings) {
        let Store::Memory(m) = self else { return };
        let weak = Arc::downgrade(m);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(MEMORY_SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(m) = weak.upgrade() else { return };
                m.sweep(&queue);
            }
        });
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Redis(r) => r.ping().await,
        }
    }
}
