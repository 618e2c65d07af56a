//! The reservation and payment upstreams: a pooled HTTP client per upstream, path and header
//! rules (SPEC §2, §3), timeouts and the errors of SPEC §4. Load balancing, ejection and circuit
//! breaking over several instances (SPEC §7a) live in `balancer`.
//!
//! Not for policy: by the time a request gets here it has been authenticated, limited and (for
//! writes) recorded for idempotency.
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method};
use tokio::sync::Semaphore;

use crate::config::UpstreamConfig;
use crate::error::ApiError;
use crate::telemetry::Metrics;

pub mod client;
pub mod forward;

/// Why an upstream call failed. Only `ApiError` knows which HTTP status that becomes.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Nothing was sent: refused, unreachable, DNS failure.
    #[error("connect failed: {0}")]
    Connect(String),
    /// No answer within the upstream's timeout.
    #[error("timed out")]
    Timeout,
    /// Sent, but the answer was not HTTP or the connection closed without one.
    #[error("bad response: {0}")]
    Protocol(String),
    /// Refused before sending: the upstream's concurrency cap is reached.
    #[error("concurrency cap reached")]
    Saturated,
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Connect(_) => {
                ApiError::UpstreamUnavailable("the upstream service is unavailable")
            }
            UpstreamError::Saturated => {
                ApiError::UpstreamUnavailable("the upstream service is at capacity, retry later")
            }
            UpstreamError::Timeout => ApiError::UpstreamTimeout,
            UpstreamError::Protocol(_) => ApiError::UpstreamError,
        }
    }
}

/// What to send: everything already mapped (path, query) and rewritten (headers).
pub struct Outbound {
    pub method: Method,
    /// Path and query on the upstream, e.g. `/v1/reservations/abc?x=1`.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub struct Upstream {
    pub name: &'static str,
    config: UpstreamConfig,
    http: reqwest::Client,
    /// Bulkhead: a slow upstream holds at most this many requests (SPEC §7a).
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Upstream {
    pub fn new(config: UpstreamConfig, metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        Ok(Upstream {
            name: config.name,
            http: client::build(&config)?,
            permits: Arc::new(Semaphore::new(config.max_concurrency)),
            config,
            metrics,
        })
    }

    /// Sends the request and returns the upstream's answer with its body streamed through.
    pub async fn send(&self, out: Outbound) -> Result<Response, UpstreamError> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            self.metrics
                .upstream_rejected
                .with_label_values(&[self.name, "saturated"])
                .inc();
            UpstreamError::Saturated
        })?;
        let base = &self.config.bases[0];
        let started = Instant::now();
        let result = client::send(&self.http, base, self.config.timeout, out).await;
        self.metrics
            .upstream_duration
            .with_label_values(&[self.name])
            .observe(started.elapsed().as_secs_f64());
        let res = match result {
            Ok(res) => res,
            Err(e) => {
                let label = match &e {
                    UpstreamError::Connect(_) => "connect_error",
                    UpstreamError::Timeout => "timeout",
                    UpstreamError::Protocol(_) => "protocol_error",
                    UpstreamError::Saturated => "saturated",
                };
                self.metrics
                    .upstream_requests
                    .with_label_values(&[self.name, label])
                    .inc();
                tracing::warn!(upstream = self.name, error = %e, "upstream call failed");
                return Err(e);
            }
        };
        let status = res.status();
        self.metrics
            .upstream_requests
            .with_label_values(&[self.name, status.as_str()])
            .inc();
        let mut builder = Response::builder().status(status);
        if let Some(h) = builder.headers_mut() {
            forward::copy_response_headers(res.headers(), h);
        }
        // The permit lives as long as the body stream, so a slow body still counts against the cap.
        let stream = res.bytes_stream().map(move |chunk| {
            let _held = &permit;
            chunk
        });
        builder
            .body(Body::from_stream(stream))
            .map_err(|e| UpstreamError::Protocol(e.to_string()))
    }
}
