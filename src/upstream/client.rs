//! The pooled reqwest client of one upstream and the single send it does. Connection reuse
//! (keep-alive) is what makes a proxy fast; a new TCP handshake per request would double latency.
use std::time::Duration;

use super::{Outbound, UpstreamError};
use crate::config::UpstreamConfig;

/// Per request, the one deadline is the client's own `timeout` (no timeout object per request);
/// reqwest's retry layer is off (the balancer decides the one retry a GET may get, and a write
/// is never sent twice), which also spares it a copy of every request kept for replay.
pub fn build(config: &UpstreamConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .http1_only()
        .timeout(config.timeout)
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(config.max_concurrency)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(config.timeout.min(Duration::from_secs(1)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
}

/// One attempt against one base URL, bounded by the client's timeout or, for a retry, by what
/// is left of it.
pub async fn send(
    http: &reqwest::Client,
    base: &reqwest::Url,
    left: Option<Duration>,
    out: Outbound,
) -> Result<reqwest::Response, UpstreamError> {
    // The request is built whole, not through `RequestBuilder`: its `headers()` copies the map
    // entry by entry into a new one (four allocations a request); ours is moved in as it is.
    let mut req = reqwest::Request::new(out.method, join(base, &out.path_and_query));
    *req.headers_mut() = out.headers;
    *req.body_mut() = Some(out.body.into());
    *req.timeout_mut() = left;
    http.execute(req).await.map_err(classify)
}

/// `base` may carry a path prefix (`http://host/prefix`); the mapped path is appended to it.
/// Starts from the parsed base (scheme, host and port are not parsed again per request: URL
/// parsing was 4 % of the gateway's CPU in the profile, BENCHMARKS.md).
fn join(base: &reqwest::Url, path_and_query: &str) -> reqwest::Url {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    if prefix.is_empty() {
        url.set_path(path);
    } else {
        let mut full = String::with_capacity(prefix.len() + path.len());
        full.push_str(prefix);
        full.push_str(path);
        url.set_path(&full);
    }
    url.set_query(query);
    url
}

pub fn classify(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout
    } else if e.is_connect() {
        UpstreamError::Connect(e.to_string())
    } else {
        UpstreamError::Protocol(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn join_keeps_base_prefix_and_query() {
        let base = reqwest::Url::parse("http://127.0.0.1:9000/prefix/").unwrap();
        assert_eq!(
            join(&base, "/v1/reservations/a?x=1").as_str(),
            "http://127.0.0.1:9000/prefix/v1/reservations/a?x=1"
        );
        let base = reqwest::Url::parse("http://h").unwrap();
        assert_eq!(
            join(&base, "/v1/sim/intent").as_str(),
            "http://h/v1/sim/intent"
        );
    }
}
