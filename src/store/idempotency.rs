//! Idempotency records in the store (SPEC §6): the atomic acquire, the completion and the
//! release, as Lua scripts for Redis and as their in-process twin for the memory store. No HTTP
//! here: the layer (`middleware/idempotency.rs`) decides what a response means; this file only
//! keeps records.
//!
//! A record lives under `idem:{<scope hash>}:<uuid>`. The scope (the verified user, or an
//! anonymous client address) is SHA-256 hashed so no user id or address is readable in Redis,
//! and braced as a Redis Cluster hash tag. Each operation touches one key in one round trip.
//!
//! A record is either in flight (fingerprint + owner token, expiring after the in-flight TTL so
//! a crashed replica cannot wedge a key) or done (fingerprint + status, content type and body,
//! expiring after `IDEMPOTENCY_TTL_SECONDS`). Completion and release only act while the record
//! is still in flight and owned by the caller's token, so a late writer whose record already
//! expired and was re-acquired by someone else cannot overwrite or delete the new record.
use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use super::redis::ScriptCall;
use super::{Store, StoreError};

/// Whose record it is. Another scope's identical key is another record (SPEC §6).
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// The verified caller (`Caller::user_id`).
    User(&'a str),
    /// No verified caller (optional-auth routes): the client address of SPEC §7.
    Anonymous(IpAddr),
}

/// The store key of one (scope, idempotency key) record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey(String);

impl RecordKey {
    pub fn new(scope: Scope<'_>, key: uuid::Uuid) -> RecordKey {
        let mut h = Sha256::new();
        match scope {
            Scope::User(sub) => {
                h.update(b"user\0");
                h.update(sub.as_bytes());
            }
            Scope::Anonymous(ip) => {
                h.update(b"anon\0");
                h.update(ip.to_string().as_bytes());
            }
        }
        let digest = h.finalize();
        // 128 bits of the hash: collision-free in practice, half the key length.
        let scope_hash = hex::encode(&digest[..16]);
        let mut buf = uuid::Uuid::encode_buffer();
        let key = key.hyphenated().encode_lower(&mut buf);
        RecordKey(format!("idem:{{{scope_hash}}}:{key}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What makes two requests "the same request": SHA-256 over method, concrete path and query, and
/// the SHA-256 of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn new(method: &http::Method, path_and_query: &str, body: &[u8]) -> Fingerprint {
        let body_hash = Sha256::digest(body);
        let mut h = Sha256::new();
        h.update(method.as_str().as_bytes());
        h.update(b"\0");
        h.update(path_and_query.as_bytes());
        h.update(b"\0");
        h.update(body_hash);
        let mut out = [0u8; 32];
        out.copy_from_slice(&h.finalize());
        Fingerprint(out)
    }

    fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

/// A completed operation's answer, as replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

impl StoredResponse {
    /// A copy in allocations of its own. An upstream's body and header values are slices of
    /// hyper's read buffer for the connection (`Bytes` that share it), so a record kept in memory
    /// as it came would keep that whole buffer alive, 8 KiB or more, for its TTL: a 200-byte
    /// answer would cost the memory store forty times its size.
    fn detached(&self) -> StoredResponse {
        StoredResponse {
            status: self.status,
            content_type: self
                .content_type
                .as_ref()
                .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()),
            body: Bytes::copy_from_slice(&self.body),
        }
    }
}

/// Proof that this request owns the in-flight record; needed to complete or release it.
#[derive(Debug, Clone)]
pub struct Lease {
    key: RecordKey,
    owner: String,
    /// Written again with the answer if the in-flight record has vanished meanwhile.
    fp: Fingerprint,
}

/// What [`complete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Our in-flight record now holds the answer.
    Stored,
    /// Our in-flight record had vanished (Redis flushed, restarted empty, failed over to a
    /// replica that never saw it, or the record outlived its TTL): the completed record was
    /// written anew, so a retry replays instead of running the operation again (SPEC §6).
    Restored,
    /// Another request holds the key now; its record stays.
    Superseded,
}

/// The outcome of [`acquire`].
#[derive(Debug)]
pub enum Acquire {
    /// No record existed: it is now in flight and ours.
    Acquired(Lease),
    /// Same fingerprint, still in flight elsewhere.
    InFlight,
    /// A record with another fingerprint exists (in flight or done).
    Conflict,
    /// Same fingerprint, done: replay this.
    Completed(StoredResponse),
}

/// Creates the in-flight record unless one exists: exactly one caller wins, across replicas.
pub async fn acquire(
    store: &Store,
    key: &RecordKey,
    fp: Fingerprint,
    in_flight_ttl: Duration,
) -> Result<Acquire, StoreError> {
    let owner = hex::encode(rand::random::<[u8; 16]>());
    match store {
        Store::Memory(m) => m
            .idempotency
            .acquire(key, fp, owner, in_flight_ttl, Instant::now()),
        Store::Redis(r) => {
            let mut inv = ScriptCall::new(&ACQUIRE, &[key.as_str()]);
            inv.arg(fp.to_hex()).arg(&owner).arg(millis(in_flight_ttl));
            // A timed-out call may still have run on the server. Retrying with the same owner
            // token is safe (the script treats our own in-flight record as acquired), so one
            // slow reply neither fails the write nor wedges the key until the in-flight TTL.
            let reply: Vec<Vec<u8>> = match r.eval(&inv).await {
                Err(StoreError::Timeout) => r.eval(&inv).await?,
                other => other?,
            };
            parse_acquire(reply, key, owner, fp)
        }
    }
}

/// Stores the answer for `ttl` when the record is still ours, or is gone (written anew, with our
/// fingerprint); leaves it alone when another request holds the key.
pub async fn complete(
    store: &Store,
    lease: &Lease,
    res: &StoredResponse,
    ttl: Duration,
) -> Result<Completion, StoreError> {
    match store {
        Store::Memory(m) => Ok(m
            .idempotency
            .complete(lease, res.clone(), ttl, Instant::now())),
        Store::Redis(r) => {
            let mut inv = ScriptCall::new(&COMPLETE, &[lease.key.as_str()]);
            inv.arg(&lease.owner)
                .arg(res.status.as_u16())
                .arg(res.content_type.as_ref().map_or(&b""[..], |v| v.as_bytes()))
                .arg(res.body.as_ref())
                .arg(millis(ttl))
                .arg(lease.fp.to_hex());
            // Safe to retry: once applied, the record is done and no longer ours, and a second
            // call finds it taken (reported as superseded, but the stored answer is ours).
            let done: i64 = match r.eval(&inv).await {
                Err(StoreError::Timeout) => r.eval(&inv).await?,
                other => other?,
            };
            Ok(match done {
                1 => Completion::Stored,
                2 => Completion::Restored,
                _ => Completion::Superseded,
            })
        }
    }
}

/// `REDIS_WAIT_REPLICAS`: whether `replicas` replicas acknowledged the in-flight record within
/// the store timeout (always true for the memory store, which has none).
pub async fn replicated(store: &Store, lease: &Lease, replicas: u32) -> Result<bool, StoreError> {
    match store {
        Store::Memory(_) => Ok(true),
        Store::Redis(r) => Ok(r.wait_replicas(lease.key.as_str(), replicas).await? >= replicas),
    }
}

/// Deletes the record, if it is still ours and in flight, so a retry runs the operation again.
pub async fn release(store: &Store, lease: &Lease) -> Result<bool, StoreError> {
    match store {
        Store::Memory(m) => Ok(m.idempotency.release(lease, Instant::now())),
        Store::Redis(r) => {
            let mut inv = ScriptCall::new(&RELEASE, &[lease.key.as_str()]);
            inv.arg(&lease.owner);
            let done: i64 = match r.eval(&inv).await {
                Err(StoreError::Timeout) => r.eval(&inv).await?,
                other => other?,
            };
            Ok(done == 1)
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

// The scripts, with their keys and arguments, are in `lua/`.
static ACQUIRE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/idempotency_acquire.lua")));

static COMPLETE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/idempotency_complete.lua")));

static RELEASE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("lua/idempotency_release.lua")));

fn parse_acquire(
    reply: Vec<Vec<u8>>,
    key: &RecordKey,
    owner: String,
    fp: Fingerprint,
) -> Result<Acquire, StoreError> {
    let bad = || StoreError::Protocol("unexpected idempotency acquire reply".to_owned());
    let mut it = reply.into_iter();
    let tag = it.next().ok_or_else(bad)?;
    match tag.as_slice() {
        b"acquired" => Ok(Acquire::Acquired(Lease {
            key: key.clone(),
            owner,
            fp,
        })),
        b"inflight" => Ok(Acquire::InFlight),
        b"conflict" => Ok(Acquire::Conflict),
        b"done" => {
            let status = it.next().ok_or_else(bad)?;
            let ct = it.next().ok_or_else(bad)?;
            let body = it.next().ok_or_else(bad)?;
            let status = std::str::from_utf8(&status)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or_else(bad)?;
            let content_type = if ct.is_empty() {
                None
            } else {
                Some(HeaderValue::from_bytes(&ct).map_err(|_| bad())?)
            };
            Ok(Acquire::Completed(StoredResponse {
                status,
                content_type,
                body: Bytes::from(body),
            }))
        }
        _ => Err(bad()),
    }
}

/// Shards of the memory store: enough that concurrent writes rarely share a lock.
const SHARDS: usize = 64;
/// How often a shard drops expired records (lazily, on the next acquire after this).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Live records the memory store holds at most (bounded by count as well as by time): beyond it
/// new writes are refused with 503 until records expire.
pub const MAX_MEMORY_RECORDS: usize = 262_144;
const PER_SHARD: usize = MAX_MEMORY_RECORDS / SHARDS;

/// Records of the memory store: the in-process twin of the scripts above. Locks are held only
/// for a map operation, never across an await.
pub struct MemoryRecords {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

#[derive(Default)]
struct Shard {
    map: HashMap<String, Record>,
    next_sweep: Option<Instant>,
}

struct Record {
    fp: Fingerprint,
    state: RecordState,
    expires: Instant,
}

enum RecordState {
    InFlight { owner: String },
    Done(StoredResponse),
}

impl Default for MemoryRecords {
    fn default() -> Self {
        MemoryRecords {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Shard {
    /// Drops expired records and gives the memory back.
    fn sweep(&mut self, now: Instant) {
        self.map.retain(|_, r| r.expires > now);
        if self.map.capacity() > 4 * self.map.len().max(64) {
            self.map.shrink_to_fit();
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
    }
}

impl MemoryRecords {
    /// The memory store's periodic sweep: expired records go even from shards nobody touches.
    pub fn sweep(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sweep(now);
        }
    }

    fn shard(&self, key: &RecordKey) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key.as_str()) % SHARDS as u64) as usize;
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn acquire(
        &self,
        key: &RecordKey,
        fp: Fingerprint,
        owner: String,
        in_flight_ttl: Duration,
        now: Instant,
    ) -> Result<Acquire, StoreError> {
        let mut shard = self.shard(key);
        if shard.next_sweep.is_none_or(|t| now >= t) || shard.map.len() >= PER_SHARD {
            shard.sweep(now);
        }
        let shard_len = shard.map.len();
        let entry = match shard.map.entry(key.as_str().to_owned()) {
            // A live record decides; an expired one is as good as none.
            Entry::Occupied(e) if e.get().expires > now => {
                let r = e.get();
                return Ok(if r.fp != fp {
                    Acquire::Conflict
                } else {
                    match &r.state {
                        RecordState::InFlight { .. } => Acquire::InFlight,
                        RecordState::Done(res) => Acquire::Completed(res.clone()),
                    }
                });
            }
            // Full of live records: refuse the write (fail closed) rather than evict a record
            // whose loss would let a retry run the operation twice.
            Entry::Vacant(_) if shard_len >= PER_SHARD => {
                return Err(StoreError::Unavailable(
                    "the in-memory idempotency store is full".to_owned(),
                ));
            }
            entry => entry,
        };
        entry.insert_entry(Record {
            fp,
            state: RecordState::InFlight {
                owner: owner.clone(),
            },
            expires: now + in_flight_ttl,
        });
        Ok(Acquire::Acquired(Lease {
            key: key.clone(),
            owner,
            fp,
        }))
    }

    pub(crate) fn complete(
        &self,
        lease: &Lease,
        res: StoredResponse,
        ttl: Duration,
        now: Instant,
    ) -> Completion {
        let mut shard = self.shard(&lease.key);
        let done = Record {
            fp: lease.fp,
            state: RecordState::Done(StoredResponse::detached(&res)),
            expires: now + ttl,
        };
        match shard.map.entry(lease.key.as_str().to_owned()) {
            Entry::Occupied(mut e) if e.get().is_owned_by(&lease.owner, now) => {
                e.insert(done);
                Completion::Stored
            }
            Entry::Occupied(e) if e.get().expires > now => Completion::Superseded,
            entry => {
                entry.insert_entry(done);
                Completion::Restored
            }
        }
    }

    pub(crate) fn release(&self, lease: &Lease, now: Instant) -> bool {
        let mut shard = self.shard(&lease.key);
        let ours = shard
            .map
            .get(lease.key.as_str())
            .is_some_and(|r| r.is_owned_by(&lease.owner, now));
        if ours {
            shard.map.remove(lease.key.as_str());
        }
        ours
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }
}

impl Record {
    fn is_owned_by(&self, owner: &str, now: Instant) -> bool {
        self.expires > now
            && matches!(&self.state, RecordState::InFlight { owner: o } if o == owner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(n: u128) -> RecordKey {
        RecordKey::new(Scope::User("user-1"), uuid::Uuid::from_u128(n))
    }

    fn fp(body: &str) -> Fingerprint {
        Fingerprint::new(
            &http::Method::POST,
            "/api/v1/payment/intent",
            body.as_bytes(),
        )
    }

    fn stored(body: &'static str) -> StoredResponse {
        StoredResponse {
            status: StatusCode::CREATED,
            content_type: Some(HeaderValue::from_static("application/json")),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    const TTL: Duration = Duration::from_secs(300);
    const IN_FLIGHT: Duration = Duration::from_secs(5);

    fn lease(a: Result<Acquire, StoreError>) -> Lease {
        match a.unwrap() {
            Acquire::Acquired(l) => l,
            other => panic!("expected Acquired, got {other:?}"),
        }
    }

    #[test]
    fn record_keys_hide_the_scope_and_share_a_hash_tag() {
        let k = RecordKey::new(
            Scope::User("alice@example.com"),
            uuid::Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap(),
        );
        let s = k.as_str();
        assert!(s.starts_with("idem:{"), "{s}");
        assert!(s.ends_with("}:6f9619ff-8b86-d011-b42d-00c04fc964ff"), "{s}");
        assert!(!s.contains("alice"), "{s}");
        let anon = RecordKey::new(
            Scope::Anonymous(IpAddr::from([10, 0, 0, 1])),
            uuid::Uuid::from_u128(1),
        );
        assert!(!anon.as_str().contains("10.0.0.1"));
        assert_ne!(
            key(1),
            RecordKey::new(Scope::User("user-2"), uuid::Uuid::from_u128(1))
        );
        // A user literally named like an address is not that anonymous client.
        assert_ne!(
            RecordKey::new(Scope::User("10.0.0.1"), uuid::Uuid::from_u128(1)),
            anon
        );
    }

    #[test]
    fn fingerprint_covers_method_path_and_body() {
        let base = fp("{}");
        assert_eq!(base, fp("{}"));
        assert_ne!(base, fp("{ }"));
        assert_ne!(
            base,
            Fingerprint::new(&http::Method::POST, "/api/v1/payment/intent?x=1", b"{}")
        );
        assert_ne!(
            base,
            Fingerprint::new(&http::Method::PUT, "/api/v1/payment/intent", b"{}")
        );
    }

    #[test]
    fn one_winner_then_in_flight_then_replay() {
        let m = MemoryRecords::default();
        let now = Instant::now();
        let l = lease(m.acquire(&key(1), fp("a"), "o1".into(), IN_FLIGHT, now));
        assert!(matches!(
            m.acquire(&key(1), fp("a"), "o2".into(), IN_FLIGHT, now)
                .unwrap(),
            Acquire::InFlight
        ));
        assert!(matches!(
            m.acquire(&key(1), fp("b"), "o3".into(), IN_FLIGHT, now)
                .unwrap(),
            Acquire::Conflict
        ));
        assert_eq!(
            m.complete(&l, stored("{\"id\":1}"), TTL, now),
            Completion::Stored
        );
        match m
            .acquire(&key(1), fp("a"), "o4".into(), IN_FLIGHT, now)
            .unwrap()
        {
            Acquire::Completed(r) => assert_eq!(r, stored("{\"id\":1}")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            m.acquire(&key(1), fp("b"), "o5".into(), IN_FLIGHT, now)
                .unwrap(),
            Acquire::Conflict
        ));
        // Completing twice or releasing a done record does nothing.
        assert_eq!(
            m.complete(&l, stored("other"), TTL, now),
            Completion::Superseded
        );
        assert!(!m.release(&l, now));
    }

    /// An answer whose body and `Content-Type` are slices of a connection's read buffer (as
    /// hyper hands them out) is kept in bytes of its own, so the record does not keep the
    /// buffer alive (the churn test's writes peaked at 95 MiB against a 61 MiB baseline and kept
    /// 15 MiB after expiry while records held such slices; 65 and 64 MiB once copied).
    #[test]
    fn a_memory_record_keeps_its_bytes_not_the_read_buffer() {
        let m = MemoryRecords::default();
        let now = Instant::now();
        let buffer = Bytes::from(
            b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n\r\n{\"id\":1}".repeat(200),
        );
        let within = |b: &[u8]| {
            let range = buffer.as_ptr_range();
            range.contains(&b.as_ptr())
        };
        let ct = HeaderValue::from_maybe_shared(buffer.slice(36..52)).unwrap();
        let body = buffer.slice(56..64);
        assert!(
            within(ct.as_bytes()) && within(&body),
            "slices of the buffer"
        );
        let l = lease(m.acquire(&key(9), fp("a"), "o1".into(), IN_FLIGHT, now));
        let answer = StoredResponse {
            status: StatusCode::CREATED,
            content_type: Some(ct),
            body,
        };
        assert_eq!(m.complete(&l, answer.clone(), TTL, now), Completion::Stored);
        match m
            .acquire(&key(9), fp("a"), "o2".into(), IN_FLIGHT, now)
            .unwrap()
        {
            Acquire::Completed(r) => {
                assert_eq!(r, answer);
                assert_eq!(&r.body[..], b"{\"id\":1}");
                assert!(!within(&r.body), "the record holds the read buffer's body");
                let ct = r.content_type.unwrap();
                assert!(
                    !within(ct.as_bytes()),
                    "the record holds the read buffer's header"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn release_lets_a_retry_run_again() {
        let m = MemoryRecords::default();
        let now = Instant::now();
        let l = lease(m.acquire(&key(2), fp("a"), "o1".into(), IN_FLIGHT, now));
        assert!(m.release(&l, now));
        lease(m.acquire(&key(2), fp("a"), "o2".into(), IN_FLIGHT, now));
    }

    #[test]
    fn a_crashed_owner_cannot_wedge_a_key_nor_touch_its_successor() {
        let m = MemoryRecords::default();
        let t0 = Instant::now();
        let stale = lease(m.acquire(&key(3), fp("a"), "o1".into(), IN_FLIGHT, t0));
        let later = t0 + IN_FLIGHT + Duration::from_millis(1);
        let fresh = lease(m.acquire(&key(3), fp("a"), "o2".into(), IN_FLIGHT, later));
        assert_eq!(
            m.complete(&stale, stored("stale"), TTL, later),
            Completion::Superseded
        );
        assert!(!m.release(&stale, later));
        assert_eq!(
            m.complete(&fresh, stored("fresh"), TTL, later),
            Completion::Stored
        );
    }

    #[test]
    fn done_records_expire_and_are_swept() {
        let m = MemoryRecords::default();
        let t0 = Instant::now();
        for n in 0..100 {
            let l = lease(m.acquire(&key(n), fp("a"), "o".into(), IN_FLIGHT, t0));
            assert_eq!(m.complete(&l, stored("x"), TTL, t0), Completion::Stored);
        }
        assert_eq!(m.len(), 100);
        let after = t0 + TTL + SWEEP_EVERY;
        lease(m.acquire(&key(0), fp("a"), "o".into(), IN_FLIGHT, after));
        for n in 1..100 {
            lease(m.acquire(&key(n), fp("a"), "o".into(), IN_FLIGHT, after));
        }
        let much_later = after + IN_FLIGHT + SWEEP_EVERY;
        for n in 1000..1000 + SHARDS as u128 * 32 {
            let l = lease(m.acquire(&key(n), fp("a"), "o".into(), IN_FLIGHT, much_later));
            m.release(&l, much_later);
        }
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn concurrent_acquires_have_exactly_one_winner() {
        let m = std::sync::Arc::new(MemoryRecords::default());
        let now = Instant::now();
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let m = m.clone();
                    s.spawn(move || {
                        matches!(
                            m.acquire(&key(9), fp("a"), format!("o{i}"), IN_FLIGHT, now)
                                .unwrap(),
                            Acquire::Acquired(_)
                        ) as usize
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(winners, 1);
    }

    #[test]
    fn done_replies_parse_with_and_without_content_type() {
        let k = key(1);
        let r = parse_acquire(
            vec![
                b"done".to_vec(),
                b"404".to_vec(),
                b"".to_vec(),
                b"nope".to_vec(),
            ],
            &k,
            "o".into(),
            fp("a"),
        )
        .unwrap();
        match r {
            Acquire::Completed(s) => {
                assert_eq!(s.status, 404);
                assert!(s.content_type.is_none());
                assert_eq!(s.body, "nope");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_acquire(vec![b"what".to_vec()], &k, "o".into(), fp("a")).is_err());
        assert!(parse_acquire(vec![b"done".to_vec()], &k, "o".into(), fp("a")).is_err());
    }
}
