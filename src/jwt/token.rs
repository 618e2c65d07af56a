//! A compact JWS split and decoded, not yet trusted: the header's algorithm rules, and the
//! header and claims set read as JSON objects without duplicate members (SPEC §8a).
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;

use super::claims::Claims;
use super::{MAX_TOKEN_BYTES, Reason};

/// A token split and decoded, not yet trusted.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// `header.payload`, what the signature covers.
    pub(super) message: &'a str,
    pub(super) signature: &'a str,
    pub claims: Claims,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Splits a compact JWS and decodes its header and claims. Refuses `none`, HS* and unknown
/// algorithms, and any `crit` header (we understand no extensions). The `jku`, `x5u`, `jwk`
/// and `x5c` headers are ignored: keys come from the JWKS only.
pub fn parse(token: &str) -> Result<Parsed<'_>, Reason> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Reason::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reason::Malformed);
    };
    if h.is_empty() || p.is_empty() {
        return Err(Reason::Malformed);
    }
    let header_bytes = URL_SAFE_NO_PAD.decode(h).map_err(|_| Reason::Malformed)?;
    let header: Header = from_object(&header_bytes)?;
    if header.crit.is_some() {
        return Err(Reason::CriticalHeader);
    }
    let alg = match header.alg.as_str() {
        a if a.eq_ignore_ascii_case("none") => return Err(Reason::AlgNone),
        a if a.starts_with("HS") => return Err(Reason::AlgSymmetric),
        a => Algorithm::from_str(a).map_err(|_| Reason::AlgUnsupported)?,
    };
    let claims_bytes = URL_SAFE_NO_PAD.decode(p).map_err(|_| Reason::Malformed)?;
    let claims: Claims = from_object(&claims_bytes)?;
    Ok(Parsed {
        alg,
        kid: header.kid,
        message: &token[..h.len() + 1 + p.len()],
        signature: s,
        claims,
    })
}

/// Decodes a JOSE header or claims set: a JSON **object** without duplicate member names
/// (RFC 7515 §4, RFC 7519 §4; SPEC §8a). serde would fill a struct from an array in field order
/// and let a later duplicate win, so the document is read as an object first.
fn from_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Reason> {
    let object: UniqueObject = serde_json::from_slice(bytes).map_err(|_| Reason::Malformed)?;
    T::deserialize(Value::Object(object.0)).map_err(|_| Reason::Malformed)
}

/// A top-level JSON object whose member names are unique; anything else fails to deserialize.
struct UniqueObject(serde_json::Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object with unique member names")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom("duplicate member name"));
                    }
                    out.insert(k, v);
                }
                Ok(UniqueObject(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn good() -> Value {
        json!({"sub": "u1", "iss": "https://idp", "aud": "gw", "exp": NOW + 60})
    }

    fn token(header: Value, claims: Value) -> String {
        let b = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.c2ln", b(header), b(claims))
    }

    #[test]
    fn parse_refuses_bad_shapes_and_algorithms() {
        let c = good();
        let ok = token(json!({"alg": "RS256", "kid": "k1"}), c.clone());
        let p = parse(&ok).unwrap();
        assert_eq!(p.alg, Algorithm::RS256);
        assert_eq!(p.kid.as_deref(), Some("k1"));
        assert_eq!(p.signature, "c2ln");

        assert_eq!(parse("a.b").unwrap_err(), Reason::Malformed);
        assert_eq!(parse("a.b.c.d").unwrap_err(), Reason::Malformed);
        assert_eq!(parse("!!.??.x").unwrap_err(), Reason::Malformed);
        let not_json = format!(
            "{}.{}.x",
            URL_SAFE_NO_PAD.encode("{oops"),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert_eq!(parse(&not_json).unwrap_err(), Reason::Malformed);
        for (alg, reason) in [
            ("none", Reason::AlgNone),
            ("NONE", Reason::AlgNone),
            ("HS256", Reason::AlgSymmetric),
            ("HS512", Reason::AlgSymmetric),
            ("ES512", Reason::AlgUnsupported),
        ] {
            let t = token(json!({"alg": alg}), c.clone());
            assert_eq!(parse(&t).unwrap_err(), reason, "{alg}");
        }
        let crit = token(json!({"alg": "RS256", "crit": ["exp"]}), c.clone());
        assert_eq!(parse(&crit).unwrap_err(), Reason::CriticalHeader);
        // RFC 7515/7519: header and claims set are JSON objects with unique member names.
        let seg = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let h = seg(r#"{"alg":"RS256"}"#);
        let array_claims = format!(
            "{h}.{}.c2ln",
            seg(r#"[9999999999,null,"https://issuer","aud","alice"]"#)
        );
        assert_eq!(parse(&array_claims).unwrap_err(), Reason::Malformed);
        let array_header = format!("{}.{}.c2ln", seg(r#"["RS256"]"#), seg("{}"));
        assert_eq!(parse(&array_header).unwrap_err(), Reason::Malformed);
        for not_object in ["1", "\"x\"", "null", "true"] {
            let t = format!("{h}.{}.c2ln", seg(not_object));
            assert_eq!(parse(&t).unwrap_err(), Reason::Malformed, "{not_object}");
        }
        let dup_claims = format!("{h}.{}.c2ln", seg(r#"{"sub":"alice","sub":"bob"}"#));
        assert_eq!(parse(&dup_claims).unwrap_err(), Reason::Malformed);
        let dup_header = format!(
            "{}.{}.c2ln",
            seg(r#"{"alg":"RS256","alg":"ES256"}"#),
            seg("{}")
        );
        assert_eq!(parse(&dup_header).unwrap_err(), Reason::Malformed);
        let big = format!("{ok}{}", "A".repeat(MAX_TOKEN_BYTES));
        assert_eq!(parse(&big).unwrap_err(), Reason::TooLarge);
    }
}
