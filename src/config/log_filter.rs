//! `LOG_LEVEL`: a level or `EnvFilter` directives, checked at load against the targets that
//! exist and kept as parsed directives ([`LogFilter`]) for the logger to install.
use tracing_subscriber::filter::Directive;

use super::ConfigError;
use super::typos::closest;

/// `LOG_LEVEL`: a level, or EnvFilter directives (`info,gateway_api::jwt=debug`) whose targets
/// are this crate's modules, its log targets (`access`) or the libraries it logs through. A word
/// EnvFilter would take as a target nobody logs to (`warning`, `verbose`) would otherwise turn
/// every line off without a word.
pub(super) fn parse_log_level(s: &str) -> Result<LogFilter, ConfigError> {
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

/// `LOG_LEVEL` as `EnvFilter` directives, checked at load (`parse_log_level`). `Debug` and
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{Config, ConfigErrors};

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
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
}
