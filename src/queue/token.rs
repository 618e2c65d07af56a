//! Waiting and reservation tokens.
//!
//! A waiting token is 32 bytes, base64url without padding: always 43 characters of
//! `[A-Za-z0-9_-]`. It carries the event's tag (8 bytes of SHA-256 of the event id, so `status`
//! and `leave` find the event's keys without a lookup), the join sequence number (8 bytes, big
//! endian) and 16 random bytes (128 bits from the thread CSPRNG). The store keeps the random part
//! and compares it, so changing the tag or the sequence finds nothing: a tampered token is simply
//! unknown (`expired`). [`WaitingToken::is_well_formed`] is checked before any store call.
//!
//! A reservation token is 16 random bytes, base64url: 22 characters. It is stored under the
//! event's keys, bound to the event and the user who joined.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Length of an encoded waiting token.
pub const WAITING_TOKEN_LEN: usize = 43;
/// Length of an encoded reservation token.
pub const RESERVATION_TOKEN_LEN: usize = 22;
/// Length of the encoded random part of a waiting token, as the store keeps it.
pub const SECRET_LEN: usize = 22;

/// The short, fixed-size name of an event inside the store: all of an event's keys live under
/// the Redis Cluster hash tag `{q:<tag>}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventTag([u8; 8]);

impl EventTag {
    pub fn of(event_id: &str) -> EventTag {
        let digest = Sha256::digest(event_id.as_bytes());
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&digest[..8]);
        EventTag(tag)
    }

    /// `{q:<16 hex>}`: the prefix (and hash tag) of every key of this event.
    pub fn key_prefix(&self) -> String {
        format!("{{q:{}}}", hex::encode(self.0))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingToken {
    pub tag: EventTag,
    pub seq: u64,
    secret: [u8; 16],
}

impl WaitingToken {
    /// A new token for the `seq`-th person of the event (the secret is fresh randomness).
    pub fn new(tag: EventTag, seq: u64, secret: [u8; 16]) -> Self {
        WaitingToken { tag, seq, secret }
    }

    /// Fresh random bytes for a new place.
    pub fn fresh_secret() -> [u8; 16] {
        rand::random()
    }

    /// Right length and alphabet. Says nothing about whether the token exists.
    pub fn is_well_formed(s: &str) -> bool {
        s.len() == WAITING_TOKEN_LEN && s.bytes().all(is_url_safe)
    }

    /// `None` when not well formed.
    pub fn parse(s: &str) -> Option<WaitingToken> {
        if !Self::is_well_formed(s) {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&bytes[..8]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[8..16]);
        let mut secret = [0u8; 16];
        secret.copy_from_slice(&bytes[16..]);
        Some(WaitingToken {
            tag: EventTag(tag),
            seq: u64::from_be_bytes(seq),
            secret,
        })
    }

    pub fn encode(&self) -> String {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&self.tag.0);
        bytes[8..16].copy_from_slice(&self.seq.to_be_bytes());
        bytes[16..].copy_from_slice(&self.secret);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The random part as the store keeps it (22 characters).
    pub fn secret(&self) -> String {
        encode_secret(&self.secret)
    }
}

/// The random part of a waiting token, encoded as the store keeps it.
pub fn encode_secret(secret: &[u8; 16]) -> String {
    URL_SAFE_NO_PAD.encode(secret)
}

/// The store's form back into bytes (`None` if the store holds something else).
pub fn decode_secret(s: &str) -> Option<[u8; 16]> {
    URL_SAFE_NO_PAD.decode(s).ok()?.try_into().ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationToken(String);

impl ReservationToken {
    pub fn generate() -> Self {
        let bytes: [u8; 16] = rand::random();
        ReservationToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// `None` when not 22 characters of the base64url alphabet.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == RESERVATION_TOKEN_LEN && s.bytes().all(is_url_safe))
            .then(|| ReservationToken(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_url_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn waiting_token_round_trips_with_fixed_length_and_alphabet() {
        let t = WaitingToken::new(EventTag::of("ev-1"), 42, WaitingToken::fresh_secret());
        let s = t.encode();
        assert_eq!(s.len(), WAITING_TOKEN_LEN);
        assert!(WaitingToken::is_well_formed(&s));
        assert_eq!(WaitingToken::parse(&s).unwrap(), t);
        assert_eq!(t.secret().len(), SECRET_LEN);
        assert_eq!(decode_secret(&t.secret()).unwrap(), t.secret);
    }

    #[test]
    fn malformed_waiting_tokens_are_refused() {
        let good = WaitingToken::new(EventTag::of("e"), 1, [7; 16]).encode();
        let too_long = format!("{good}A");
        let bad_char = format!("{}=", &good[..42]);
        let slash = format!("{}/", &good[..42]);
        for bad in ["", "abc", &good[..42], &too_long, &bad_char, &slash] {
            assert!(!WaitingToken::is_well_formed(bad), "{bad:?}");
            assert!(WaitingToken::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_do_not_repeat() {
        let a = WaitingToken::fresh_secret();
        let b = WaitingToken::fresh_secret();
        assert_ne!(a, b);
        assert_ne!(ReservationToken::generate(), ReservationToken::generate());
    }

    #[test]
    fn event_tags_differ_per_event_and_form_one_hash_tag() {
        let a = EventTag::of("concert-1");
        assert_eq!(a, EventTag::of("concert-1"));
        assert_ne!(a, EventTag::of("concert-2"));
        let p = a.key_prefix();
        assert!(
            p.starts_with("{q:") && p.ends_with('}') && p.len() == 20,
            "{p}"
        );
    }

    #[test]
    fn reservation_token_shape_is_checked() {
        let t = ReservationToken::generate();
        assert_eq!(t.as_str().len(), RESERVATION_TOKEN_LEN);
        assert!(ReservationToken::parse(t.as_str()).is_some());
        assert!(ReservationToken::parse("short").is_none());
        assert!(ReservationToken::parse(&"+".repeat(22)).is_none());
    }
}
