//! Connectivity and failover: the store and `/readyz` on a cluster, a master killed mid-run,
//! NOSCRIPT on a promoted replica, and a password-protected cluster.
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_api::Config;
use gateway_api::store::RedisStore;
use redis::Script;

use crate::harness::{RedisCluster, Replicas, SERIAL};

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
    let mut inv = script.key(format!("{{{tag}}}:n"));
    inv.key(format!("{{{tag}}}:last")).arg("x");
    store.eval::<i64>(&inv).await.map_err(|e| e.to_string())
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
}
