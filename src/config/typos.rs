//! Names that look like the gateway's own but are not: a warning for each unknown variable with
//! one of its prefixes (or a near miss of a known name), and the nearest known word, which
//! `LOG_LEVEL`'s did-you-mean uses too.
use super::vars::{PREFIXES, VARIABLES};

/// A warning for each variable the gateway does not know that looks like one of its own: it has
/// one of [`PREFIXES`], or it is a typo of a known name whose prefix is misspelt too
/// (`RATE_LIMT_RPS`: at most 2 edits from a known name, for names of 8 characters or more, so
/// `HOME` or `TERM` are never taken for `PORT`). Names the closest known variable. Kubernetes
/// service links (`REDIS_PORT=tcp://…`, `REDIS_SERVICE_HOST`, … for a Service named `redis`)
/// are not ours and are left alone.
pub(super) fn unknown_variables<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
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
pub(super) fn closest<'a>(
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::config::{Config, ConfigErrors};

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
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
}
