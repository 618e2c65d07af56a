//! Upstream routing (SPEC §7a): spread over several instances, ejection of a dead one, GET-only
//! retries, the circuit when every instance is down, recovery without a restart, the bulkhead.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gateway_api::mock_upstream::{MockUpstream, Role};
use serde_json::json;
use tokio::net::TcpListener;

use crate::helpers::{AppOptions, Backend, TestApp, assert_error, json, spawn_app_with};

async fn instances(n: usize) -> Vec<MockUpstream> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(
            MockUpstream::start(Role::Reservation, loopback)
                .await
                .unwrap(),
        );
    }
    v
}

fn bases(mocks: &[MockUpstream]) -> String {
    mocks
        .iter()
        .map(MockUpstream::url)
        .collect::<Vec<_>>()
        .join(",")
}

/// The value of one series on `/metrics` (0 when absent): `labels` must all match.
async fn metric(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> u64 {
    let text = app.metrics_text().await;
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn get_reservation(app: &TestApp) -> reqwest::Response {
    app.get("/api/v1/reservations/r1")
        .header("authorization", app.bearer("u"))
        .send()
        .await
        .unwrap()
}

/// A GET answered by an upstream instance (the mocks do not know `r1`), not by the gateway.
async fn assert_answered_upstream(res: reqwest::Response) {
    assert_eq!(res.status(), 404);
    assert_eq!(json(res).await["error"]["code"], "RESERVATION_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_is_spread_over_healthy_instances() {
    let mocks = instances(3).await;
    let app = spawn_app_with(
        AppOptions::new(Backend::Memory).env("UPSTREAM_RESERVATION_BASE", bases(&mocks)),
    )
    .await;
    let statuses: Vec<u16> = futures_util::stream::iter(0..300)
        .map(|_| async { get_reservation(&app).await.status().as_u16() })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|&s| s == 404), "{statuses:?}");
    let counts: Vec<usize> = mocks.iter().map(MockUpstream::count).collect();
    assert_eq!(counts.iter().sum::<usize>(), 300);
    assert!(
        counts.iter().all(|&c| (50..=150).contains(&c)),
        "{counts:?}"
    );
    for m in &mocks {
        let label = m.addr.to_string();
        let seen = metric(
            &app,
            "upstream_instance_requests_total",
            &[("upstream", "reservation"), ("instance", &label)],
        )
        .await;
        assert_eq!(seen as usize, m.count(), "{label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instance_is_ejected_gets_are_retried_and_posts_are_not() {
    let mut mocks = instances(3).await;
    let app = spawn_app_with(
        AppOptions::new(Backend::Memory)
            .env("UPSTREAM_RESERVATION_BASE", bases(&mocks))
            .env("UPSTREAM_EJECT_AFTER", "5")
            // Long enough that the dead instance is not tried again during the test.
            .env("UPSTREAM_EJECT_BASE", "60s"),
    )
    .await;
    // Warm up so the gateway holds pooled connections to every instance, then kill one.
    for _ in 0..30 {
        assert_answered_upstream(get_reservation(&app).await).await;
    }
    let dead = mocks.remove(1);
    let dead_label = dead.addr.to_string();
    dead.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let dead_labels = [
        ("upstream", "reservation"),
        ("instance", dead_label.as_str()),
    ];
    let dead_attempts = || metric(&app, "upstream_instance_requests_total", &dead_labels);
    let retries = || {
        metric(
            &app,
            "upstream_retries_total",
            &[("upstream", "reservation")],
        )
    };
    let before = dead_attempts().await;
    let live_posts = |mocks: &[MockUpstream]| {
        mocks
            .iter()
            .flat_map(MockUpstream::received)
            .filter(|r| r.method == "POST")
            .count()
    };

    // POSTs: the ones that land on the dead instance fail with 503 and are not retried.
    let (mut created, mut refused) = (0, 0);
    for _ in 0..300 {
        let res = app
            .post_json("/api/v1/reservations/create", &json!({"event_id": "e1"}))
            .header("authorization", app.bearer("u"))
            .send()
            .await
            .unwrap();
        if res.status() == 201 {
            created += 1;
        } else {
            assert_error(res, 503, "UPSTREAM_UNAVAILABLE").await;
            refused += 1;
            if refused == 2 {
                break;
            }
        }
    }
    assert_eq!(refused, 2);
    assert_eq!(dead_attempts().await - before, 2);
    assert_eq!(retries().await, 0, "a POST is never retried");
    assert_eq!(live_posts(&mocks), created);

    // GETs: the ones that land on the dead instance are retried elsewhere and answered, until
    // the fifth consecutive failure ejects it.
    let ejected = || metric(&app, "upstream_ejections_total", &dead_labels);
    for _ in 0..500 {
        if ejected().await == 1 {
            break;
        }
        assert_answered_upstream(get_reservation(&app).await).await;
    }
    assert_eq!(ejected().await, 1);
    assert_eq!(dead_attempts().await - before, 5);
    assert_eq!(retries().await, 3, "every GET that hit the dead instance");

    // Ejected: nothing more goes to it; both live instances share the traffic.
    let live_before: Vec<usize> = mocks.iter().map(MockUpstream::count).collect();
    for _ in 0..60 {
        assert_answered_upstream(get_reservation(&app).await).await;
        let res = app
            .post_json("/api/v1/reservations/create", &json!({"event_id": "e1"}))
            .header("authorization", app.bearer("u"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    assert_eq!(dead_attempts().await - before, 5);
    for (m, b) in mocks.iter().zip(&live_before) {
        assert!(m.count() - b > 20, "{} got {}", m.addr, m.count() - b);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_instances_down_fail_fast_then_traffic_resumes_without_restart() {
    let mocks = instances(2).await;
    // Long enough that "fails fast" (under half of it) is a bound of seconds, not milliseconds.
    let timeout = Duration::from_secs(4);
    let app = spawn_app_with(
        AppOptions::new(Backend::Memory)
            .env("UPSTREAM_RESERVATION_BASE", bases(&mocks))
            .env("UPSTREAM_RESERVATION_TIMEOUT", "4s")
            .env("UPSTREAM_EJECT_AFTER", "2")
            .env("UPSTREAM_EJECT_BASE", "3s"),
    )
    .await;
    // Both instances crawl: every request waits for the whole timeout.
    for m in &mocks {
        m.set_delay(Duration::from_secs(30));
    }
    let first: Vec<u16> = futures_util::stream::iter(0..4)
        .map(|_| async { get_reservation(&app).await.status().as_u16() })
        .buffer_unordered(4)
        .collect()
        .await;
    assert!(first.iter().all(|&s| s == 504 || s == 503), "{first:?}");
    let mut open = false;
    for _ in 0..6 {
        let started = Instant::now();
        let res = get_reservation(&app).await;
        if res.status() == 503 {
            assert!(started.elapsed() < timeout / 2);
            assert_error(res, 503, "UPSTREAM_UNAVAILABLE").await;
            open = true;
            break;
        }
        assert_error(res, 504, "UPSTREAM_TIMEOUT").await;
    }
    assert!(open, "the circuit never opened");
    assert_eq!(
        metric(
            &app,
            "upstream_circuit_open",
            &[("upstream", "reservation")]
        )
        .await,
        1
    );

    // Open: refused at once, nothing reaches an instance.
    let reached = mocks.iter().map(MockUpstream::count).sum::<usize>();
    for _ in 0..5 {
        let started = Instant::now();
        let res = get_reservation(&app).await;
        let took = started.elapsed();
        assert_error(res, 503, "UPSTREAM_UNAVAILABLE").await;
        assert!(took < timeout / 2, "took {took:?} with the circuit open");
    }
    assert_eq!(
        mocks.iter().map(MockUpstream::count).sum::<usize>(),
        reached
    );
    assert!(
        metric(
            &app,
            "upstream_rejected_total",
            &[("upstream", "reservation"), ("reason", "circuit_open")]
        )
        .await
            >= 5
    );

    // Service restored on the same addresses: a probe closes the circuit, no restart needed.
    let addrs: Vec<SocketAddr> = mocks.iter().map(|m| m.addr).collect();
    for m in mocks {
        m.stop().await;
    }
    let mut restored = Vec::new();
    for addr in addrs {
        let listener = TcpListener::bind(addr).await.unwrap();
        restored.push(MockUpstream::serve(Role::Reservation, listener).unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = get_reservation(&app).await;
        if res.status() == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "traffic never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..10 {
        assert_answered_upstream(get_reservation(&app).await).await;
    }
    assert_eq!(
        metric(
            &app,
            "upstream_circuit_open",
            &[("upstream", "reservation")]
        )
        .await,
        0
    );
    assert!(restored.iter().map(MockUpstream::count).sum::<usize>() >= 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_payment_upstream_at_its_cap_does_not_slow_reservations() {
    let app = spawn_app_with(
        AppOptions::new(Backend::Memory)
            .env("UPSTREAM_PAYMENT_MAX_CONCURRENCY", "2")
            .env("UPSTREAM_PAYMENT_TIMEOUT", "10s"),
    )
    .await;
    // Slow enough that "at once" (under 3 s) cannot be the slow answer itself.
    app.payment.set_delay(Duration::from_secs(8));
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let req = app
                .post_json("/api/v1/payment/intent", &json!({"amount": 100}))
                .header("authorization", app.bearer("u"));
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.payment.count() < 2 {
        assert!(Instant::now() < deadline, "slow payments never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The payment bulkhead is full: a third payment is refused at once, not queued.
    let started = Instant::now();
    let res = app
        .post_json("/api/v1/payment/intent", &json!({"amount": 100}))
        .header("authorization", app.bearer("u"))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_error(res, 503, "UPSTREAM_UNAVAILABLE").await;
    assert_eq!(
        metric(
            &app,
            "upstream_rejected_total",
            &[("upstream", "payment"), ("reason", "saturated")]
        )
        .await,
        1
    );

    // Reservations are untouched by it.
    for _ in 0..20 {
        let started = Instant::now();
        let res = app
            .post_json("/api/v1/reservations/create", &json!({"event_id": "e1"}))
            .header("authorization", app.bearer("u"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "reservation took {took:?}");
    }
    for s in slow {
        assert_eq!(s.await.unwrap(), 200);
    }
    assert_eq!(
        app.payment.count(),
        2,
        "the refused payment never reached it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_answering_5xx_is_ejected_and_its_answers_pass_through() {
    let mocks = instances(2).await;
    let app = spawn_app_with(
        AppOptions::new(Backend::Memory)
            .env("UPSTREAM_RESERVATION_BASE", bases(&mocks))
            .env("UPSTREAM_EJECT_AFTER", "3")
            .env("UPSTREAM_EJECT_BASE", "60s"),
    )
    .await;
    mocks[0].set_status(500);
    let (mut upstream_500s, mut answered) = (0, 0);
    for _ in 0..40 {
        let res = get_reservation(&app).await;
        let status = res.status();
        let code = json(res).await["error"]["code"].clone();
        if status == 500 {
            // The upstream's own answer, as it is: a 5xx is not retried.
            assert_eq!(code, "INJECTED");
            upstream_500s += 1;
        } else {
            assert_eq!(
                (status.as_u16(), code),
                (404, json!("RESERVATION_NOT_FOUND"))
            );
            answered += 1;
        }
    }
    assert_eq!(upstream_500s, 3, "ejected after three consecutive 5xx");
    assert_eq!(answered, 37);
    assert_eq!(mocks[0].count(), 3);
    assert_eq!(
        metric(
            &app,
            "upstream_retries_total",
            &[("upstream", "reservation")]
        )
        .await,
        0
    );
}
