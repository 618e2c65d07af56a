//! `AppState`: everything a request may need, built once by `App::build` and shared as
//! `Arc<AppState>`. Layers take their parts in their constructors; per-request facts ride in
//! request extensions, never here.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Semaphore;

use crate::config::Config;
use crate::jwt::JwtVerifier;
use crate::jwt::dev::DemoIssuer;
use crate::limiter::Limiter;
use crate::queue::EventLabels;
use crate::queue::adaptive::ReservationHealth;
use crate::store::Store;
use crate::store::health::StoreHealth;
use crate::telemetry::Metrics;
use crate::upstream::Upstream;

pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub reservation: Upstream,
    pub payment: Upstream,
    /// Bearer-token verification and the JWKS cache (issue #3).
    pub jwt: JwtVerifier,
    /// `--demo` only: the dev signing key behind `GET /demo/token`.
    pub demo: Option<DemoIssuer>,
    /// The per-client rate limiter (issue #4).
    pub limiter: Arc<Limiter>,
    /// `MAX_IN_FLIGHT` permits, one set for every `/api` route (issue #4).
    pub in_flight: Arc<Semaphore>,
    /// Bounded `event` label values for the waiting-room metrics (event ids come from clients).
    pub queue_labels: EventLabels,
    /// Whether the store has answered since start and answers now (`/readyz`, SPEC §2).
    pub store_health: Arc<StoreHealth>,
    /// This replica's view of the reservation upstream, for adaptive admission (SPEC §5a).
    pub reservation_health: Arc<ReservationHealth>,
    /// Set when shutdown begins: `/readyz` answers 503 from then on (SPEC §9).
    shutting_down: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("upstream client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("demo signing key: {0}")]
    DemoKey(#[from] jsonwebtoken::errors::Error),
}

impl AppState {
    pub fn new(config: Config, store: Store) -> Result<Self, StateError> {
        let metrics = Arc::new(Metrics::new()?);
        let jwt = JwtVerifier::new(&config.jwt, metrics.clone())?;
        // `--demo` trusts a key generated here instead of fetching a JWKS.
        let demo = if config.demo {
            let issuer = DemoIssuer::generate(&config.jwt)?;
            jwt.trust(&issuer.jwks());
            Some(issuer)
        } else {
            None
        };
        Ok(AppState {
            jwt,
            demo,
            reservation: Upstream::new(
                config.reservation.clone(),
                &config.routing,
                metrics.clone(),
            )?,
            payment: Upstream::new(config.payment.clone(), &config.routing, metrics.clone())?,
            limiter: Arc::new(Limiter::new(
                &config.rate_limit,
                store.clone(),
                metrics.clone(),
            )),
            // Clamped to what a semaphore can hold.
            in_flight: Arc::new(Semaphore::new(
                config.max_in_flight.min(Semaphore::MAX_PERMITS),
            )),
            config,
            store,
            metrics,
            queue_labels: EventLabels::default(),
            store_health: Arc::default(),
            reservation_health: Arc::new(ReservationHealth::default()),
            shutting_down: AtomicBool::new(false),
        })
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}
