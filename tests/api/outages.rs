//! Faults over time (issue #15): Redis stopped for 20 s under traffic, and the memory of an
//! in-memory gateway churned with many short-lived keys, addresses and events. Both run the real
//! `gateway` binary as its own process, so its readiness and its RSS are its own.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gateway_api::mock_upstream::{MockUpstream, Role};
use serde_json::json;

use crate::helpers::{GatewayProcess, JwksServer, RedisServer, TestKey, base_env, bearer, jwt_env};

async fn mocks() -> (MockUpstream, MockUpstream) {
    let loopback = "127.0.0.1:0".parse().unwrap();
    (
        MockUpstream::start(Role::Reservation, loopback)
            .await
            .unwrap(),
        MockUpstream::start(Role::Payment, loopback).await.unwrap(),
    )
}

#[derive(Default)]
struct Tally {
    reads_ok: AtomicUsize,
    reads_bad: AtomicUsize,
    writes_ok: AtomicUsize,
    writes_refused: AtomicUsize,
    writes_other: AtomicUsize,
}

/// SPEC §2, §6, §7: with Redis stopped for 20 s under traffic, both replicas stay ready, reads
/// keep answering on local rate limits, writes are refused with 503 and none is forwarded, and
/// everything is back to normal once Redis is, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_for_twenty_seconds_under_traffic() {
    let (reservation, payment) = mocks().await;
    let jwks = JwksServer::start(&TestKey::defaults()).await;
    let mut redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap();
    let mut env = base_env(&reservation, &payment, Some(&redis.addr()));
    env.extend(jwt_env(&jwks));
    let replicas = [
        GatewayProcess::start(&env).await,
        GatewayProcess::start(&env).await,
    ];
    for r in &replicas {
        r.wait_ready().await;
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let urls: Vec<String> = replicas.iter().map(|r| r.url("")).collect();

    // Traffic on both replicas, counted per phase.
    let outage = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let during = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for (i, base) in urls.iter().cycle().take(4).enumerate() {
        let (client, base, stop, outage, during) = (
            client.clone(),
            base.clone(),
            stop.clone(),
            outage.clone(),
            during.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let auth = bearer(&format!("fan-{i}"));
            while !stop.load(Ordering::Relaxed) {
                let read = client
                    .get(format!("{base}/api/v1/reservations/r-1"))
                    .header("authorization", &auth)
                    .send()
                    .await;
                let write = client
                    .post(format!("{base}/api/v1/payment/intent"))
                    .header("authorization", &auth)
                    .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                    .json(&json!({"amount": 1, "currency": "EUR"}))
                    .send()
                    .await;
                if !outage.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                match read.map(|r| r.status().as_u16()) {
                    // The mock's own 404 for an unknown reservation: the read went through.
                    Ok(404 | 200) => during.reads_ok.fetch_add(1, Ordering::Relaxed),
                    _ => during.reads_bad.fetch_add(1, Ordering::Relaxed),
                };
                match write {
                    Ok(r) if r.status() == 200 => during.writes_ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) if r.status() == 503 => {
                        let body = r.text().await.unwrap_or_default();
                        if body.contains("UPSTREAM_UNAVAILABLE") {
                            during.writes_refused.fetch_add(1, Ordering::Relaxed)
                        } else {
                            during.writes_other.fetch_add(1, Ordering::Relaxed)
                        }
                    }
                    _ => during.writes_other.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(payment.count() > 0, "writes flow before the outage");

    redis = tokio::task::spawn_blocking(move || {
        redis.stop();
        redis
    })
    .await
    .unwrap();
    // Let in-flight writes that had their record before the stop finish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let forwarded_at_stop = payment.count();
    outage.store(true, Ordering::Relaxed);
    let outage_ends = Instant::now() + Duration::from_secs(20);
    let mut ready_checks = 0;
    while Instant::now() < outage_ends {
        for base in &urls {
            let res = client.get(format!("{base}/readyz")).send().await.unwrap();
            assert_eq!(
                res.status(),
                200,
                "a replica left rotation during a store outage"
            );
            ready_checks += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    outage.store(false, Ordering::Relaxed);
    assert_eq!(
        payment.count(),
        forwarded_at_stop,
        "a write was forwarded without its idempotency record"
    );
    let reads_ok = during.reads_ok.load(Ordering::Relaxed);
    assert!(reads_ok > 50, "reads kept answering: {reads_ok}");
    assert_eq!(
        during.reads_bad.load(Ordering::Relaxed),
        0,
        "no read failed"
    );
    assert_eq!(during.writes_ok.load(Ordering::Relaxed), 0);
    assert_eq!(during.writes_other.load(Ordering::Relaxed), 0);
    assert!(during.writes_refused.load(Ordering::Relaxed) > 50);
    assert!(ready_checks >= 40);

    redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    // Back to normal without a restart: writes reach the upstream again through each replica.
    let deadline = Instant::now() + Duration::from_secs(15);
    for base in &urls {
        loop {
            let res = client
                .post(format!("{base}/api/v1/payment/intent"))
                .header("authorization", bearer("after"))
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .json(&json!({"amount": 1, "currency": "EUR"}))
                .send()
                .await
                .unwrap();
            if res.status() == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "writes never came back on {base}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The health probe runs every second: the store shows as up again soon after.
        loop {
            let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
            let body: serde_json::Value = ready.json().await.unwrap();
            if body["store"] == "up" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "store never showed as up on {base}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    drop(redis);
}

/// The gateway process's resident memory, from `/proc/<pid>/status`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Builds request `i` of a batch.
type MakeRequest = Box<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>;

/// Sends `n` requests, `concurrency` at a time, built by `make(i)`; returns how many succeeded.
async fn fire<F>(n: usize, concurrency: usize, make: F) -> usize
where
    F: Fn(usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (make, next, ok) = (make.clone(), next.clone(), ok.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    if let Ok(res) = make(i).send().await
                        && res.status().is_success()
                    {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    ok.load(Ordering::Relaxed)
}

/// Issue #15 finding 7 and its done-when: an in-memory gateway churned with 100,000
/// idempotency keys, 100,000 client addresses (through a trusted proxy) and 100,000 one-person
/// waiting-room events returns to within 10 MiB of its baseline once everything has expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_churned_memory_store_returns_to_its_baseline() {
    const N: usize = 100_000;
    let (reservation, payment) = mocks().await;
    payment.control.record.store(false, Ordering::Relaxed);
    let jwks = JwksServer::start(&TestKey::defaults()).await;
    let mut env = base_env(&reservation, &payment, None);
    env.extend(jwt_env(&jwks));
    for (k, v) in [
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ("IDEMPOTENCY_TTL_SECONDS", "2"),
        // A bucket is full again 5 ms after its request: idle at once.
        ("RATE_LIMIT_RPS", "1000"),
        ("RATE_LIMIT_BURST", "5"),
        ("QUEUE_HEARTBEAT_TTL_SECONDS", "1"),
        ("LOG_LEVEL", "warn"),
    ] {
        env.push((k.to_owned(), v.to_owned()));
    }
    let gw = GatewayProcess::start(&env).await;
    gw.wait_ready().await;
    let pid = gw.child.id();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let auth = bearer("churner");
    let base = gw.url("");
    // Address i as an IPv4 in 10.0.0.0/8: one bucket each.
    let addr = |i: usize| {
        let i = i as u32;
        format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
    };
    let write = {
        let (client, base, auth) = (client.clone(), base.clone(), auth.clone());
        move |offset: usize| {
            let (client, base, auth) = (client.clone(), base.clone(), auth.clone());
            move |i: usize| {
                client
                    .post(format!("{base}/api/v1/payment/intent"))
                    .header("authorization", &auth)
                    .header("x-forwarded-for", addr(offset + i))
                    .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                    .json(&json!({"amount": 1, "currency": "EUR"}))
            }
        }
    };
    let join = {
        let (client, base) = (client.clone(), base.clone());
        move |offset: usize| {
            let (client, base) = (client.clone(), base.clone());
            move |i: usize| {
                client
                    .post(format!("{base}/api/v1/queue/join"))
                    .header("x-forwarded-for", addr(offset + i))
                    .json(&json!({"event_id": format!("churn-{}", offset + i)}))
            }
        }
    };
    // Warm up (thread pools, connection pools, allocator), then let it all expire.
    assert_eq!(fire(5_000, 64, write(0)).await, 5_000);
    assert_eq!(fire(5_000, 64, join(0)).await, 5_000);
    tokio::time::sleep(Duration::from_secs(12)).await;
    // mimalloc hands freed pages back to the OS lazily, on later allocator calls of the thread
    // that freed them; a serving gateway makes those calls all the time. A burst of stateless
    // requests (/healthz) plays that part, before each measurement alike.
    let health = {
        let (client, base) = (client.clone(), base.clone());
        move |_: usize| client.get(format!("{base}/healthz"))
    };
    let health = Arc::new(health);
    let settle = |h: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>| async move {
        assert_eq!(fire(2_000, 64, move |i| h(i)).await, 2_000);
    };
    settle(health.clone()).await;
    let baseline = rss_kib(pid);

    // Writes first (idempotency records, rate-limit buckets), then waiting-room events, each
    // measured once it has expired, so a failure names the structure that kept its memory.
    let phases: [(&str, MakeRequest); 2] = [
        ("writes (keys and addresses)", Box::new(write(1 << 20))),
        ("one-person events", Box::new(join(1 << 21))),
    ];
    for (name, make) in phases {
        let started = Instant::now();
        assert_eq!(fire(N, 64, make).await, N, "{name}");
        let peak = rss_kib(pid);
        let took = started.elapsed();
        // Everything expires within a few seconds (TTLs of 1-2 s, buckets full in 5 ms) and
        // the sweep runs every 5 s.
        tokio::time::sleep(Duration::from_secs(12)).await;
        settle(health.clone()).await;
        let after = rss_kib(pid);
        println!(
            "memory churn, {N} {name}: baseline {} MiB, peak {} MiB, expired {} MiB ({took:?})",
            baseline / 1024,
            peak / 1024,
            after / 1024
        );
        assert!(
            after <= baseline + 10 * 1024,
            "{name}: RSS {after} KiB after expiry vs baseline {baseline} KiB (peak {peak} KiB)"
        );
    }
    drop(gw);
}
