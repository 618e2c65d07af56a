//! The one list of the variables ([`VARIABLES`]: name, default, help), which `--help` prints and
//! `--check-config` walks, with the values it shows (secrets and URL passwords hidden).
use super::{DEFAULT_PAYMENT_BASE, DEFAULT_RESERVATION_BASE};

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
        "comma-separated origins that get CORS headers, as a browser sends them \
         (https://tickets.example, no path); * for any",
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
    use crate::config::raw::RawConfig;
    use crate::config::{Config, ConfigErrors};

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
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
}
