//! Property tests (issue #15): the token parser never panics, and the header and claims set are
//! JSON objects without duplicate members (SPEC §8a), whatever else a token holds.
#![allow(clippy::unwrap_used)]
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

use super::*;

const NOW: u64 = 1_800_000_000;

fn rules() -> ClaimRules {
    ClaimRules {
        issuer: Some("https://idp".into()),
        audience: Some("gw".into()),
    }
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// Header and claims given as JSON text (so that duplicate members can be written).
fn token(header: &str, claims: &str) -> String {
    format!("{}.{}.c2ln", b64(header), b64(claims))
}

/// Everything but the signature: what `verify` concludes about a token.
fn verdict(token: &str) -> Result<Verified, Reason> {
    let parsed = parse(token)?;
    check_claims(&parsed.claims, &rules(), NOW)
}

const HEADER: &str = r#"{"alg":"RS256","kid":"k1"}"#;

/// The members the header and claims structs name.
const REGISTERED: [&str; 8] = ["alg", "kid", "crit", "exp", "nbf", "iss", "aud", "sub"];

fn good_claims() -> Value {
    json!({"sub": "u1", "iss": "https://idp", "aud": "gw", "exp": NOW + 60})
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,8}".prop_map(Value::String),
        select(vec![
            "RS256",
            "ES256",
            "EdDSA",
            "none",
            "HS256",
            "u1",
            "gw",
            "https://idp"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                select(vec![
                    "alg", "kid", "crit", "exp", "nbf", "iss", "aud", "sub", "x"
                ]),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.into(), v)).collect())),
        ]
    })
}

/// A JSON array, number, string, bool or null, as JSON text. Arrays include the ones whose
/// elements would fill the struct's fields in order.
fn not_an_object(filling: Vec<Value>) -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(Value::Array(filling)),
        1 => Just(json!([])),
        2 => proptest::collection::vec(any_json(), 0..6).prop_map(Value::Array),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        1 => ".{0,12}".prop_map(Value::String),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
    ]
    .prop_map(|v| v.to_string())
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
    .prop_map(|v| v.to_string())
}

/// The claims fields in declaration order (exp, nbf, iss, aud, sub), all valid.
fn claims_filling() -> Vec<Value> {
    vec![
        json!(NOW + 60),
        Value::Null,
        json!("https://idp"),
        json!("gw"),
        json!("u1"),
    ]
}

/// The header fields in declaration order (alg, kid, crit).
fn header_filling() -> Vec<Value> {
    vec![json!("RS256"), json!("k1")]
}

/// A JSON object as text with `name` written twice (the given values, in place of any
/// member of that name), the other members of `base` around them.
fn with_duplicate(base: &Value, name: &str, first: &Value, second: &Value) -> String {
    let mut members: Vec<String> = base
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.as_str() != name)
        .map(|(k, v)| format!("{}:{v}", json!(k)))
        .collect();
    members.insert(0, format!("{}:{first}", json!(name)));
    members.push(format!("{}:{second}", json!(name)));
    format!("{{{}}}", members.join(","))
}

fn is_refused(r: &Result<Verified, Reason>) -> bool {
    r.is_err()
}

/// The Ed25519 fixture key, trusted by a verifier (no JWKS URL: nothing is fetched).
struct Signer {
    key: EncodingKey,
    verifier: JwtVerifier,
    runtime: tokio::runtime::Runtime,
}

static SIGNER: LazyLock<Signer> = LazyLock::new(|| {
    let key = EncodingKey::from_ed_pem(include_bytes!("../../tests/fixtures/ed25519.pem")).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
    jwk.common.key_id = Some("ed".into());
    let config = JwtConfig {
        issuer: Some("https://idp".into()),
        audience: Some("gw".into()),
        jwks_url: None,
        cache_ttl: Duration::from_secs(300),
        skip_verify: false,
        refresh_min_interval: Duration::from_secs(30),
    };
    let verifier = JwtVerifier::new(&config, Arc::new(Metrics::new().unwrap())).unwrap();
    assert_eq!(verifier.trust(&json!({"keys": [jwk]})), 1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Signer {
        key,
        verifier,
        runtime,
    }
});

impl Signer {
    /// Signs the header and claims texts as they are, and verifies the token now.
    fn verify(&self, header: &str, claims: &str) -> Result<Verified, VerifyError> {
        let message = format!("{}.{}", b64(header), b64(claims));
        let sig =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.key, Algorithm::EdDSA).unwrap();
        let token = format!("{message}.{sig}");
        self.runtime.block_on(self.verifier.verify_uncached(&token))
    }
}

fn live_claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": "https://idp", "aud": "gw", "exp": unix_now() + 600})
}

const ED_HEADER: &str = r#"{"alg":"EdDSA","kid":"ed"}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any string at all: no panic; not three segments (two dots) is malformed.
    #[test]
    fn any_string_is_judged_without_panic(s in "(?s).{0,300}") {
        let got = parse(&s);
        if s.split('.').count() != 3 {
            prop_assert_eq!(got.unwrap_err(), Reason::Malformed);
        }
    }

    /// Three segments of base64url (and not quite base64url) text, or encodings of any
    /// bytes or any JSON: no panic in parsing or in the claim checks.
    #[test]
    fn any_segments_are_judged_without_panic(
        h in prop_oneof![
            "[A-Za-z0-9_=+/-]{0,60}",
            proptest::collection::vec(any::<u8>(), 0..60)
                .prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
            any_json().prop_map(|v| b64(&v.to_string())),
        ],
        p in prop_oneof![
            "[A-Za-z0-9_=+/-]{0,60}",
            proptest::collection::vec(any::<u8>(), 0..60)
                .prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
            any_json().prop_map(|v| b64(&v.to_string())),
        ],
        s in "[A-Za-z0-9_=-]{0,20}",
    ) {
        let _ = verdict(&format!("{h}.{p}.{s}"));
        let _ = verdict(&format!("{}.{p}.{s}", b64(HEADER)));
        let _ = verdict(&format!("{h}.{}.{s}", b64(&good_claims().to_string())));
    }

    /// Any claims object (registered names with values of any type): no panic; accepted
    /// only with `exp`, `iss`, `aud` and `sub` as the rules want them.
    #[test]
    fn any_claims_object_is_judged_without_panic(claims in any_json()) {
        if let Ok(v) = verdict(&token(HEADER, &claims.to_string())) {
            prop_assert_eq!(claims["sub"].as_str(), Some(&*v.sub));
            prop_assert_eq!(claims["iss"].as_str(), Some("https://idp"));
            prop_assert!(claims["exp"].is_number());
        }
    }

    /// A header that is a number, string, bool or null is refused.
    #[test]
    fn a_scalar_header_is_refused(header in scalar()) {
        prop_assert!(is_refused(&verdict(&token(&header, &good_claims().to_string()))));
    }

    /// A claims set that is a number, string, bool or null is refused.
    #[test]
    fn a_scalar_claims_set_is_refused(claims in scalar()) {
        prop_assert!(is_refused(&verdict(&token(HEADER, &claims))));
    }

    /// A header that is not an object — an array, even one filling `alg` and `kid` in
    /// order — is refused.
    #[test]
    fn a_header_that_is_not_an_object_is_refused(header in not_an_object(header_filling())) {
        let got = verdict(&token(&header, &good_claims().to_string()));
        prop_assert!(is_refused(&got), "{} gave {:?}", header, got);
    }

    /// A claims set that is not an object — an array, even one filling exp, nbf, iss, aud
    /// and sub in order — is refused.
    #[test]
    fn a_claims_set_that_is_not_an_object_is_refused(
        claims in not_an_object(claims_filling()),
    ) {
        let got = verdict(&token(HEADER, &claims));
        prop_assert!(is_refused(&got), "{} gave {:?}", claims, got);
    }

    /// A registered member written twice (same value or not) is refused, in the header
    /// and in the claims set.
    #[test]
    fn a_registered_member_twice_is_refused(
        claim in select(vec!["exp", "nbf", "iss", "aud", "sub"]),
        header_member in select(vec!["alg", "kid"]),
        same in any::<bool>(),
    ) {
        let good = good_claims();
        let first = good.get(claim).cloned().unwrap_or(json!(NOW));
        let second = if same { first.clone() } else { json!("other") };
        let claims = with_duplicate(&good, claim, &first, &second);
        prop_assert!(is_refused(&verdict(&token(HEADER, &claims))), "{}", claims);
        let header: Value = serde_json::from_str(HEADER).unwrap();
        let first = header[header_member].clone();
        let second = if same { first.clone() } else { json!("ES256") };
        let header = with_duplicate(&header, header_member, &first, &second);
        let got = verdict(&token(&header, &good.to_string()));
        prop_assert!(is_refused(&got), "{}", header);
    }

    /// Any member written twice, registered or not (`typ`, `iat`, `jti`, private names),
    /// is refused: SPEC §8a says no duplicate member names.
    #[test]
    fn any_member_twice_is_refused(
        name in prop_oneof![
            select(vec!["typ", "cty", "iat", "jti", "x5t"]).prop_map(String::from),
            "[a-z]{1,6}",
        ],
        first in any_json(),
        second in any_json(),
        in_header in any::<bool>(),
    ) {
        let good = good_claims();
        let header: Value = serde_json::from_str(HEADER).unwrap();
        let t = if in_header {
            token(&with_duplicate(&header, &name, &first, &second), &good.to_string())
        } else {
            token(HEADER, &with_duplicate(&good, &name, &first, &second))
        };
        prop_assert!(is_refused(&verdict(&t)), "{} twice", name);
    }

    /// A good token stays good with any unregistered members added, in any order, and
    /// gives its `sub` back unchanged.
    #[test]
    fn extra_members_change_nothing(
        extra in proptest::collection::btree_map("[a-z]{1,6}", any_json(), 0..5),
        sub in "[!-~]([ -~]{0,40}[!-~])?",
    ) {
        let mut claims = good_claims();
        claims["sub"] = json!(sub);
        let mut header: Value = serde_json::from_str(HEADER).unwrap();
        for (k, v) in extra {
            if !REGISTERED.contains(&k.as_str()) {
                claims[&k] = v.clone();
                header[&k] = v;
            }
        }
        let got = verdict(&token(&header.to_string(), &claims.to_string())).unwrap();
        prop_assert_eq!(&*got.sub, sub.as_str());
    }

    /// `sub` is refused when empty, over 256 bytes, or holding control or non-ASCII
    /// characters; accepted as it is when 1–256 visible ASCII characters.
    #[test]
    fn sub_must_be_short_printable_ascii(
        good in "[!-~]([ -~]{0,254}[!-~])?",
        bad in prop_oneof![
            Just(String::new()),
            "[!-~]{257,300}",
            "[ -~]{0,5}[\\x00-\\x1f\\x7f][ -~]{0,5}",
            "[ -~]{0,5}[\\u{80}-\\u{10ffff}][ -~]{0,5}",
        ],
    ) {
        let mut claims = good_claims();
        claims["sub"] = json!(good);
        let v = verdict(&token(HEADER, &claims.to_string())).unwrap();
        prop_assert_eq!(&*v.sub, good.as_str());
        claims["sub"] = json!(bad);
        prop_assert_eq!(
            verdict(&token(HEADER, &claims.to_string())).unwrap_err(),
            Reason::BadClaim("sub")
        );
    }

    /// `sub` with leading or trailing whitespace is refused (SPEC §8a: the identity the
    /// upstream receives is byte for byte the gateway's own).
    #[test]
    fn sub_with_surrounding_whitespace_is_refused(
        core in "[!-~]{1,20}",
        before in "[ \\t]{0,2}",
        after in "[ \\t]{0,2}",
    ) {
        prop_assume!(!before.is_empty() || !after.is_empty());
        let mut claims = good_claims();
        claims["sub"] = json!(format!("{before}{core}{after}"));
        let got = verdict(&token(HEADER, &claims.to_string()));
        prop_assert!(is_refused(&got), "{:?}", claims["sub"]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// End to end with a real signature (the Ed25519 fixture key): a correctly signed token
    /// whose claims set is not an object is still refused by the verifier.
    #[test]
    fn a_signed_claims_set_that_is_not_an_object_is_refused(
        claims in not_an_object(vec![
            json!(unix_now() + 600),
            Value::Null,
            json!("https://idp"),
            json!("gw"),
            json!("u1"),
        ]),
    ) {
        let got = SIGNER.verify(ED_HEADER, &claims);
        prop_assert!(got.is_err(), "{} gave {:?}", claims, got);
    }

    /// The same for a correctly signed token whose header is not an object.
    #[test]
    fn a_signed_header_that_is_not_an_object_is_refused(
        header in not_an_object(vec![json!("EdDSA"), json!("ed")]),
    ) {
        let got = SIGNER.verify(&header, &live_claims("u1").to_string());
        prop_assert!(got.is_err(), "{} gave {:?}", header, got);
    }

    /// ... while the same key's tokens with object claims pass, `sub` unchanged.
    #[test]
    fn a_signed_good_token_passes(sub in "[!-~]([ -~]{0,40}[!-~])?") {
        let got = SIGNER.verify(ED_HEADER, &live_claims(&sub).to_string()).unwrap();
        prop_assert_eq!(&*got.sub, sub.as_str());
    }
}
