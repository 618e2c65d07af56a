//! Issue #7: traces reach a real OTLP gRPC receiver with the right parents, sampling and ids;
//! a dead or stuck collector never hurts a request; `/metrics` goes through a real Prometheus
//! text parser; logs are JSON and never hold a token or an idempotency key.
//!
//! Traces and logs need the process-global subscriber, so those tests run the real `gateway`
//! binary as a separate process; the metrics test runs in process (each gateway has its own
//! registry).
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gateway_api::mock_upstream::{MockUpstream, Role};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, GatewayProcess, JwksServer, RedisServer, TestKey, base_env, bearer_for, free_port,
    json as body_json, jwt_env, spawn_app_on,
};

// ---------------------------------------------------------------------------------------------
// A real OTLP trace receiver: the collector's gRPC TraceService, recording every span.

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Exported>>>,
}

#[derive(Clone, Debug)]
struct Exported {
    service_name: String,
    service_version: String,
    span: Span,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
            let service_name = find_attr(&attrs, "service.name").unwrap_or_default();
            let service_version = find_attr(&attrs, "service.version").unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    out.push(Exported {
                        service_name: service_name.clone(),
                        service_version: service_version.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Serves on a random loopback port; returns the `OTEL_EXPORTER_OTLP_ENDPOINT` value.
    async fn start() -> (Collector, String) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (collector, format!("http://{addr}"))
    }

    fn spans(&self) -> Vec<Exported> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until the spans received satisfy `done`.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Exported]) -> bool) -> Vec<Exported> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            if Instant::now() > deadline {
                panic!(
                    "collector never received {what}; got {:#?}",
                    summary(&spans)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn find_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match v {
        AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        } => Some(s.clone()),
        AnyValue {
            value: Some(any_value::Value::IntValue(i)),
        } => Some(i.to_string()),
        AnyValue {
            value: Some(any_value::Value::BoolValue(b)),
        } => Some(b.to_string()),
        _ => None,
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    find_attr(&span.attributes, key)
}

fn trace_hex(span: &Span) -> String {
    hex::encode(&span.trace_id)
}

fn summary(spans: &[Exported]) -> Vec<String> {
    spans
        .iter()
        .map(|e| {
            format!(
                "{} kind={} trace={} span={} parent={}",
                e.span.name,
                e.span.kind,
                trace_hex(&e.span),
                hex::encode(&e.span.span_id),
                hex::encode(&e.span.parent_span_id)
            )
        })
        .collect()
}

fn is_kind(span: &Span, kind: SpanKind) -> bool {
    span.kind == kind as i32
}

// ---------------------------------------------------------------------------------------------
// The gateway as a process, with its own mock upstreams.

struct Stack {
    gw: GatewayProcess,
    reservation: MockUpstream,
    payment: MockUpstream,
    env: Vec<(String, String)>,
    client: reqwest::Client,
    _jwks: JwksServer,
}

async fn start_stack(extra: &[(&str, &str)], logs: Option<Arc<Mutex<Vec<String>>>>) -> Stack {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let reservation = MockUpstream::start(Role::Reservation, loopback)
        .await
        .unwrap();
    let payment = MockUpstream::start(Role::Payment, loopback).await.unwrap();
    let jwks = JwksServer::start(&TestKey::defaults()).await;
    let mut env = base_env(&reservation, &payment, None);
    env.extend(jwt_env(&jwks));
    env.retain(|(k, _)| extra.iter().all(|(e, _)| e != k));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let gw = match logs {
        Some(lines) => GatewayProcess::start_capturing(&env, lines).await,
        None => GatewayProcess::start(&env).await,
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    Stack {
        gw,
        reservation,
        payment,
        env,
        client,
        _jwks: jwks,
    }
}

impl Stack {
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let res = self.client.get(self.gw.url("/readyz")).send().await;
            if res.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway never became ready");
    }

    fn create(&self, sub: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.gw.url("/api/v1/reservations/create"))
            .header("authorization", bearer_for(&self.env, sub))
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&json!({"event_id": "e1", "seats": 2}))
    }
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// Traces

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_traceparent_is_continued_to_the_upstream() {
    let (collector, endpoint) = Collector::start().await;
    // With Redis, the rate limit's store call is on the request path: it gets a span too.
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let stack = start_stack(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("TRACE_SAMPLING", "0"),
            ("SERVICE_NAME", "gateway-under-test"),
            ("SERVICE_VERSION", "9.8.7"),
            ("REDIS_ADDR", &redis.addr()),
        ],
        None,
    )
    .await;
    stack.wait_ready().await;
    let tid = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let res = stack
        .create("trace-user")
        .header("traceparent", format!("00-{tid}-{caller_span}-01"))
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "x-trace-id"), tid);

    let spans = collector
        .wait_for("a server and a client span", |s| {
            s.iter().any(|e| is_kind(&e.span, SpanKind::Server))
                && s.iter()
                    .filter(|e| is_kind(&e.span, SpanKind::Client))
                    .count()
                    >= 2
        })
        .await;
    let server = spans
        .iter()
        .find(|e| is_kind(&e.span, SpanKind::Server))
        .unwrap();
    assert_eq!(trace_hex(&server.span), tid);
    assert_eq!(hex::encode(&server.span.parent_span_id), caller_span);
    assert_eq!(server.service_name, "gateway-under-test");
    assert_eq!(server.service_version, "9.8.7");
    assert_eq!(server.span.name, "POST /api/v1/reservations/create");
    assert_eq!(
        attr(&server.span, "http.route").as_deref(),
        Some("/api/v1/reservations/create")
    );
    assert_eq!(
        attr(&server.span, "http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(
        attr(&server.span, "url.path").as_deref(),
        Some("/api/v1/reservations/create")
    );
    assert_eq!(
        attr(&server.span, "http.response.status_code").as_deref(),
        Some("201")
    );
    assert_eq!(
        attr(&server.span, "client.address").as_deref(),
        Some("127.0.0.1")
    );

    let client = spans
        .iter()
        .find(|e| is_kind(&e.span, SpanKind::Client) && attr(&e.span, "db.system.name").is_none())
        .unwrap();
    assert_eq!(trace_hex(&client.span), tid);
    assert_eq!(client.span.parent_span_id, server.span.span_id);
    assert_eq!(
        attr(&client.span, "http.response.status_code").as_deref(),
        Some("201")
    );

    let store = spans
        .iter()
        .find(|e| attr(&e.span, "db.system.name").as_deref() == Some("redis"))
        .unwrap_or_else(|| panic!("no store span: {:#?}", summary(&spans)));
    assert_eq!(store.span.parent_span_id, server.span.span_id);
    assert!(is_kind(&store.span, SpanKind::Client));

    // The upstream saw the client span as its parent, and the caller's tracestate.
    let received = stack.reservation.received();
    assert_eq!(received.len(), 1);
    let headers = &received[0].headers;
    assert_eq!(
        headers["traceparent"],
        format!("00-{tid}-{}-01", hex::encode(&client.span.span_id)).as_str()
    );
    assert_eq!(headers["tracestate"], "vendor=abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_trace_id_is_the_one_in_headers_error_bodies_and_spans() {
    let (collector, endpoint) = Collector::start().await;
    let stack = start_stack(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("TRACE_SAMPLING", "1"),
        ],
        None,
    )
    .await;
    // An error the gateway writes itself: its body's trace_id is the span's.
    let res = stack
        .client
        .get(stack.gw.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let error_trace = header(&res, "x-trace-id");
    assert_eq!(body_json(res).await["error"]["trace_id"], error_trace);

    // A proxied request: the upstream's traceparent carries the same trace id.
    let res = stack.create("u").send().await.unwrap();
    assert_eq!(res.status(), 201);
    let proxied_trace = header(&res, "x-trace-id");
    assert_ne!(proxied_trace, error_trace);
    let received = stack.reservation.received();
    let tp = received[0].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        tp.starts_with(&format!("00-{proxied_trace}-")) && tp.ends_with("-01"),
        "{tp}"
    );

    let spans = collector
        .wait_for("both requests' server spans", |s| {
            [&error_trace, &proxied_trace].iter().all(|t| {
                s.iter()
                    .any(|e| is_kind(&e.span, SpanKind::Server) && trace_hex(&e.span) == **t)
            })
        })
        .await;
    let unmatched = spans
        .iter()
        .find(|e| trace_hex(&e.span) == error_trace)
        .unwrap();
    assert_eq!(
        attr(&unmatched.span, "http.route").as_deref(),
        Some("unmatched")
    );
    assert!(
        unmatched.span.parent_span_id.is_empty(),
        "a new trace's root"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_out_requests_export_nothing() {
    let (collector, endpoint) = Collector::start().await;
    let stack = start_stack(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("TRACE_SAMPLING", "0"),
        ],
        None,
    )
    .await;
    let mut unsampled = BTreeSet::new();
    for i in 0..20 {
        let mut req = stack.create("u");
        if i % 2 == 0 {
            // The caller decided not to sample: parent-based sampling keeps that decision.
            req = req.header(
                "traceparent",
                format!(
                    "00-{}-00f067aa0ba902b7-00",
                    hex::encode(rand::random::<[u8; 16]>())
                ),
            );
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 201);
        unsampled.insert(header(&res, "x-trace-id"));
    }
    // Unsampled requests still propagate their trace id (flag 00) to the upstream.
    for r in stack.reservation.received() {
        let tp = r.headers["traceparent"].to_str().unwrap().to_owned();
        assert!(tp.ends_with("-00"), "{tp}");
        assert!(unsampled.contains(&tp[3..35]), "{tp}");
    }

    // A sampled request afterwards: once its spans arrive, anything exported before would have.
    let marker = "0af7651916cd43dd8448eb211c80319c";
    let res = stack
        .create("u")
        .header("traceparent", format!("00-{marker}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let spans = collector
        .wait_for("the sampled request's spans", |s| {
            s.iter().any(|e| is_kind(&e.span, SpanKind::Server))
                && s.iter().any(|e| is_kind(&e.span, SpanKind::Client))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let spans = if collector.spans().len() > spans.len() {
        collector.spans()
    } else {
        spans
    };
    for e in &spans {
        assert_eq!(
            trace_hex(&e.span),
            marker,
            "only the sampled trace is exported: {:#?}",
            summary(&spans)
        );
    }
}

/// With no trace pipeline (the in-process harness installs none) the trace id still flows: the
/// caller's is kept, a new one is made otherwise, and the upstream joins the same trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_trace_pipeline_the_trace_id_still_propagates() {
    let app = spawn_app_on(Backend::Memory).await;
    let tid = "4bf92f3577b34da6a3ce929d0e0e4736";
    let create = |tp: Option<&str>| {
        let mut req = app
            .post_json(
                "/api/v1/reservations/create",
                &json!({"event_id": "e", "seats": 1}),
            )
            .header("authorization", app.bearer("p"));
        if let Some(tp) = tp {
            req = req.header("traceparent", tp).header("tracestate", "k=v");
        }
        req.send()
    };
    let res = create(Some(&format!("00-{tid}-00f067aa0ba902b7-01")))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "x-trace-id"), tid);
    let res = create(None).await.unwrap();
    assert_eq!(res.status(), 201);
    let fresh = header(&res, "x-trace-id");
    assert_eq!(fresh.len(), 32);
    assert_ne!(fresh, tid);

    let received = app.reservation.received();
    let tp: Vec<String> = received
        .iter()
        .map(|r| r.headers["traceparent"].to_str().unwrap().to_owned())
        .collect();
    assert!(tp[0].starts_with(&format!("00-{tid}-")) && tp[0].ends_with("-01"));
    assert!(
        !tp[0].contains("00f067aa0ba902b7"),
        "a new span id: {}",
        tp[0]
    );
    assert_eq!(received[0].headers["tracestate"], "k=v");
    assert!(tp[1].starts_with(&format!("00-{fresh}-")) && tp[1].ends_with("-00"));
    assert!(received[1].headers.get("tracestate").is_none());
}

/// SIGTERM flushes the spans still queued: nothing is lost at shutdown, and exit is prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_flushed_on_shutdown() {
    let (collector, endpoint) = Collector::start().await;
    let mut stack = start_stack(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("TRACE_SAMPLING", "1"),
        ],
        None,
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let res = stack.create("u").send().await.unwrap();
        assert_eq!(res.status(), 201);
        ids.push(header(&res, "x-trace-id"));
    }
    stack.gw.terminate();
    let code = tokio::task::spawn_blocking(move || {
        let code = stack.gw.wait_exit(Duration::from_secs(20));
        (code, stack)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(code, Some(0));
    let spans = collector.spans();
    for id in &ids {
        assert!(
            spans
                .iter()
                .any(|e| is_kind(&e.span, SpanKind::Server) && trace_hex(&e.span) == *id),
            "trace {id} was exported before exit: {:#?}",
            summary(&spans)
        );
    }
}

/// Every request samples a trace, and the collector is `endpoint`: the requests must not notice.
async fn requests_succeed_whatever_the_collector(endpoint: &str) {
    let stack = start_stack(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("TRACE_SAMPLING", "1"),
        ],
        None,
    )
    .await;
    let started = Instant::now();
    for _ in 0..100 {
        let res = stack.create("u").send().await.unwrap();
        assert_eq!(res.status(), 201);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "100 requests took {took:?}");
    assert_eq!(stack.reservation.count(), 100);
    let _ = &stack.payment;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_never_fails_or_slows_a_request() {
    requests_succeed_whatever_the_collector(&format!("http://127.0.0.1:{}", free_port())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_collector_never_fails_or_slows_a_request() {
    // Accepts connections and never answers a byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    requests_succeed_whatever_the_collector(&format!("http://{addr}")).await;
}

// ---------------------------------------------------------------------------------------------
// Metrics

async fn scrape(app: &crate::helpers::TestApp) -> prometheus_parse::Scrape {
    let res = app.get("/metrics").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"))
}

fn sample_value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .sum()
}

/// Every (metric, labels) series of the HTTP server families.
fn http_series(s: &prometheus_parse::Scrape) -> BTreeSet<String> {
    s.samples
        .iter()
        .filter(|x| x.metric.starts_with("http_server_"))
        .map(|x| {
            let labels: std::collections::BTreeMap<_, _> = x.labels.iter().collect();
            format!("{} {labels:?}", x.metric)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_requests_and_random_paths_add_no_series() {
    let app = spawn_app_on(Backend::Memory).await;
    let created = [
        ("method", "POST"),
        ("route", "/api/v1/reservations/create"),
        ("status", "201"),
    ];
    let before = scrape(&app).await;
    for _ in 0..3 {
        let res = app
            .post_json(
                "/api/v1/reservations/create",
                &json!({"event_id": "e", "seats": 1}),
            )
            .header("authorization", app.bearer("m"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    let after = scrape(&app).await;
    let delta =
        |m: &str, l: &[(&str, &str)]| sample_value(&after, m, l) - sample_value(&before, m, l);
    assert_eq!(delta("http_server_requests_total", &created), 3.0);
    assert_eq!(delta("http_server_request_duration_seconds", &created), 3.0);
    assert_eq!(
        delta(
            "upstream_requests_total",
            &[("upstream", "reservation"), ("status", "201")]
        ),
        3.0
    );
    // The scrape itself is the one request in flight.
    assert_eq!(
        sample_value(&after, "http_server_requests_in_flight", &[]),
        1.0
    );
    assert!(
        after
            .samples
            .iter()
            .any(|x| x.metric.starts_with("process_")),
        "process metrics are exported"
    );

    // Unknown paths, and unknown methods, all land on the same few series.
    for method in ["GET", "PURGE"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let res = app
            .client
            .request(m, app.url("/warm-up"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
    }
    let baseline = scrape(&app).await;
    let series = http_series(&baseline);
    let statuses = futures_util::stream::iter(0..1000)
        .map(|i| {
            let path = format!("/{}/{}", uuid::Uuid::new_v4(), i);
            let method = if i % 10 == 0 { "PURGE" } else { "GET" };
            let req = app.client.request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(&path),
            );
            async move { req.send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(statuses.iter().all(|s| *s == 404));
    let scanned = scrape(&app).await;
    assert_eq!(http_series(&scanned), series, "a URL scan added series");
    let unmatched = |m: &str, s: &prometheus_parse::Scrape| {
        sample_value(
            s,
            "http_server_requests_total",
            &[("method", m), ("route", "unmatched"), ("status", "404")],
        )
    };
    assert_eq!(
        unmatched("GET", &scanned) - unmatched("GET", &baseline),
        900.0
    );
    assert_eq!(
        unmatched("_OTHER", &scanned) - unmatched("_OTHER", &baseline),
        100.0
    );
    assert!(
        !scanned
            .samples
            .iter()
            .any(|x| x.labels.get("method") == Some("PURGE")),
        "unknown methods are _OTHER"
    );
}

// ---------------------------------------------------------------------------------------------
// Logs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_with_an_access_line_and_no_secrets() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    // debug: the noisiest level must still hold no secret.
    let stack = start_stack(&[("LOG_LEVEL", "debug")], Some(lines.clone())).await;
    let token = bearer_for(&stack.env, "log-user");
    let key = uuid::Uuid::new_v4().to_string();
    let res = stack
        .client
        .post(stack.gw.url("/api/v1/reservations/create"))
        .header("authorization", &token)
        .header("idempotency-key", &key)
        .header("x-request-id", "log-test-1")
        .json(&json!({"event_id": "secret-body-marker", "seats": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let trace_id = header(&res, "x-trace-id");
    // The same write again: replayed by the gateway, no upstream call.
    let res = stack
        .client
        .post(stack.gw.url("/api/v1/reservations/create"))
        .header("authorization", &token)
        .header("idempotency-key", &key)
        .header("x-request-id", "log-test-replay")
        .json(&json!({"event_id": "secret-body-marker", "seats": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // An error path too, with the same secrets on it.
    let res = stack
        .client
        .post(stack.gw.url("/api/v1/reservations/x/nope"))
        .header("authorization", &token)
        .header("idempotency-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // Refused after authentication, before any upstream: the caller is still on the line.
    let res = stack
        .client
        .get(stack.gw.url("/api/v1/reservations/not.an.id"))
        .header("authorization", &token)
        .header("x-request-id", "log-test-400")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    let deadline = Instant::now() + Duration::from_secs(10);
    let access = loop {
        let access: Vec<Value> = lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "access")
            .collect();
        let seen = ["log-test-1", "log-test-400", "log-test-replay"]
            .iter()
            .all(|id| access.iter().any(|v| v["request_id"] == *id))
            && access.iter().any(|v| v["status"] == 404);
        if seen || Instant::now() > deadline {
            break access;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let all = lines.lock().unwrap().clone();
    assert!(!all.is_empty());
    let secret_parts: Vec<&str> = token
        .trim_start_matches("Bearer ")
        .split('.')
        .chain([key.as_str(), "secret-body-marker"])
        .collect();
    for line in &all {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        for secret in &secret_parts {
            assert!(!line.contains(secret), "a log line holds a secret: {line}");
        }
        assert!(!line.to_ascii_lowercase().contains("bearer "), "{line}");
    }

    let created = access
        .iter()
        .find(|v| v["request_id"] == "log-test-1")
        .unwrap_or_else(|| panic!("no access line for the request: {access:#?}"));
    assert_eq!(created["level"], "INFO");
    assert_eq!(created["method"], "POST");
    assert_eq!(created["route"], "/api/v1/reservations/create");
    assert_eq!(created["status"], 201);
    assert!(
        created["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{created}"
    );
    assert_eq!(created["client_ip"], "127.0.0.1");
    assert_eq!(created["trace_id"], trace_id.as_str());
    assert_eq!(created["upstream"], "reservation");
    assert_eq!(created["upstream_status"], 201);
    assert!(
        created["upstream_latency_ms"].as_f64().is_some(),
        "{created}"
    );
    assert_eq!(
        created["user_id"], "log-user",
        "the verified caller: {created}"
    );

    assert_eq!(created["rate_limit"], "allowed", "{created}");
    assert_eq!(created["idempotency"], "new", "{created}");
    let replayed = access
        .iter()
        .find(|v| v["request_id"] == "log-test-replay")
        .unwrap();
    assert_eq!(replayed["idempotency"], "replayed", "{replayed}");
    assert_eq!(replayed["user_id"], "log-user");
    assert!(replayed.get("upstream").is_none(), "{replayed}");

    let refused = access
        .iter()
        .find(|v| v["request_id"] == "log-test-400")
        .unwrap();
    assert_eq!(refused["status"], 400);
    assert_eq!(refused["route"], "/api/v1/reservations/{id}");
    assert_eq!(refused["user_id"], "log-user");
    assert!(refused.get("upstream").is_none());

    let not_found = access
        .iter()
        .find(|v| v["status"] == 404)
        .unwrap_or_else(|| panic!("no access line for the 404: {access:#?}"));
    assert_eq!(not_found["route"], "unmatched");
    assert!(not_found.get("upstream").is_none());
}

/// The log writer never blocks a request (README, logs): with stdout a pipe nobody reads, the
/// gateway keeps answering every request, drops the lines it cannot queue and counts them in
/// `log_lines_dropped_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_nobody_reads_drops_log_lines_and_never_blocks_a_request() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let loopback = "127.0.0.1:0".parse().unwrap();
    let reservation = MockUpstream::start(Role::Reservation, loopback)
        .await
        .unwrap();
    let payment = MockUpstream::start(Role::Payment, loopback).await.unwrap();
    let mut env = crate::helpers::base_env(&reservation, &payment, None);
    env.push(("JWT_SKIP_VERIFY".to_owned(), "true".to_owned()));
    env.push(("LOG_LEVEL".to_owned(), "info".to_owned()));
    let gw = crate::helpers::GatewayProcess::start_with_unread_stdout(&env).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let dropped = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("log_lines_dropped_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    // An access line with a 128-character request id is ~450 bytes: the pipe (64 KiB) and the
    // 8 MiB buffer hold ~19,000 of them.
    let request_id = "r".repeat(128);
    let answered = Arc::new(AtomicUsize::new(0));
    let mut seen = 0;
    for _batch in 0..15 {
        let workers: Vec<_> = (0..32)
            .map(|_| {
                let (client, url, answered) =
                    (client.clone(), gw.url("/healthz"), answered.clone());
                let request_id = request_id.clone();
                tokio::spawn(async move {
                    for _ in 0..100 {
                        let res = tokio::time::timeout(
                            Duration::from_secs(10),
                            client.get(&url).header("x-request-id", &request_id).send(),
                        )
                        .await
                        .expect("a request waited on the log writer")
                        .unwrap();
                        assert_eq!(res.status(), 200);
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        let metrics = client
            .get(gw.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        seen = dropped(&metrics);
        if seen > 0 {
            break;
        }
    }
    assert!(
        seen > 0,
        "no line dropped after {} requests",
        answered.load(Ordering::Relaxed)
    );
    // Still serving, and still counting.
    let res = client.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}
