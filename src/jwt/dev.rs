//! The demo's own identity provider (`--demo`, SPEC §1): an Ed25519 key made at start-up, its
//! JWKS (which the verifier trusts instead of fetching one) and tokens signed with it. Never
//! built outside demo mode.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::config::JwtConfig;

const DEMO_KID: &str = "demo-ed25519";
/// Demo tokens live this long.
pub const DEMO_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The demo's own identity provider: an Ed25519 key made at start-up and its JWKS.
pub struct DemoIssuer {
    key: EncodingKey,
    jwk: Value,
    issuer: String,
    audience: String,
}

impl DemoIssuer {
    /// A fresh key. Issuer and audience come from the config (`configure` sets the demo's).
    pub fn generate(config: &JwtConfig) -> Result<Self, jsonwebtoken::errors::Error> {
        // PKCS#8 v1 wrapping of a raw Ed25519 seed (RFC 8410): a fixed 16-byte prefix.
        const PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let seed: [u8; 32] = rand::random();
        let mut der = PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let key = EncodingKey::from_ed_der(&der);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA)?;
        jwk.common.key_id = Some(DEMO_KID.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let jwk = serde_json::to_value(&jwk)?;
        Ok(DemoIssuer {
            key,
            jwk,
            // `demo::configure` sets both; unset, the tokens carry none and the verifier
            // (which then checks none) still accepts them.
            issuer: config.issuer.clone().unwrap_or_default(),
            audience: config.audience.clone().unwrap_or_default(),
        })
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// A signed token for `sub`, valid for `ttl`.
    pub fn mint(&self, sub: &str, ttl: Duration) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(DEMO_KID.to_owned());
        let claims = json!({
            "sub": sub,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + ttl.as_secs(),
        });
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}
