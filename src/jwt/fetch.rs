//! Loading the JWKS: one fetch at a time (single flight), an unknown `kid` refetching at most
//! once per `JWT_REFRESH_MIN_INTERVAL`, and the background refresh loop. A failed or refused
//! fetch keeps the last good set. No token checks here.
use std::sync::{Arc, MutexGuard, Weak};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::keys::KeySet;
use super::{Inner, unix_now};

const MAX_JWKS_BYTES: usize = 1024 * 1024;
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(super) struct FetchState {
    last_started: Option<Instant>,
    in_flight: bool,
    /// Fingerprint of the last installed JWKS body: an unchanged body keeps the generation.
    fingerprint: Option<[u8; 32]>,
    pub(super) generation: u64,
}

impl Inner {
    pub(super) fn lock_fetch(&self) -> MutexGuard<'_, FetchState> {
        self.fetch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a JWKS fetch unless one is running (single flight) or, when `rate_limited`, one
    /// started less than `JWT_REFRESH_MIN_INTERVAL` ago. Returns a receiver that changes when
    /// the running fetch ends, or `None` when nothing runs.
    pub(super) fn begin_fetch(
        this: &Arc<Inner>,
        rate_limited: bool,
    ) -> Option<watch::Receiver<u64>> {
        let url = this.jwks_url.clone()?;
        let done = this.fetched.subscribe();
        {
            let mut st = this.lock_fetch();
            if st.in_flight {
                return Some(done);
            }
            if rate_limited
                && st
                    .last_started
                    .is_some_and(|t| t.elapsed() < this.refresh_min_interval)
            {
                return None;
            }
            st.in_flight = true;
            st.last_started = Some(Instant::now());
        }
        let inner = this.clone();
        // Its own task: a request that stops waiting never cancels the fetch.
        tokio::spawn(async move {
            let result = inner.fetch_once(&url).await;
            {
                let mut st = inner.lock_fetch();
                st.in_flight = false;
                match result {
                    Ok((body, fingerprint)) => {
                        let changed = st.fingerprint != Some(fingerprint);
                        let generation = if changed {
                            st.generation + 1
                        } else {
                            st.generation
                        };
                        match KeySet::parse(&body, generation) {
                            Ok(set) => {
                                if changed {
                                    tracing::info!(
                                        keys = set.keys.len(),
                                        generation,
                                        "JWKS loaded"
                                    );
                                }
                                st.generation = generation;
                                st.fingerprint = Some(fingerprint);
                                inner.keys.store(Some(Arc::new(set)));
                                inner.metrics.jwks_fetches.with_label_values(&["ok"]).inc();
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "JWKS refused, keeping the last good set");
                                inner
                                    .metrics
                                    .jwks_fetches
                                    .with_label_values(&["error"])
                                    .inc();
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "JWKS fetch failed, keeping the last good set");
                        inner
                            .metrics
                            .jwks_fetches
                            .with_label_values(&["error"])
                            .inc();
                    }
                }
            }
            inner.fetched.send_modify(|n| *n = n.wrapping_add(1));
        });
        Some(done)
    }

    async fn fetch_once(&self, url: &reqwest::Url) -> Result<(Vec<u8>, [u8; 32]), FetchError> {
        let mut res = self
            .http
            .get(url.clone())
            .send()
            .await?
            .error_for_status()?;
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let fingerprint: [u8; 32] = Sha256::digest(&body).into();
        Ok((body, fingerprint))
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("JWKS over {MAX_JWKS_BYTES} bytes")]
    TooLarge,
}

/// Fetch at once, then every `JWT_CACHE_TTL`; while nothing is loaded, or after a failure, retry
/// with backoff 1 s → 30 s. Ends when the verifier is dropped.
pub(super) async fn refresh_loop(weak: Weak<Inner>) {
    let mut backoff = BACKOFF_START;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let before = inner.metrics.jwks_fetches.with_label_values(&["ok"]).get();
        if let Some(mut done) = Inner::begin_fetch(&inner, false) {
            let _ = done.changed().await;
        }
        let ok = inner.metrics.jwks_fetches.with_label_values(&["ok"]).get() > before;
        // Verified tokens past their `exp` go with each refresh: the cache is bounded by count
        // (CACHE_CAPACITY) and by time (exp + at most one JWT_CACHE_TTL).
        inner.cache.sweep(unix_now());
        let wait = if ok && inner.keys.load().is_some() {
            backoff = BACKOFF_START;
            inner.cache_ttl
        } else {
            let wait = backoff.min(inner.cache_ttl.max(BACKOFF_START));
            backoff = (backoff * 2).min(BACKOFF_MAX);
            wait
        };
        drop(inner);
        tokio::time::sleep(wait).await;
    }
}
