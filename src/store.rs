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

pub mod events;
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

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Redis(r) => r.ping().await,
        }
    }
}
