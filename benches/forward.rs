//! Micro-benchmark: the header rewrite every proxied request goes through (SPEC §3).
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_api::upstream::forward::{TraceHeaders, strip_response_headers, upstream_headers};
use http::{HeaderMap, HeaderValue};

fn typical_request() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "api.tickets.example"),
        ("user-agent", "tickets-app/5.2 (iPhone; iOS 19)"),
        ("accept", "application/json"),
        ("accept-language", "en-GB"),
        ("content-type", "application/json"),
        (
            "authorization",
            "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEyMyJ9.c2ln",
        ),
        ("idempotency-key", "5f0c6f4e-2b7a-4e55-9d8c-2b1c8a9e1f00"),
        ("x-forwarded-for", "203.0.113.7"),
        ("cookie", "session=abc"),
        ("connection", "keep-alive"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

fn bench(c: &mut Criterion) {
    let incoming = typical_request();
    let request_id = HeaderValue::from_static("3f1b6c1e-8a4d-4c5b-9e2f-7d6a5b4c3d2e");
    let peer = std::net::IpAddr::from([10, 0, 0, 2]);
    let trace = TraceHeaders {
        traceparent: Some(HeaderValue::from_static(
            "00-07070707070707070707070707070707-0102030405060708-01",
        )),
        tracestate: None,
    };
    c.bench_function("upstream_headers (request rewrite)", |b| {
        b.iter(|| {
            upstream_headers(
                black_box(&incoming),
                black_box(&request_id),
                peer,
                Some("user-123"),
                &trace,
                true,
            )
        })
    });
    let mut upstream = HeaderMap::new();
    for (k, v) in [
        ("content-type", "application/json"),
        ("content-length", "120"),
        ("date", "Sat, 28 Nov 2026 18:00:00 GMT"),
        ("connection", "keep-alive"),
    ] {
        upstream.insert(k, HeaderValue::from_static(v));
    }
    c.bench_function("strip_response_headers (with the clone)", |b| {
        b.iter(|| {
            let mut out = black_box(&upstream).clone();
            strip_response_headers(&mut out);
            out
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
