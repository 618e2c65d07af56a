//! Who holds a place (SPEC §5). A verified bearer `sub`, a `user_id` claimed in the body and an
//! anonymous joiner are three namespaces: the store only ever sees a digest of the namespaced
//! name, so a body claiming `user_id = "alice"` can never reach the place of the verified user
//! `alice`, and anonymous joiners have no name at all (every anonymous join is a new place).
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The `sub` of a verified bearer token.
    Verified(String),
    /// A `user_id` from the request body, unverified.
    Claimed(String),
    /// Neither: a fresh identity per join.
    Anonymous,
}

/// Hex characters of the user digest the store keeps (80 bits: collisions are not a concern,
/// and it keeps each stored place small).
pub const DIGEST_LEN: usize = 20;

impl Identity {
    /// Verified caller first, then the body's `user_id`, else anonymous.
    pub fn resolve(verified: Option<&str>, claimed: Option<&str>) -> Identity {
        match (verified, claimed) {
            (Some(sub), _) => Identity::Verified(sub.to_owned()),
            (None, Some(id)) => Identity::Claimed(id.to_owned()),
            (None, None) => Identity::Anonymous,
        }
    }

    /// The store's name for this user: a digest of the namespaced identity, or `None` for an
    /// anonymous joiner.
    pub fn digest(&self) -> Option<String> {
        let (ns, name) = match self {
            Identity::Verified(sub) => ("v", sub.as_str()),
            Identity::Claimed(id) => ("b", id.as_str()),
            Identity::Anonymous => return None,
        };
        let mut h = Sha256::new();
        h.update(ns.as_bytes());
        h.update(b":");
        h.update(name.as_bytes());
        let mut hex = hex::encode(h.finalize());
        hex.truncate(DIGEST_LEN);
        Some(hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_and_claimed_names_are_different_namespaces() {
        let v = Identity::Verified("alice".into()).digest();
        let b = Identity::Claimed("alice".into()).digest();
        assert!(v.is_some() && b.is_some());
        assert_ne!(v, b);
        assert_eq!(v, Identity::Verified("alice".into()).digest());
        assert_eq!(v.map(|d| d.len()), Some(DIGEST_LEN));
    }

    #[test]
    fn a_verified_caller_wins_over_the_body() {
        assert_eq!(
            Identity::resolve(Some("alice"), Some("mallory")),
            Identity::Verified("alice".into())
        );
        assert_eq!(
            Identity::resolve(None, Some("bob")),
            Identity::Claimed("bob".into())
        );
        assert_eq!(Identity::resolve(None, None), Identity::Anonymous);
        assert_eq!(Identity::Anonymous.digest(), None);
    }
}
