//! The per-client rate limit on every `/api/` route (SPEC §7, issue #4): [`Limiter`] takes a
//! token from the client's bucket (shared through the store, or local while the store is down)
//! and [`RateLimitLayer`] turns the verdict into a 429 or lets the request through, stamping the
//! `RateLimit-Policy`, `RateLimit` and `X-RateLimit-*` headers on every response either way.
//! The bucket arithmetic itself is `store::ratelimit::decide`.
//!
//! Store failure: the replica falls back to local buckets with the same parameters (never
//! unlimited, never a 500). The store is tried again after a backoff (250 ms doubling to 5 s) by
//! one request at a time, not by every request, and the shared buckets resume by themselves.
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue};
use tower::{Layer, Service};

use crate::config::RateLimitConfig;
use crate::error::{ApiError, secs_ceil};
use crate::middleware::client_ip;
use crate::middleware::context::RequestContext;
use crate::store::ratelimit::{self as buckets, MemoryBuckets, Params, Verdict};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;
use crate::telemetry::access::AccessLog;
use crate::telemetry::metrics::CounterHandles;

use crate::headers::{
    RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};

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
    policy: HeaderValue,
    limit: HeaderValue,
    epoch: Instant,
    /// True while decisions are local because the store failed.
    fallback: AtomicBool,
    /// When (ms since `epoch`) the next store attempt may be made; `u64::MAX` while one is.
    retry_at_ms: AtomicU64,
    backoff_ms: AtomicU64,
}

impl Limiter {
    pub fn new(cfg: &RateLimitConfig, store: Store, metrics: Arc<Metrics>) -> Limiter {
        let window = (f64::from(cfg.burst) / cfg.rps).ceil().max(1.0) as u64;
        let policy = format!("\"default\";q={};w={window}", cfg.burst);
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
            policy: HeaderValue::from_str(&policy)
                .unwrap_or_else(|_| HeaderValue::from_static("\"default\"")),
            limit: HeaderValue::from(cfg.burst),
            epoch: Instant::now(),
            fallback: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            backoff_ms: AtomicU64::new(FIRST_BACKOFF.as_millis() as u64),
        }
    }

    /// Takes a token for `client` (already the client of SPEC §7: peer or trusted hop).
    pub async fn check(&self, client: IpAddr) -> (Verdict, Source) {
        let client = client_ip::bucket(client);
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

    /// The rate-limit headers of SPEC §7, from one verdict.
    pub fn stamp(&self, headers: &mut HeaderMap, v: &Verdict) {
        let reset = secs_ceil(v.reset);
        headers.insert(RATELIMIT_POLICY.clone(), self.policy.clone());
        if let Ok(value) =
            HeaderValue::from_str(&format!("\"default\";r={};t={reset}", v.remaining))
        {
            headers.insert(RATELIMIT.clone(), value);
        }
        headers.insert(X_RATELIMIT_LIMIT.clone(), self.limit.clone());
        headers.insert(
            X_RATELIMIT_REMAINING.clone(),
            HeaderValue::from(v.remaining),
        );
        headers.insert(X_RATELIMIT_RESET.clone(), HeaderValue::from(reset));
    }
}

/// Whole seconds, rounded up.
/// Refuses requests whose client's bucket is empty with 429 `RATE_LIMITED`.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<Limiter>,
}

impl RateLimitLayer {
    pub fn new(limiter: Arc<Limiter>) -> Self {
        RateLimitLayer { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

impl<S> Service<Request> for RateLimit<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The ready service handles this request; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = self.limiter.clone();
        Box::pin(async move {
            // `context` always runs first; without it every request shares one bucket (never
            // unlimited).
            let client = req
                .extensions()
                .get::<RequestContext>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.client_ip);
            let (verdict, source) = limiter.check(client).await;
            if let Some(log) = req.extensions().get::<AccessLog>() {
                log.rate_limit(match (source, verdict.allowed) {
                    (Source::Store, true) => "allowed",
                    (Source::Store, false) => "limited",
                    (Source::Fallback, true) => "fallback_allowed",
                    (Source::Fallback, false) => "fallback_limited",
                });
            }
            let mut res = if verdict.allowed {
                inner.call(req).await?
            } else {
                ApiError::RateLimited {
                    retry_after: verdict.retry_after,
                }
                .into_response()
            };
            limiter.stamp(res.headers_mut(), &verdict);
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt};

    fn limiter(store: Store) -> Arc<Limiter> {
        let cfg = RateLimitConfig {
            enabled: true,
            rps: 5.0,
            burst: 3,
        };
        Arc::new(Limiter::new(&cfg, store, Arc::new(Metrics::new().unwrap())))
    }

    async fn call(l: &Arc<Limiter>) -> Response {
        let svc = ServiceBuilder::new()
            .layer(RateLimitLayer::new(l.clone()))
            .service_fn(|_req: Request| async { Ok::<_, Infallible>(Response::new("ok".into())) });
        svc.oneshot(Request::new(axum::body::Body::empty()))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn headers_on_every_response_and_429_when_empty() {
        let l = limiter(Store::memory());
        for left in (0..3).rev() {
            let res = call(&l).await;
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["ratelimit-policy"], "\"default\";q=3;w=1");
            assert_eq!(res.headers()["x-ratelimit-limit"], "3");
            assert_eq!(res.headers()["x-ratelimit-remaining"], left.to_string());
            assert_eq!(
                res.headers()["ratelimit"],
                format!("\"default\";r={left};t=1").as_str()
            );
        }
        let res = call(&l).await;
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
        assert_eq!(res.headers()["x-ratelimit-reset"], "1");
    }

    #[tokio::test]
    async fn an_unreachable_store_means_local_limits_not_none() {
        let cfg = crate::config::RedisConfig {
            urls: vec!["redis://127.0.0.1:1".to_owned()],
            cluster: false,
            password: None,
            db: 0,
            tls: false,
        };
        let l = limiter(Store::from_config(Some(&cfg)).unwrap());
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(call(&l).await.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 200, 429]);
        assert_eq!(l.metrics.ratelimit_fallback_active.get(), 1);
        // Only the first call and due probes went to the store, not every request.
        let errors = l
            .metrics
            .store_errors
            .with_label_values(&["ratelimit"])
            .get();
        assert_eq!(errors, 1);
    }
}
