//! The per-client rate limiter (SPEC §7, issue #4): takes a token from the client's bucket,
//! shared through the store, or local while the store is down. The bucket arithmetic itself is
//! `store::ratelimit::decide`; the 429 and the headers are `middleware::ratelimit`.
//!
//! Store failure: the replica falls back to local buckets with the same parameters (never
//! unlimited, never a 500). The store is tried again after a backoff (250 ms doubling to 5 s) by
//! one request at a time, not by every request, and the shared buckets resume by themselves.
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client_addr;
use crate::config::RateLimitConfig;
use crate::store::ratelimit::{self as buckets, MemoryBuckets, Params, Verdict};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::CounterHandles;

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The configured store (Redis, or the memory store of a single replica).
    Store,
    /// This replica's local buckets, while the store is down.
    Fallback,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Store => "store",
            Source::Fallback => "fallback",
        }
    }
}

/// The rate limiter: parameters, the store, the local fallback and its health state.
pub struct Limiter {
    store: Store,
    params: Params,
    local: MemoryBuckets,
    metrics: Arc<Metrics>,
    /// `ratelimit_decisions_total` per outcome and source, resolved once.
    decisions: CounterHandles,
    /// `store_request_duration_seconds{op="ratelimit"}`, resolved once (not a label look-up per
    /// request).
    store_duration: prometheus::Histogram,
    epoch: Instant,
    /// True while decisions are local because the store failed.
    fallback: AtomicBool,
    /// When (ms since `epoch`) the next store attempt may be made; `u64::MAX` while one is.
    retry_at_ms: AtomicU64,
    backoff_ms: AtomicU64,
}

impl Limiter {
    pub fn new(cfg: &RateLimitConfig, store: Store, metrics: Arc<Metrics>) -> Limiter {
        Limiter {
            store,
            params: Params::new(cfg.rps, cfg.burst),
            local: MemoryBuckets::new(),
            store_duration: metrics.store_duration.with_label_values(&["ratelimit"]),
            decisions: CounterHandles::new(
                &metrics.ratelimit_decisions,
                &[
                    &["allowed", "store"],
                    &["limited", "store"],
                    &["allowed", "fallback"],
                    &["limited", "fallback"],
                ],
            ),
            metrics,
            epoch: Instant::now(),
            fallback: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            backoff_ms: AtomicU64::new(FIRST_BACKOFF.as_millis() as u64),
        }
    }

    /// Takes a token for `client` (already the client of SPEC §7: peer or trusted hop).
    pub async fn check(&self, client: IpAddr) -> (Verdict, Source) {
        let client = client_addr::bucket(client);
        // While the store is down, local buckets; one request at a time probes the store.
        let (verdict, source) = if self.fallback.load(Ordering::Acquire) && !self.claim_probe() {
            (self.local.take(client, self.params), Source::Fallback)
        } else {
            let started = Instant::now();
            let result = buckets::take(&self.store, client, self.params).await;
            self.store_duration.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(v) => {
                    self.store_ok();
                    (v, Source::Store)
                }
                Err(e) => {
                    self.store_failed(&e);
                    (self.local.take(client, self.params), Source::Fallback)
                }
            }
        };
        let outcome = if verdict.allowed {
            "allowed"
        } else {
            "limited"
        };
        self.decisions.inc(&[outcome, source.label()]);
        (verdict, source)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// While in fallback: true for the one request that may try the store now.
    fn claim_probe(&self) -> bool {
        let at = self.retry_at_ms.load(Ordering::Acquire);
        at != u64::MAX
            && self.now_ms() >= at
            && self
                .retry_at_ms
                .compare_exchange(at, u64::MAX, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    fn store_ok(&self) {
        if self.fallback.swap(false, Ordering::AcqRel) {
            self.backoff_ms
                .store(FIRST_BACKOFF.as_millis() as u64, Ordering::Release);
            self.metrics.ratelimit_fallback_active.set(0);
            // The local buckets are not needed until the next outage: give their memory back.
            self.local.sweep();
            tracing::info!("store is back: rate limiting with the shared buckets again");
        }
    }

    fn store_failed(&self, e: &StoreError) {
        self.metrics
            .store_errors
            .with_label_values(&["ratelimit"])
            .inc();
        let backoff = if self.fallback.swap(true, Ordering::AcqRel) {
            // A failed probe: wait longer next time.
            let b = self.backoff_ms.load(Ordering::Acquire);
            let next = (b * 2).min(MAX_BACKOFF.as_millis() as u64);
            self.backoff_ms.store(next, Ordering::Release);
            next
        } else {
            self.metrics.ratelimit_fallback_active.set(1);
            tracing::warn!(error = %e, "store unavailable: rate limiting with local buckets");
            self.backoff_ms.load(Ordering::Acquire)
        };
        self.retry_at_ms
            .store(self.now_ms() + backoff, Ordering::Release);
    }
}
