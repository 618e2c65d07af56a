//! The test harness: a real `redis-server` on a random port, recording mock upstreams, and the
//! real gateway on an ephemeral port (in process, or as a separate `gateway` process when a test
//! needs several replicas or signals). Nothing on the request path is mocked out.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_api::mock_upstream::{MockUpstream, Role};
use gateway_api::state::AppState;
use gateway_api::{App, Config};
use tokio::sync::oneshot;

/// Which store a test runs against. Behavioural tests run against both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

/// Runs an async test body once per backend: `store_contract!(name);` turns
/// `async fn name(b: Backend)` into the tests `name::memory` and `name::redis`.
#[macro_export]
macro_rules! store_contract {
    ($($name:ident),* $(,)?) => {
        $(
            pub mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    super::$name($crate::helpers::Backend::Memory).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    super::$name($crate::helpers::Backend::Redis).await
                }
            }
        )*
    };
}

pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        gateway_api::telemetry::logs::init("debug");
    }
}

/// A free loopback port (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A real `redis-server`, on a random port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = RedisServer {
            port: free_port(),
            child: None,
            dir,
        };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let child = Command::new(redis_server_bin())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis_ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (a fault, not a clean shutdown).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty: nothing was saved).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Runs a redis-cli command against this server and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn redis_server_bin() -> PathBuf {
    std::env::var_os("REDIS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

fn redis_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// How to start a gateway for a test.
pub struct AppOptions {
    pub backend: Backend,
    /// Extra environment (SPEC §8 names), applied last.
    pub env: Vec<(String, String)>,
    /// Use this Redis instead of starting one (several gateways sharing a store).
    pub shared_redis: Option<String>,
}

impl AppOptions {
    pub fn new(backend: Backend) -> Self {
        AppOptions {
            backend,
            env: Vec::new(),
            shared_redis: None,
        }
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.to_owned(), v.into()));
        self
    }

    pub fn redis(mut self, addr: impl Into<String>) -> Self {
        self.backend = Backend::Redis;
        self.shared_redis = Some(addr.into());
        self
    }
}

/// A gateway serving in this process, with its own mocks (and Redis, unless shared).
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub reservation: MockUpstream,
    pub payment: MockUpstream,
    pub redis: Option<RedisServer>,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The environment every test gateway starts from: mocks as upstreams, no delays on shutdown.
pub fn base_env(
    reservation: &MockUpstream,
    payment: &MockUpstream,
    redis_addr: Option<&str>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("PORT".to_owned(), "0".to_owned()),
        ("UPSTREAM_RESERVATION_BASE".to_owned(), reservation.url()),
        ("UPSTREAM_PAYMENT_BASE".to_owned(), payment.url()),
        ("JWT_SKIP_VERIFY".to_owned(), "true".to_owned()),
        ("SHUTDOWN_DELAY".to_owned(), "0s".to_owned()),
        ("SHUTDOWN_TIMEOUT".to_owned(), "5s".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            "http://127.0.0.1:9".to_owned(),
        ),
        ("TRACE_SAMPLING".to_owned(), "0".to_owned()),
        // Tests that are not about rate limiting must never meet a 429; those that are set their own.
        ("RATE_LIMIT_RPS".to_owned(), "1000000".to_owned()),
        ("RATE_LIMIT_BURST".to_owned(), "1000000".to_owned()),
    ];
    if let Some(addr) = redis_addr {
        env.push(("REDIS_ADDR".to_owned(), addr.to_owned()));
    }
    env
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::new(Backend::Redis)).await
}

pub async fn spawn_app_on(backend: Backend) -> TestApp {
    spawn_app_with(AppOptions::new(backend)).await
}

pub async fn spawn_app_with(opts: AppOptions) -> TestApp {
    init_logs();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let reservation = MockUpstream::start(Role::Reservation, loopback)
        .await
        .expect("reservation mock");
    let payment = MockUpstream::start(Role::Payment, loopback)
        .await
        .expect("payment mock");
    let redis = match (&opts.backend, &opts.shared_redis) {
        (Backend::Redis, None) => Some(
            tokio::task::spawn_blocking(RedisServer::start)
                .await
                .expect("redis"),
        ),
        _ => None,
    };
    let redis_addr = match (&opts.backend, &opts.shared_redis, &redis) {
        (Backend::Redis, Some(shared), _) => Some(shared.clone()),
        (Backend::Redis, None, Some(r)) => Some(r.addr()),
        _ => None,
    };
    let mut env = base_env(&reservation, &payment, redis_addr.as_deref());
    env.extend(opts.env.iter().cloned());
    let config = Config::from_vars(env).expect("test config");
    let app = App::build_on(config, loopback)
        .await
        .expect("gateway builds");
    let addr = app.local_addr().expect("addr");
    let state = app.state();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let app = TestApp {
        addr,
        client,
        reservation,
        payment,
        redis,
        state,
        stop: Some(stop),
        task: Some(task),
    };
    if redis_addr.is_some() {
        app.wait_ready().await;
    }
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    /// A POST with a JSON body and a fresh Idempotency-Key.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(body)
    }

    /// An `Authorization` header value this gateway accepts for `sub`.
    /// (Until the JWT work lands, the harness runs with JWT_SKIP_VERIFY=true and this token is
    /// unsigned; the JWT work replaces it with one signed by the test JWKS key.)
    pub fn bearer(&self, sub: &str) -> String {
        bearer_for(&[], sub)
    }

    /// Waits (up to 10 s) until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(r) = self.get("/readyz").send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("gateway at {} never became ready", self.addr);
    }

    /// Stops serving (the gateway's own graceful shutdown) and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A gateway as a separate OS process (the real `gateway` binary): for several replicas on one
/// store, and for signal handling.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    pub child: Child,
}

impl GatewayProcess {
    /// Starts `gateway` with `env` (PORT is chosen here) and waits for `/healthz`.
    pub async fn start(env: &[(String, String)]) -> GatewayProcess {
        Self::launch(env, None).await
    }

    /// As [`GatewayProcess::start`], collecting every line the gateway prints on stdout (its
    /// JSON logs) into `lines`.
    pub async fn start_capturing(
        env: &[(String, String)],
        lines: Arc<std::sync::Mutex<Vec<String>>>,
    ) -> GatewayProcess {
        Self::launch(env, Some(lines)).await
    }

    async fn launch(
        env: &[(String, String)],
        capture: Option<Arc<std::sync::Mutex<Vec<String>>>>,
    ) -> GatewayProcess {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env("PORT", port.to_string());
        if std::env::var_os("TEST_LOG").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        if capture.is_some() {
            cmd.stdout(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("spawn gateway");
        if let (Some(lines), Some(out)) = (capture, child.stdout.take()) {
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let p = GatewayProcess { addr, child };
        p.wait_healthy().await;
        p
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn wait_healthy(&self) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/healthz")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway process on {} never became healthy", self.addr);
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits (up to `limit`) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses a response body as JSON, panicking with the body text when it is not.
pub async fn json(res: reqwest::Response) -> serde_json::Value {
    let text = res.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Asserts the SPEC §4 error shape and code; returns the body.
pub async fn assert_error(res: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "status");
    assert_eq!(
        res.headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("")),
        Some("application/json")
    );
    let trace_header = res
        .headers()
        .get("x-trace-id")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let body = json(res).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let trace_id = body["error"]["trace_id"].as_str().unwrap_or_default();
    assert_eq!(trace_id.len(), 32, "{body}");
    assert_eq!(
        Some(trace_id.to_owned()),
        trace_header,
        "trace_id matches X-Trace-Id"
    );
    body
}

/// Sends raw bytes on a fresh connection and returns everything the server answers (until it
/// closes or 5 s pass). For what an HTTP client would normalise or refuse to send.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// An `Authorization` header value that a gateway started with `env` accepts for `sub`.
/// (Until the JWT work lands the harness runs with JWT_SKIP_VERIFY=true and this token is
/// unsigned; the JWT work signs it with the test JWKS key.)
pub fn bearer_for(_env: &[(String, String)], sub: &str) -> String {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let header = b64(serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "test"}));
    let claims = b64(serde_json::json!({"sub": sub, "exp": exp}));
    format!("Bearer {header}.{claims}.c2lnbmF0dXJl")
}
