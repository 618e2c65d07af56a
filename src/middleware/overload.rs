//! Load shedding (SPEC §7, issue #4): at most `MAX_IN_FLIGHT` `/api/` requests are served at
//! once; the next one is refused at once with 503 `OVERLOADED` and `Retry-After`, rather than
//! queued until everything is slow. Health, readiness and metrics are not behind this layer, so
//! they are never counted or shed.
//!
//! axum clones a route layer for every route, so the permits are one `Arc<Semaphore>` built once
//! in `AppState` and handed to each copy: the limit is for the whole process, not per route.
//!
//! An [`Around`] concern: the permit is taken in `before` (never waited for), so an admitted
//! request calls the ready inner service at once, neither cloned nor boxed.
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::Holding;
use crate::error::ApiError;
use crate::middleware::around::{Around, AroundLayer};
use crate::telemetry::Metrics;
use crate::telemetry::access::AccessLog;

/// The shedding layer the router puts on `/api` routes.
pub type OverloadLayer = AroundLayer<Shedding>;

#[derive(Clone)]
pub struct Shedding {
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Shedding {
    pub fn layer(permits: Arc<Semaphore>, metrics: Arc<Metrics>) -> OverloadLayer {
        AroundLayer::new(Shedding { permits, metrics })
    }
}

impl Around for Shedding {
    /// The permit of an admitted request; none for a shed one.
    type State = Option<OwnedSemaphorePermit>;

    fn before(&self, req: &mut Request) -> (Self::State, Option<Response>) {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => (Some(permit), None),
            Err(_) => {
                self.metrics.overload_shed.inc();
                if let Some(log) = req.extensions().get::<AccessLog>() {
                    log.rate_limit("overloaded");
                }
                (None, Some(ApiError::Overloaded.into_response()))
            }
        }
    }

    fn after(permit: Self::State, res: &mut Response) {
        // The permit is held until the response body is done (or dropped), so a slow streaming
        // answer still counts as in flight.
        if let Some(permit) = permit {
            let body = std::mem::take(res.body_mut());
            *res.body_mut() = Body::new(Holding::new(body, permit));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::convert::Infallible;
    use std::time::Duration;
    use tower::{ServiceBuilder, ServiceExt};

    #[tokio::test]
    async fn the_request_over_the_limit_is_shed_at_once() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let permits = Arc::new(Semaphore::new(2));
        let layer = Shedding::layer(permits.clone(), metrics.clone());
        let slow = ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|_req: Request| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<_, Infallible>(Response::new("late".into()))
            });
        let req = || Request::new(axum::body::Body::empty());
        // A response whose body is not read yet still holds its permit.
        let done = ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|_req: Request| async {
                Ok::<_, Infallible>(Response::new("body".into()))
            });
        let unread = done.oneshot(req()).await.unwrap();
        assert_eq!(permits.available_permits(), 1);
        drop(unread);
        assert_eq!(permits.available_permits(), 2);
        let a = tokio::spawn(slow.clone().oneshot(req()));
        let b = tokio::spawn(slow.clone().oneshot(req()));
        while permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        // Another copy of the layer (another route) shares the same permits.
        let fast = ServiceBuilder::new()
            .layer(layer)
            .service_fn(|_req: Request| async { Ok::<_, Infallible>(Response::new("ok".into())) });
        let res = fast.clone().oneshot(req()).await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(metrics.overload_shed.get(), 1);
        a.abort();
        b.abort();
        let _ = a.await;
        let _ = b.await;
        // Permits come back when requests end, even cancelled ones.
        assert_eq!(permits.available_permits(), 2);
        assert_eq!(fast.oneshot(req()).await.unwrap().status(), 200);
    }
}
