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
