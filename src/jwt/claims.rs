//! What a token's claims must say: `exp`, `nbf` with leeway, `iss` and `aud` when configured,
//! and a `sub` that can travel as `X-User-ID` byte for byte. Plain functions, `now` passed in.
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{LEEWAY_SECS, Reason, Verified};

/// `sub` becomes the `X-User-ID` header: bounded and printable ASCII.
const MAX_SUB_BYTES: usize = 256;

/// What the claims must say (from `JWT_ISSUER`/`JWT_AUDIENCE`; unset = not checked, which only
/// `JWT_SKIP_VERIFY=true` allows).
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
}
/// The registered claims, as they came (types are checked by [`check_claims`]).
#[derive(Debug, Default, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub exp: Option<Value>,
    #[serde(default)]
    pub nbf: Option<Value>,
    #[serde(default)]
    pub iss: Option<Value>,
    #[serde(default)]
    pub aud: Option<Value>,
    #[serde(default)]
    pub sub: Option<Value>,
}

/// The claim rules: `exp` (a number; past `exp + leeway` is expired), `nbf` (a number when
/// present; after `now + leeway` is not yet valid), `iss` and `aud` when configured (`aud` a
/// string or an array holding ours), `sub` 1–256 printable-ASCII characters that neither start
/// nor end with a space.
pub fn check_claims(claims: &Claims, rules: &ClaimRules, now: u64) -> Result<Verified, Reason> {
    let exp = match &claims.exp {
        None | Some(Value::Null) => return Err(Reason::MissingClaim("exp")),
        Some(v) => numeric_date(v).ok_or(Reason::BadClaim("exp"))?,
    };
    if now > exp.saturating_add(LEEWAY_SECS) {
        return Err(Reason::Expired);
    }
    if let Some(nbf) = claims.nbf.as_ref().filter(|v| !v.is_null()) {
        let nbf = numeric_date(nbf).ok_or(Reason::BadClaim("nbf"))?;
        if nbf > now.saturating_add(LEEWAY_SECS) {
            return Err(Reason::NotYetValid);
        }
    }
    if let Some(want) = &rules.issuer {
        match &claims.iss {
            None | Some(Value::Null) => return Err(Reason::MissingClaim("iss")),
            Some(Value::String(iss)) if iss == want => {}
            Some(Value::String(_)) => return Err(Reason::WrongIssuer),
            Some(_) => return Err(Reason::BadClaim("iss")),
        }
    }
    if let Some(want) = &rules.audience {
        match &claims.aud {
            None | Some(Value::Null) => return Err(Reason::MissingClaim("aud")),
            Some(Value::String(aud)) if aud == want => {}
            Some(Value::String(_)) => return Err(Reason::WrongAudience),
            Some(Value::Array(auds)) => {
                if !auds.iter().any(|a| a.as_str() == Some(want.as_str())) {
                    return Err(Reason::WrongAudience);
                }
            }
            Some(_) => return Err(Reason::BadClaim("aud")),
        }
    }
    let sub = match &claims.sub {
        None | Some(Value::Null) => return Err(Reason::MissingClaim("sub")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(Reason::BadClaim("sub")),
    };
    // Byte for byte what `X-User-ID` carries and what the gateway's records are keyed by: an HTTP
    // parser trims the spaces a header value starts or ends with, so such a `sub` would name
    // another user upstream (SPEC §8a).
    let printable = sub.bytes().all(|b| (0x20..0x7f).contains(&b));
    let padded = sub.starts_with(' ') || sub.ends_with(' ');
    if sub.is_empty() || sub.len() > MAX_SUB_BYTES || !printable || padded {
        return Err(Reason::BadClaim("sub"));
    }
    Ok(Verified {
        sub: Arc::from(sub.as_str()),
        exp,
    })
}

/// RFC 7519 NumericDate: a JSON number (integer or not), never a string.
fn numeric_date(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let f = n.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Some("https://idp".into()),
            audience: Some("gw".into()),
        }
    }

    fn claims(v: Value) -> Claims {
        serde_json::from_value(v).unwrap()
    }

    fn good() -> Value {
        json!({"sub": "u1", "iss": "https://idp", "aud": "gw", "exp": NOW + 60})
    }

    fn with(k: &str, v: Value) -> Claims {
        let mut c = good();
        c[k] = v;
        claims(c)
    }

    fn without(k: &str) -> Claims {
        let mut c = good();
        c.as_object_mut().unwrap().remove(k);
        claims(c)
    }

    #[test]
    fn good_claims_give_the_sub_and_exp() {
        let v = check_claims(&claims(good()), &rules(), NOW).unwrap();
        assert_eq!(&*v.sub, "u1");
        assert_eq!(v.exp, NOW + 60);
        // aud may be an array holding ours; exp may be a float.
        let v = check_claims(&with("aud", json!(["x", "gw"])), &rules(), NOW).unwrap();
        assert_eq!(&*v.sub, "u1");
        assert!(check_claims(&with("exp", json!((NOW + 5) as f64 + 0.5)), &rules(), NOW).is_ok());
    }

    #[test]
    fn exp_iss_aud_sub_are_required() {
        for k in ["exp", "iss", "aud", "sub"] {
            assert_eq!(
                check_claims(&without(k), &rules(), NOW),
                Err(Reason::MissingClaim(match k {
                    "exp" => "exp",
                    "iss" => "iss",
                    "aud" => "aud",
                    _ => "sub",
                })),
                "{k}"
            );
        }
    }

    #[test]
    fn exp_as_a_string_is_refused() {
        let c = with("exp", json!((NOW + 60).to_string()));
        assert_eq!(
            check_claims(&c, &rules(), NOW),
            Err(Reason::BadClaim("exp"))
        );
        let c = with("nbf", json!("0"));
        assert_eq!(
            check_claims(&c, &rules(), NOW),
            Err(Reason::BadClaim("nbf"))
        );
        let c = with("exp", json!(-5));
        assert_eq!(
            check_claims(&c, &rules(), NOW),
            Err(Reason::BadClaim("exp"))
        );
    }

    #[test]
    fn leeway_is_thirty_seconds_both_ways() {
        let exp = |e: u64| with("exp", json!(e));
        assert!(check_claims(&exp(NOW - 30), &rules(), NOW).is_ok());
        assert_eq!(
            check_claims(&exp(NOW - 31), &rules(), NOW),
            Err(Reason::Expired)
        );
        let nbf = |n: u64| with("nbf", json!(n));
        assert!(check_claims(&nbf(NOW + 30), &rules(), NOW).is_ok());
        assert_eq!(
            check_claims(&nbf(NOW + 31), &rules(), NOW),
            Err(Reason::NotYetValid)
        );
    }

    #[test]
    fn wrong_issuer_audience_or_sub_are_refused() {
        let r = rules();
        assert_eq!(
            check_claims(&with("iss", json!("https://evil")), &r, NOW),
            Err(Reason::WrongIssuer)
        );
        assert_eq!(
            check_claims(&with("aud", json!("other")), &r, NOW),
            Err(Reason::WrongAudience)
        );
        assert_eq!(
            check_claims(&with("aud", json!(["a", "b"])), &r, NOW),
            Err(Reason::WrongAudience)
        );
        for bad in [
            json!(""),
            json!(42),
            json!("a\nb"),
            json!("ü"),
            json!("x".repeat(300)),
            json!(" alice"),
            json!("alice "),
            json!("\talice"),
        ] {
            assert_eq!(
                check_claims(&with("sub", bad.clone()), &r, NOW),
                Err(Reason::BadClaim("sub")),
                "{bad}"
            );
        }
    }

    #[test]
    fn unset_issuer_and_audience_are_not_checked() {
        let c = claims(json!({"sub": "u", "exp": NOW}));
        assert!(check_claims(&c, &ClaimRules::default(), NOW).is_ok());
    }
}
