//! Header rules at the boundary (SPEC §3).
//!
//! Towards an upstream the gateway sends an allowlist, not the client's whole header set: the
//! listed end-to-end headers, then its own `X-User-ID` (from the verified token only),
//! `X-Request-ID`, `traceparent`/`tracestate`, `X-Forwarded-For` and `X-Forwarded-Proto`. A
//! client can therefore never smuggle an identity or an internal header through. Back towards
//! the client every end-to-end header of the upstream passes, hop-by-hop ones never do.
use std::io;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::headers::{
    INLINE, TRACEPARENT, TRACESTATE, X_FORWARDED_FOR, X_FORWARDED_PROTO, X_REQUEST_ID, X_USER_ID,
    shared_value,
};
pub use crate::telemetry::trace_context::TraceHeaders;

/// Client headers that cross to the upstream unchanged.
const PASSED_TO_UPSTREAM: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::AUTHORIZATION,
    // `headers::IDEMPOTENCY_KEY` (a static cannot stand in a const array).
    HeaderName::from_static("idempotency-key"),
    header::ACCEPT,
    header::ACCEPT_LANGUAGE,
];

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded either way.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "proxy-authenticate",
];

/// The headers an upstream receives for this request: `request_id` is the request's id, `peer`
/// the socket peer (appended to `X-Forwarded-For`).
pub fn upstream_headers(
    incoming: &HeaderMap,
    request_id: &HeaderValue,
    peer: IpAddr,
    user_id: Option<&str>,
    trace: &TraceHeaders,
    trusted_peer: bool,
) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(12);
    for name in &PASSED_TO_UPSTREAM {
        for v in incoming.get_all(name) {
            out.append(name.clone(), v.clone());
        }
    }
    if let Some(user) = user_id.and_then(|u| shared_value(u.as_bytes()).ok()) {
        out.insert(X_USER_ID.clone(), user);
    }
    out.insert(X_REQUEST_ID.clone(), request_id.clone());
    if let Some(tp) = &trace.traceparent {
        out.insert(TRACEPARENT.clone(), tp.clone());
    }
    if let Some(ts) = &trace.tracestate {
        out.insert(TRACESTATE.clone(), ts.clone());
    }
    out.insert(X_FORWARDED_FOR.clone(), forwarded_for(incoming, peer));
    let proto = if trusted_peer {
        incoming
            .get(&X_FORWARDED_PROTO)
            .filter(|v| *v == "https" || *v == "http")
            .cloned()
    } else {
        None
    };
    out.insert(
        X_FORWARDED_PROTO.clone(),
        proto.unwrap_or(HeaderValue::from_static("http")),
    );
    out
}

/// The incoming `X-Forwarded-For` with the socket peer appended.
fn forwarded_for(incoming: &HeaderMap, peer: IpAddr) -> HeaderValue {
    // Written on the stack when it fits in a shared value's inline bytes (a few hops), else
    // through a `Vec`.
    let mut stack = [0u8; INLINE];
    let mut cursor = io::Cursor::new(&mut stack[..]);
    let value = if write_forwarded_for(&mut cursor, incoming, peer).is_ok() {
        let len = cursor.position() as usize;
        shared_value(&stack[..len])
    } else {
        let mut list = Vec::new();
        let _ = write_forwarded_for(&mut list, incoming, peer);
        shared_value(&list)
    };
    value.unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

fn write_forwarded_for(
    out: &mut impl io::Write,
    incoming: &HeaderMap,
    peer: IpAddr,
) -> io::Result<()> {
    for v in incoming.get_all(&X_FORWARDED_FOR) {
        if let Ok(s) = v.to_str() {
            let s = s.trim();
            if !s.is_empty() {
                out.write_all(s.as_bytes())?;
                out.write_all(b", ")?;
            }
        }
    }
    write!(out, "{peer}")
}

/// Keeps only the upstream's end-to-end response headers, in place (status and body pass
/// unchanged): drops hop-by-hop headers and any header the upstream's `Connection` names.
/// `Content-Length` goes too: hyper writes it again from the body's exact size, so a streamed
/// body keeps it and can never disagree with it.
pub fn strip_response_headers(headers: &mut HeaderMap) {
    // Rare (an HTTP/1.1 upstream seldom sends `Connection`); the names its lines list go first.
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::CONTENT_LENGTH);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The request id and socket peer of the requests below.
    fn ctx() -> (HeaderValue, IpAddr) {
        (
            HeaderValue::from_static("req-1"),
            "198.51.100.1".parse().unwrap(),
        )
    }

    #[test]
    fn client_identity_and_hop_by_hop_never_cross() {
        let mut h = HeaderMap::new();
        h.insert("x-user-id", HeaderValue::from_static("admin"));
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("s"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        h.insert("idempotency-key", HeaderValue::from_static("k"));
        h.insert("cookie", HeaderValue::from_static("c=1"));
        let out = upstream_headers(&h, &ctx().0, ctx().1, None, &TraceHeaders::default(), false);
        assert!(out.get("x-user-id").is_none());
        assert!(out.get("connection").is_none());
        assert!(out.get("x-secret").is_none());
        assert!(out.get("te").is_none());
        assert!(out.get("cookie").is_none());
        assert_eq!(out["content-type"], "application/json");
        assert_eq!(out["authorization"], "Bearer t");
        assert_eq!(out["idempotency-key"], "k");
        assert_eq!(out["x-request-id"], "req-1");
        assert_eq!(out["x-forwarded-for"], "198.51.100.1");
        assert_eq!(out["x-forwarded-proto"], "http");
        let out = upstream_headers(
            &h,
            &ctx().0,
            ctx().1,
            Some("user-123"),
            &TraceHeaders::default(),
            false,
        );
        assert_eq!(out["x-user-id"], "user-123");
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.5"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let out = upstream_headers(&h, &ctx().0, ctx().1, None, &TraceHeaders::default(), true);
        assert_eq!(out["x-forwarded-for"], "203.0.113.5, 198.51.100.1");
        assert_eq!(out["x-forwarded-proto"], "https");
        let out = upstream_headers(&h, &ctx().0, ctx().1, None, &TraceHeaders::default(), false);
        assert_eq!(out["x-forwarded-proto"], "http");
    }

    /// Lists on several lines, blank lines, and lists of every length from one hop to past
    /// the stack buffer (`INLINE` bytes: the fallback path) all come out as one list with the
    /// peer last.
    #[test]
    fn forwarded_for_of_any_length_ends_with_the_peer() {
        let (id, peer) = ctx();
        let mut lengths = Vec::new();
        for hops in (1usize..=40).chain([200]) {
            let list: Vec<String> = (0..hops)
                .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
                .collect();
            let mut h = HeaderMap::new();
            let (a, b) = list.split_at(hops / 2);
            h.append(
                "x-forwarded-for",
                HeaderValue::from_str(&a.join(",")).unwrap(),
            );
            h.append("x-forwarded-for", HeaderValue::from_static("  "));
            h.append(
                "x-forwarded-for",
                HeaderValue::from_str(&b.join(", ")).unwrap(),
            );
            let out = upstream_headers(&h, &id, peer, None, &TraceHeaders::default(), true);
            let mut want: Vec<String> = [a.join(","), b.join(", ")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect();
            want.push(peer.to_string());
            assert_eq!(
                out["x-forwarded-for"],
                want.join(", ").as_str(),
                "{hops} hops"
            );
            lengths.push(out["x-forwarded-for"].len());
        }
        // Both paths were taken, and the boundary itself.
        assert!(lengths.iter().any(|&l| l <= INLINE));
        assert!(lengths.iter().any(|&l| l > INLINE));
    }

    #[test]
    fn response_hop_by_hop_are_dropped() {
        let mut from = HeaderMap::new();
        from.insert("connection", HeaderValue::from_static("x-internal"));
        from.insert("x-internal", HeaderValue::from_static("1"));
        from.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        from.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        from.insert("content-type", HeaderValue::from_static("application/json"));
        from.insert("location", HeaderValue::from_static("/v1/reservations/1"));
        from.append(
            "connection",
            HeaderValue::from_static("X-Other, , bad header"),
        );
        from.insert("x-other", HeaderValue::from_static("2"));
        from.insert("content-length", HeaderValue::from_static("12"));
        strip_response_headers(&mut from);
        assert_eq!(from.len(), 2, "{from:?}");
        assert_eq!(from["content-type"], "application/json");
        assert_eq!(from["location"], "/v1/reservations/1");
    }
}
