//! The server span and the request's trace id (SPEC §3, §10). Sampling is decided first
//! (`traces::decide`): an unsampled request opens no span at all. A sampled one continues the
//! caller's W3C `traceparent`, and its trace id is the request's; otherwise the id is the
//! incoming `traceparent`'s, or a fresh one. The id goes into the request extensions, into the
//! task-local every error body reads (`telemetry::trace_context`), and into `X-Trace-Id` on the
//! response; the span gets the response status.
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::response::Response;
use http::HeaderValue;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing::instrument::Instrumented;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::headers::{TRACEPARENT, X_TRACE_ID};
use crate::middleware::real_ip::ClientAddr;
use crate::telemetry::http_labels::{matched_route, method_label, route_label};
use crate::telemetry::trace_context::{self, TraceId, parse_traceparent};
use crate::telemetry::traces;

#[derive(Clone, Copy)]
pub struct ServerSpanLayer {
    /// `TRACE_SAMPLING`: the share of requests without a sampled parent that are traced.
    sampling: f64,
}

impl ServerSpanLayer {
    pub fn new(sampling: f64) -> Self {
        ServerSpanLayer { sampling }
    }
}

impl<S> Layer<S> for ServerSpanLayer {
    type Service = ServerSpan<S>;

    fn layer(&self, inner: S) -> ServerSpan<S> {
        ServerSpan {
            inner,
            sampling: self.sampling,
        }
    }
}

#[derive(Clone)]
pub struct ServerSpan<S> {
    inner: S,
    sampling: f64,
}

impl<S> Service<Request> for ServerSpan<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = SpanFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let span = self.open(&req);
        let trace_id = traces::trace_id_of(&span)
            .map(TraceId)
            .or_else(|| req.headers().get(&TRACEPARENT).and_then(parse_traceparent))
            .unwrap_or_else(TraceId::random);
        req.extensions_mut().insert(trace_id);
        // The layers further in start inside the span and the trace id too, both their
        // synchronous `call` (which may already answer) and their future.
        let future = {
            let _entered = span.enter();
            trace_context::sync_scope(trace_id, || self.inner.call(req))
        };
        SpanFuture {
            inner: trace_context::scope(trace_id, future).instrument(span),
            trace_id,
        }
    }
}

impl<S> ServerSpan<S> {
    fn open(&self, req: &Request) -> tracing::Span {
        let parent = traces::remote_parent(req.headers());
        if !traces::decide(parent.as_ref(), self.sampling) {
            return tracing::Span::none();
        }
        let method = method_label(req.method());
        let route = matched_route(req);
        let route = route_label(route.as_ref());
        let addr = req.extensions().get::<ClientAddr>();
        let span = tracing::info_span!(
            "http.server",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = method,
            http.route = route,
            url.path = req.uri().path(),
            url.scheme = "http",
            client.address = tracing::field::Empty,
            network.peer.address = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        if let Some(addr) = addr {
            span.record("client.address", tracing::field::display(addr.client));
            span.record("network.peer.address", tracing::field::display(addr.peer));
        }
        if let Some(parent) = parent.filter(|_| !span.is_disabled()) {
            let _ = span.set_parent(parent);
        }
        span
    }
}

pin_project! {
    pub struct SpanFuture<F> {
        #[pin]
        inner: Instrumented<TaskLocalFuture<TraceId, F>>,
        trace_id: TraceId,
    }
}

impl<F, E> Future for SpanFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut res = ready!(this.inner.as_mut().poll(cx))?;
        let span = this.inner.as_ref().get_ref().span();
        let status = res.status();
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "error");
            span.record("error.type", status.as_str());
        }
        if let Ok(v) = HeaderValue::from_bytes(&this.trace_id.hex_bytes()) {
            res.headers_mut().insert(X_TRACE_ID.clone(), v);
        }
        Poll::Ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::convert::Infallible;

    use axum::body::Body;
    use axum::response::IntoResponse;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::error::ApiError;

    /// An error body built anywhere further in, in `call` or in the future, carries the id the
    /// response's `X-Trace-Id` names, and the handler sees it as an extension.
    #[tokio::test]
    async fn the_id_of_traceparent_is_in_the_header_the_extension_and_error_bodies() {
        let svc = ServiceBuilder::new()
            .layer(ServerSpanLayer::new(0.0))
            .service_fn(|req: Request| async move {
                let id = req.extensions().get::<TraceId>().unwrap().to_hex();
                let mut res = ApiError::NotFound.into_response();
                res.headers_mut()
                    .insert("x-seen", HeaderValue::from_str(&id).unwrap());
                Ok::<_, Infallible>(res)
            });
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let req = Request::get("/x")
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-00"))
            .body(Body::empty())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()["x-trace-id"], trace);
        assert_eq!(res.headers()["x-seen"], trace);
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["trace_id"], trace);
    }

    /// A layer further in that answers from its synchronous `call` (the refusals do) is inside
    /// the trace id as well.
    #[tokio::test]
    async fn a_refusal_answered_in_call_carries_the_same_id() {
        use crate::middleware::around::AroundLayer;
        use crate::middleware::refusals::{MAX_URI_LEN, Refusals};
        let svc = ServiceBuilder::new()
            .layer(ServerSpanLayer::new(0.0))
            .layer(AroundLayer::new(Refusals))
            .service_fn(|_: Request| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
        let req = Request::get(format!("/{}", "a".repeat(MAX_URI_LEN)))
            .body(Body::empty())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 414);
        let header = res.headers()["x-trace-id"].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["trace_id"], header.as_str());
    }
}
