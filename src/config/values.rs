//! One parser per kind of value (bool, count, ratio, duration, URL), each saying what it
//! expected; [`parse_or`] applies one to a variable and names the variable when it refuses.
use std::time::Duration;

use super::ConfigError;

pub(super) fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

pub(super) fn invalid(name: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        expected,
    }
}

/// Unset (or empty) → `default`; set → `parse` or a loud error naming the variable.
pub(super) fn parse_or<T>(
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

pub(super) fn parse_bool(s: &str) -> Result<bool, &'static str> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("true or false"),
    }
}

pub(super) fn parse_port(s: &str) -> Result<u16, &'static str> {
    s.parse().map_err(|_| "1–65535 (0: any free port)")
}

pub(super) fn parse_db(s: &str) -> Result<i64, &'static str> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or("a whole number from 0 (a database index)")
}

pub(super) fn parse_u32(s: &str) -> Result<u32, &'static str> {
    s.parse::<u32>()
        .map_err(|_| "a whole number from 0 to 4294967295")
}

pub(super) fn parse_positive_u32(s: &str) -> Result<u32, &'static str> {
    s.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or("a whole number from 1 to 4294967295")
}

pub(super) fn parse_positive_usize(s: &str) -> Result<usize, &'static str> {
    s.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or("a whole number from 1")
}

pub(super) fn parse_positive_f64(s: &str) -> Result<f64, &'static str> {
    s.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .ok_or("a number above 0")
}

pub(super) fn parse_ratio(s: &str) -> Result<f64, &'static str> {
    s.parse::<f64>()
        .ok()
        .filter(|n| (0.0..=1.0).contains(n))
        .ok_or("a number from 0 to 1")
}

/// `600ms`, `10s`, `10m`, `1h` (and combinations humantime accepts, like `1m30s`).
pub fn parse_duration(s: &str) -> Result<Duration, &'static str> {
    humantime::parse_duration(s).map_err(|_| "a duration like 600ms, 10s or 10m")
}

pub(super) fn parse_nonzero_duration(s: &str) -> Result<Duration, &'static str> {
    parse_duration(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or("a duration above zero like 600ms, 10s or 10m")
}

pub(super) fn parse_seconds(s: &str) -> Result<Duration, &'static str> {
    s.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(Duration::from_secs)
        .ok_or("a whole number of seconds above 0")
}

pub(super) fn parse_url(name: &'static str, s: &str) -> Result<reqwest::Url, ConfigError> {
    reqwest::Url::parse(s)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| invalid(name, s, "an http:// or https:// URL"))
}
