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
//!
//! The files: `raw.rs` (the variables as text), `parse.rs` (one parse per area: Redis, the two
//! upstreams, CORS origins, …), `values.rs` (one parser per kind of value), `log_filter.rs`
//! (`LOG_LEVEL`), `vars.rs` (the [`VARIABLES`] table and `--check-config`'s view of it) and
//! `typos.rs` (unknown variables and did-you-mean). This file holds the typed configuration,
//! its errors and the load.
use std::time::Duration;

use ipnet::IpNet;

use self::raw::RawConfig;
use self::typos::unknown_variables;

mod log_filter;
mod parse;
mod raw;
#[cfg(test)]
mod tests;
mod typos;
mod values;
mod vars;

pub use self::log_filter::LogFilter;
pub use self::values::parse_duration;
pub use self::vars::{PREFIXES, VARIABLES, Var, VarDefault, effective_values};

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

pub const DEFAULT_RESERVATION_BASE: &str =
    "http://reservation-api.tickets-api.svc.cluster.local:8080";
pub const DEFAULT_PAYMENT_BASE: &str = "http://payment-sim-api.tickets-api.svc.cluster.local:8080";

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
