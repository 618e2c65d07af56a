//! The request context: the first thing every request meets and the last thing every response
//! leaves (SPEC §3, §4).
//!
//! It decides the request id (the client's when well formed, else a UUID), opens the server span
//! (continuing an incoming W3C `traceparent`) whose trace id becomes the request's trace id,
//! resolves the client address, puts a [`RequestContext`] and an [`AccessLog`] in the request
//! extensions and the trace id in a task-local so that `ApiError::into_response` can print it,
//! and stamps `X-Request-ID`, `X-Trace-Id` and the security headers on every response. On the way
//! out it records the HTTP server metrics (`route` is the template or `unmatched`, never the raw
//! path; unknown methods are `_OTHER`) and writes the access line (`telemetry::access`). When
//! traces are off the trace id is the incoming `traceparent`'s, else a fresh one. Not for policy:
//! auth, limits and idempotency are route layers of their own.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use prometheus::IntGauge;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::app::framing;
use crate::error::ApiError;
use crate::middleware::client_ip;
use crate::state::AppState;
use crate::telemetry::access::{self, AccessLog};
use crate::telemetry::traces;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// SPEC §4: a request target over 8 KiB is refused with 414.
pub const MAX_URI_LEN: usize = 8 * 1024;

/// Per-request facts shared with every later layer and handler.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: HeaderValue,
    pub trace_id: TraceId,
    /// The client as SPEC §7 defines it (peer, or right-most untrusted `X-Forwarded-For` hop).
    pub client_ip: IpAddr,
    /// The socket peer, for `X-Forwarded-For`.
    pub peer_ip: IpAddr,
    /// The route template (`/api/v1/reservations/{id}`) or `unmatched`.
    pub route: Arc<str>,
}

/// A W3C trace id (16 bytes, never all zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

impl TraceId {
    pub fn random() -> Self {
        loop {
            let bytes: [u8; 16] = rand::random();
            if bytes != [0; 16] {
                return TraceId(bytes);
            }
        }
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

tokio::task_local! {
    static CURRENT_TRACE_ID: TraceId;
}

/// The trace id of the request being served on this task, or a fresh one outside any request
/// (an error body always carries some id).
pub fn current_trace_id() -> String {
    CURRENT_TRACE_ID
        .try_with(|t| t.to_hex())
        .unwrap_or_else(|_| TraceId::random().to_hex())
}

/// Parses `traceparent` (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`); returns the
/// trace id when the header is well formed and the ids are not all zero.
pub fn parse_traceparent(value: &HeaderValue) -> Option<TraceId> {
    let s = value.to_str().ok()?;
    let mut parts = s.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2
        || version == "ff"
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let is_lower_hex = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if ![version, trace, span, flags]
        .iter()
        .all(|p| is_lower_hex(p))
        || span.bytes().all(|b| b == b'0')
    {
        return None;
    }
    let mut id = [0u8; 16];
    hex::decode_to_slice(trace, &mut id).ok()?;
    (id != [0; 16]).then_some(TraceId(id))
}

/// The client's `X-Request-ID` when it is 1–128 characters of `[A-Za-z0-9._-]` (SPEC §3).
pub fn valid_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let v = headers.get(&X_REQUEST_ID)?;
    let b = v.as_bytes();
    let ok = (1..=128).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    ok.then(|| v.clone())
}

fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The security headers of SPEC §3, on every response.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

/// The outermost middleware (see the module docs).
pub async fn layer(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let metrics = &state.metrics;
    let _in_flight = InFlight::enter(&metrics.http_in_flight);
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let client_ip = client_ip::resolve(peer, req.headers(), &state.config.trusted_proxies);
    let request_id = valid_request_id(req.headers()).unwrap_or_else(new_request_id);
    let route: Arc<str> = match req.extensions().get::<MatchedPath>() {
        Some(p) => Arc::from(p.as_str()),
        None => Arc::from(UNMATCHED),
    };
    let method = method_label(req.method());

    // The server span continues the caller's trace; its trace id is the request's trace id.
    // With traces off the span is disabled and the id comes from `traceparent` or is new.
    // Sampling is decided first (`traces::decide`): an unsampled request opens no span at all.
    let parent = traces::remote_parent(req.headers());
    let traced = traces::decide(parent.as_ref(), state.config.telemetry.trace_sampling);
    let span = if !traced {
        tracing::Span::none()
    } else {
        tracing::info_span!(
        "http.server",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = &*route,
        url.path = req.uri().path(),
        url.scheme = "http",
        client.address = %client_ip,
        network.peer.address = %peer,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        )
    };
    if let Some(parent) = parent.filter(|_| !span.is_disabled()) {
        let _ = span.set_parent(parent);
    }
    let trace_id = traces::trace_id_of(&span)
        .map(TraceId)
        .or_else(|| req.headers().get(&TRACEPARENT).and_then(parse_traceparent))
        .unwrap_or_else(TraceId::random);

    let access = AccessLog::default();
    let ctx = RequestContext {
        request_id: request_id.clone(),
        trace_id,
        client_ip,
        peer_ip: peer,
        route: route.clone(),
    };
    req.extensions_mut().insert(ctx);
    req.extensions_mut().insert(access.clone());

    let mut res = CURRENT_TRACE_ID
        .scope(
            trace_id,
            async move {
                if uri_len(req.uri()) > MAX_URI_LEN {
                    return ApiError::UriTooLong.into_response();
                }
                if req.extensions().get::<framing::Refused>().is_some() {
                    let mut res = ApiError::BadRequest("ambiguous request framing").into_response();
                    res.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    return res;
                }
                next.run(req).await
            }
            .instrument(span.clone()),
        )
        .await;

    let status = res.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
        span.record("error.type", status.as_str());
    }
    drop(span);
    let latency = started.elapsed();
    let labels = [method, &*route, status.as_str()];
    metrics.http_requests.with_label_values(&labels).inc();
    metrics
        .http_duration
        .with_label_values(&labels)
        .observe(latency.as_secs_f64());

    let trace_hex = trace_id.to_hex();
    access::emit(
        &access::Line {
            method,
            route: &route,
            status: status.as_u16(),
            latency,
            client_ip,
            request_id: request_id.to_str().unwrap_or(""),
            trace_id: &trace_hex,
        },
        &access,
    );

    let headers = res.headers_mut();
    headers.insert(X_REQUEST_ID.clone(), request_id);
    if let Ok(v) = HeaderValue::from_str(&trace_hex) {
        headers.insert(X_TRACE_ID.clone(), v);
    }
    for (name, value) in SECURITY_HEADERS {
        // A page that needs its own policy (`/docs`) sets it; everything else gets the strict one.
        if name == header::CONTENT_SECURITY_POLICY && headers.contains_key(&name) {
            continue;
        }
        headers.insert(name, HeaderValue::from_static(value));
    }
    res
}

/// The `route` label and span attribute of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The `method` label: the standard methods by name, anything else `_OTHER`, so a client cannot
/// mint label values (OpenTelemetry HTTP semantic conventions do the same).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// Counts a request in flight until dropped, so a request whose client went away (its future
/// dropped mid-way) is uncounted too.
struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn uri_len(uri: &http::Uri) -> usize {
    uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
}

/// Runs `fut` with `trace_id` as the current trace id (for code that builds error responses
/// outside the router, such as the listener's own refusals and tests).
pub async fn with_trace_id<F: std::future::Future>(trace_id: TraceId, fut: F) -> F::Output {
    CURRENT_TRACE_ID.scope(trace_id, fut).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let ok =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            parse_traceparent(&ok).unwrap().to_hex(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert!(
                parse_traceparent(&HeaderValue::from_static(bad)).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn request_ids_are_checked() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc.DEF_123-x"));
        assert!(valid_request_id(&h).is_some());
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert!(valid_request_id(&h).is_none());
        h.insert(
            &X_REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        );
        assert!(valid_request_id(&h).is_none());
        assert_eq!(new_request_id().len(), 36);
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for m in ["PURGE", "get", "X-ANYTHING"] {
            assert_eq!(
                method_label(&Method::from_bytes(m.as_bytes()).unwrap()),
                "_OTHER"
            );
        }
    }

    #[tokio::test]
    async fn current_trace_id_follows_the_scope() {
        let t = TraceId([7; 16]);
        let seen = with_trace_id(t, async { current_trace_id() }).await;
        assert_eq!(seen, t.to_hex());
    }
}

/// Property tests (issue #15): `parse_traceparent` takes well-formed W3C values and nothing else.
#[cfg(test)]
pub(crate) mod proptests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;
    use proptest::sample::{Index, select};

    use super::*;

    fn parse(s: &[u8]) -> Option<TraceId> {
        parse_traceparent(&HeaderValue::from_bytes(s).unwrap())
    }

    /// A well-formed value: any version but `ff` (a future version may carry more parts),
    /// non-zero lowercase ids, any flags.
    pub(crate) fn well_formed() -> impl Strategy<Value = (String, u128)> {
        (
            0u8..0xff,
            1u128..,
            1u64..,
            any::<u8>(),
            proptest::collection::vec("[0-9a-z.]{0,10}", 0..3),
        )
            .prop_map(|(version, trace, span, flags, extra)| {
                let mut s = format!("{version:02x}-{trace:032x}-{span:016x}-{flags:02x}");
                if version != 0 {
                    for part in extra {
                        s.push('-');
                        s.push_str(&part);
                    }
                }
                (s, trace)
            })
    }

    /// Version 00, so exactly 55 characters: `00-` trace `-` span `-` flags.
    fn version_00() -> impl Strategy<Value = (String, u128)> {
        (1u128.., 1u64.., any::<u8>()).prop_map(|(trace, span, flags)| {
            (format!("00-{trace:032x}-{span:016x}-{flags:02x}"), trace)
        })
    }

    const SEPARATORS: [usize; 3] = [2, 35, 52];

    /// Ways to spoil a version-00 value.
    #[derive(Debug, Clone)]
    enum Mutation {
        Uppercase(Index, char),
        NotHex(Index, char),
        Delete(Index),
        InsertHex(Index, char),
        InsertDash(Index),
        Separator(usize, char),
        Truncate(Index),
        ZeroTrace,
        ZeroSpan,
        VersionFf,
        ExtraPart(String),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<Index>(), select(vec!['A', 'B', 'C', 'D', 'E', 'F']))
                .prop_map(|(i, c)| Mutation::Uppercase(i, c)),
            (
                any::<Index>(),
                select(vec!['g', 'x', 'z', '+', ' ', '_', '.'])
            )
                .prop_map(|(i, c)| Mutation::NotHex(i, c)),
            any::<Index>().prop_map(Mutation::Delete),
            (
                any::<Index>(),
                select("0123456789abcdef".chars().collect::<Vec<_>>())
            )
                .prop_map(|(i, c)| Mutation::InsertHex(i, c)),
            any::<Index>().prop_map(Mutation::InsertDash),
            (
                select(SEPARATORS.to_vec()),
                select(vec!['_', ' ', '.', '0', 'a'])
            )
                .prop_map(|(i, c)| Mutation::Separator(i, c)),
            any::<Index>().prop_map(Mutation::Truncate),
            Just(Mutation::ZeroTrace),
            Just(Mutation::ZeroSpan),
            Just(Mutation::VersionFf),
            "[0-9a-z]{0,10}".prop_map(Mutation::ExtraPart),
        ]
    }

    /// The hex-digit positions of a 55-character version-00 value.
    fn digit_at(i: &Index) -> usize {
        let digits: Vec<usize> = (0..55).filter(|p| !SEPARATORS.contains(p)).collect();
        digits[i.index(digits.len())]
    }

    fn mutate(s: &str, m: &Mutation) -> String {
        let mut c: Vec<char> = s.chars().collect();
        match m {
            Mutation::Uppercase(i, up) | Mutation::NotHex(i, up) => c[digit_at(i)] = *up,
            Mutation::Delete(i) => {
                c.remove(i.index(c.len()));
            }
            Mutation::InsertHex(i, d) => c.insert(i.index(c.len() + 1), *d),
            Mutation::InsertDash(i) => c.insert(i.index(c.len() + 1), '-'),
            Mutation::Separator(i, x) => c[*i] = *x,
            Mutation::Truncate(i) => c.truncate(i.index(c.len())),
            Mutation::ZeroTrace => c[3..35].fill('0'),
            Mutation::ZeroSpan => c[36..52].fill('0'),
            Mutation::VersionFf => c[..2].fill('f'),
            Mutation::ExtraPart(p) => return format!("{s}-{p}"),
        }
        c.into_iter().collect()
    }

    /// Random bytes, or a well-formed value with up to three random bytes replaced, inserted
    /// or removed.
    pub(crate) fn near_traceparents() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            6 => select(b"0123456789abcdef-".to_vec()),
            1 => select(b"ABCDEFfg+ \t".to_vec()),
            1 => 0x20u8..=0x7e,
            1 => 0x80u8..=0xff,
        ];
        let edit = (any::<Index>(), 0u8..3, byte.clone());
        prop_oneof![
            proptest::collection::vec(byte, 0..70),
            (well_formed(), proptest::collection::vec(edit, 0..4)).prop_map(|((s, _), edits)| {
                let mut v = s.into_bytes();
                for (at, op, b) in edits {
                    match op {
                        0 => v.insert(at.index(v.len() + 1), b),
                        1 => {
                            let i = at.index(v.len());
                            v[i] = b;
                        }
                        _ => {
                            v.remove(at.index(v.len()));
                        }
                    }
                }
                v
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A well-formed value gives its trace id back.
        #[test]
        fn well_formed_values_round_trip_the_trace_id((s, trace) in well_formed()) {
            let id = parse(s.as_bytes());
            prop_assert_eq!(id, Some(TraceId(trace.to_be_bytes())), "{}", s);
            prop_assert_eq!(id.unwrap().to_hex(), format!("{trace:032x}"));
        }

        /// Uppercase or non-hex digits, a field too long or too short, a wrong separator,
        /// all-zero ids, version `ff` or an extra part on version 00: refused.
        #[test]
        fn a_spoilt_value_is_refused((s, _) in version_00(), m in mutation()) {
            let bad = mutate(&s, &m);
            prop_assert_eq!(parse(bad.as_bytes()), None, "{} ({:?})", bad, m);
        }

        /// Any header value: no panic, and a trace id only when the value has the shape of a
        /// traceparent (lowercase hex fields of 2, 32, 16 and 2 digits, not version `ff`, no
        /// part after version 00's flags) and names that id.
        #[test]
        fn arbitrary_values_never_panic_and_name_what_they_give(value in near_traceparents()) {
            prop_assume!(HeaderValue::from_bytes(&value).is_ok());
            if let Some(id) = parse(&value) {
                let s = std::str::from_utf8(&value).unwrap();
                let parts: Vec<&str> = s.split('-').collect();
                let lower_hex =
                    |p: &str| p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                prop_assert!(parts.len() >= 4 && parts[..4].iter().all(|p| lower_hex(p)), "{}", s);
                prop_assert_eq!(
                    parts[..4].iter().map(|p| p.len()).collect::<Vec<_>>(),
                    vec![2, 32, 16, 2]
                );
                prop_assert!(parts[0] != "ff" && (parts[0] != "00" || parts.len() == 4), "{}", s);
                prop_assert!(parts[2] != "0000000000000000" && id != TraceId([0; 16]), "{}", s);
                prop_assert_eq!(parts[1], id.to_hex());
            }
        }
    }
}
