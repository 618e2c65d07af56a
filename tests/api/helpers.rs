//! The test harness: a real `redis-server` on a random port, recording mock upstreams, a real
//! JWKS server over HTTP (`JwksServer`, test keys in `tests/fixtures/`), and the real gateway on
//! an ephemeral port (in process, or as a separate `gateway` process when a test needs several
//! replicas or signals). Nothing on the request path is mocked out: `app.bearer(sub)` is a
//! token signed by the test key, verified for real.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
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
    /// Extra command-line arguments (e.g. `--replicaof`).
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// A replica of the server on `master_port` (for `WAIT`).
    pub fn start_replica_of(master_port: u16) -> RedisServer {
        Self::start_with(&["--replicaof", "127.0.0.1", &master_port.to_string()])
    }

    fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = RedisServer {
            port: free_port(),
            child: None,
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
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
            .args(&self.extra)
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
    /// Wait for `/readyz` before returning (default). Off for tests that start not-ready.
    pub wait_ready: bool,
}

impl AppOptions {
    pub fn new(backend: Backend) -> Self {
        AppOptions {
            backend,
            env: Vec::new(),
            shared_redis: None,
            wait_ready: true,
        }
    }

    /// Return at once, even if the gateway is not ready (e.g. its JWKS is down).
    pub fn no_wait_ready(mut self) -> Self {
        self.wait_ready = false;
        self
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
    /// The identity provider this gateway trusts (`JWT_JWKS_URL`); swap its keys to rotate.
    pub jwks: JwksServer,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The environment every test gateway starts from: mocks as upstreams, no delays on shutdown.
/// JWT settings come from [`jwt_env`] (a `GatewayProcess` needs both).
pub fn base_env(
    reservation: &MockUpstream,
    payment: &MockUpstream,
    redis_addr: Option<&str>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("PORT".to_owned(), "0".to_owned()),
        ("UPSTREAM_RESERVATION_BASE".to_owned(), reservation.url()),
        ("UPSTREAM_PAYMENT_BASE".to_owned(), payment.url()),
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
    let jwks = JwksServer::start(&TestKey::defaults()).await;
    let mut env = base_env(&reservation, &payment, redis_addr.as_deref());
    env.extend(jwt_env(&jwks));
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
        jwks,
        state,
        stop: Some(stop),
        task: Some(task),
    };
    if opts.wait_ready {
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

    /// An `Authorization` header value this gateway accepts for `sub`: `Bearer <jwt>` signed by
    /// the test Ed25519 key, with the test issuer and audience, valid for an hour.
    pub fn bearer(&self, sub: &str) -> String {
        bearer(sub)
    }

    /// `Bearer <jwt>` for an operator: the test claims for `sub` plus `extra` (e.g.
    /// `{"scope": "gateway:admin"}` or `{"scp": ["gateway:admin"]}`), signed by the test key.
    pub fn bearer_with(&self, sub: &str, extra: serde_json::Value) -> String {
        bearer_with(sub, extra)
    }

    /// The `/metrics` exposition as text.
    pub async fn metrics_text(&self) -> String {
        self.get("/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
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

    /// As [`GatewayProcess::start`] with stdout a pipe nobody reads: once the pipe is full, every
    /// write to it blocks (a container's log pipe whose reader is stuck).
    pub async fn start_with_unread_stdout(env: &[(String, String)]) -> GatewayProcess {
        Self::launch_with(env, None, true).await
    }

    async fn launch(
        env: &[(String, String)],
        capture: Option<Arc<std::sync::Mutex<Vec<String>>>>,
    ) -> GatewayProcess {
        Self::launch_with(env, capture, false).await
    }

    async fn launch_with(
        env: &[(String, String)],
        capture: Option<Arc<std::sync::Mutex<Vec<String>>>>,
        unread_stdout: bool,
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
        if capture.is_some() || unread_stdout {
            // Unread: the pipe stays open (the `Child` keeps its end) and fills up.
            cmd.stdout(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("spawn gateway");
        if let Some(lines) = capture
            && let Some(out) = child.stdout.take()
        {
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

    /// Waits (up to 20 s) until `/readyz` answers 200 (store up, JWKS loaded).
    pub async fn wait_ready(&self) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway process on {} never became ready", self.addr);
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
                self.wait_jwks(&client).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway process on {} never became healthy", self.addr);
    }

    /// Gives the first JWKS fetch (up to 10 s) to land, so a test's first bearer token is not met
    /// with 503. Returns without failing if it never does (tests of a down JWKS).
    async fn wait_jwks(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let Ok(r) = client.get(self.url("/readyz")).send().await else {
                return;
            };
            let body = r.text().await.unwrap_or_default();
            if !body.contains("JWKS not loaded") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
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

/// An `Authorization` header value that a gateway started with `env` accepts for `sub`: any
/// gateway whose env includes [`jwt_env`] trusts the test keys, so this is [`bearer`].
pub fn bearer_for(_env: &[(String, String)], sub: &str) -> String {
    bearer(sub)
}

// ---------------------------------------------------------------------------------------------
// JWT: test keys (pre-generated with openssl into tests/fixtures/), tokens, a real JWKS server.

pub const TEST_ISSUER: &str = "https://idp.test.local/";
pub const TEST_AUDIENCE: &str = "gateway-api";

/// The JWT settings for a gateway trusting `jwks` (add to `base_env` for a `GatewayProcess`).
pub fn jwt_env(jwks: &JwksServer) -> Vec<(String, String)> {
    vec![
        ("JWT_ISSUER".to_owned(), TEST_ISSUER.to_owned()),
        ("JWT_AUDIENCE".to_owned(), TEST_AUDIENCE.to_owned()),
        ("JWT_JWKS_URL".to_owned(), jwks.url()),
    ]
}

/// `Bearer <jwt>` for `sub`, signed by the default test key ([`TestKey::ed25519`]).
pub fn bearer(sub: &str) -> String {
    format!("Bearer {}", TestKey::ed25519().sign(&claims_for(sub)))
}

/// `Bearer <jwt>` for `sub` with `extra` claims merged in (scopes for the admin routes).
pub fn bearer_with(sub: &str, extra: serde_json::Value) -> String {
    let mut claims = claims_for(sub);
    if let (Some(c), serde_json::Value::Object(e)) = (claims.as_object_mut(), extra) {
        c.extend(e);
    }
    format!("Bearer {}", TestKey::ed25519().sign(&claims))
}

/// Valid claims for `sub`: test issuer and audience, expiring in an hour.
pub fn claims_for(sub: &str) -> serde_json::Value {
    let now = unix_now();
    serde_json::json!({
        "sub": sub,
        "iss": TEST_ISSUER,
        "aud": TEST_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
    })
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signing key and its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: jsonwebtoken::Algorithm,
    pub key: jsonwebtoken::EncodingKey,
    pub jwk: serde_json::Value,
}

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl TestKey {
    fn load(file: &str, kid: &str, alg: jsonwebtoken::Algorithm) -> TestKey {
        use jsonwebtoken::{Algorithm, EncodingKey};
        let pem = fixture(file);
        let key = match alg {
            Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_ed_pem(&pem),
        }
        .expect("fixture key");
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, alg).expect("jwk");
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        TestKey {
            kid: kid.to_owned(),
            alg,
            key,
            jwk: serde_json::to_value(&jwk).expect("jwk json"),
        }
    }

    pub fn rsa() -> &'static TestKey {
        static K: LazyLock<TestKey> =
            LazyLock::new(|| TestKey::load("rsa.pem", "test-rsa", jsonwebtoken::Algorithm::RS256));
        &K
    }

    /// A second RSA key, for rotation.
    pub fn rsa2() -> &'static TestKey {
        static K: LazyLock<TestKey> = LazyLock::new(|| {
            TestKey::load("rsa2.pem", "test-rsa-2", jsonwebtoken::Algorithm::RS256)
        });
        &K
    }

    pub fn ec() -> &'static TestKey {
        static K: LazyLock<TestKey> =
            LazyLock::new(|| TestKey::load("ec.pem", "test-ec", jsonwebtoken::Algorithm::ES256));
        &K
    }

    pub fn ed25519() -> &'static TestKey {
        static K: LazyLock<TestKey> = LazyLock::new(|| {
            TestKey::load(
                "ed25519.pem",
                "test-ed25519",
                jsonwebtoken::Algorithm::EdDSA,
            )
        });
        &K
    }

    /// What a test gateway's JWKS holds unless a test says otherwise.
    pub fn defaults() -> Vec<&'static TestKey> {
        vec![TestKey::rsa(), TestKey::ec(), TestKey::ed25519()]
    }

    /// A compact JWS of `claims` with this key's `alg` and `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }

    /// A compact JWS over exactly these header and claims bytes, validly signed by this key
    /// (for documents serde would never write: arrays, duplicate members).
    pub fn sign_raw(&self, header: &str, claims: &str) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let message = format!("{}.{}", b64.encode(header), b64.encode(claims));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.key, self.alg).expect("sign");
        format!("{message}.{signature}")
    }
}

/// A JWKS endpoint over real HTTP on a loopback port: swappable key set (rotation), a fetch
/// counter, and a failure switch. Stops on drop.
pub struct JwksServer {
    pub port: u16,
    jwks: Arc<RwLock<serde_json::Value>>,
    fetches: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    delay_ms: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// On a random loopback port.
    pub async fn start(keys: &[&TestKey]) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind jwks");
        Self::serve(listener, keys)
    }

    /// On a given port (one a gateway was already told about, to come up late).
    pub async fn start_on(port: u16, keys: &[&TestKey]) -> JwksServer {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind jwks port");
        Self::serve(listener, keys)
    }

    fn serve(listener: tokio::net::TcpListener, keys: &[&TestKey]) -> JwksServer {
        let port = listener.local_addr().expect("addr").port();
        let jwks = Arc::new(RwLock::new(Self::set_of(keys)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicUsize::new(0));
        let (j, f, x, d) = (
            jwks.clone(),
            fetches.clone(),
            failing.clone(),
            delay_ms.clone(),
        );
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let (j, f, x, d) = (j.clone(), f.clone(), x.clone(), d.clone());
                async move {
                    use axum::response::IntoResponse;
                    f.fetch_add(1, Ordering::SeqCst);
                    let delay = d.load(Ordering::SeqCst) as u64;
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    if x.load(Ordering::SeqCst) {
                        return (http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
                    }
                    let body = j.read().unwrap().clone();
                    axum::Json(body).into_response()
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer {
            port,
            jwks,
            fetches,
            failing,
            delay_ms,
            task,
        }
    }

    /// Answer only after `d` (a slow identity provider).
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms
            .store(d.as_millis() as usize, Ordering::SeqCst);
    }

    fn set_of(keys: &[&TestKey]) -> serde_json::Value {
        serde_json::json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/.well-known/jwks.json", self.port)
    }

    /// Serve these keys from now on.
    pub fn set_keys(&self, keys: &[&TestKey]) {
        *self.jwks.write().unwrap() = Self::set_of(keys);
    }

    /// Serve this exact document from now on.
    pub fn set_document(&self, doc: serde_json::Value) {
        *self.jwks.write().unwrap() = doc;
    }

    /// How many times the JWKS was requested.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// While set, answer 503.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Asserts that `positions` (the place each of `n` joins got, listed in join order) is a
/// permutation of 1..=n drawn without regard to the join order, and returns Spearman's rho
/// between the two orders. Under a uniform shuffle rho ~ N(0, 1/(n-1)); the bound is five
/// standard deviations (|rho| < 0.158 for n = 1000), so a correct shuffle fails it with
/// probability 6e-7 per run. FIFO gives rho = 1 and any order by arrival speed gives rho near 1.
/// (Three runs of this check per test command at 3.3 sigma failed a CI run with rho = 0.116.)
pub fn assert_uniform_shuffle(positions: &[u64]) -> f64 {
    let n = positions.len() as f64;
    let d2: f64 = positions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let d = (i + 1) as f64 - *p as f64;
            d * d
        })
        .sum();
    let rho = 1.0 - 6.0 * d2 / (n * (n * n - 1.0));
    let mut sorted = positions.to_vec();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=positions.len() as u64).collect::<Vec<_>>(),
        "not a permutation"
    );
    let bound = 5.0 / (n - 1.0).sqrt();
    eprintln!("shuffle of {n}: Spearman rho = {rho:.4} (bound {bound:.3})");
    assert!(rho.abs() < bound, "not a uniform shuffle: rho = {rho}");
    rho
}
