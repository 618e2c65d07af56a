//! Verified tokens, remembered until their `exp` so a hot token is not re-verified on every
//! request; an entry counts only under the JWKS generation it was verified with.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::Verified;

/// Independently locked shards of the cache (`CACHE_CAPACITY` is spread over them).
const CACHE_SHARDS: usize = 64;

/// Verified tokens by SHA-256 of the token: sharded so that concurrent requests rarely meet on
/// a lock, bounded per shard (expired entries go first, then an arbitrary one).
pub(super) struct TokenCache {
    shards: Box<[Shard]>,
    per_shard: usize,
}

type Shard = Mutex<HashMap<[u8; 32], CachedToken>>;

struct CachedToken {
    sub: Arc<str>,
    exp: u64,
    generation: u64,
}

impl TokenCache {
    pub(super) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(CACHE_SHARDS).max(1);
        TokenCache {
            shards: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            per_shard,
        }
    }

    fn shard(&self, key: &[u8; 32]) -> MutexGuard<'_, HashMap<[u8; 32], CachedToken>> {
        // The key is already a uniform hash: its first byte picks the shard.
        let i = usize::from(key[0]) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A hit is a token verified under the current JWKS generation and not past its `exp`.
    pub(super) fn get(&self, key: &[u8; 32], now: u64, generation: u64) -> Option<Verified> {
        let shard = self.shard(key);
        let hit = shard.get(key)?;
        (hit.generation == generation && now <= hit.exp).then(|| Verified {
            sub: hit.sub.clone(),
            exp: hit.exp,
        })
    }

    pub(super) fn insert(&self, key: [u8; 32], v: &Verified, generation: u64, now: u64) {
        let mut shard = self.shard(&key);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, t| t.exp >= now);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(
            key,
            CachedToken {
                sub: v.sub.clone(),
                exp: v.exp,
                generation,
            },
        );
    }

    /// Drops every token past its `exp` and gives the memory back.
    pub(super) fn sweep(&self, now: u64) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|_, t| t.exp >= now);
            shard.shrink_to_fit();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: u64 = 1_800_000_000;
    #[test]
    fn cache_hits_until_exp_and_only_for_the_same_jwks_generation() {
        let cache = TokenCache::new(64);
        let v = Verified {
            sub: "u".into(),
            exp: NOW + 10,
        };
        cache.insert([7; 32], &v, 1, NOW);
        assert_eq!(cache.get(&[7; 32], NOW, 1), Some(v.clone()));
        assert_eq!(cache.get(&[7; 32], NOW + 10, 1), Some(v));
        assert_eq!(cache.get(&[7; 32], NOW + 11, 1), None);
        assert_eq!(cache.get(&[7; 32], NOW, 2), None);
        assert_eq!(cache.get(&[8; 32], NOW, 1), None);
        // A sweep keeps live tokens and drops expired ones.
        cache.sweep(NOW + 5);
        assert_eq!(cache.len(), 1);
        cache.sweep(NOW + 11);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn cache_never_grows_past_its_bound() {
        let cache = TokenCache::new(CACHE_SHARDS * 4);
        for i in 0..10_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            key[0] = (i % 251) as u8;
            let v = Verified {
                sub: "u".into(),
                exp: NOW + 100,
            };
            cache.insert(key, &v, 1, NOW);
        }
        assert!(cache.len() <= CACHE_SHARDS * 4, "{}", cache.len());
    }
}
