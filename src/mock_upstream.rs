//! Fake reservation and payment APIs (SPEC §1): what docker-compose, `--demo`, the tests and the
//! benchmarks put behind the gateway. They keep in-memory state with realistic errors, record
//! every request they receive (so tests can assert what crossed the gateway), and can be told to
//! be slow or to fail (`MockControl`).
//!
//! Not production code and not on the gateway's request path.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Which API a mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reservation,
    Payment,
    Both,
    /// Benchmarks: every request answered at once with a small fixed JSON body (201 for POST,
    /// 200 otherwise); nothing recorded, no state, no knobs.
    Fixed,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reservation" => Ok(Role::Reservation),
            "payment" => Ok(Role::Payment),
            "both" => Ok(Role::Both),
            "fixed" => Ok(Role::Fixed),
            other => Err(format!(
                "unknown role {other:?}: expected reservation, payment, both or fixed"
            )),
        }
    }
}

/// What one mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query as received.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Knobs a test (or the binary's environment) turns while the mock runs.
#[derive(Debug, Default)]
pub struct MockControl {
    /// Added to every answer.
    pub delay_ms: AtomicU64,
    /// When non-zero, every request is answered with this status and a JSON error body.
    pub force_status: AtomicU16,
    /// Per mille of requests answered 500 at random.
    pub failure_permille: AtomicU32,
    /// Keep a copy of each request (on by default; benchmarks turn it off).
    pub record: AtomicBool,
    /// When non-zero, every JSON answer gains a `"pad"` string of this many bytes (large answers).
    pub pad_bytes: AtomicUsize,
    /// Extra headers on every answer (to test what the gateway lets back through).
    pub response_headers: Mutex<Vec<(HeaderName, HeaderValue)>>,
}

#[derive(Default)]
struct Recorder {
    entries: Mutex<Vec<Recorded>>,
    count: AtomicUsize,
}

#[derive(Default)]
struct Data {
    reservations: Mutex<HashMap<String, Value>>,
    intents: Mutex<HashMap<String, Value>>,
}

#[derive(Clone)]
struct Shared {
    control: Arc<MockControl>,
    recorder: Arc<Recorder>,
    data: Arc<Data>,
}

/// A running mock on a loopback (or given) address.
pub struct MockUpstream {
    pub addr: SocketAddr,
    pub control: Arc<MockControl>,
    recorder: Arc<Recorder>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MockUpstream {
    /// Binds `addr` (port 0 for any) and serves `role` in the background.
    pub async fn start(role: Role, addr: SocketAddr) -> std::io::Result<MockUpstream> {
        let listener = TcpListener::bind(addr).await?;
        Self::serve(role, listener)
    }

    /// Serves `role` on an already bound listener (lets a test restart a mock on the same port).
    pub fn serve(role: Role, listener: TcpListener) -> std::io::Result<MockUpstream> {
        let addr = listener.local_addr()?;
        let control = Arc::new(MockControl {
            record: AtomicBool::new(true),
            ..MockControl::default()
        });
        let recorder = Arc::new(Recorder::default());
        let shared = Shared {
            control: control.clone(),
            recorder: recorder.clone(),
            data: Arc::new(Data::default()),
        };
        let app = router(role, shared);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(MockUpstream {
            addr,
            control,
            recorder,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far, oldest first.
    pub fn received(&self) -> Vec<Recorded> {
        self.recorder
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests arrived (counted even when recording is off).
    pub fn count(&self) -> usize {
        self.recorder.count.load(Ordering::SeqCst)
    }

    pub fn set_delay(&self, d: Duration) {
        self.control
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set_status(&self, status: u16) {
        self.control.force_status.store(status, Ordering::SeqCst);
    }

    /// Pads every JSON answer with a `"pad"` member of `bytes` bytes (0: off).
    pub fn set_padding(&self, bytes: usize) {
        self.control.pad_bytes.store(bytes, Ordering::SeqCst);
    }

    pub fn add_response_header(&self, name: &'static str, value: &'static str) {
        self.control
            .response_headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            ));
    }

    /// Stops serving and closes the listener (connections in progress are cut).
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn router(role: Role, shared: Shared) -> Router {
    if role == Role::Fixed {
        return Router::new().fallback(fixed);
    }
    let mut r = Router::new();
    if matches!(role, Role::Reservation | Role::Both) {
        r = r
            .route("/v1/reservations", post(create_reservation))
            .route("/v1/reservations/{id}", get(get_reservation))
            .route("/v1/reservations/{id}/cancel", post(cancel_reservation))
            .route("/v1/reservations/{id}/confirm", post(confirm_reservation));
    }
    if matches!(role, Role::Payment | Role::Both) {
        r = r
            .route("/v1/sim/intent", post(create_intent))
            .route("/v1/sim/intent/{id}", get(get_intent));
    }
    r.route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route") })
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            record_and_inject,
        ))
        .with_state(shared)
}

const FIXED_BODY: &str = r#"{"reservation_id":"res_bench","event_id":"bench","status":"HELD","hold_expires_at":"2030-01-01T00:00:00Z"}"#;

async fn fixed(method: axum::http::Method) -> Response {
    let status = if method == axum::http::Method::POST {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        FIXED_BODY,
    )
        .into_response()
}

/// Records the request, then applies the injected delay, forced status or random failure.
async fn record_and_inject(
    State(s): State<Shared>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    s.recorder.count.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    if s.control.record.load(Ordering::Relaxed) {
        let rec = Recorded {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            headers: parts.headers.clone(),
            body: body.clone(),
        };
        s.recorder
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(rec);
    }
    let delay = s.control.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let forced = s.control.force_status.load(Ordering::Relaxed);
    let permille = s.control.failure_permille.load(Ordering::Relaxed);
    let mut res = if forced != 0 {
        let status = StatusCode::from_u16(forced).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        error(status, "INJECTED", "injected failure")
    } else if permille > 0 && rand::random_range(0..1000) < permille {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INJECTED",
            "injected random failure",
        )
    } else {
        next.run(Request::from_parts(parts, axum::body::Body::from(body)))
            .await
    };
    let pad = s.control.pad_bytes.load(Ordering::Relaxed);
    if pad > 0 {
        res = padded(res, pad).await;
    }
    for (name, value) in s
        .control
        .response_headers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        res.headers_mut().append(name.clone(), value.clone());
    }
    res
}

/// The same answer with a `"pad"` member of `bytes` bytes added to its JSON object (spliced in
/// as bytes: a 16 MiB answer must not cost a JSON encode).
async fn padded(res: Response, bytes: usize) -> Response {
    let (mut parts, body) = res.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let Some(end) = body.iter().rposition(|b| *b == b'}') else {
        return Response::from_parts(parts, axum::body::Body::from(body));
    };
    let mut out = Vec::with_capacity(end + bytes + 16);
    out.extend_from_slice(&body[..end]);
    out.extend_from_slice(if end > 1 {
        b",\"pad\":\""
    } else {
        b"\"pad\":\""
    });
    out.resize(out.len() + bytes, b'p');
    out.extend_from_slice(b"\"}");
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(out))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn parse_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, Box<Response>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "body must be a JSON object",
        ))),
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn rfc3339_in(secs: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(secs)).to_string()
}

async fn create_reservation(State(s): State<Shared>, body: Bytes) -> Response {
    let req = match parse_object(&body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let Some(event_id) = req.get("event_id").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "event_id is required",
        );
    };
    if event_id == "sold-out" {
        return error(
            StatusCode::CONFLICT,
            "INVENTORY_CONFLICT",
            "no seats left for this event",
        );
    }
    let id = new_id("res");
    let reservation = json!({
        "reservation_id": id,
        "event_id": event_id,
        "seats": req.get("seats").cloned().unwrap_or(json!(1)),
        "status": "HELD",
        "hold_expires_at": rfc3339_in(600),
    });
    s.data
        .reservations
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, reservation.clone());
    (StatusCode::CREATED, axum::Json(reservation)).into_response()
}

async fn get_reservation(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    match s
        .data
        .reservations
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
    {
        Some(r) => (StatusCode::OK, axum::Json(r.clone())).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "RESERVATION_NOT_FOUND",
            "no such reservation",
        ),
    }
}

async fn cancel_reservation(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    transition(&s, &id, "CANCELLED", "CONFIRMED")
}

async fn confirm_reservation(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    transition(&s, &id, "CONFIRMED", "CANCELLED")
}

/// Moves a reservation to `to`; refused with 409 from `forbidden_from`.
fn transition(s: &Shared, id: &str, to: &str, forbidden_from: &str) -> Response {
    let mut all = s
        .data
        .reservations
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let Some(r) = all.get_mut(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "RESERVATION_NOT_FOUND",
            "no such reservation",
        );
    };
    if r["status"] == forbidden_from {
        return error(
            StatusCode::CONFLICT,
            "INVALID_STATE",
            "the reservation cannot make this transition",
        );
    }
    r["status"] = json!(to);
    (StatusCode::OK, axum::Json(r.clone())).into_response()
}

async fn create_intent(State(s): State<Shared>, body: Bytes) -> Response {
    let req = match parse_object(&body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let id = new_id("pi");
    let intent = json!({
        "payment_intent_id": id,
        "status": "PENDING",
        "reservation_id": req.get("reservation_id").cloned().unwrap_or(Value::Null),
        "amount": req.get("amount").cloned().unwrap_or(Value::Null),
        "currency": req.get("currency").cloned().unwrap_or(json!("EUR")),
    });
    s.data
        .intents
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, intent.clone());
    (StatusCode::OK, axum::Json(intent)).into_response()
}

async fn get_intent(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    match s
        .data
        .intents
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
    {
        Some(i) => (StatusCode::OK, axum::Json(i.clone())).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "PAYMENT_INTENT_NOT_FOUND",
            "no such payment intent",
        ),
    }
}
