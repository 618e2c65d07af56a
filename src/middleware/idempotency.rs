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
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::body::read_body;
use crate::config::Config;
use crate::error::{ApiError, GatewayError};
use crate::middleware::auth::Caller;
use crate::middleware::real_ip::ClientAddr;
use crate::store::Store;
use crate::store::idempotency::{
    self as records, Acquire, Completion, Fingerprint, Lease, RecordKey, Scope, StoredResponse,
};
use crate::telemetry::metrics::CounterHandles;
use crate::telemetry::trace_context::{self, TraceId};
use crate::telemetry::{AccessLog, Metrics};

use crate::headers::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};

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

/// Every `outcome` label value `RecordPolicy::count` is given.
const OUTCOMES: &[&[&str]] = &[
    &["new"],
    &["replayed"],
    &["in_progress"],
    &["conflict"],
    &["store_error"],
    &["restored"],
    &["superseded"],
    &["not_replicated"],
];

#[derive(Clone)]
pub struct IdempotencyLayer {
    policy: Arc<RecordPolicy>,
}

/// How write records are kept: the store, their lifetimes and size bound, the replicas to wait
/// for, and the outcome counters (named apart from the balancer's `EjectionPolicy`).
struct RecordPolicy {
    store: Store,
    /// `idempotency_outcomes_total` per outcome, resolved once.
    outcomes: CounterHandles,
    ttl: Duration,
    in_flight_ttl: Duration,
    max_body: usize,
    /// `REDIS_WAIT_REPLICAS`: replicas that must hold the in-flight record before forwarding.
    wait_replicas: u32,
}

impl IdempotencyLayer {
    /// From the store, the metrics and the settings it reads: `IDEMPOTENCY_TTL_SECONDS`, the
    /// upstream timeouts (for the in-flight TTL), `MAX_BODY_SIZE`, `REDIS_WAIT_REPLICAS`.
    pub fn new(store: Store, metrics: Arc<Metrics>, c: &Config) -> Self {
        let slowest = c.reservation.timeout.max(c.payment.timeout);
        IdempotencyLayer {
            policy: Arc::new(RecordPolicy {
                store,
                outcomes: CounterHandles::new(&metrics.idempotency_outcomes, OUTCOMES),
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
    policy: Arc<RecordPolicy>,
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
            let run =
                trace_context::with_trace_id(trace_id, policy.run(inner, record, fp, req, log))
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

impl RecordPolicy {
    /// Everything before the store: key, body, scope, fingerprint. Refusals here touch nothing.
    async fn prepare(
        &self,
        req: Request,
    ) -> Result<(RecordKey, Fingerprint, TraceId, Request), ApiError> {
        let key = parse_key(req.headers())?;
        let (parts, body) = req.into_parts();
        let body = read_body(body, self.max_body).await?;
        // Set by the outer layers for every request.
        let (Some(addr), Some(&trace_id)) = (
            parts.extensions.get::<ClientAddr>(),
            parts.extensions.get::<TraceId>(),
        ) else {
            return Err(ApiError::Internal);
        };
        // No verified caller (optional-auth routes such as queue `enter`): the client address.
        let scope = match parts.extensions.get::<Caller>() {
            Some(c) => Scope::User(c.user_id()),
            None => Scope::Anonymous(addr.client),
        };
        let record = RecordKey::new(scope, key);
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |p| p.as_str());
        let fp = Fingerprint::new(&parts.method, path, &body);
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
                return Ok(ApiError::BadGateway.into_response());
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
        self.outcomes.inc(&[outcome]);
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
            policy: Arc::new(RecordPolicy {
                store: Store::memory(),
                outcomes: CounterHandles::new(
                    &Metrics::new().unwrap().idempotency_outcomes,
                    OUTCOMES,
                ),
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
            r.extensions_mut().insert(ClientAddr {
                client: [127, 0, 0, 1].into(),
                peer: [127, 0, 0, 1].into(),
                trusted_peer: false,
            });
            r.extensions_mut().insert(TraceId([1; 16]));
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

/// Property tests (issue #15): `parse_key` takes exactly the hyphenated UUIDs, bare or quoted.
#[cfg(test)]
mod proptests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    fn one(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(&IDEMPOTENCY_KEY, HeaderValue::from_bytes(value).unwrap());
        h
    }

    /// `u` hyphenated, each letter upper- or lowercase as `case` says.
    fn spelled(u: u128, case: u64) -> String {
        uuid::Uuid::from_u128(u)
            .hyphenated()
            .to_string()
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if case >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }

    const HYPHENS: [usize; 4] = [8, 13, 18, 23];

    /// Ways to turn a hyphenated UUID into something that is not one.
    #[derive(Debug, Clone)]
    enum Mutation {
        Simple,
        Braced,
        Urn,
        WhitespaceInside(usize, char),
        WhitespaceInsideQuotes(bool, char),
        Delete(usize),
        InsertHex(usize, char),
        NotHex(usize, char),
        HyphenToHex(usize, char),
        HyphenMoved(usize, bool),
        OneQuote(bool),
        DoubleQuotes,
        NonAscii(usize, u8),
        Twice,
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let hex = proptest::sample::select("0123456789abcdefABCDEF".chars().collect::<Vec<_>>());
        let ws = proptest::sample::select(vec![' ', '\t']);
        prop_oneof![
            Just(Mutation::Simple),
            Just(Mutation::Braced),
            Just(Mutation::Urn),
            (1usize..36, ws.clone()).prop_map(|(i, c)| Mutation::WhitespaceInside(i, c)),
            (any::<bool>(), ws).prop_map(|(end, c)| Mutation::WhitespaceInsideQuotes(end, c)),
            (0usize..36).prop_map(Mutation::Delete),
            (0usize..=36, hex.clone()).prop_map(|(i, c)| Mutation::InsertHex(i, c)),
            (
                0usize..36,
                proptest::sample::select("gGzZ_+.:/-x!".chars().collect::<Vec<_>>())
            )
                .prop_map(|(i, c)| Mutation::NotHex(i, c)),
            (0usize..4, hex).prop_map(|(i, c)| Mutation::HyphenToHex(HYPHENS[i], c)),
            (0usize..4, any::<bool>())
                .prop_map(|(i, left)| Mutation::HyphenMoved(HYPHENS[i], left)),
            any::<bool>().prop_map(Mutation::OneQuote),
            Just(Mutation::DoubleQuotes),
            (0usize..=38, 0x80u8..=0xff).prop_map(|(i, b)| Mutation::NonAscii(i, b)),
            Just(Mutation::Twice),
        ]
    }

    /// The header value the mutation makes of `s` (a hyphenated UUID).
    fn mutate(s: &str, m: &Mutation) -> Vec<u8> {
        let mut chars: Vec<char> = s.chars().collect();
        let out: String = match m {
            Mutation::Simple => s.replace('-', ""),
            Mutation::Braced => format!("{{{s}}}"),
            Mutation::Urn => format!("urn:uuid:{s}"),
            Mutation::WhitespaceInside(i, c) => {
                chars.insert(*i, *c);
                chars.into_iter().collect()
            }
            Mutation::WhitespaceInsideQuotes(end, c) if *end => format!("\"{s}{c}\""),
            Mutation::WhitespaceInsideQuotes(_, c) => format!("\"{c}{s}\""),
            Mutation::Delete(i) => {
                chars.remove(*i);
                chars.into_iter().collect()
            }
            Mutation::InsertHex(i, c) => {
                chars.insert(*i, *c);
                chars.into_iter().collect()
            }
            Mutation::NotHex(i, c) => {
                // A hyphen where a hyphen belongs is no mutation: put an `x` there instead.
                chars[*i] = if *c == '-' && HYPHENS.contains(i) {
                    'x'
                } else {
                    *c
                };
                chars.into_iter().collect()
            }
            Mutation::HyphenToHex(i, c) => {
                chars[*i] = *c;
                chars.into_iter().collect()
            }
            Mutation::HyphenMoved(i, left) => {
                chars.swap(*i, if *left { i - 1 } else { i + 1 });
                chars.into_iter().collect()
            }
            Mutation::OneQuote(front) if *front => format!("\"{s}"),
            Mutation::OneQuote(_) => format!("{s}\""),
            Mutation::DoubleQuotes => format!("\"\"{s}\"\""),
            Mutation::NonAscii(i, b) => {
                let mut bytes = format!("\"{s}\"").into_bytes();
                bytes.insert(*i, *b);
                return bytes;
            }
            Mutation::Twice => format!("{s}{s}"),
        };
        out.into_bytes()
    }

    /// Random bytes, or a (maybe quoted) UUID with up to three random bytes replaced, inserted
    /// or removed.
    fn near_uuids() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => proptest::sample::select(b"0123456789abcdefABCDEF-\"{} \t".to_vec()),
            1 => 0x20u8..=0x7e,
            1 => 0x80u8..=0xff,
        ];
        let edit = (any::<proptest::sample::Index>(), 0u8..3, byte.clone());
        prop_oneof![
            proptest::collection::vec(byte, 0..44),
            (
                any::<u128>(),
                any::<u64>(),
                any::<bool>(),
                proptest::collection::vec(edit, 0..4)
            )
                .prop_map(|(u, case, quoted, edits)| {
                    let s = spelled(u, case);
                    let mut v = if quoted { format!("\"{s}\"") } else { s }.into_bytes();
                    for (at, op, b) in edits {
                        match op {
                            0 => v.insert(at.index(v.len() + 1), b),
                            1 if !v.is_empty() => {
                                let i = at.index(v.len());
                                v[i] = b;
                            }
                            _ if !v.is_empty() => {
                                v.remove(at.index(v.len()));
                            }
                            _ => {}
                        }
                    }
                    v
                }),
        ]
    }

    fn is_malformed(r: &Result<uuid::Uuid, ApiError>) -> bool {
        matches!(r, Err(ApiError::BadRequest(_)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any hyphenated UUID in any case, bare or quoted (optionally with whitespace around),
        /// parses to that UUID, and the bare and quoted forms are the same key.
        #[test]
        fn hyphenated_uuids_parse_bare_or_quoted(
            u in any::<u128>(),
            case in any::<u64>(),
            pad in proptest::sample::select(vec!["", " ", "\t", "  "]),
        ) {
            let s = spelled(u, case);
            let bare = parse_key(&one(format!("{pad}{s}{pad}").as_bytes())).unwrap();
            let quoted = parse_key(&one(format!("{pad}\"{s}\"{pad}").as_bytes())).unwrap();
            prop_assert_eq!(bare, uuid::Uuid::from_u128(u));
            prop_assert_eq!(bare, quoted);
        }

        /// Other spellings of a UUID (simple, braced, `urn:uuid:`), whitespace inside, a digit
        /// too many or too few, a non-hex digit, a misplaced hyphen, stray quotes and non-ASCII
        /// bytes are all 400, never a panic.
        #[test]
        fn anything_but_a_hyphenated_uuid_is_refused(
            u in any::<u128>(),
            case in any::<u64>(),
            m in mutation(),
        ) {
            let value = mutate(&spelled(u, case), &m);
            let got = parse_key(&one(&value));
            let shown = String::from_utf8_lossy(&value);
            prop_assert!(is_malformed(&got), "{:?} gave {:?}", shown, got);
        }

        /// Any header value at all (random bytes, or a UUID with a few random edits): no
        /// panic, and a key comes back only when the value is that key, hyphenated (bare or
        /// quoted, surrounding whitespace aside).
        #[test]
        fn arbitrary_values_parse_only_to_what_they_spell(value in near_uuids()) {
            prop_assume!(HeaderValue::from_bytes(&value).is_ok());
            match parse_key(&one(&value)) {
                Ok(u) => {
                    let s = std::str::from_utf8(&value).unwrap().trim();
                    let inner = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')).unwrap_or(s);
                    prop_assert_eq!(inner.to_ascii_lowercase(), u.hyphenated().to_string());
                }
                Err(e) => prop_assert!(matches!(e, ApiError::BadRequest(_)), "{:?}", e),
            }
        }

        /// The key twice (even the same key) is refused.
        #[test]
        fn two_keys_are_refused(a in any::<u128>(), b in any::<u128>(), same in any::<bool>()) {
            let b = if same { a } else { b };
            let mut h = HeaderMap::new();
            for u in [a, b] {
                let v = HeaderValue::from_str(&uuid::Uuid::from_u128(u).to_string()).unwrap();
                h.append(&IDEMPOTENCY_KEY, v);
            }
            prop_assert!(is_malformed(&parse_key(&h)));
        }
    }
}
