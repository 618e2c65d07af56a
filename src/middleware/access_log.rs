//! The access line (issue #7, `telemetry::access`): one per request, after the answer. Puts an
//! [`AccessLog`] in the request extensions for the layers further in to report what they decided
//! (user, rate limit, idempotency, upstream), and writes the line with the ids the outer layers
//! chose (`real_ip`, `request_id`, `server_span`).
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;

use crate::middleware::around::Around;
use crate::middleware::real_ip::ClientAddr;
use crate::middleware::request_id::RequestId;
use crate::telemetry::access::{self, AccessLog};
use crate::telemetry::http_labels::{matched_route, method_label, route_label};
use crate::telemetry::trace_context::TraceId;

#[derive(Clone, Copy)]
pub struct WriteAccessLog;

/// What the line needs from the request, kept until the answer.
pub struct Pending {
    started: Instant,
    method: &'static str,
    route: Option<MatchedPath>,
    client: IpAddr,
    request_id: Option<RequestId>,
    trace_id: Option<TraceId>,
    log: AccessLog,
}

impl Around for WriteAccessLog {
    type State = Pending;

    fn before(&self, req: &mut Request) -> (Pending, Option<Response>) {
        let log = AccessLog::default();
        req.extensions_mut().insert(log.clone());
        let ext = req.extensions();
        let pending = Pending {
            started: Instant::now(),
            method: method_label(req.method()),
            route: matched_route(req),
            client: ext
                .get::<ClientAddr>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.client),
            request_id: ext.get::<RequestId>().cloned(),
            trace_id: ext.get::<TraceId>().copied(),
            log,
        };
        (pending, None)
    }

    fn after(p: Pending, res: &mut Response) {
        let trace_hex = p.trace_id.map(|t| t.hex_bytes());
        access::emit(
            &access::Line {
                method: p.method,
                route: route_label(p.route.as_ref()),
                status: res.status().as_u16(),
                latency: p.started.elapsed(),
                client_ip: p.client,
                request_id: p.request_id.as_ref().map_or("", RequestId::as_str),
                trace_id: trace_hex
                    .as_ref()
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .unwrap_or(""),
            },
            &p.log,
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::convert::Infallible;
    use std::sync::Arc;

    use axum::body::Body;
    use http::HeaderValue;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::middleware::around::AroundLayer;
    use crate::telemetry::log_buffer::tests::Shared as Captured;

    /// One line per request, with the ids the outer layers chose, the status, and what a layer
    /// further in reported through the `AccessLog` it found in the extensions.
    #[tokio::test]
    async fn one_line_with_the_outer_ids_and_the_inner_reports() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);

        let svc = ServiceBuilder::new()
            .layer(AroundLayer::new(WriteAccessLog))
            .service_fn(|req: Request| async move {
                let log = req.extensions().get::<AccessLog>().unwrap();
                log.user(&Arc::from("user-7"));
                let mut res = Response::new(Body::empty());
                *res.status_mut() = http::StatusCode::CREATED;
                Ok::<_, Infallible>(res)
            });
        let mut req = Request::post("/x").body(Body::empty()).unwrap();
        req.extensions_mut().insert(ClientAddr {
            client: [203, 0, 113, 9].into(),
            peer: [10, 0, 0, 1].into(),
            trusted_peer: true,
        });
        req.extensions_mut()
            .insert(RequestId(HeaderValue::from_static("req-1")));
        req.extensions_mut().insert(TraceId([0xab; 16]));
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 201);

        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        let fields = &line["fields"];
        assert_eq!(fields["status"], 201, "{line}");
        assert_eq!(fields["method"], "POST");
        assert_eq!(fields["route"], "unmatched");
        assert_eq!(fields["client_ip"], "203.0.113.9");
        assert_eq!(fields["request_id"], "req-1");
        assert_eq!(fields["trace_id"], "ab".repeat(16));
        assert_eq!(fields["user_id"], "user-7");
    }
}
