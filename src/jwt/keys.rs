//! The JWKS document: which of its keys are usable, for which algorithms (derived from the key,
//! never from a token), and the signature check with one of them.
use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde::Deserialize;
use serde_json::Value;

use super::Reason;
use super::token::Parsed;

/// RSA keys shorter than this (in bytes of modulus) are ignored.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// The usable keys of one JWKS, by `kid`.
pub(super) struct KeySet {
    pub(super) generation: u64,
    pub(super) keys: HashMap<String, VerifyKey>,
}

pub(super) struct VerifyKey {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum KeySetError {
    #[error("not a JWKS document: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("JWKS has no usable signing key")]
    NoUsableKey,
}

impl KeySet {
    pub(super) fn parse(body: &[u8], generation: u64) -> Result<KeySet, KeySetError> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<Value>,
        }
        let doc: Doc = serde_json::from_slice(body)?;
        let mut keys = HashMap::new();
        for raw in doc.keys {
            // One odd key (an encryption key, an unknown curve) must not sink the whole set.
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else {
                continue;
            };
            let Some(algorithms) = allowed_algorithms(&jwk) else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            if let DecodingKeyKind::RsaModulusExponent { n, .. } = key.kind() {
                let significant = n.iter().skip_while(|b| **b == 0).count();
                if significant < MIN_RSA_MODULUS_BYTES {
                    continue;
                }
            }
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            keys.insert(kid, VerifyKey { key, algorithms });
        }
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(KeySet { generation, keys })
    }

    /// The key for a token's `kid`; a token without one matches only a one-key set.
    pub(super) fn find(&self, kid: Option<&str>) -> Option<&VerifyKey> {
        match kid {
            Some(kid) => self.keys.get(kid),
            None if self.keys.len() == 1 => self.keys.values().next(),
            None => None,
        }
    }
}

/// The algorithms a JWK may verify, from its key type and curve, narrowed by its `alg` when it
/// has one. `None`: not a signing key we accept (symmetric, encryption, unknown curve, or an
/// `alg` its key type cannot have).
pub fn allowed_algorithms(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let by_type: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return None,
        },
        // `oct` (HMAC secrets) and anything else: never.
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type.to_vec()),
        Some(alg) => {
            let alg = Algorithm::try_from(alg).ok()?;
            by_type.contains(&alg).then(|| vec![alg])
        }
    }
}

/// Signature check with a key from the JWKS, for an algorithm that key allows.
pub(super) fn check_signature(parsed: &Parsed<'_>, key: &VerifyKey) -> Result<(), Reason> {
    if !key.algorithms.contains(&parsed.alg) {
        return Err(Reason::AlgMismatch);
    }
    match jsonwebtoken::crypto::verify(
        parsed.signature,
        parsed.message.as_bytes(),
        &key.key,
        parsed.alg,
    ) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(Reason::BadSignature),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn jwk(v: Value) -> Jwk {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn algorithms_come_from_the_jwk_never_hmac() {
        let rsa = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"});
        assert_eq!(allowed_algorithms(&jwk(rsa.clone())).unwrap().len(), 6);
        let mut rs256 = rsa.clone();
        rs256["alg"] = json!("RS256");
        assert_eq!(
            allowed_algorithms(&jwk(rs256)),
            Some(vec![Algorithm::RS256])
        );
        let mut lying = rsa.clone();
        lying["alg"] = json!("ES256");
        assert_eq!(allowed_algorithms(&jwk(lying)), None);
        let mut enc = rsa;
        enc["use"] = json!("enc");
        assert_eq!(allowed_algorithms(&jwk(enc)), None);
        let p256 = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
        assert_eq!(allowed_algorithms(&jwk(p256)), Some(vec![Algorithm::ES256]));
        let p384 = json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"});
        assert_eq!(allowed_algorithms(&jwk(p384)), Some(vec![Algorithm::ES384]));
        let p521 = json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"});
        assert_eq!(allowed_algorithms(&jwk(p521)), None);
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"});
        assert_eq!(allowed_algorithms(&jwk(ed)), Some(vec![Algorithm::EdDSA]));
        let oct = json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"});
        assert_eq!(allowed_algorithms(&jwk(oct)), None);
    }

    #[test]
    fn a_jwks_without_usable_keys_is_refused_and_short_rsa_keys_are_skipped() {
        let short = json!({"keys": [{"kty": "RSA", "kid": "tiny", "n": "AQAB", "e": "AQAB"}]});
        assert!(KeySet::parse(short.to_string().as_bytes(), 1).is_err());
        let oct = json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]});
        assert!(KeySet::parse(oct.to_string().as_bytes(), 1).is_err());
        assert!(KeySet::parse(b"not json", 1).is_err());
    }
}
