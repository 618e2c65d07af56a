//! The access log: one JSON line per request (issue #7), written by `middleware::context` when
//! the response head leaves.
//!
//! Layers further in report what they decided through [`AccessLog`], which the context layer
//! puts in the request extensions before anything else runs. Reporting is one atomic store, no
//! lock, no allocation; the first report of each field wins. For example, in a policy layer:
//!
//! ```ignore
//! use crate::telemetry::access::AccessLog;
//! if let Some(log) = req.extensions().get::<AccessLog>() {
//!     log.rate_limit("limited");     // ratelimit: allowed | limited | fallback_allowed | …
//!     log.idempotency("replayed");   // idempotency: new | replayed | in_progress | conflict | …
//!     log.user(caller.user_id());    // auth: the verified `sub` (never the token)
//! }
//! ```
//!
//! Outcomes are `&'static str` on purpose: a label chosen in code can never carry a token, a key
//! or a body. The line never holds `Authorization`, `Idempotency-Key` values, tokens or bodies.
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What later layers tell the access line. Cheap to clone (one `Arc`).
#[derive(Debug, Clone, Default)]
pub struct AccessLog(Arc<Fields>);

#[derive(Debug)]
struct Fields {
    user_id: OnceLock<Arc<str>>,
    upstream: OnceLock<&'static str>,
    /// Microseconds to the upstream's response head; `u64::MAX` while unset.
    upstream_latency_us: AtomicU64,
    upstream_status: OnceLock<u16>,
    rate_limit: OnceLock<&'static str>,
    idempotency: OnceLock<&'static str>,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            user_id: OnceLock::new(),
            upstream: OnceLock::new(),
            upstream_latency_us: AtomicU64::new(u64::MAX),
            upstream_status: OnceLock::new(),
            rate_limit: OnceLock::new(),
            idempotency: OnceLock::new(),
        }
    }
}

impl AccessLog {
    /// The verified caller (`Caller::user_id`, the token's `sub`).
    pub fn user(&self, user_id: &str) {
        if self.0.user_id.get().is_none() {
            let _ = self.0.user_id.set(Arc::from(user_id));
        }
    }

    /// The rate-limit decision (`allowed`, `limited`, `fallback_allowed`, …).
    pub fn rate_limit(&self, outcome: &'static str) {
        let _ = self.0.rate_limit.set(outcome);
    }

    /// The idempotency outcome (`new`, `replayed`, `in_progress`, `conflict`, `store_error`, …).
    pub fn idempotency(&self, outcome: &'static str) {
        let _ = self.0.idempotency.set(outcome);
    }

    /// Which upstream was called (`reservation`, `payment`), its status (0 when it gave none)
    /// and how long its response head took.
    pub fn upstream(&self, name: &'static str, status: Option<u16>, latency: Duration) {
        let _ = self.0.upstream.set(name);
        let _ = self.0.upstream_status.set(status.unwrap_or(0));
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX - 1);
        let _ = self.0.upstream_latency_us.compare_exchange(
            u64::MAX,
            us,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn upstream_latency_ms(&self) -> Option<f64> {
        match self.0.upstream_latency_us.load(Ordering::Relaxed) {
            u64::MAX => None,
            us => Some(us as f64 / 1000.0),
        }
    }
}

/// The request's own facts, known to the context layer.
pub struct Line<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub latency: Duration,
    pub client_ip: IpAddr,
    pub request_id: &'a str,
    pub trace_id: &'a str,
}

/// Writes the access line (target `access`, level info).
pub fn emit(line: &Line<'_>, log: &AccessLog) {
    let f = &log.0;
    tracing::info!(
        target: "access",
        method = line.method,
        route = line.route,
        status = line.status,
        latency_ms = line.latency.as_micros() as f64 / 1000.0,
        client_ip = %line.client_ip,
        user_id = f.user_id.get().map(|u| &**u),
        request_id = line.request_id,
        trace_id = line.trace_id,
        upstream = f.upstream.get().copied(),
        upstream_status = f.upstream_status.get().copied().filter(|s| *s != 0),
        upstream_latency_ms = log.upstream_latency_ms(),
        rate_limit = f.rate_limit.get().copied(),
        idempotency = f.idempotency.get().copied(),
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_report_wins_and_clones_share_it() {
        let log = AccessLog::default();
        let seen_by_layer = log.clone();
        seen_by_layer.rate_limit("allowed");
        seen_by_layer.rate_limit("limited");
        seen_by_layer.idempotency("replayed");
        seen_by_layer.user("u-1");
        seen_by_layer.upstream("payment", Some(201), Duration::from_micros(1500));
        seen_by_layer.upstream("reservation", None, Duration::from_secs(1));
        assert_eq!(log.0.rate_limit.get(), Some(&"allowed"));
        assert_eq!(log.0.idempotency.get(), Some(&"replayed"));
        assert_eq!(log.0.user_id.get().map(|u| &**u), Some("u-1"));
        assert_eq!(log.0.upstream.get(), Some(&"payment"));
        assert_eq!(log.0.upstream_status.get(), Some(&201));
        assert_eq!(log.upstream_latency_ms(), Some(1.5));
    }
}
