//! Typed, validated configuration (SPEC §8). The only module that reads environment variables.
//!
//! `envy` collects every variable as text into [`RawConfig`]; each one is then parsed by a
//! function that knows the variable's name, so a bad value stops start-up with
//! `NAME="value": expected …` and never silently becomes the default.
//!
//! [`VARIABLES`] is the one list of the variables: `gateway --help` prints it, `--check-config`
//! walks it, the unknown-variable warnings compare against it, and the tests check that it and
//! [`RawConfig`] name the same variables and that every default it shows is the parser's.
//!
//! Every bad variable is reported at once ([`ConfigErrors`], one line each): the parser stops at
//! the first bad value, so [`Config::from_vars`] drops the variable it refused and parses again
//! until nothing is refused (a few dozen variables: microseconds, once, at start-up). The parse
//! itself stays one straight line per variable.
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use tracing_subscriber::filter::Directive;

/// A configuration error: which variable, what it held, what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}={value:?}: expected {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{name} is required{why}")]
    Missing {
        name: &'static str,
        why: &'static str,
    },
    /// A value refused for a reason only known at run time (`LOG_LEVEL`'s unknown target).
    #[error("{name}={value:?}: {reason}")]
    Rejected {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("reading the environment: {0}")]
    Env(String),
}

impl ConfigError {
    /// The variable this error is about, when it is about one.
    pub fn variable(&self) -> Option<&'static str> {
        match self {
            ConfigError::Invalid { name, .. }
            | ConfigError::Missing { name, .. }
            | ConfigError::Rejected { name, .. } => Some(name),
            ConfigError::Env(_) => None,
        }
    }
}

/// Every configuration error found, one per line (`main` prints them and exits 2).
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// A value that must never be printed (passwords). `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    /// `None`: the in-memory store (single replica only).
    pub redis: Option<RedisConfig>,
    pub jwt: JwtConfig,
    pub rate_limit: RateLimitConfig,
    pub idempotency_ttl: Duration,
    pub reservation: UpstreamConfig,
    pub payment: UpstreamConfig,
    pub routing: RoutingConfig,
    pub telemetry: TelemetryConfig,
    pub max_body_size: usize,
    pub max_in_flight: usize,
    /// Tokio worker threads; `None` is one per CPU this process may use. One thread runs the
    /// single-threaded scheduler (no cross-thread wake-ups).
    pub worker_threads: Option<usize>,
    pub trusted_proxies: Vec<IpNet>,
    /// `CORS_ALLOWED_ORIGINS`; `None` (unset): no CORS headers at all.
    pub cors_allowed_origins: Option<CorsOrigins>,
    pub queue: QueueConfig,
    pub shutdown_delay: Duration,
    pub shutdown_timeout: Duration,
    /// SPEC §4: the whole request body must arrive within this, else 408 and the connection closed.
    pub request_body_timeout: Duration,
    /// SPEC §4: a response that makes no write progress for this long is abandoned.
    pub response_write_timeout: Duration,
    /// SPEC §6: replicas that must acknowledge an in-flight idempotency record (`WAIT`) before
    /// the write is forwarded; 0 = do not wait.
    pub redis_wait_replicas: u32,
    /// Set by `--demo` only: serve `GET /demo/token`.
    pub demo: bool,
    /// Start-up warnings: variables with one of the gateway's prefixes that it does not know
    /// (logged once the logger runs, printed by `--check-config`).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// One or more `redis://` URLs (scheme added when the variable gave `host:port`).
    pub urls: Vec<String>,
    pub cluster: bool,
    pub password: Option<Secret>,
    pub db: i64,
    pub tls: bool,
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub jwks_url: Option<reqwest::Url>,
    pub cache_ttl: Duration,
    pub skip_verify: bool,
    /// `JWT_REFRESH_MIN_INTERVAL` (30s): an unknown `kid` refetches the JWKS at most this often.
    pub refresh_min_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// `RATE_LIMIT_ENABLED=false` turns the per-client bucket off (benchmarks, trusted networks).
    pub enabled: bool,
    pub rps: f64,
    pub burst: u32,
}

/// `CORS_ALLOWED_ORIGINS`, parsed once: the origins that get CORS headers (SPEC §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `*` was in the list: any origin.
    Any,
    /// Exactly these, each as a browser writes it in `Origin` (`https://tickets.example`).
    List(Vec<http::HeaderValue>),
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: &'static str,
    pub bases: Vec<reqwest::Url>,
    pub timeout: Duration,
    /// Cap on concurrent requests to this upstream (bulkhead, SPEC §7a).
    pub max_concurrency: usize,
}

/// Load balancing, ejection and circuit-breaking settings shared by both upstreams (SPEC §7a).
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// Consecutive failures that eject an instance.
    pub eject_after: u32,
    /// First ejection cooldown; doubles on each repeat ejection up to `eject_max`.
    pub eject_base: Duration,
    pub eject_max: Duration,
}

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub otlp_endpoint: reqwest::Url,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` was given (not the default): `--demo` exports only then.
    pub otlp_endpoint_set: bool,
    /// Spans are exported over OTLP (always, except `--demo` without an endpoint).
    pub export_traces: bool,
    /// `LOG_FORMAT`; `None`: text when stdout is a terminal, JSON lines otherwise.
    pub log_format: Option<LogFormat>,
    pub trace_sampling: f64,
    /// `LOG_LEVEL`, parsed once: what the logger installs.
    pub log_level: LogFilter,
    pub service_name: String,
    pub service_version: String,
}

/// `LOG_FORMAT=json|text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (SPEC §4): for log collectors.
    Json,
    /// tracing's human-readable lines, for a person at a terminal.
    Text,
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub admission_rps: f64,
    pub heartbeat_ttl: Duration,
    pub reservation_token_ttl: Duration,
    pub require_admission: bool,
    /// `ADMIN_SCOPE`: the scope a bearer token needs for `/admin/v1` (SPEC §5a).
    pub admin_scope: String,
    /// `QUEUE_EVENTS_OPEN`: `false` makes events nobody defined 404 on join.
    pub events_open: bool,
    /// `QUEUE_ADAPTIVE_MAX_ERRORS`: share of 5xx/timeouts over 10 s above which adaptive
    /// admission backs off.
    pub adaptive_max_errors: f64,
    /// `QUEUE_ADAPTIVE_P99`: reservation-call p99 over 10 s above which it backs off.
    pub adaptive_p99: Duration,
}

/// Every variable of SPEC §8 as text; `envy` matches them by (lower-cased) name.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    port: Option<String>,
    redis_addr: Option<String>,
    redis_cluster: Option<String>,
    redis_password: Option<String>,
    redis_db: Option<String>,
    redis_tls: Option<String>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    jwt_jwks_url: Option<String>,
    jwt_cache_ttl: Option<String>,
    jwt_skip_verify: Option<String>,
    jwt_refresh_min_interval: Option<String>,
    rate_limit_enabled: Option<String>,
    rate_limit_rps: Option<String>,
    rate_limit_burst: Option<String>,
    idempotency_ttl_seconds: Option<String>,
    upstream_reservation_base: Option<String>,
    upstream_payment_base: Option<String>,
    upstream_reservation_timeout: Option<String>,
    upstream_payment_timeout: Option<String>,
    upstream_reservation_max_concurrency: Option<String>,
    upstream_payment_max_concurrency: Option<String>,
    upstream_eject_after: Option<String>,
    upstream_eject_base: Option<String>,
    upstream_eject_max: Option<String>,
    otel_exporter_otlp_endpoint: Option<String>,
    trace_sampling: Option<String>,
    log_level: Option<String>,
    log_format: Option<String>,
    service_name: Option<String>,
    service_version: Option<String>,
    max_body_size: Option<String>,
    max_in_flight: Option<String>,
    worker_threads: Option<String>,
    trusted_proxies: Option<String>,
    cors_allowed_origins: Option<String>,
    queue_admission_rps: Option<String>,
    queue_heartbeat_ttl_seconds: Option<String>,
    queue_reservation_token_ttl_seconds: Option<String>,
    queue_require_admission: Option<String>,
    admin_scope: Option<String>,
    queue_events_open: Option<String>,
    queue_adaptive_max_errors: Option<String>,
    queue_adaptive_p99: Option<String>,
    shutdown_delay: Option<String>,
    shutdown_timeout: Option<String>,
    request_body_timeout: Option<String>,
    response_write_timeout: Option<String>,
    redis_wait_replicas: Option<String>,
}

pub const DEFAULT_RESERVATION_BASE: &str =
    "http://reservation-api.tickets-api.svc.cluster.local:8080";
pub const DEFAULT_PAYMENT_BASE: &str = "http://payment-sim-api.tickets-api.svc.cluster.local:8080";

/// What tells the two upstreams apart: the name, the variables (`UPSTREAM_<NAME>_BASE`,
/// `_TIMEOUT`, `_MAX_CONCURRENCY`) and their defaults. Both are parsed by [`upstream`].
struct UpstreamVars {
    name: &'static str,
    base_var: &'static str,
    timeout_var: &'static str,
    max_concurrency_var: &'static str,
    base: &'static str,
    timeout: Duration,
    max_concurrency: usize,
}

const RESERVATION: UpstreamVars = UpstreamVars {
    name: "reservation",
    base_var: "UPSTREAM_RESERVATION_BASE",
    timeout_var: "UPSTREAM_RESERVATION_TIMEOUT",
    max_concurrency_var: "UPSTREAM_RESERVATION_MAX_CONCURRENCY",
    base: DEFAULT_RESERVATION_BASE,
    timeout: Duration::from_millis(600),
    max_concurrency: 1024,
};

const PAYMENT: UpstreamVars = UpstreamVars {
    name: "payment",
    base_var: "UPSTREAM_PAYMENT_BASE",
    timeout_var: "UPSTREAM_PAYMENT_TIMEOUT",
    max_concurrency_var: "UPSTREAM_PAYMENT_MAX_CONCURRENCY",
    base: DEFAULT_PAYMENT_BASE,
    timeout: Duration::from_millis(400),
    max_concurrency: 512,
};

/// The `REDIS_*` variables as text.
struct RawRedis {
    addr: Option<String>,
    cluster: Option<String>,
    password: Option<String>,
    db: Option<String>,
    tls: Option<String>,
}

/// One upstream's variables as text.
struct RawUpstream {
    base: Option<String>,
    timeout: Option<String>,
    max_concurrency: Option<String>,
}

impl Config {
    /// Reads the process environment. `main` is the only caller.
    pub fn from_env() -> Result<Self, ConfigErrors> {
        Self::from_vars(env_vars())
    }

    /// [`Config::load`] on the process environment (`gateway`, `gateway --check-config`).
    pub fn load_env(demo: bool) -> Result<Self, ConfigErrors> {
        Self::load(env_vars(), demo)
    }

    /// Reads the given variables (tests pass their own; nothing touches the process env).
    /// Every bad value is in the error, not only the first.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        match Self::parse_all(collect(vars)) {
            (Some(config), errors) if errors.is_empty() => Ok(config),
            (_, errors) => Err(ConfigErrors(errors)),
        }
    }

    /// What `gateway` starts with: [`Config::from_vars`], then, unless `demo`, the JWT settings
    /// verification needs. Every bad and every missing variable is in the error.
    pub fn load<I, K, V>(vars: I, demo: bool) -> Result<Self, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let (config, mut errors) = Self::parse_all(collect(vars));
        let Some(mut config) = config else {
            return Err(ConfigErrors(errors));
        };
        config.demo = demo;
        errors.extend(config.missing_jwt());
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Parses, drops each refused variable and parses again, until nothing is refused. Returns
    /// the last configuration (with the refused variables at their defaults) and every error.
    fn parse_all(
        mut vars: std::collections::HashMap<String, String>,
    ) -> (Option<Self>, Vec<ConfigError>) {
        let warnings = unknown_variables(vars.keys().map(String::as_str));
        let mut errors = Vec::new();
        loop {
            let parsed = envy::from_iter::<_, RawConfig>(vars.clone())
                .map_err(|e| ConfigError::Env(e.to_string()))
                .and_then(Self::parse);
            match parsed {
                Ok(mut config) => {
                    config.warnings = warnings;
                    return (Some(config), errors);
                }
                Err(e) => {
                    let refused = e.variable();
                    errors.push(e);
                    // A variable that is not in the map cannot be refused again: stop there.
                    if refused.is_none_or(|name| vars.remove(name).is_none()) {
                        return (None, errors);
                    }
                }
            }
        }
    }

    fn parse(r: RawConfig) -> Result<Self, ConfigError> {
        let redis = redis(RawRedis {
            addr: r.redis_addr,
            cluster: r.redis_cluster,
            password: r.redis_password,
            db: r.redis_db,
            tls: r.redis_tls,
        })?;
        let jwt = JwtConfig {
            issuer: non_empty(r.jwt_issuer),
            audience: non_empty(r.jwt_audience),
            jwks_url: match non_empty(r.jwt_jwks_url) {
                Some(u) => Some(parse_url("JWT_JWKS_URL", &u)?),
                None => None,
            },
            cache_ttl: parse_or(
                "JWT_CACHE_TTL",
                r.jwt_cache_ttl,
                Duration::from_secs(600),
                parse_duration,
            )?,
            skip_verify: parse_or("JWT_SKIP_VERIFY", r.jwt_skip_verify, false, parse_bool)?,
            refresh_min_interval: parse_or(
                "JWT_REFRESH_MIN_INTERVAL",
                r.jwt_refresh_min_interval,
                Duration::from_secs(30),
                parse_duration,
            )?,
        };
        let rate_limit = RateLimitConfig {
            enabled: parse_or("RATE_LIMIT_ENABLED", r.rate_limit_enabled, true, parse_bool)?,
            rps: parse_or("RATE_LIMIT_RPS", r.rate_limit_rps, 50.0, parse_positive_f64)?,
            burst: parse_or(
                "RATE_LIMIT_BURST",
                r.rate_limit_burst,
                100,
                parse_positive_u32,
            )?,
        };
        let reservation = upstream(
            &RESERVATION,
            RawUpstream {
                base: r.upstream_reservation_base,
                timeout: r.upstream_reservation_timeout,
                max_concurrency: r.upstream_reservation_max_concurrency,
            },
        )?;
        let payment = upstream(
            &PAYMENT,
            RawUpstream {
                base: r.upstream_payment_base,
                timeout: r.upstream_payment_timeout,
                max_concurrency: r.upstream_payment_max_concurrency,
            },
        )?;
        let routing = RoutingConfig {
            eject_after: parse_or(
                "UPSTREAM_EJECT_AFTER",
                r.upstream_eject_after,
                5,
                parse_positive_u32,
            )?,
            eject_base: parse_or(
                "UPSTREAM_EJECT_BASE",
                r.upstream_eject_base,
                Duration::from_secs(5),
                parse_nonzero_duration,
            )?,
            eject_max: parse_or(
                "UPSTREAM_EJECT_MAX",
                r.upstream_eject_max,
                Duration::from_secs(60),
                parse_nonzero_duration,
            )?,
        };
        let otlp_endpoint_set = non_empty(r.otel_exporter_otlp_endpoint.clone()).is_some();
        let telemetry = TelemetryConfig {
            otlp_endpoint: parse_url(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &non_empty(r.otel_exporter_otlp_endpoint)
                    .unwrap_or_else(|| "http://otel-collector:4317".to_owned()),
            )?,
            otlp_endpoint_set,
            export_traces: true,
            log_format: parse_or("LOG_FORMAT", r.log_format, None, |v| {
                match v.to_ascii_lowercase().as_str() {
                    "json" => Ok(Some(LogFormat::Json)),
                    "text" => Ok(Some(LogFormat::Text)),
                    _ => Err("json or text"),
                }
            })?,
            trace_sampling: parse_or("TRACE_SAMPLING", r.trace_sampling, 0.1, parse_ratio)?,
            log_level: parse_log_level(
                &non_empty(r.log_level).unwrap_or_else(|| "info".to_owned()),
            )?,
            service_name: non_empty(r.service_name).unwrap_or_else(|| "gateway-api".to_owned()),
            service_version: non_empty(r.service_version)
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        };
        let queue = QueueConfig {
            admission_rps: parse_or(
                "QUEUE_ADMISSION_RPS",
                r.queue_admission_rps,
                100.0,
                parse_positive_f64,
            )?,
            heartbeat_ttl: parse_or(
                "QUEUE_HEARTBEAT_TTL_SECONDS",
                r.queue_heartbeat_ttl_seconds,
                Duration::from_secs(300),
                parse_seconds,
            )?,
            reservation_token_ttl: parse_or(
                "QUEUE_RESERVATION_TOKEN_TTL_SECONDS",
                r.queue_reservation_token_ttl_seconds,
                Duration::from_secs(30),
                parse_seconds,
            )?,
            require_admission: parse_or(
                "QUEUE_REQUIRE_ADMISSION",
                r.queue_require_admission,
                false,
                parse_bool,
            )?,
            admin_scope: match non_empty(r.admin_scope) {
                Some(s) if s.contains(char::is_whitespace) => {
                    return Err(invalid("ADMIN_SCOPE", &s, "one scope, without spaces"));
                }
                Some(s) => s,
                None => "gateway:admin".to_owned(),
            },
            events_open: parse_or("QUEUE_EVENTS_OPEN", r.queue_events_open, true, parse_bool)?,
            adaptive_max_errors: parse_or(
                "QUEUE_ADAPTIVE_MAX_ERRORS",
                r.queue_adaptive_max_errors,
                0.05,
                parse_ratio,
            )?,
            adaptive_p99: parse_or(
                "QUEUE_ADAPTIVE_P99",
                r.queue_adaptive_p99,
                Duration::from_secs(1),
                parse_duration,
            )?,
        };
        let trusted_proxies = trusted_proxies(r.trusted_proxies)?;
        let cors_allowed_origins = cors_origins(r.cors_allowed_origins)?;
        Ok(Config {
            port: parse_or("PORT", r.port, 8080, parse_port)?,
            redis,
            jwt,
            rate_limit,
            idempotency_ttl: parse_or(
                "IDEMPOTENCY_TTL_SECONDS",
                r.idempotency_ttl_seconds,
                Duration::from_secs(300),
                parse_seconds,
            )?,
            reservation,
            payment,
            routing,
            telemetry,
            max_body_size: parse_or(
                "MAX_BODY_SIZE",
                r.max_body_size,
                1_048_576,
                parse_positive_usize,
            )?,
            max_in_flight: parse_or(
                "MAX_IN_FLIGHT",
                r.max_in_flight,
                10_000,
                parse_positive_usize,
            )?,
            worker_threads: parse_or("WORKER_THREADS", r.worker_threads, None, |v| {
                parse_positive_usize(v).map(Some)
            })?,
            trusted_proxies,
            cors_allowed_origins,
            queue,
            shutdown_delay: parse_or(
                "SHUTDOWN_DELAY",
                r.shutdown_delay,
                Duration::from_secs(5),
                parse_duration,
            )?,
            shutdown_timeout: parse_or(
                "SHUTDOWN_TIMEOUT",
                r.shutdown_timeout,
                Duration::from_secs(20),
                parse_duration,
            )?,
            request_body_timeout: parse_or(
                "REQUEST_BODY_TIMEOUT",
                r.request_body_timeout,
                Duration::from_secs(10),
                parse_nonzero_duration,
            )?,
            response_write_timeout: parse_or(
                "RESPONSE_WRITE_TIMEOUT",
                r.response_write_timeout,
                Duration::from_secs(10),
                parse_nonzero_duration,
            )?,
            redis_wait_replicas: parse_or(
                "REDIS_WAIT_REPLICAS",
                r.redis_wait_replicas,
                0,
                parse_u32,
            )?,
            demo: false,
            warnings: Vec::new(),
        })
    }

    /// JWT verification needs issuer, audience and JWKS URL unless verification is skipped or
    /// the demo supplies its own ([`Config::load`] checks it after `--demo` had its say).
    pub fn validate_jwt(&self) -> Result<(), ConfigErrors> {
        let missing = self.missing_jwt();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(missing))
        }
    }

    /// Each JWT setting verification needs and does not have.
    fn missing_jwt(&self) -> Vec<ConfigError> {
        if self.jwt.skip_verify || self.demo {
            return Vec::new();
        }
        let why = " (or set JWT_SKIP_VERIFY=true for development, or run --demo)";
        [
            ("JWT_JWKS_URL", self.jwt.jwks_url.is_none()),
            ("JWT_ISSUER", self.jwt.issuer.is_none()),
            ("JWT_AUDIENCE", self.jwt.audience.is_none()),
        ]
        .into_iter()
        .filter(|(_, missing)| *missing)
        .map(|(name, _)| ConfigError::Missing { name, why })
        .collect()
    }
}

/// The process environment; a variable whose name or value is not UTF-8 is not one of ours
/// (`std::env::vars` would panic on it).
fn env_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

/// `--check-config` on the process environment: see [`effective_values`].
pub fn effective_env_values() -> Vec<(&'static Var, String, bool)> {
    let env: std::collections::HashMap<String, String> = env_vars().collect();
    effective_values(|k| env.get(k).map(String::as_str))
}

/// Later values win, as with `env K=v` (the harness layers overrides on defaults).
fn collect<I, K, V>(vars: I) -> std::collections::HashMap<String, String>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    vars.into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn invalid(name: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        expected,
    }
}

/// Unset (or empty) → `default`; set → `parse` or a loud error naming the variable.
fn parse_or<T>(
    name: &'static str,
    raw: Option<String>,
    default: T,
    parse: fn(&str) -> Result<T, &'static str>,
) -> Result<T, ConfigError> {
    match non_empty(raw) {
        None => Ok(default),
        Some(v) => parse(&v).map_err(|expected| invalid(name, &v, expected)),
    }
}

fn parse_bool(s: &str) -> Result<bool, &'static str> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("true or false"),
    }
}

fn parse_port(s: &str) -> Result<u16, &'static str> {
    s.parse().map_err(|_| "1–65535 (0: any free port)")
}

fn parse_db(s: &str) -> Result<i64, &'static str> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or("a whole number from 0 (a database index)")
}

fn parse_u32(s: &str) -> Result<u32, &'static str> {
    s.parse::<u32>()
        .map_err(|_| "a whole number from 0 to 4294967295")
}

fn parse_positive_u32(s: &str) -> Result<u32, &'static str> {
    s.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or("a whole number from 1 to 4294967295")
}

fn parse_positive_usize(s: &str) -> Result<usize, &'static str> {
    s.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or("a whole number from 1")
}

fn parse_positive_f64(s: &str) -> Result<f64, &'static str> {
    s.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .ok_or("a number above 0")
}

fn parse_ratio(s: &str) -> Result<f64, &'static str> {
    s.parse::<f64>()
        .ok()
        .filter(|n| (0.0..=1.0).contains(n))
        .ok_or("a number from 0 to 1")
}

/// `600ms`, `10s`, `10m`, `1h` (and combinations humantime accepts, like `1m30s`).
pub fn parse_duration(s: &str) -> Result<Duration, &'static str> {
    humantime::parse_duration(s).map_err(|_| "a duration like 600ms, 10s or 10m")
}

fn parse_nonzero_duration(s: &str) -> Result<Duration, &'static str> {
    parse_duration(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or("a duration above zero like 600ms, 10s or 10m")
}

fn parse_seconds(s: &str) -> Result<Duration, &'static str> {
    s.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(Duration::from_secs)
        .ok_or("a whole number of seconds above 0")
}

/// `LOG_LEVEL`: a level, or EnvFilter directives (`info,gateway_api::jwt=debug`) whose targets
/// are this crate's modules, its log targets (`access`) or the libraries it logs through. A word
/// EnvFilter would take as a target nobody logs to (`warning`, `verbose`) would otherwise turn
/// every line off without a word.
fn parse_log_level(s: &str) -> Result<LogFilter, ConfigError> {
    let reject = |reason: String| ConfigError::Rejected {
        name: "LOG_LEVEL",
        value: s.to_owned(),
        reason,
    };
    const EXPECTED: &str =
        "expected trace, debug, info, warn, error, off or directives like info,gateway_api=debug";
    for directive in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if is_level(directive) {
            continue;
        }
        // `target[span{field=value}]=level`: the level follows the last `=` outside the braces.
        let (lhs, level) = match directive.rsplit_once('=') {
            Some((lhs, level)) if !level.contains([']', '}']) => (lhs, Some(level)),
            _ => (directive, None),
        };
        if let Some(level) = level
            && !is_level(level)
        {
            return Err(reject(format!("{EXPECTED} (unknown level {level:?})")));
        }
        let target = lhs.split('[').next().unwrap_or_default();
        if !target.is_empty() && !known_log_target(target) {
            // `warning` → `warn`, `err` → `error`, `debgu` → `debug`.
            let lower = target.to_ascii_lowercase();
            let hint = LEVELS
                .iter()
                .copied()
                .find(|l| lower.starts_with(l) || l.starts_with(lower.as_str()))
                .or_else(|| closest(target, LEVELS.iter().copied(), 2))
                .map(|l| format!(", did you mean {l:?}?"))
                .unwrap_or_default();
            return Err(reject(format!(
                "{EXPECTED} (no log target named {target:?}{hint})"
            )));
        }
    }
    // Split as `EnvFilter` splits its text, so the filter is the one `EnvFilter::try_new(s)`
    // would build.
    let directives = s
        .split(',')
        .filter(|d| !d.is_empty())
        .map(str::parse::<Directive>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| reject(format!("{EXPECTED} ({e})")))?;
    Ok(LogFilter {
        text: s.to_owned(),
        directives,
    })
}

/// `LOG_LEVEL` as `EnvFilter` directives, checked at load ([`parse_log_level`]). `Debug` and
/// `Display` show the text as it was given.
#[derive(Clone, PartialEq, Eq)]
pub struct LogFilter {
    text: String,
    directives: Vec<Directive>,
}

impl LogFilter {
    /// The filter the logger installs: these directives, nothing re-parsed.
    pub fn env_filter(&self) -> tracing_subscriber::EnvFilter {
        self.directives
            .iter()
            .cloned()
            .fold(tracing_subscriber::EnvFilter::default(), |f, d| {
                f.add_directive(d)
            })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Debug for LogFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogFilter({:?})", self.text)
    }
}

impl std::fmt::Display for LogFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

fn is_level(s: &str) -> bool {
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s))
}

/// This crate's module paths (`gateway_api`, `gateway_api::jwt`, …), listed by `build.rs` from
/// `src/`, so a new module is a valid target without anyone updating a list.
const CRATE_MODULES: &[&str] = include!(concat!(env!("OUT_DIR"), "/modules.rs"));

/// Log targets that are not module paths, and the libraries whose logs are worth turning up.
const OTHER_LOG_TARGETS: &[&str] = &[
    "access",
    "gateway",
    "mock_upstream",
    "axum",
    "h2",
    "hyper",
    "hyper_util",
    "jsonwebtoken",
    "opentelemetry",
    "opentelemetry_otlp",
    "opentelemetry_sdk",
    "redis",
    "reqwest",
    "rustls",
    "tokio",
    "tonic",
    "tower",
    "tower_http",
    "tracing_opentelemetry",
];

/// A module of this crate exactly, or a library target or any of its modules.
fn known_log_target(target: &str) -> bool {
    if CRATE_MODULES.contains(&target) {
        return true;
    }
    let root = target.split("::").next().unwrap_or_default();
    root != "gateway_api" && OTHER_LOG_TARGETS.contains(&root)
}

fn parse_url(name: &'static str, s: &str) -> Result<reqwest::Url, ConfigError> {
    reqwest::Url::parse(s)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| invalid(name, s, "an http:// or https:// URL"))
}

/// `REDIS_*` (SPEC §8): `None` when `REDIS_ADDR` is unset (the in-memory store).
fn redis(raw: RawRedis) -> Result<Option<RedisConfig>, ConfigError> {
    Ok(match non_empty(raw.addr) {
        None => None,
        Some(addr) => {
            let tls = parse_or("REDIS_TLS", raw.tls, false, parse_bool)?;
            let urls = addr
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| redis_url(a, tls))
                .collect::<Option<Vec<_>>>()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    invalid(
                        "REDIS_ADDR",
                        &addr,
                        "host:port, redis://… or rediss://… (comma-separated for a cluster)",
                    )
                })?;
            let cluster =
                parse_or("REDIS_CLUSTER", raw.cluster, false, parse_bool)? || urls.len() > 1;
            let db = parse_or("REDIS_DB", raw.db.clone(), 0, parse_db)?;
            if cluster && db != 0 {
                // A Redis Cluster has only database 0: fail now, not on every connection.
                return Err(invalid(
                    "REDIS_DB",
                    raw.db.as_deref().unwrap_or_default(),
                    "0 with Redis Cluster (a cluster has only database 0)",
                ));
            }
            Some(RedisConfig {
                urls,
                cluster,
                password: non_empty(raw.password).map(Secret),
                db,
                tls,
            })
        }
    })
}

/// `TRUSTED_PROXIES`: comma-separated CIDRs or single addresses.
fn trusted_proxies(raw: Option<String>) -> Result<Vec<IpNet>, ConfigError> {
    Ok(match non_empty(raw) {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_cidr(s).ok_or_else(|| {
                    invalid(
                        "TRUSTED_PROXIES",
                        &list,
                        "a comma-separated list of CIDRs or IPs",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    })
}

/// One upstream (SPEC §7, §7a): its base URLs, answer timeout and concurrency cap.
fn upstream(vars: &UpstreamVars, raw: RawUpstream) -> Result<UpstreamConfig, ConfigError> {
    Ok(UpstreamConfig {
        name: vars.name,
        bases: parse_bases(vars.base_var, raw.base, vars.base)?,
        timeout: parse_or(
            vars.timeout_var,
            raw.timeout,
            vars.timeout,
            parse_nonzero_duration,
        )?,
        max_concurrency: parse_or(
            vars.max_concurrency_var,
            raw.max_concurrency,
            vars.max_concurrency,
            parse_positive_usize,
        )?,
    })
}

fn parse_bases(
    name: &'static str,
    raw: Option<String>,
    default: &str,
) -> Result<Vec<reqwest::Url>, ConfigError> {
    let list = non_empty(raw).unwrap_or_else(|| default.to_owned());
    let bases = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let url = parse_url(name, s)
                .map_err(|_| invalid(name, &list, "comma-separated http(s):// base URLs"))?;
            if url.query().is_some() || url.fragment().is_some() {
                return Err(invalid(name, &list, "base URLs without query or fragment"));
            }
            Ok(url)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if bases.is_empty() {
        return Err(invalid(name, &list, "at least one http(s):// base URL"));
    }
    Ok(bases)
}

fn redis_url(addr: &str, tls: bool) -> Option<String> {
    if addr.starts_with("redis://") || addr.starts_with("rediss://") {
        return Some(addr.to_owned());
    }
    // host:port, with a port that parses.
    let (host, port) = addr.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() || addr.contains('/') {
        return None;
    }
    Some(format!("{}://{addr}", if tls { "rediss" } else { "redis" }))
}

/// `CORS_ALLOWED_ORIGINS`: comma-separated origins, or `*` among them for any. An entry that is
/// not an origin as a browser sends it (a trailing slash, a path, upper case, a default port)
/// would never match an `Origin` header, so it stops start-up instead of silently never
/// answering. Unset or only commas: `None`.
fn cors_origins(raw: Option<String>) -> Result<Option<CorsOrigins>, ConfigError> {
    let Some(list) = non_empty(raw) else {
        return Ok(None);
    };
    let mut any = false;
    let mut origins = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if entry == "*" {
            any = true;
            continue;
        }
        let origin = parse_origin(entry).ok_or_else(|| ConfigError::Rejected {
            name: "CORS_ALLOWED_ORIGINS",
            value: list.clone(),
            reason: format!(
                "{entry:?} is not an origin: expected comma-separated origins like \
                 https://tickets.example (scheme://host[:port] as a browser sends it: lower \
                 case, no path or trailing slash), or *"
            ),
        })?;
        origins.push(origin);
    }
    Ok(match (any, origins.is_empty()) {
        (true, _) => Some(CorsOrigins::Any),
        (false, true) => None,
        (false, false) => Some(CorsOrigins::List(origins)),
    })
}

/// `s` if it is exactly an http(s) origin's serialization (RFC 6454 §6.1), the form of a
/// browser's `Origin` header.
fn parse_origin(s: &str) -> Option<http::HeaderValue> {
    let url = reqwest::Url::parse(s).ok()?;
    let serialized = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https") || serialized != s {
        return None;
    }
    http::HeaderValue::from_str(s).ok()
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// One environment variable: what `--help` prints and `--check-config` walks (SPEC §8).
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    pub default: VarDefault,
    pub help: &'static str,
    /// Printed as `***` by `--check-config`.
    pub secret: bool,
}

/// A variable's default, as `--help` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarDefault {
    /// The value the parser uses when the variable is unset (tests check they agree).
    Value(&'static str),
    /// Unset means off / none / empty.
    Unset,
    /// Computed at start-up; the text says how.
    Computed(&'static str),
}

impl std::fmt::Display for VarDefault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VarDefault::Value(v) => f.write_str(v),
            VarDefault::Unset => f.write_str("unset"),
            VarDefault::Computed(how) => f.write_str(how),
        }
    }
}

const fn var(name: &'static str, default: VarDefault, help: &'static str) -> Var {
    Var {
        name,
        default,
        help,
        secret: false,
    }
}

use VarDefault::{Computed, Unset, Value};

/// Every variable the gateway reads, in SPEC §8's order (then the tuning knobs of each group).
pub const VARIABLES: &[Var] = &[
    var(
        "PORT",
        Value("8080"),
        "TCP port to listen on (all interfaces)",
    ),
    var(
        "REDIS_ADDR",
        Unset,
        "host:port, redis://… or rediss://…; several, comma-separated, for Redis Cluster. Unset: \
         the in-memory store (single replica only)",
    ),
    var(
        "REDIS_CLUSTER",
        Value("false"),
        "treat REDIS_ADDR as a Redis Cluster (implied by several addresses)",
    ),
    Var {
        secret: true,
        ..var("REDIS_PASSWORD", Unset, "Redis password (AUTH)")
    },
    var(
        "REDIS_DB",
        Value("0"),
        "Redis database index (0 with a cluster)",
    ),
    var(
        "REDIS_TLS",
        Value("false"),
        "TLS to Redis for host:port addresses (rediss://)",
    ),
    var(
        "REDIS_WAIT_REPLICAS",
        Value("0"),
        "replicas that must acknowledge an idempotency record (WAIT) before a write is forwarded",
    ),
    var(
        "JWT_ISSUER",
        Unset,
        "required `iss` of bearer tokens; required unless --demo or JWT_SKIP_VERIFY=true",
    ),
    var(
        "JWT_AUDIENCE",
        Unset,
        "required `aud` of bearer tokens; required unless --demo or JWT_SKIP_VERIFY=true",
    ),
    var(
        "JWT_JWKS_URL",
        Unset,
        "http(s) URL of the signing keys (JWKS); required unless --demo or JWT_SKIP_VERIFY=true",
    ),
    var("JWT_CACHE_TTL", Value("10m"), "JWKS refresh period"),
    var(
        "JWT_SKIP_VERIFY",
        Value("false"),
        "DEVELOPMENT ONLY: do not check token signatures (loud warning at start-up)",
    ),
    var(
        "JWT_REFRESH_MIN_INTERVAL",
        Value("30s"),
        "an unknown `kid` refetches the JWKS at most this often",
    ),
    var(
        "ADMIN_SCOPE",
        Value("gateway:admin"),
        "scope a bearer token needs for the /admin routes",
    ),
    var(
        "RATE_LIMIT_ENABLED",
        Value("true"),
        "per-client rate limit on /api routes",
    ),
    var(
        "RATE_LIMIT_RPS",
        Value("50"),
        "per-client refill rate, requests per second",
    ),
    var("RATE_LIMIT_BURST", Value("100"), "per-client bucket size"),
    var(
        "IDEMPOTENCY_TTL_SECONDS",
        Value("300"),
        "how long a completed write's answer is replayed",
    ),
    var(
        "UPSTREAM_RESERVATION_BASE",
        Value(DEFAULT_RESERVATION_BASE),
        "reservation API base URL; comma-separated = load-balanced set",
    ),
    var(
        "UPSTREAM_PAYMENT_BASE",
        Value(DEFAULT_PAYMENT_BASE),
        "payment API base URL; comma-separated = load-balanced set",
    ),
    var(
        "UPSTREAM_RESERVATION_TIMEOUT",
        Value("600ms"),
        "reservation API answer timeout",
    ),
    var(
        "UPSTREAM_PAYMENT_TIMEOUT",
        Value("400ms"),
        "payment API answer timeout",
    ),
    var(
        "UPSTREAM_RESERVATION_MAX_CONCURRENCY",
        Value("1024"),
        "cap on concurrent reservation calls",
    ),
    var(
        "UPSTREAM_PAYMENT_MAX_CONCURRENCY",
        Value("512"),
        "cap on concurrent payment calls",
    ),
    var(
        "UPSTREAM_EJECT_AFTER",
        Value("5"),
        "consecutive failures that eject an upstream instance",
    ),
    var(
        "UPSTREAM_EJECT_BASE",
        Value("5s"),
        "first ejection cooldown (doubles on repeats)",
    ),
    var(
        "UPSTREAM_EJECT_MAX",
        Value("60s"),
        "longest ejection cooldown",
    ),
    var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        Value("http://otel-collector:4317"),
        "OTLP gRPC collector for traces (--demo exports only when this is set)",
    ),
    var(
        "TRACE_SAMPLING",
        Value("0.1"),
        "share of new traces kept, 0 to 1 (a sampled traceparent is always continued)",
    ),
    var(
        "LOG_LEVEL",
        Value("info"),
        "trace, debug, info, warn, error, or directives like info,gateway_api::jwt=debug",
    ),
    var(
        "LOG_FORMAT",
        Computed("text on a terminal, else json"),
        "json (one object per line) or text",
    ),
    var(
        "SERVICE_NAME",
        Value("gateway-api"),
        "service.name of traces, /version",
    ),
    var(
        "SERVICE_VERSION",
        Computed("the crate version"),
        "service.version of traces, /version",
    ),
    var(
        "MAX_BODY_SIZE",
        Value("1048576"),
        "largest request body in bytes (413 beyond)",
    ),
    var(
        "MAX_IN_FLIGHT",
        Value("10000"),
        "requests served at once (503 OVERLOADED beyond)",
    ),
    var(
        "WORKER_THREADS",
        Computed("the CPUs this process may use"),
        "Tokio worker threads (1: single-threaded scheduler)",
    ),
    var(
        "TRUSTED_PROXIES",
        Unset,
        "CIDRs whose X-Forwarded-For is believed for the client address",
    ),
    var(
        "CORS_ALLOWED_ORIGINS",
        Unset,
        "comma-separated origins that get CORS headers (* for any)",
    ),
    var(
        "QUEUE_ADMISSION_RPS",
        Value("100"),
        "waiting room: people admitted per second per event",
    ),
    var(
        "QUEUE_HEARTBEAT_TTL_SECONDS",
        Value("300"),
        "waiting room: a token not polled this long expires",
    ),
    var(
        "QUEUE_RESERVATION_TOKEN_TTL_SECONDS",
        Value("30"),
        "waiting room: lifetime of a reservation token",
    ),
    var(
        "QUEUE_REQUIRE_ADMISSION",
        Value("false"),
        "reservation create needs a reservation token from the waiting room",
    ),
    var(
        "QUEUE_EVENTS_OPEN",
        Value("true"),
        "waiting room: queue events nobody defined (false: 404 EVENT_NOT_FOUND)",
    ),
    var(
        "QUEUE_ADAPTIVE_MAX_ERRORS",
        Value("0.05"),
        "adaptive admission: reservation 5xx/timeout share that slows admission",
    ),
    var(
        "QUEUE_ADAPTIVE_P99",
        Value("1s"),
        "adaptive admission: reservation p99 that slows admission",
    ),
    var(
        "SHUTDOWN_DELAY",
        Value("5s"),
        "after SIGTERM, keep accepting (readyz 503) this long (--demo: 0)",
    ),
    var(
        "SHUTDOWN_TIMEOUT",
        Value("20s"),
        "then let in-flight requests finish within this",
    ),
    var(
        "REQUEST_BODY_TIMEOUT",
        Value("10s"),
        "a request body must arrive within this (408)",
    ),
    var(
        "RESPONSE_WRITE_TIMEOUT",
        Value("10s"),
        "a response that makes no write progress this long is abandoned",
    ),
];

/// The prefixes of the gateway's own variables: an unknown variable with one of them is
/// probably a typo and gets a warning.
pub const PREFIXES: &[&str] = &[
    "JWT_",
    "REDIS_",
    "RATE_LIMIT_",
    "UPSTREAM_",
    "QUEUE_",
    "IDEMPOTENCY_",
    "TRACE_",
    "SHUTDOWN_",
    "MAX_",
    "CORS_",
    "TRUSTED_",
];

/// A warning for each variable the gateway does not know that looks like one of its own: it has
/// one of [`PREFIXES`], or it is a typo of a known name whose prefix is misspelt too
/// (`RATE_LIMT_RPS`: at most 2 edits from a known name, for names of 8 characters or more, so
/// `HOME` or `TERM` are never taken for `PORT`). Names the closest known variable. Kubernetes
/// service links (`REDIS_PORT=tcp://…`, `REDIS_SERVICE_HOST`, … for a Service named `redis`)
/// are not ours and are left alone.
fn unknown_variables<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let looks_like_ours = |n: &str| {
        PREFIXES.iter().any(|p| n.starts_with(p))
            || (n.len() >= 8 && VARIABLES.iter().any(|v| edit_distance(n, v.name) <= 2))
    };
    let mut unknown: Vec<&str> = names
        .filter(|n| VARIABLES.iter().all(|v| v.name != *n))
        .filter(|n| looks_like_ours(n))
        .filter(|n| !is_service_link(n))
        .collect();
    unknown.sort_unstable();
    unknown
        .into_iter()
        .map(
            |n| match closest(n, VARIABLES.iter().map(|v| v.name), n.len().div_ceil(2)) {
                Some(known) => format!("unknown variable {n} ignored; did you mean {known}?"),
                None => format!("unknown variable {n} ignored"),
            },
        )
        .collect()
}

/// `<SVC>_SERVICE_HOST`, `<SVC>_SERVICE_PORT[_<NAME>]`, `<SVC>_PORT`, `<SVC>_PORT_<n>_<PROTO>…`:
/// the variables Kubernetes injects for each Service of the namespace.
fn is_service_link(name: &str) -> bool {
    name.ends_with("_SERVICE_HOST")
        || name.contains("_SERVICE_PORT")
        || name.ends_with("_PORT")
        || name.split("_PORT_").nth(1).is_some_and(|rest| {
            rest.split('_')
                .next()
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// The candidate nearest to `word` by edit distance (case-insensitive), if any is within `max`
/// edits (a plausible typo).
fn closest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
    max: usize,
) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over bytes (the names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != *cb));
            diag = above;
        }
    }
    row[b.len()]
}

/// `--check-config`: each variable's effective value, `(set)` or `(default)`, secrets and URL
/// passwords as `***`.
pub fn effective_values<'a>(
    lookup: impl Fn(&str) -> Option<&'a str>,
) -> Vec<(&'static Var, String, bool)> {
    VARIABLES
        .iter()
        .map(|v| {
            let given = lookup(v.name).map(str::trim).filter(|s| !s.is_empty());
            let shown = match given {
                Some(_) if v.secret => "***".to_owned(),
                Some(value) => redact_userinfo(value),
                None => v.default.to_string(),
            };
            (v, shown, given.is_some())
        })
        .collect()
}

/// `redis://user:pw@host` → `redis://user:***@host` (each comma-separated part).
fn redact_userinfo(value: &str) -> String {
    value
        .split(',')
        .map(|part| match (part.find("://"), part.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &part[scheme + 3..at];
                let user = userinfo.split(':').next().unwrap_or_default();
                let hidden = if userinfo.contains(':') {
                    format!("{user}:***")
                } else {
                    "***".to_owned()
                };
                format!("{}{hidden}{}", &part[..scheme + 3], &part[at..])
            }
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert!(c.redis.is_none());
        assert_eq!(c.rate_limit.rps, 50.0);
        assert_eq!(c.rate_limit.burst, 100);
        assert_eq!(c.reservation.timeout, Duration::from_millis(600));
        assert_eq!(c.payment.timeout, Duration::from_millis(400));
        assert_eq!(
            c.reservation.bases[0].as_str(),
            "http://reservation-api.tickets-api.svc.cluster.local:8080/"
        );
        assert_eq!(c.max_body_size, 1_048_576);
        assert_eq!(c.max_in_flight, 10_000);
        assert_eq!(c.idempotency_ttl, Duration::from_secs(300));
        assert_eq!(c.jwt.cache_ttl, Duration::from_secs(600));
        assert_eq!(c.queue.reservation_token_ttl, Duration::from_secs(30));
        assert_eq!(c.shutdown_delay, Duration::from_secs(5));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(c.telemetry.trace_sampling, 0.1);
    }

    #[test]
    fn waiting_room_operator_settings_default_and_fail_loudly() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.queue.admin_scope, "gateway:admin");
        assert!(c.queue.events_open);
        assert_eq!(c.queue.adaptive_max_errors, 0.05);
        assert_eq!(c.queue.adaptive_p99, Duration::from_secs(1));
        let c = cfg(&[
            ("ADMIN_SCOPE", "tickets:ops"),
            ("QUEUE_EVENTS_OPEN", "false"),
            ("QUEUE_ADAPTIVE_MAX_ERRORS", "0.2"),
            ("QUEUE_ADAPTIVE_P99", "750ms"),
        ])
        .unwrap();
        assert_eq!(c.queue.admin_scope, "tickets:ops");
        assert!(!c.queue.events_open);
        assert_eq!(c.queue.adaptive_max_errors, 0.2);
        assert_eq!(c.queue.adaptive_p99, Duration::from_millis(750));
        for (k, v) in [
            ("ADMIN_SCOPE", "two scopes"),
            ("QUEUE_EVENTS_OPEN", "maybe"),
            ("QUEUE_ADAPTIVE_MAX_ERRORS", "1.5"),
            ("QUEUE_ADAPTIVE_P99", "fast"),
        ] {
            let err = cfg(&[(k, v)]).unwrap_err().to_string();
            assert!(err.contains(k), "{k}: {err}");
        }
    }

    #[test]
    fn a_bad_duration_names_the_variable_and_the_form() {
        let err = cfg(&[("UPSTREAM_PAYMENT_TIMEOUT", "4O0ms")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("UPSTREAM_PAYMENT_TIMEOUT"), "{err}");
        assert!(err.contains("4O0ms"), "{err}");
        assert!(err.contains("600ms"), "{err}");
    }

    #[test]
    fn durations_accept_ms_s_and_m() {
        let c = cfg(&[
            ("JWT_CACHE_TTL", "10m"),
            ("SHUTDOWN_DELAY", "10s"),
            ("UPSTREAM_RESERVATION_TIMEOUT", "600ms"),
        ])
        .unwrap();
        assert_eq!(c.jwt.cache_ttl, Duration::from_secs(600));
        assert_eq!(c.shutdown_delay, Duration::from_secs(10));
        assert_eq!(c.reservation.timeout, Duration::from_millis(600));
    }

    #[test]
    fn bad_values_never_become_defaults() {
        for (k, v) in [
            ("PORT", "eighty"),
            ("RATE_LIMIT_RPS", "-1"),
            ("RATE_LIMIT_BURST", "0"),
            ("TRACE_SAMPLING", "1.5"),
            ("REDIS_ADDR", "not an address"),
            ("JWT_SKIP_VERIFY", "maybe"),
            ("TRUSTED_PROXIES", "10.0.0.0/99"),
            ("UPSTREAM_RESERVATION_BASE", "ftp://x"),
            ("MAX_BODY_SIZE", "1MB"),
            ("QUEUE_HEARTBEAT_TTL_SECONDS", "5m"),
            ("LOG_LEVEL", "loud[[["),
        ] {
            let err = cfg(&[(k, v)]).unwrap_err().to_string();
            assert!(err.contains(k), "{k}: {err}");
        }
    }

    #[test]
    fn redis_addresses_and_clusters() {
        let c = cfg(&[("REDIS_ADDR", "127.0.0.1:6379")]).unwrap();
        let r = c.redis.unwrap();
        assert_eq!(r.urls, vec!["redis://127.0.0.1:6379".to_owned()]);
        assert!(!r.cluster);
        let c = cfg(&[("REDIS_ADDR", "a:1,b:2"), ("REDIS_PASSWORD", "pw")]).unwrap();
        let r = c.redis.unwrap();
        assert!(r.cluster);
        assert_eq!(r.urls.len(), 2);
        assert_eq!(format!("{:?}", r.password), "Some(***)");
        let c = cfg(&[("REDIS_ADDR", "h:1"), ("REDIS_TLS", "true")]).unwrap();
        assert_eq!(c.redis.unwrap().urls[0], "rediss://h:1");
    }

    #[test]
    fn a_cluster_refuses_a_database_other_than_zero() {
        let e = cfg(&[("REDIS_ADDR", "a:1,b:2"), ("REDIS_DB", "3")]).unwrap_err();
        assert!(e.to_string().starts_with("REDIS_DB=\"3\""), "{e}");
        let e = cfg(&[
            ("REDIS_ADDR", "a:1"),
            ("REDIS_CLUSTER", "true"),
            ("REDIS_DB", "1"),
        ]);
        assert!(e.is_err());
        let c = cfg(&[("REDIS_ADDR", "a:1,b:2"), ("REDIS_DB", "0")]).unwrap();
        assert!(c.redis.unwrap().cluster);
        let c = cfg(&[("REDIS_ADDR", "a:1"), ("REDIS_DB", "3")]).unwrap();
        assert_eq!(c.redis.unwrap().db, 3);
    }

    #[test]
    fn jwt_refresh_min_interval_defaults_to_30s_and_parses() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.jwt.refresh_min_interval, Duration::from_secs(30));
        let c = cfg(&[("JWT_REFRESH_MIN_INTERVAL", "2s")]).unwrap();
        assert_eq!(c.jwt.refresh_min_interval, Duration::from_secs(2));
        let e = cfg(&[("JWT_REFRESH_MIN_INTERVAL", "soon")]).unwrap_err();
        assert!(e.to_string().contains("JWT_REFRESH_MIN_INTERVAL"), "{e}");
    }

    #[test]
    fn jwt_settings_are_required_unless_skipped() {
        let c = cfg(&[]).unwrap();
        assert!(
            c.validate_jwt()
                .unwrap_err()
                .to_string()
                .contains("JWT_JWKS_URL")
        );
        let c = cfg(&[("JWT_SKIP_VERIFY", "true")]).unwrap();
        assert!(c.validate_jwt().is_ok());
        let c = cfg(&[
            ("JWT_JWKS_URL", "http://idp/jwks"),
            ("JWT_ISSUER", "i"),
            ("JWT_AUDIENCE", "a"),
        ])
        .unwrap();
        assert!(c.validate_jwt().is_ok());
    }

    #[test]
    fn later_values_win() {
        let c = cfg(&[("PORT", "1"), ("PORT", "2")]).unwrap();
        assert_eq!(c.port, 2);
    }

    #[test]
    fn lists_parse() {
        let c = cfg(&[
            ("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://a.example,https://b.example",
            ),
            ("UPSTREAM_PAYMENT_BASE", "http://p1:1,http://p2:2"),
        ])
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(
            matches!(&c.cors_allowed_origins, Some(CorsOrigins::List(l)) if l.len() == 2),
            "{:?}",
            c.cors_allowed_origins
        );
        assert_eq!(c.payment.bases.len(), 2);
    }

    #[test]
    fn an_origin_a_browser_never_sends_is_a_config_error() {
        for bad in [
            "https://tickets.example/",
            "https://tickets.example/app",
            "https://Tickets.example",
            "https://tickets.example:443",
            "https://user@tickets.example",
            "ftp://tickets.example",
            "tickets.example",
            "https://a.example,https://b.example/",
            "*,https://b.example/",
        ] {
            let e = cfg(&[("CORS_ALLOWED_ORIGINS", bad)]).unwrap_err();
            let names: Vec<_> = e.0.iter().filter_map(ConfigError::variable).collect();
            assert_eq!(names, ["CORS_ALLOWED_ORIGINS"], "{bad}: {e}");
            assert!(e.to_string().contains("is not an origin"), "{bad}: {e}");
        }
    }

    #[test]
    fn cors_origins_are_parsed_once_into_header_values() {
        let c = cfg(&[(
            "CORS_ALLOWED_ORIGINS",
            "https://tickets.example, http://localhost:3000,http://[::1]:8080",
        )])
        .unwrap();
        let want = [
            "https://tickets.example",
            "http://localhost:3000",
            "http://[::1]:8080",
        ]
        .map(http::HeaderValue::from_static)
        .to_vec();
        assert_eq!(c.cors_allowed_origins, Some(CorsOrigins::List(want)));
        for any in ["*", "https://a.example,*"] {
            let c = cfg(&[("CORS_ALLOWED_ORIGINS", any)]).unwrap();
            assert_eq!(c.cors_allowed_origins, Some(CorsOrigins::Any), "{any}");
        }
        for off in ["", " , "] {
            let c = cfg(&[("CORS_ALLOWED_ORIGINS", off)]).unwrap();
            assert_eq!(c.cors_allowed_origins, None, "{off:?}");
        }
        assert_eq!(cfg(&[]).unwrap().cors_allowed_origins, None);
    }

    #[test]
    fn both_upstreams_parse_the_same_way_under_their_own_prefix() {
        let defaults = cfg(&[]).unwrap();
        assert_eq!(defaults.reservation.name, "reservation");
        assert_eq!(defaults.payment.name, "payment");
        assert_eq!(defaults.reservation.max_concurrency, 1024);
        assert_eq!(defaults.payment.max_concurrency, 512);
        for prefix in ["UPSTREAM_RESERVATION", "UPSTREAM_PAYMENT"] {
            let var = |suffix: &str| format!("{prefix}_{suffix}");
            let c = Config::from_vars([
                (var("BASE"), "http://a:1/v1, http://b:2"),
                (var("TIMEOUT"), "250ms"),
                (var("MAX_CONCURRENCY"), "7"),
            ])
            .unwrap();
            let (this, other, other_default) = if prefix == "UPSTREAM_RESERVATION" {
                (&c.reservation, &c.payment, &defaults.payment)
            } else {
                (&c.payment, &c.reservation, &defaults.reservation)
            };
            let name = prefix.trim_start_matches("UPSTREAM_").to_ascii_lowercase();
            assert_eq!(this.name, name);
            let bases: Vec<_> = this.bases.iter().map(reqwest::Url::as_str).collect();
            assert_eq!(bases, ["http://a:1/v1", "http://b:2/"], "{prefix}");
            assert_eq!(this.timeout, Duration::from_millis(250), "{prefix}");
            assert_eq!(this.max_concurrency, 7, "{prefix}");
            // The other upstream's variables were not touched: it keeps its defaults.
            assert_eq!(
                format!("{other:?}"),
                format!("{other_default:?}"),
                "{prefix}"
            );
            for (suffix, bad) in [
                ("BASE", "ftp://x"),
                ("BASE", "http://a:1?q=1"),
                ("BASE", " , "),
                ("TIMEOUT", "0ms"),
                ("TIMEOUT", "soon"),
                ("MAX_CONCURRENCY", "0"),
                ("MAX_CONCURRENCY", "many"),
            ] {
                let e = Config::from_vars([(var(suffix), bad)]).unwrap_err();
                let names: Vec<_> = e.0.iter().filter_map(ConfigError::variable).collect();
                assert_eq!(names, [var(suffix).as_str()], "{suffix}={bad:?}: {e}");
            }
        }
    }

    #[test]
    fn urls_and_the_log_filter_are_typed_at_load() {
        let c = cfg(&[
            ("JWT_JWKS_URL", "https://idp.example/jwks"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("LOG_LEVEL", "warn,gateway_api::jwt=debug"),
        ])
        .unwrap();
        let jwks = c.jwt.jwks_url.unwrap();
        assert_eq!(jwks.host_str(), Some("idp.example"));
        assert_eq!(c.telemetry.otlp_endpoint.port(), Some(4317));
        assert_eq!(
            c.telemetry.log_level.as_str(),
            "warn,gateway_api::jwt=debug"
        );
        let filter = c.telemetry.log_level.env_filter().to_string();
        assert!(filter.contains("gateway_api::jwt=debug"), "{filter}");
        assert!(filter.contains("warn"), "{filter}");
        assert_eq!(cfg(&[]).unwrap().telemetry.log_level.as_str(), "info");
    }

    #[test]
    fn every_bad_variable_is_reported_at_once_one_line_each() {
        let e = cfg(&[
            ("PORT", "99999"),
            ("RATE_LIMIT_RPS", "fast"),
            ("UPSTREAM_PAYMENT_TIMEOUT", "4O0ms"),
            ("REDIS_ADDR", "a:1,b:2"),
            ("REDIS_DB", "3"),
        ])
        .unwrap_err();
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for name in [
            "PORT=",
            "RATE_LIMIT_RPS=",
            "UPSTREAM_PAYMENT_TIMEOUT=",
            "REDIS_DB=",
        ] {
            assert_eq!(
                lines.iter().filter(|l| l.starts_with(name)).count(),
                1,
                "{text}"
            );
        }
    }

    #[test]
    fn a_range_error_says_the_range() {
        let e = cfg(&[("PORT", "99999")]).unwrap_err().to_string();
        assert!(e.starts_with("PORT=\"99999\": expected 1–65535"), "{e}");
        let e = cfg(&[("RATE_LIMIT_BURST", "0")]).unwrap_err().to_string();
        assert!(e.contains("from 1 to 4294967295"), "{e}");
    }

    #[test]
    fn load_names_every_missing_jwt_setting_at_once_with_the_bad_values() {
        let e = Config::load([("PORT", "x")], false).unwrap_err();
        let names: Vec<_> = e.0.iter().filter_map(ConfigError::variable).collect();
        assert_eq!(
            names,
            ["PORT", "JWT_JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE"],
            "{e}"
        );
        assert!(Config::load([("PORT", "1")], true).is_ok());
        assert!(Config::load([("JWT_SKIP_VERIFY", "true")], false).is_ok());
    }

    #[test]
    fn log_level_is_a_level_or_directives_with_known_targets() {
        for ok in [
            "info",
            "WARN",
            "off",
            "info,gateway_api=debug",
            "warn,gateway_api::jwt=trace,tower_http::trace=debug",
            "access=off,info",
            "gateway_api::store[store{op=queue_join}]=debug",
            "gateway_api",
        ] {
            let c = cfg(&[("LOG_LEVEL", ok)]);
            assert!(c.is_ok(), "{ok}: {:?}", c.err());
        }
        for (bad, hint) in [
            ("warning", "did you mean \"warn\""),
            ("verbose", "no log target named \"verbose\""),
            ("info,gateway_api::jwtt=debug", "gateway_api::jwtt"),
            ("gateway_api=loud", "unknown level"),
        ] {
            let e = cfg(&[("LOG_LEVEL", bad)]).unwrap_err().to_string();
            assert!(e.starts_with("LOG_LEVEL="), "{bad}: {e}");
            assert!(e.contains(hint), "{bad}: {e}");
        }
    }

    #[test]
    fn the_crate_modules_are_known_log_targets() {
        for m in [
            "gateway_api",
            "gateway_api::jwt",
            "gateway_api::store::redis",
        ] {
            assert!(CRATE_MODULES.contains(&m), "{m}: {CRATE_MODULES:?}");
        }
        assert!(
            !CRATE_MODULES
                .iter()
                .any(|m| m.contains("main") || m.contains("bin"))
        );
    }

    #[test]
    fn an_unknown_prefixed_variable_warns_with_the_closest_known_name() {
        let c = cfg(&[
            ("RATE_LIMT_RPS", "5"),
            ("JWT_ISSUR", "x"),
            ("HOME", "/root"),
            ("REDIS_PORT", "tcp://10.0.0.7:6379"),
            ("REDIS_SERVICE_HOST", "10.0.0.7"),
            ("REDIS_PORT_6379_TCP_ADDR", "10.0.0.7"),
        ])
        .unwrap();
        assert_eq!(
            c.warnings,
            [
                "unknown variable JWT_ISSUR ignored; did you mean JWT_ISSUER?",
                "unknown variable RATE_LIMT_RPS ignored; did you mean RATE_LIMIT_RPS?",
            ]
        );
        assert!(cfg(&[("RATE_LIMIT_RPS", "5")]).unwrap().warnings.is_empty());
    }

    /// The names serde asks for when it deserializes `T` (its struct's fields).
    fn field_names<T: serde::de::DeserializeOwned>() -> Vec<String> {
        struct Fields<'a>(&'a mut &'static [&'static str]);
        impl<'de> serde::Deserializer<'de> for Fields<'_> {
            type Error = serde::de::value::Error;
            fn deserialize_any<V: serde::de::Visitor<'de>>(
                self,
                _: V,
            ) -> Result<V::Value, Self::Error> {
                Err(serde::de::Error::custom("not a struct"))
            }
            fn deserialize_struct<V: serde::de::Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                *self.0 = fields;
                Err(serde::de::Error::custom("only the field names were wanted"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(Fields(&mut fields));
        fields.iter().map(|f| f.to_ascii_uppercase()).collect()
    }

    #[test]
    fn the_table_and_the_parser_name_the_same_variables() {
        let parsed = field_names::<RawConfig>();
        assert!(parsed.len() > 30, "{parsed:?}");
        for name in &parsed {
            assert!(
                VARIABLES.iter().any(|v| v.name == name),
                "{name} is parsed but missing from VARIABLES (so from --help)"
            );
        }
        for v in VARIABLES {
            assert!(
                parsed.iter().any(|p| p == v.name),
                "{} is in VARIABLES but RawConfig has no field for it",
                v.name
            );
        }
        let mut names: Vec<_> = VARIABLES.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VARIABLES.len(), "a variable is listed twice");
    }

    #[test]
    fn every_default_the_table_shows_is_the_parsers_default() {
        let unset = format!("{:?}", cfg(&[]).unwrap());
        for v in VARIABLES {
            if let VarDefault::Value(d) = v.default {
                let mut c = cfg(&[(v.name, d)]).unwrap_or_else(|e| panic!("{}: {e}", v.name));
                c.telemetry.otlp_endpoint_set = false;
                assert_eq!(format!("{c:?}"), unset, "{}={d} is not the default", v.name);
            }
        }
    }

    #[test]
    fn effective_values_hide_secrets_and_url_passwords() {
        let env = [
            (
                "REDIS_ADDR",
                "redis://app:hunter2@r1:6379,redis://:pw@r2:6379",
            ),
            ("REDIS_PASSWORD", "hunter2"),
            ("PORT", "9000"),
        ];
        let lookup = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let shown = effective_values(lookup);
        let get = |name: &str| shown.iter().find(|(v, _, _)| v.name == name).unwrap();
        assert_eq!(
            get("REDIS_ADDR").1,
            "redis://app:***@r1:6379,redis://:***@r2:6379"
        );
        assert_eq!(get("REDIS_PASSWORD").1, "***");
        assert_eq!((get("PORT").1.as_str(), get("PORT").2), ("9000", true));
        assert_eq!(
            (get("RATE_LIMIT_RPS").1.as_str(), get("RATE_LIMIT_RPS").2),
            ("50", false)
        );
        assert!(
            !shown
                .iter()
                .any(|(_, s, _)| s.contains("hunter2") || s.contains(":pw@"))
        );
    }

    #[test]
    fn log_format_is_json_or_text() {
        assert_eq!(cfg(&[]).unwrap().telemetry.log_format, None);
        let c = cfg(&[("LOG_FORMAT", "text")]).unwrap();
        assert_eq!(c.telemetry.log_format, Some(LogFormat::Text));
        assert!(cfg(&[("LOG_FORMAT", "yaml")]).is_err());
    }
}
