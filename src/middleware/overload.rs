//! Load shedding (SPEC §7, issue #4): at most `MAX_IN_FLIGHT` `/api/` requests are served at
//! once; the next one is refused at once with 503 `OVERLOADED` and `Retry-After`, rather than
//! queued until everything is slow. Health, readiness and metrics are not behind this layer, so
//! they are never counted or shed.
//!
//! axum clones a route layer for every route, so the permits are one `Arc<Semaphore>` built once
//! in `AppState` and handed to each copy: the limit is for the whole process, not per route.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use crate::body::Holding;
use crate::error::ApiError;
use crate::telemetry::Metrics;
use crate::telemetry::access::AccessLog;

#[derive(Clone)]
pub struct OverloadLayer {
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl OverloadLayer {
    pub fn new(permits: Arc<Semaphore>, metrics: Arc<Metrics>) -> Self {
        OverloadLayer { permits, metrics }
    }
}

impl<S> Layer<S> for OverloadLayer {
    type Service = Overload<S>;

    fn layer(&self, inner: S) -> Overload<S> {
        Overload {
            inner,
            permits: self.permits.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Overload<S> {
    inner: S,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request> for Overload<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = OverloadFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics.overload_shed.inc();
            if let Some(log) = req.extensions().get::<AccessLog>() {
                log.rate_limit("overloaded");
            }
            return OverloadFuture::Shed {
                res: Some(ApiError::Overloaded.into_response()),
            };
        };
        // No await before the call: the service made ready by `poll_ready` is called at once,
        // neither cloned nor boxed.
        OverloadFuture::Admitted {
            future: self.inner.call(req),
            permit: Some(permit),
        }
    }
}

pin_project! {
    #[project = OverloadProj]
    pub enum OverloadFuture<F> {
        Shed { res: Option<Response> },
        Admitted { #[pin] future: F, permit: Option<OwnedSemaphorePermit> },
    }
}

impl<F, E> Future for OverloadFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            OverloadProj::Shed { res } => Poll::Ready(Ok(res.take().unwrap_or_default())),
            OverloadProj::Admitted { future, permit } => {
                let res = ready!(future.poll(cx))?;
                // The permit is held until the response body is done (or dropped), so a slow
                // streaming answer still counts as in flight.
                Poll::Ready(Ok(match permit.take() {
                    Some(permit) => res.map(|body| Body::new(Holding::new(body, permit))),
                    None => res,
                }))
            }
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
        let layer = OverloadLayer::new(permits.clone(), metrics.clone());
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
