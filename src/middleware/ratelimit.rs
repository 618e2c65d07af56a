//! The per-client rate limit on every `/api/` route (SPEC §7, issue #4): [`RateLimitLayer`] asks
//! the [`Limiter`] for a token and turns the verdict into a 429 or lets the request through,
//! stamping the `RateLimit-Policy`, `RateLimit` and `X-RateLimit-*` headers on every response
//! either way.
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue};
use tower::{Layer, Service};

use crate::config::RateLimitConfig;
use crate::error::{ApiError, secs_ceil};
use crate::headers::{
    RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
use crate::limiter::{Limiter, Source};
use crate::middleware::real_ip::ClientAddr;
use crate::store::ratelimit::Verdict;
use crate::telemetry::access::AccessLog;

/// Refuses requests whose client's bucket is empty with 429 `RATE_LIMITED`.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<Limiter>,
    headers: Arc<PolicyHeaders>,
}

impl RateLimitLayer {
    pub fn new(limiter: Arc<Limiter>, cfg: &RateLimitConfig) -> Self {
        RateLimitLayer {
            limiter,
            headers: Arc::new(PolicyHeaders::new(cfg)),
        }
    }
}

/// The header values that never change, built once, and the small numbers the others are
/// made of (remaining tokens, seconds to reset), so stamping a response allocates only the
/// `RateLimit` value.
struct PolicyHeaders {
    policy: HeaderValue,
    limit: HeaderValue,
    numbers: Box<[HeaderValue]>,
}

/// Numbers kept ready at most (a burst above this formats the rest as it goes).
const MAX_READY_NUMBERS: u64 = 4096;

impl PolicyHeaders {
    fn new(cfg: &RateLimitConfig) -> Self {
        let window = (f64::from(cfg.burst) / cfg.rps).ceil().max(1.0) as u64;
        let policy = format!("\"default\";q={};w={window}", cfg.burst);
        let ready = (u64::from(cfg.burst).max(window + 1)).min(MAX_READY_NUMBERS);
        PolicyHeaders {
            policy: HeaderValue::from_str(&policy)
                .unwrap_or_else(|_| HeaderValue::from_static("\"default\"")),
            limit: HeaderValue::from(cfg.burst),
            numbers: (0..=ready).map(HeaderValue::from).collect(),
        }
    }

    fn number(&self, n: u64) -> HeaderValue {
        usize::try_from(n)
            .ok()
            .and_then(|i| self.numbers.get(i))
            .cloned()
            .unwrap_or_else(|| HeaderValue::from(n))
    }

    /// The rate-limit headers of SPEC §7, from one verdict.
    fn stamp(&self, headers: &mut HeaderMap, v: &Verdict) {
        let reset = secs_ceil(v.reset);
        headers.insert(RATELIMIT_POLICY.clone(), self.policy.clone());
        // `"default";r=<u64>;t=<u64>` fits in 64 bytes: written on the stack, copied once.
        let mut buf = [0u8; 64];
        let mut w = &mut buf[..];
        if write!(w, "\"default\";r={};t={reset}", v.remaining).is_ok() {
            let len = 64 - w.len();
            if let Ok(value) = HeaderValue::from_bytes(&buf[..len]) {
                headers.insert(RATELIMIT.clone(), value);
            }
        }
        headers.insert(X_RATELIMIT_LIMIT.clone(), self.limit.clone());
        headers.insert(X_RATELIMIT_REMAINING.clone(), self.number(v.remaining));
        headers.insert(X_RATELIMIT_RESET.clone(), self.number(reset));
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            headers: self.headers.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
    headers: Arc<PolicyHeaders>,
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
        let headers = self.headers.clone();
        Box::pin(async move {
            // `real_ip` always runs first; without it every request shares one bucket (never
            // unlimited).
            let client = req
                .extensions()
                .get::<ClientAddr>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.client);
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
            headers.stamp(res.headers_mut(), &verdict);
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

    use crate::store::Store;
    use crate::telemetry::Metrics;

    const CFG: RateLimitConfig = RateLimitConfig {
        enabled: true,
        rps: 5.0,
        burst: 3,
    };

    fn limiter(store: Store, metrics: &Arc<Metrics>) -> Arc<Limiter> {
        Arc::new(Limiter::new(&CFG, store, metrics.clone()))
    }

    async fn call(l: &Arc<Limiter>) -> Response {
        let svc = ServiceBuilder::new()
            .layer(RateLimitLayer::new(l.clone(), &CFG))
            .service_fn(|_req: Request| async { Ok::<_, Infallible>(Response::new("ok".into())) });
        svc.oneshot(Request::new(axum::body::Body::empty()))
            .await
            .unwrap()
    }

    #[test]
    fn numbers_past_the_ready_ones_are_formatted() {
        let big = PolicyHeaders::new(&RateLimitConfig {
            enabled: true,
            rps: 100.0,
            burst: 10_000,
        });
        assert_eq!(big.numbers.len(), MAX_READY_NUMBERS as usize + 1);
        for n in [
            0,
            3,
            MAX_READY_NUMBERS,
            MAX_READY_NUMBERS + 1,
            9_999,
            u64::MAX,
        ] {
            assert_eq!(big.number(n), n.to_string().as_str());
        }
        let mut h = HeaderMap::new();
        let v = Verdict {
            allowed: true,
            remaining: u64::MAX,
            retry_after: std::time::Duration::ZERO,
            reset: std::time::Duration::from_secs(u64::MAX),
            tat: 0,
        };
        big.stamp(&mut h, &v);
        // The longest value still fits the stack buffer.
        assert_eq!(
            h["ratelimit"],
            format!("\"default\";r={};t={}", u64::MAX, u64::MAX).as_str()
        );
    }

    #[tokio::test]
    async fn headers_on_every_response_and_429_when_empty() {
        let l = limiter(Store::memory(), &Arc::new(Metrics::new().unwrap()));
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
        let metrics = Arc::new(Metrics::new().unwrap());
        let l = limiter(Store::from_config(Some(&cfg)).unwrap(), &metrics);
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(call(&l).await.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 200, 429]);
        assert_eq!(metrics.ratelimit_fallback_active.get(), 1);
        // Only the first call and due probes went to the store, not every request.
        let errors = metrics.store_errors.with_label_values(&["ratelimit"]).get();
        assert_eq!(errors, 1);
    }
}
