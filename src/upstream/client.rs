//! The pooled reqwest client of one upstream and the single send it does. Connection reuse
//! (keep-alive) is what makes a proxy fast; a new TCP handshake per request would double latency.
use std::time::Duration;

use super::{Outbound, UpstreamError};
use crate::config::UpstreamConfig;

pub fn build(config: &UpstreamConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(config.max_concurrency)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(config.timeout.min(Duration::from_secs(1)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
}

/// One attempt against one base URL, bounded by `timeout`.
pub async fn send(
    http: &reqwest::Client,
    base: &reqwest::Url,
    timeout: Duration,
    out: Outbound,
) -> Result<reqwest::Response, UpstreamError> {
    let url = join(base, &out.path_and_query).map_err(|e| UpstreamError::Connect(e.to_string()))?;
    let req = http
        .request(out.method, url)
        .headers(out.headers)
        .body(out.body)
        .timeout(timeout);
    req.send().await.map_err(classify)
}

/// `base` may carry a path prefix (`http://host/prefix`); the mapped path is appended to it.
fn join(base: &reqwest::Url, path_and_query: &str) -> Result<reqwest::Url, url_error::UrlError> {
    let prefix = base.path().trim_end_matches('/');
    let mut s = String::with_capacity(base.as_str().len() + path_and_query.len());
    s.push_str(base.scheme());
    s.push_str("://");
    s.push_str(base.host_str().ok_or(url_error::UrlError)?);
    if let Some(port) = base.port() {
        s.push(':');
        s.push_str(&port.to_string());
    }
    s.push_str(prefix);
    s.push_str(path_and_query);
    reqwest::Url::parse(&s).map_err(|_| url_error::UrlError)
}

mod url_error {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot build the upstream URL")]
    pub struct UrlError;
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
            join(&base, "/v1/reservations/a?x=1").unwrap().as_str(),
            "http://127.0.0.1:9000/prefix/v1/reservations/a?x=1"
        );
        let base = reqwest::Url::parse("http://h").unwrap();
        assert_eq!(
            join(&base, "/v1/sim/intent").unwrap().as_str(),
            "http://h/v1/sim/intent"
        );
    }
}
