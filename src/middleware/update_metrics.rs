//! The HTTP server metrics (SPEC §10): `http_server_requests_in_flight` while a request is being
//! served, and on the way out `http_server_requests_total` and
//! `http_server_request_duration_seconds` by method, route template and status. Outermost, so it
//! counts every answer, refusals included.
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;

use crate::middleware::around::Around;
use crate::telemetry::Metrics;
use crate::telemetry::http_labels::{matched_route, method_label, route_label};

#[derive(Clone)]
pub struct UpdateMetrics(Arc<Metrics>);

impl UpdateMetrics {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        UpdateMetrics(metrics)
    }
}

/// One request being served: in flight until dropped, so a request whose client went away (its
/// future dropped mid-way) is uncounted too.
pub struct Serving {
    metrics: Arc<Metrics>,
    started: Instant,
    method: &'static str,
    route: Option<MatchedPath>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.metrics.http_in_flight.dec();
    }
}

impl Around for UpdateMetrics {
    type State = Serving;

    fn before(&self, req: &mut Request) -> (Serving, Option<Response>) {
        self.0.http_in_flight.inc();
        let serving = Serving {
            metrics: self.0.clone(),
            started: Instant::now(),
            method: method_label(req.method()),
            route: matched_route(req),
        };
        (serving, None)
    }

    fn after(s: Serving, res: &mut Response) {
        let route = route_label(s.route.as_ref());
        let seconds = s.started.elapsed().as_secs_f64();
        s.metrics
            .observe_http(s.method, route, res.status().as_u16(), seconds);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::convert::Infallible;

    use axum::body::Body;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::middleware::around::AroundLayer;

    #[tokio::test]
    async fn counts_every_answer_and_nothing_stays_in_flight() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let seen = metrics.clone();
        let svc = ServiceBuilder::new()
            .layer(AroundLayer::new(UpdateMetrics::new(metrics.clone())))
            .service_fn(move |_req: Request| {
                // Counted while it runs.
                assert_eq!(seen.http_in_flight.get(), 1);
                async { Ok::<_, Infallible>(Response::new(Body::empty())) }
            });
        let res = svc
            .oneshot(Request::get("/x").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(metrics.http_in_flight.get(), 0);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains(
                r#"http_server_requests_total{method="GET",route="unmatched",status="200"} 1"#
            ),
            "{text}"
        );
    }
}
