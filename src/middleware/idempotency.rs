//! `IdempotencyLayer`: exactly-once writes with replay (SPEC §6, issue #5). A route layer on the
//! write routes, inside authentication, so a record belongs to the verified caller.
//!
//! For each write: parse the `Idempotency-Key` (before anything else), buffer the body (up to
//! `MAX_BODY_SIZE`), fingerprint method + path + query + body, then one atomic store call decides:
//! replay the stored answer (`Idempotent-Replayed: true`, no upstream call), 409 in progress,
//! 409 conflict, or run the operation. After the operation the record is completed (answers
//! below 500 except 408, 425, 429, and not a gateway rejection) or deleted (everything else) so
//! a retry runs again. Store down → 503 and nothing is forwarded.
//!
//! Not here: the record layout and scripts (`store/idempotency.rs`); forwarding the key upstream
//! (`upstream/forward.rs` passes `Idempotency-Key` through).
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::error::{ApiError, GatewayError};
use crate::middleware::auth::Caller;
use crate::middleware::context::{self, RequestContext};
use crate::routes::read_body;
use crate::state::AppState;
use crate::store::Store;
use crate::store::idempotency::{
    self as records, Acquire, Completion, Fingerprint, Lease, RecordKey, Scope, StoredResponse,
};
use crate::telemetry::{AccessLog, Metrics};

pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Added to the slowest upstream timeout to get the in-flight TTL: covers the store calls and
/// buffering around the upstream call, so a live request never outlives its own record, while a
/// crashed replica's record still frees the key within seconds.
pub const IN_FLIGHT_MARGIN: Duration = Duration::from_secs(5);

/// Parses `Idempotency-Key`: a UUID (any case, hyphenated), bare or as a structured-field string
/// (`"…"`). Both forms give the same key.
pub fn parse_key(headers: &HeaderMap) -> Result<uuid::Uuid, ApiError> {
    const MALFORMED: ApiError = ApiError::BadRequest("Idempotency-Key must be a UUID");
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let value = values.next().ok_or(ApiError::IdempotencyRequired)?;
    if values.next().is_some() {
        return Err(ApiError::BadRequest(
            "Idempotency-Key must be sent exactly once",
        ));
    }
    let s = value.to_str().map_err(|_| MALFORMED)?.trim();
    let inner = s
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(s);
    // Hyphenated form only: uuid would also take braces, `urn:uuid:` and 32 bare hex digits.
    if inner.len() != 36 {
        return Err(MALFORMED);
    }
    uuid::Uuid::try_parse(inner).map_err(|_| MALFORMED)
}

/// Whether an answer is the outcome of the operation (stored and replayed) rather than something
/// a retry may change: 5xx, 408, 425, 429 and the gateway's own rejections are not stored.
pub fn is_stored(status: StatusCode, gateway_rejection: bool) -> bool {
    !gateway_rejection && status.as_u16() < 500 && !matches!(status.as_u16(), 408 | 425 | 429)
}

#[derive(Clone)]
pub struct IdempotencyLayer {
    policy: Arc<Policy>,
}

struct Policy {
    store: Store,
    metrics: Arc<Metrics>,
    ttl: Duration,
    in_flight_ttl: Duration,
    max_body: usize,
    /// `REDIS_WAIT_REPLICAS`: replicas that must hold the in-flight record before forwarding.
    wait_replicas: u32,
}

impl IdempotencyLayer {
    pub fn new(state: &AppState) -> Self {
        let c = &state.config;
        let slowest = c.reservation.timeout.max(c.payment.timeout);
        IdempotencyLayer {
            policy: Arc::new(Policy {
                store: state.store.clone(),
                metrics: state.metrics.clone(),
                ttl: c.idempotency_ttl,
                in_flight_ttl: slowest + IN_FLIGHT_MARGIN,
                max_body: c.max_body_size,
                wait_replicas: c.redis_wait_replicas,
            }),
        }
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Idempotency<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S> Service<Request> for Idempotency<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The ready service goes into the future; a fresh clone waits for the next poll_ready.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        Box::pin(async move {
            // Report the outcome on the access line too (issue #7).
            let log = req.extensions().get::<AccessLog>().cloned();
            let (record, fp, trace_id, req) = match policy.prepare(req).await {
                Ok(p) => p,
                Err(e) => return Ok(e.into_response()),
            };
            // Detached from the client's connection: once acquired, the record is completed or
            // released even if the client disconnects and this future is dropped.
            let run = context::with_trace_id(trace_id, policy.run(inner, record, fp, req, log))
                .instrument(tracing::Span::current());
            match tokio::spawn(run).await {
                Ok(res) => res,
                Err(e) => {
                    tracing::error!(error = %e, "idempotent request task failed");
                    Ok(ApiError::Internal.into_response())
                }
            }
        })
    }
}

impl Policy {
    /// Everything before the store: key, body, scope, fingerprint. Refusals here touch nothing.
    async fn prepare(
        &self,
        req: Request,
    ) -> Result<(RecordKey, Fingerprint, context::TraceId, Request), ApiError> {
        let key = parse_key(req.headers())?;
        let (parts, body) = req.into_parts();
        let body = read_body(body, self.max_body).await?;
        let ctx = parts
            .extensions
            .get::<RequestContext>()
            .ok_or(ApiError::Internal)?;
        // No verified caller (optional-auth routes such as queue `enter`): the client address.
        let scope = match parts.extensions.get::<Caller>() {
            Some(c) => Scope::User(c.user_id()),
            None => Scope::Anonymous(ctx.client_ip),
        };
        let record = RecordKey::new(scope, key);
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |p| p.as_str());
        let fp = Fingerprint::new(&parts.method, path, &body);
        let trace_id = ctx.trace_id;
        Ok((
            record,
            fp,
            trace_id,
            Request::from_parts(parts, Body::from(body)),
        ))
    }

    async fn run<S>(
        self: Arc<Self>,
        mut inner: S,
        record: RecordKey,
        fp: Fingerprint,
        req: Request,
        log: Option<AccessLog>,
    ) -> Result<Response, S::Error>
    where
        S: Service<Request, Response = Response>,
    {
        let log = log.as_ref();
        let lease = match records::acquire(&self.store, &record, fp, self.in_flight_ttl).await {
            Ok(Acquire::Acquired(lease)) => {
                self.count(log, "new");
                lease
            }
            Ok(Acquire::Completed(stored)) => {
                self.count(log, "replayed");
                return Ok(replay(stored));
            }
            Ok(Acquire::InFlight) => {
                self.count(log, "in_progress");
                return Ok(ApiError::IdempotencyInProgress.into_response());
            }
            Ok(Acquire::Conflict) => {
                self.count(log, "conflict");
                return Ok(ApiError::IdempotencyConflict.into_response());
            }
            Err(e) => {
                self.count(log, "store_error");
                tracing::warn!(error = %e, "idempotency store unavailable: write refused");
                return Ok(ApiError::UpstreamUnavailable(
                    "the idempotency store is unavailable, retry later",
                )
                .into_response());
            }
        };

        // A master failover must not lose the record of a write that is already upstream.
        if self.wait_replicas > 0 {
            let replicated = records::replicated(&self.store, &lease, self.wait_replicas).await;
            if !matches!(replicated, Ok(true)) {
                self.count(log, "not_replicated");
                match replicated {
                    Err(e) => tracing::warn!(error = %e, "WAIT for replicas failed: write refused"),
                    _ => tracing::warn!(
                        replicas = self.wait_replicas,
                        "replicas did not acknowledge the idempotency record: write refused"
                    ),
                }
                self.release(&lease, log).await;
                return Ok(ApiError::UpstreamUnavailable(
                    "the idempotency store is unavailable, retry later",
                )
                .into_response());
            }
        }

        let res = match AssertUnwindSafe(inner.call(req)).catch_unwind().await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => {
                self.release(&lease, log).await;
                return Err(e);
            }
            Err(_) => {
                tracing::error!("handler panicked behind the idempotency layer");
                self.release(&lease, log).await;
                return Ok(ApiError::Internal.into_response());
            }
        };

        let rejected = res.extensions().get::<GatewayError>().is_some();
        if !is_stored(res.status(), rejected) {
            self.release(&lease, log).await;
            return Ok(res);
        }
        let (parts, body) = res.into_parts();
        let (stored_body, body) = match collect(body, self.max_body).await {
            Collected::Whole(bytes) => (bytes.clone(), Body::from(bytes)),
            // The operation ran whatever the size of its answer: the record keeps status and
            // content type without the body, and a repeat replays them with an empty body
            // rather than running the operation again (SPEC §6).
            Collected::TooLarge(body) => (Bytes::new(), body),
            Collected::Failed => {
                self.release(&lease, log).await;
                return Ok(ApiError::UpstreamError.into_response());
            }
        };
        let stored = StoredResponse {
            status: parts.status,
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            body: stored_body,
        };
        self.complete(&lease, &stored, log).await;
        Ok(Response::from_parts(parts, body))
    }

    /// Records the answer. The operation ran: the client gets its answer whatever happens here.
    async fn complete(&self, lease: &Lease, stored: &StoredResponse, log: Option<&AccessLog>) {
        match records::complete(&self.store, lease, stored, self.ttl).await {
            Ok(Completion::Stored) => {}
            Ok(Completion::Restored) => {
                self.count(log, "restored");
                tracing::warn!(
                    "the in-flight idempotency record had vanished (store flushed, restarted or \
                     failed over); the completed record was written anew"
                );
            }
            Ok(Completion::Superseded) => {
                self.count(log, "superseded");
                tracing::warn!(
                    "another request took this idempotency key while the operation ran; its \
                     record stays"
                );
            }
            Err(e) => {
                // The record stays in flight until its TTL, so a retry meanwhile is 409, never
                // a rerun.
                self.count(log, "store_error");
                tracing::warn!(error = %e, "could not store the idempotent response");
            }
        }
    }

    async fn release(&self, lease: &Lease, log: Option<&AccessLog>) {
        if let Err(e) = records::release(&self.store, lease).await {
            // The record expires after the in-flight TTL; until then a retry is 409.
            self.count(log, "store_error");
            tracing::warn!(error = %e, "could not release the idempotency record");
        }
    }

    fn count(&self, log: Option<&AccessLog>, outcome: &'static str) {
        if let Some(log) = log {
            log.idempotency(outcome);
        }
        self.metrics
            .idempotency_outcomes
            .with_label_values(&[outcome])
            .inc();
    }
}

fn replay(stored: StoredResponse) -> Response {
    let mut res = Response::new(Body::from(stored.body));
    *res.status_mut() = stored.status;
    let headers = res.headers_mut();
    if let Some(ct) = stored.content_type {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    headers.insert(
        IDEMPOTENT_REPLAYED.clone(),
        HeaderValue::from_static("true"),
    );
    res
}

enum Collected {
    Whole(Bytes),
    /// Over the limit: what was read so far chained with the rest, to pass through unstored.
    TooLarge(Body),
    /// The upstream body broke off (a transport failure).
    Failed,
}

async fn collect(mut body: Body, max: usize) -> Collected {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Collected::Failed;
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers: not part of what is replayed
        };
        if buf.len() + data.len() > max {
            let head = futures_util::stream::iter([Ok(buf.freeze()), Ok(data)]);
            let rest = head.chain(body.into_data_stream());
            return Collected::TooLarge(Body::from_stream(rest));
        }
        buf.extend_from_slice(&data);
    }
    Collected::Whole(buf.freeze())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&IDEMPOTENCY_KEY, HeaderValue::from_static(v));
        }
        h
    }

    const UUID: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";

    #[test]
    fn bare_and_quoted_keys_are_the_same_key() {
        let bare = parse_key(&headers(&["6f9619ff-8b86-d011-b42d-00c04fc964ff"])).unwrap();
        let quoted = parse_key(&headers(&["\"6f9619ff-8b86-d011-b42d-00c04fc964ff\""])).unwrap();
        let upper = parse_key(&headers(&["6F9619FF-8B86-D011-B42D-00C04FC964FF"])).unwrap();
        assert_eq!(bare.to_string(), UUID);
        assert_eq!(bare, quoted);
        assert_eq!(bare, upper);
    }

    #[test]
    fn missing_key_is_required_and_a_non_uuid_is_bad_request() {
        assert!(matches!(
            parse_key(&HeaderMap::new()),
            Err(ApiError::IdempotencyRequired)
        ));
        for bad in [
            "",
            "\"\"",
            "not-a-uuid",
            "\"6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "6f9619ff-8b86-d011-b42d-00c04fc964ff\"",
            "6f9619ff8b86d011b42d00c04fc964ff",
            "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",
            "urn:uuid:6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "6f9619ff-8b86-d011-b42d-00c04fc964fg",
            "'6f9619ff-8b86-d011-b42d-00c04fc964ff'",
        ] {
            assert!(
                matches!(parse_key(&headers(&[bad])), Err(ApiError::BadRequest(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_key(&headers(&[
                "6f9619ff-8b86-d011-b42d-00c04fc964ff",
                "6f9619ff-8b86-d011-b42d-00c04fc964ff"
            ])),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn outcomes_are_stored_and_retryable_failures_are_not() {
        for s in [200, 201, 204, 400, 404, 409, 422] {
            assert!(is_stored(StatusCode::from_u16(s).unwrap(), false), "{s}");
        }
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(!is_stored(StatusCode::from_u16(s).unwrap(), false), "{s}");
        }
        // The gateway's own rejections (400, 401, 403) ran no operation.
        for s in [400, 401, 403] {
            assert!(!is_stored(StatusCode::from_u16(s).unwrap(), true), "{s}");
        }
    }

    /// The layer alone, in front of a handler that panics once, then answers 201.
    #[tokio::test]
    async fn a_panicking_handler_releases_the_record_and_the_retry_runs() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tower::{ServiceBuilder, ServiceExt};

        let layer = IdempotencyLayer {
            policy: Arc::new(Policy {
                store: Store::memory(),
                metrics: Arc::new(Metrics::new().unwrap()),
                ttl: Duration::from_secs(60),
                in_flight_ttl: Duration::from_secs(10),
                max_body: 1024,
                wait_replicas: 0,
            }),
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service_fn(move |_: Request| {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    assert!(n > 0, "a bug in the handler");
                    Ok::<_, std::convert::Infallible>((StatusCode::CREATED, "made").into_response())
                }
            });
        let req = || {
            let mut r = Request::post("/api/v1/payment/intent")
                .header(&IDEMPOTENCY_KEY, UUID)
                .body(Body::from("{}"))
                .unwrap();
            r.extensions_mut().insert(RequestContext {
                request_id: HeaderValue::from_static("r"),
                trace_id: context::TraceId([1; 16]),
                client_ip: [127, 0, 0, 1].into(),
                peer_ip: [127, 0, 0, 1].into(),
                route: Arc::from("/api/v1/payment/intent"),
            });
            r
        };
        let res = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(res.status(), 500);
        let res = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(res.status(), 201);
        assert!(res.headers().get(&IDEMPOTENT_REPLAYED).is_none());
        let res = svc.oneshot(req()).await.unwrap();
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers()[&IDEMPOTENT_REPLAYED], "true");
        assert_eq!(
            axum::body::to_bytes(res.into_body(), 64).await.unwrap(),
            "made"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn oversized_bodies_pass_through_whole() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"defg")),
        ];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        match collect(body, 5).await {
            Collected::TooLarge(b) => {
                assert_eq!(axum::body::to_bytes(b, 100).await.unwrap(), "abcdefg")
            }
            _ => panic!("expected TooLarge"),
        }
        match collect(Body::from("abcde"), 5).await {
            Collected::Whole(b) => assert_eq!(b, "abcde"),
            _ => panic!("expected Whole"),
        }
    }
}
