//! Connectivity and failover: the store and `/readyz` on a cluster, a master killed mid-run,
//! NOSCRIPT on a promoted replica, and a password-protected cluster.
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_api::Config;
use gateway_api::store::RedisStore;
use gateway_api::store::idempotency::{RecordKey, Scope};
use gateway_api::store::redis::ScriptCall;
use redis::Script;

use crate::harness::{RedisCluster, Replicas, SERIAL};
use crate::invariants::{self, fresh_client};

fn store_on(cluster: &RedisCluster, password: Option<&str>) -> RedisStore {
    let mut vars = vec![
        ("JWT_SKIP_VERIFY".to_owned(), "true".to_owned()),
        ("REDIS_ADDR".to_owned(), cluster.addr()),
        ("REDIS_CLUSTER".to_owned(), "true".to_owned()),
    ];
    if let Some(pw) = password {
        vars.push(("REDIS_PASSWORD".to_owned(), pw.to_owned()));
    }
    let cfg = Config::from_vars(vars).unwrap().redis.unwrap();
    RedisStore::new(&cfg).unwrap()
}

/// Two keys in one hash tag, so one script touches one slot (as every policy script must).
fn counter() -> Script {
    Script::new(
        "redis.call('INCR', KEYS[1]); redis.call('SET', KEYS[2], ARGV[1]); \
         return redis.call('GET', KEYS[1])",
    )
}

async fn bump(store: &RedisStore, tag: &str) -> Result<i64, String> {
    let script = counter();
    let keys = [format!("{{{tag}}}:n"), format!("{{{tag}}}:last")];
    let mut call = ScriptCall::new(&script, &keys);
    call.arg("x");
    store.eval::<i64>(&call).await.map_err(|e| e.to_string())
}

async fn wait_store(store: &RedisStore, tag: &str, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if bump(store, tag).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("store never answered: {:?}", bump(store, tag).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_route_by_hash_tag_across_all_masters() {
    let _serial = SERIAL.lock().await;
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let store = store_on(&cluster, None);
    wait_store(&store, "warm", Duration::from_secs(10)).await;
    assert_eq!(store.ping().await.map_err(|e| e.to_string()), Ok(()));
    // Tags chosen so that all three masters serve some of them: each script runs where its
    // keys live (EVALSHA routed by key, loaded on that node on first use).
    let tags: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
    for _ in 0..3 {
        for t in &tags {
            bump(&store, t).await.unwrap();
        }
    }
    let mut masters = std::collections::BTreeSet::new();
    for t in &tags {
        let port = cluster.master_of(&format!("{{{t}}}:n"));
        masters.insert(port);
        assert_eq!(
            cluster.cli(port, &["get", &format!("{{{t}}}:n")]).trim(),
            "3"
        );
    }
    assert_eq!(masters.len(), 3, "the tags cover every master");
    // A script cache wiped on one master (a restart, a SCRIPT FLUSH) is reloaded on demand.
    let port = cluster.master_of("{t0}:n");
    assert_eq!(cluster.cli(port, &["script", "flush"]).trim(), "OK");
    assert_eq!(bump(&store, "t0").await, Ok(4));
    // ... even while some other node is down (the reload goes to the node that needs it, not to
    // every node).
    let replica = cluster
        .topology()
        .into_iter()
        .find(|n| !n.master)
        .unwrap()
        .port;
    cluster.kill(replica);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = cluster.master_of("{t1}:n");
    assert_eq!(cluster.cli(port, &["script", "flush"]).trim(), "OK");
    assert_eq!(bump(&store, "t1").await, Ok(4));
}

/// The failover scenario: a steady stream of store calls (and readiness probes of three gateway
/// processes) while the master serving them is SIGKILLed. The cluster promotes its replica after
/// `cluster-node-timeout`; the gateways must follow without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_recover_from_a_master_failover_without_restart() {
    let _serial = SERIAL.lock().await;
    let cluster = Arc::new(
        tokio::task::spawn_blocking(RedisCluster::start)
            .await
            .unwrap(),
    );
    let replicas = Replicas::start(3, &cluster, &[]).await;
    let store = store_on(&cluster, None);
    wait_store(&store, "fo", Duration::from_secs(10)).await;

    let victim = cluster.master_of("{fo}:n");
    let start = Instant::now();
    let c = cluster.clone();
    let failover = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs(1));
        let killed_at = start.elapsed();
        c.kill(victim);
        let took = c.wait_failover(victim, Duration::from_secs(30));
        (killed_at, killed_at + took)
    });

    // Sample: a store call every 20 ms, and every gateway's /readyz every 100 ms.
    let mut store_errors: Vec<Duration> = Vec::new();
    let mut ready_errors: Vec<Duration> = Vec::new();
    let mut last_ok = Duration::ZERO;
    let mut next_probe = Duration::ZERO;
    let limit = Duration::from_secs(40);
    let mut recovered_for = Duration::ZERO;
    while start.elapsed() < limit {
        let t = start.elapsed();
        match bump(&store, "fo").await {
            Ok(_) => {
                if !store_errors.is_empty() {
                    recovered_for = t - *store_errors.last().unwrap();
                }
                last_ok = t;
            }
            Err(e) => {
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("+{t:?} {e}");
                }
                store_errors.push(t)
            }
        }
        if t >= next_probe {
            next_probe = t + Duration::from_millis(100);
            for i in 0..3 {
                if !replicas.ready(i).await {
                    ready_errors.push(start.elapsed());
                }
            }
        }
        if failover.is_finished()
            && !store_errors.is_empty()
            && recovered_for > Duration::from_secs(3)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (killed_at, ok_at) = failover.await.unwrap();
    assert!(!store_errors.is_empty(), "killing the master was noticed");
    let first = store_errors[0];
    let last = *store_errors.last().unwrap();
    let ready_last = ready_errors.last().copied().unwrap_or(killed_at);
    eprintln!(
        "failover: master killed at {killed_at:?}, cluster ok again {:?} later; store errors from +{:?} to +{:?} ({} failed calls, window {:?}); /readyz 503 on some replica until +{:?}",
        ok_at - killed_at,
        first - killed_at,
        last - killed_at,
        store_errors.len(),
        last - first,
        ready_last.saturating_sub(killed_at),
    );
    assert!(first >= killed_at, "no errors before the kill");
    assert!(last_ok > last, "the store works again");
    // No error storm longer than the failover itself (plus slack for a loaded machine).
    assert!(
        last <= ok_at + Duration::from_secs(3),
        "store errors went on {:?} after the cluster was ok",
        last.saturating_sub(ok_at)
    );
    assert!(
        ready_last <= ok_at + Duration::from_secs(3),
        "readiness failed {:?} after the cluster was ok",
        ready_last.saturating_sub(ok_at)
    );
    for i in 0..3 {
        replicas.wait_ready(i, Duration::from_secs(5)).await;
    }
    // The promoted replica has the scripts (loaded on every node); even if it had lost them,
    // NOSCRIPT makes the client load the script and retry.
    let promoted = cluster.master_of("{fo}:n");
    assert_ne!(promoted, victim);
    cluster.cli(promoted, &["script", "flush"]);
    bump(&store, "fo").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_cluster_is_used_with_redis_password() {
    let _serial = SERIAL.lock().await;
    let pw = "s3cret-cluster-pw";
    let cluster = tokio::task::spawn_blocking(move || RedisCluster::start_with_password(Some(pw)))
        .await
        .unwrap();
    // With the password, store and readiness work; with a wrong one, nothing does.
    let store = store_on(&cluster, Some(pw));
    wait_store(&store, "pw", Duration::from_secs(10)).await;
    let replicas = Replicas::start(1, &cluster, &[]).await;
    assert!(replicas.ready(0).await);
    let wrong = store_on(&cluster, Some("wrong"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        bump(&wrong, "pw").await.is_err(),
        "a wrong password is refused"
    );
    // The whole cluster gone: the gateway says so in /readyz, and stays ready (SPEC §2: a store
    // outage does not take every replica out of rotation).
    for n in cluster.topology() {
        cluster.kill(n.port);
    }
    let start = Instant::now();
    while replicas.store_state(0).await != "down" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the dead cluster never showed in /readyz"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(replicas.ready(0).await, "still ready with every node dead");
}

/// What one request of the failover traffic got, and when (from the kill).
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: f64,
    kind: &'static str,
    status: u16,
}

/// Three gateways under steady traffic (rate-limited reads, idempotent writes, waiting-room
/// polls) while the master holding an event's waiting room, a client's bucket and a caller's
/// idempotency records is SIGKILLed. The gateways are not restarted. Measured: how long 5xx
/// answers lasted compared to the cluster's own failover. Checked afterwards, on the promoted
/// replica's slots: one bucket across replicas, one upstream call per key, the admission rate
/// and FIFO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariants_hold_after_a_master_failover() {
    let _serial = SERIAL.lock().await;
    let cluster = Arc::new(
        tokio::task::spawn_blocking(RedisCluster::start)
            .await
            .unwrap(),
    );
    let replicas = Arc::new(Replicas::start(3, &cluster, invariants::ENV).await);

    // The victim: the master holding one client's bucket, and an event's waiting room.
    let client_on_victim = fresh_client();
    let victim = cluster.master_of(&format!("rl:{{{client_on_victim}}}"));
    // A caller whose idempotency records live there (records are tagged by caller).
    let writer = (0..)
        .map(|k| format!("failover-writer-{k}"))
        .find(|sub| {
            let key = RecordKey::new(Scope::User(sub), uuid::Uuid::new_v4());
            cluster.master_of(key.as_str()) == victim
        })
        .unwrap();
    let mut k = 0;
    let (event, token) = loop {
        let event = format!("failover-sale-{k}");
        let res = replicas
            .client
            .post(replicas.url(0, "/api/v1/queue/join"))
            .header("x-forwarded-for", fresh_client())
            .json(&serde_json::json!({"event_id": event}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        let token = res.json::<serde_json::Value>().await.unwrap()["waiting_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let keys = cluster.cli(victim, &["--scan", "--pattern", "{q:*"]);
        if !keys.trim().is_empty() {
            break (event, token);
        }
        k += 1;
    };

    // Traffic: one request of each kind every ~30 ms, round robin over the replicas.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t0 = Instant::now();
    let traffic = {
        let (r, stop, token) = (replicas.clone(), stop.clone(), token.clone());
        let auth = replicas.bearer(&writer);
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reqs = [
                    (
                        "ratelimit",
                        r.client
                            .get(r.url(i, "/api/v1/reservations/r1"))
                            .header("authorization", &auth)
                            .header("x-forwarded-for", fresh_client()),
                    ),
                    (
                        "idempotency",
                        r.client
                            .post(r.url(i, "/api/v1/payment/intent"))
                            .header("authorization", &auth)
                            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                            .header("x-forwarded-for", fresh_client())
                            .json(&serde_json::json!({"amount": 1})),
                    ),
                    (
                        "queue",
                        r.client
                            .get(r.url(i, &format!("/api/v1/queue/status?token={token}")))
                            .header("x-forwarded-for", fresh_client()),
                    ),
                ];
                for (kind, req) in reqs {
                    let status = match req.send().await {
                        Ok(res) => res.status().as_u16(),
                        Err(_) => 599,
                    };
                    samples.push(Sample {
                        at: t0.elapsed().as_secs_f64(),
                        kind,
                        status,
                    });
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            samples
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = cluster.clone();
    let (killed_at, failed_over_at) = tokio::task::spawn_blocking(move || {
        let killed_at = t0.elapsed().as_secs_f64();
        c.kill(victim);
        let took = c.wait_failover(victim, Duration::from_secs(30));
        (killed_at, killed_at + took.as_secs_f64())
    })
    .await
    .unwrap();
    // Keep the traffic going until 3 s pass without a 5xx (at most 30 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = traffic.await.unwrap();

    let errors: Vec<&Sample> = samples.iter().filter(|s| s.status >= 500).collect();
    assert!(
        errors.iter().all(|s| s.at >= killed_at),
        "5xx before the kill: {:?}",
        errors.first()
    );
    let window = |kind: &str| {
        let e: Vec<f64> = errors
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.at)
            .collect();
        let total = samples.iter().filter(|s| s.kind == kind).count();
        match (e.first(), e.last()) {
            (Some(a), Some(b)) => format!(
                "{kind}: {} of {total} answered 5xx, from +{:.2} s to +{:.2} s after the kill",
                e.len(),
                a - killed_at,
                b - killed_at
            ),
            _ => format!("{kind}: no 5xx in {total}"),
        }
    };
    let last_error = errors.last().map_or(killed_at, |s| s.at);
    eprintln!(
        "failover under traffic: cluster failed over {:.2} s after the kill; {}; {}; {}; last 5xx +{:.2} s",
        failed_over_at - killed_at,
        window("ratelimit"),
        window("idempotency"),
        window("queue"),
        last_error - killed_at,
    );
    assert!(
        samples
            .iter()
            .filter(|s| s.kind == "ratelimit")
            .all(|s| s.status < 500),
        "the rate limiter falls back locally, never 5xx"
    );
    assert!(
        last_error <= failed_over_at + 3.0,
        "5xx went on {:.2} s after the failover",
        last_error - failed_over_at
    );
    let last = samples.last().unwrap().at;
    assert!(
        samples
            .iter()
            .filter(|s| s.at > last - 2.0)
            .all(|s| s.status < 500),
        "recovered without restart"
    );

    // A replica that met store errors limits locally until its backoff (up to 5 s) lets a probe
    // find the store again: wait for every replica to be back on the shared buckets.
    let mut fallback_until = 0.0;
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..replicas.len() {
        loop {
            let _ = replicas
                .client
                .get(replicas.url(i, "/api/v1/reservations/r1"))
                .header("authorization", replicas.bearer("probe"))
                .header("x-forwarded-for", fresh_client())
                .send()
                .await;
            if !replicas.rate_limit_fallback(i).await {
                break;
            }
            fallback_until = t0.elapsed().as_secs_f64();
            assert!(
                Instant::now() < deadline,
                "replica {i} never left the local fallback"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "rate-limit local fallback seen until +{:.2} s after the kill",
        (fallback_until - killed_at).max(0.0)
    );

    // The invariants, after recovery, on the promoted replica's slots.
    assert_ne!(
        cluster.master_of(&format!("rl:{{{client_on_victim}}}")),
        victim
    );
    invariants::rate_limit(&replicas, &client_on_victim, 4.0).await;
    invariants::idempotency(&replicas, 30, &writer).await;
    invariants::queue(&replicas, &event, 300, Duration::from_secs(6)).await;
}
