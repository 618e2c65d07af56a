//! `App`: binds the listener, builds the state and router, and serves until shutdown (SPEC §9).
//!
//! The accept loop is hyper's own (not `axum::serve`) because the listener must enforce what
//! SPEC §4 asks of it: a 16 KiB request head, at most 100 headers, and a 10 s deadline for a
//! complete head (slowloris).
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

use self::slow_client::WriteDeadline;
use crate::body::DeadlineBody;
use crate::config::{Config, ConfigErrors};
use crate::framing;
use crate::router::router;
use crate::state::{AppState, StateError};
use crate::store::Store;

pub mod slow_client;

/// SPEC §4: the request line and headers together.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 100;
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct App {
    listener: TcpListener,
    state: Arc<AppState>,
    router: Router,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The JWT settings verification needs are missing (`--demo` and `JWT_SKIP_VERIFY` aside).
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    State(#[from] StateError),
}

impl App {
    /// Binds `0.0.0.0:PORT` (port 0 picks a free one, for tests).
    pub async fn build(config: Config) -> Result<App, AppError> {
        let addr = SocketAddr::from(([0, 0, 0, 0], config.port));
        Self::build_on(config, addr).await
    }

    /// As [`App::build`], on `addr`. Refuses a configuration whose JWT settings cannot verify
    /// a token, whoever loaded it (`main` checks it too, to name every missing variable at once
    /// with the bad ones).
    pub async fn build_on(config: Config, addr: SocketAddr) -> Result<App, AppError> {
        config.validate_jwt()?;
        let store = Store::from_config(config.redis.as_ref()).map_err(StateError::from)?;
        if config.redis.is_none() {
            tracing::warn!("REDIS_ADDR is unset: using the in-memory store (single replica only)");
        }
        let state = Arc::new(AppState::new(config, store)?);
        // First JWKS fetch now, then in the background; not ready until it lands.
        state.jwt.start();
        state.store.start_maintenance((&state.config.queue).into());
        // Not ready until the store has answered once; later outages only show (SPEC §2).
        state
            .store_health
            .watch(state.store.clone(), state.metrics.store_up.clone());
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Bind { addr, source })?;
        let router = router(state.clone());
        Ok(App {
            listener,
            state,
            router,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `signal` resolves, then shuts down as SPEC §9 says: not ready at once, keep
    /// accepting for `SHUTDOWN_DELAY`, stop accepting, let in-flight requests finish within
    /// `SHUTDOWN_TIMEOUT`.
    pub async fn run(self, signal: impl Future<Output = ()> + Send) {
        let App {
            listener,
            state,
            router,
        } = self;
        let graceful = GracefulShutdown::new();
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD_BYTES.max(8192))
            .max_headers(MAX_HEADERS);

        let stop_accepting = async {
            signal.await;
            tracing::info!(
                delay_ms = state.config.shutdown_delay.as_millis() as u64,
                "shutdown signal: not ready, draining"
            );
            state.begin_shutdown();
            tokio::time::sleep(state.config.shutdown_delay).await;
        };
        tokio::pin!(stop_accepting);

        // Slow clients are bounded (SPEC §4, slow_client.rs); the counters are resolved once.
        let body_timeout = state.config.request_body_timeout;
        let write_timeout = state.config.response_write_timeout;
        let body_aborts = state
            .metrics
            .slow_client_aborts
            .with_label_values(&["body_timeout"]);
        let write_aborts = state
            .metrics
            .slow_client_aborts
            .with_label_values(&["write_timeout"]);

        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of file descriptors and the like: back off briefly, keep serving.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    // Content-Length + Transfer-Encoding is refused (SPEC §4; see framing.rs).
                    let (stream, verdicts) = framing::guard(stream);
                    // A client that stops reading its answer is cut off (SPEC §4).
                    let stream = WriteDeadline::new(stream, write_timeout, write_aborts.clone());
                    let requests = Arc::new(AtomicU64::new(0));
                    let body_aborts = body_aborts.clone();
                    let svc = router.clone().map_request(move |mut req: http::Request<Incoming>| {
                        req.extensions_mut().insert(ConnectInfo(peer));
                        if verdicts.refuses(requests.fetch_add(1, Ordering::Relaxed)) {
                            req.extensions_mut().insert(framing::Refused);
                        }
                        // The whole body must arrive within REQUEST_BODY_TIMEOUT (SPEC §4).
                        if req.body().is_end_stream() {
                            req.map(Body::new)
                        } else {
                            let aborts = body_aborts.clone();
                            req.map(|b| Body::new(DeadlineBody::new(b, body_timeout, aborts)))
                        }
                    });
                    let svc = hyper::service::service_fn(move |req| {
                        let svc = svc.clone();
                        async move { Ok::<_, Infallible>(svc.oneshot(req).await.unwrap_or_else(|never| match never {})) }
                    });
                    let conn = http.serve_connection(TokioIo::new(stream), svc);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                _ = &mut stop_accepting => break,
            }
        }
        drop(listener);
        tracing::info!("listener closed, waiting for in-flight requests");
        if tokio::time::timeout(state.config.shutdown_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown timeout reached with requests still in flight");
        }
        tracing::info!("shutdown complete");
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// `gateway --healthcheck`: GET `/healthz` on this container's port; exit 0 when it answers 200.
/// Lets the Docker `HEALTHCHECK` work in an image with no curl.
pub async fn healthcheck() -> std::process::ExitCode {
    let port = Config::from_env().map(|c| c.port).unwrap_or(8080);
    let url = format!("http://127.0.0.1:{port}/healthz");
    let ok = async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .ok()?;
        let res = client.get(&url).send().await.ok()?;
        res.status().is_success().then_some(())
    }
    .await;
    if ok.is_some() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// After the first shutdown signal: a second SIGINT or SIGTERM ends the process at once (exit
/// 130), without waiting for the drain (a person pressing Ctrl-C twice means it).
pub async fn exit_on_second_signal() {
    shutdown_signal().await;
    eprintln!("gateway: second signal, exiting now");
    std::process::exit(130);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_vars(vars.iter().copied()).unwrap()
    }

    #[tokio::test]
    async fn build_refuses_jwt_settings_that_cannot_verify_a_token() {
        // Parses (from_vars checks values, not what verification needs), but has no JWKS URL,
        // issuer or audience.
        let c = config(&[("PORT", "0"), ("JWT_ISSUER", "https://idp")]);
        let err = App::build(c).await.err().unwrap();
        assert!(matches!(err, AppError::Config(_)), "{err}");
        let text = err.to_string();
        assert!(text.contains("JWT_JWKS_URL is required"), "{text}");
        assert!(text.contains("JWT_AUDIENCE is required"), "{text}");
        assert!(!text.contains("JWT_ISSUER"), "{text}");
    }

    #[tokio::test]
    async fn build_accepts_skipped_verification_and_the_demo() {
        let c = config(&[("PORT", "0"), ("JWT_SKIP_VERIFY", "true")]);
        assert!(App::build(c).await.is_ok());
        let mut c = config(&[("PORT", "0")]);
        c.demo = true;
        assert!(App::build(c).await.is_ok());
    }
}
