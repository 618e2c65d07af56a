//! What a bearer-token check costs, with and without the verified-token cache (issue #3).
//! `cargo bench --bench jwt` (add `-- --quick` for a short run).
//!
//! - `uncached/<alg>`: the full check (parse, key lookup, signature, claims) every time.
//! - `cached/<alg>`: the same token again: SHA-256 of the token + one sharded-map lookup.
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_api::Config;
use gateway_api::jwt::JwtVerifier;
use gateway_api::telemetry::Metrics;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const ISSUER: &str = "https://idp.bench/";
const AUDIENCE: &str = "gateway-api";

struct Key {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
}

fn keys() -> Vec<Key> {
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("../tests/fixtures/rsa.pem"));
    let ec = EncodingKey::from_ec_pem(include_bytes!("../tests/fixtures/ec.pem"));
    let ed = EncodingKey::from_ed_pem(include_bytes!("../tests/fixtures/ed25519.pem"));
    let Ok((rsa, ec, ed)) = (|| Ok::<_, jsonwebtoken::errors::Error>((rsa?, ec?, ed?)))() else {
        panic!("fixture keys");
    };
    vec![
        Key {
            kid: "rsa",
            alg: Algorithm::RS256,
            key: rsa,
        },
        Key {
            kid: "ec",
            alg: Algorithm::ES256,
            key: ec,
        },
        Key {
            kid: "ed",
            alg: Algorithm::EdDSA,
            key: ed,
        },
    ]
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let config = Config::from_vars([
        ("JWT_ISSUER", ISSUER),
        ("JWT_AUDIENCE", AUDIENCE),
        ("JWT_JWKS_URL", "http://127.0.0.1:9/jwks"),
    ])
    .unwrap_or_else(|e| panic!("config: {e}"));
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("metrics: {e}")));
    let verifier =
        JwtVerifier::new(&config.jwt, metrics).unwrap_or_else(|e| panic!("verifier: {e}"));
    let keys = keys();
    let jwks: Vec<_> = keys
        .iter()
        .map(|k| {
            let mut jwk = Jwk::from_encoding_key(&k.key, k.alg).unwrap_or_else(|e| panic!("{e}"));
            jwk.common.key_id = Some(k.kid.to_owned());
            jwk
        })
        .collect();
    assert_eq!(verifier.trust(&json!({ "keys": jwks })), 3);

    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let claims = json!({"sub": "user-123", "iss": ISSUER, "aud": AUDIENCE, "exp": exp});
    let mut group = c.benchmark_group("jwt");
    for k in &keys {
        let mut header = Header::new(k.alg);
        header.kid = Some(k.kid.to_owned());
        let token =
            jsonwebtoken::encode(&header, &claims, &k.key).unwrap_or_else(|e| panic!("sign: {e}"));
        let name = format!("{:?}", k.alg);
        assert!(rt.block_on(verifier.verify(&token)).is_ok());
        group.bench_function(format!("uncached/{name}"), |b| {
            b.iter(|| rt.block_on(verifier.verify_uncached(black_box(&token))))
        });
        group.bench_function(format!("cached/{name}"), |b| {
            b.iter(|| rt.block_on(verifier.verify(black_box(&token))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
