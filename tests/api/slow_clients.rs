//! Slow clients (SPEC §4, issue #15 findings 3 and 4): a body trickled byte by byte and an
//! answer nobody reads must not hold in-flight slots beyond `REQUEST_BODY_TIMEOUT` and
//! `RESPONSE_WRITE_TIMEOUT`. Real sockets against the real gateway; the slow side is a raw TCP
//! client that behaves as a hostile or broken one would.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{AppOptions, Backend, TestApp, bearer, spawn_app_with};

/// A POST whose head promises `len` body bytes; the body then comes one byte every 500 ms.
/// Returns what the gateway answered (read concurrently) once the connection ends or after 20 s.
fn trickle_body(addr: SocketAddr, len: usize) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let head = format!(
            "POST /api/v1/payment/intent HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\n\
             Idempotency-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n",
            bearer("trickler"),
            uuid::Uuid::new_v4()
        );
        wr.write_all(head.as_bytes()).await.unwrap();
        let writer = tokio::spawn(async move {
            for _ in 0..len {
                if wr.write_all(b" ").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), rd.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        writer.abort();
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// Sends a GET for a large answer and never reads it (a 4 KiB receive buffer, so the answer
/// backs up into the gateway). The socket is returned so it stays open.
async fn never_read(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let head = format!(
        "GET /api/v1/reservations/r-big HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\n\r\n",
        bearer("non-reader")
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// A normal request from someone else while the slow clients misbehave.
async fn bystander(app: &TestApp) -> reqwest::Response {
    app.get("/api/v1/reservations/r-1")
        .header("authorization", app.bearer("bystander"))
        .send()
        .await
        .unwrap()
}

/// Waits (up to `within`) until a normal request is no longer shed with 503 `OVERLOADED`.
async fn wait_until_served(app: &TestApp, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let res = bystander(app).await;
        if res.status() != 503 {
            return;
        }
        let body = res.text().await.unwrap();
        assert!(body.contains("OVERLOADED"), "{body}");
        assert!(
            Instant::now() < deadline,
            "slow clients still hold every in-flight slot after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (up to 10 s) until the slow clients hold every in-flight slot, then checks that a normal
/// request is shed meanwhile (the state the timeouts must end).
async fn wait_until_shed(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.in_flight.available_permits() > 0 {
        assert!(
            Instant::now() < deadline,
            "the slow clients never took the slots"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = bystander(app).await;
    assert_eq!(res.status(), 503);
    assert!(res.text().await.unwrap().contains("OVERLOADED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_off_with_408_and_gives_its_slot_back() {
    let app = spawn_app_with(
        AppOptions::new(Backend::Memory)
            .env("MAX_IN_FLIGHT", "2")
            .env("REQUEST_BODY_TIMEOUT", "5s"),
    )
    .await;
    let a = trickle_body(app.addr, 100);
    let b = trickle_body(app.addr, 100);
    // Two trickling bodies hold both slots: everyone else is shed meanwhile.
    wait_until_shed(&app).await;
    for answer in [a.await.unwrap(), b.await.unwrap()] {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    // Nothing was forwarded, and the slots are free again.
    assert_eq!(app.payment.count(), 0);
    wait_until_served(&app, Duration::from_secs(5)).await;
    assert!(
        app.metrics_text()
            .await
            .contains("slow_client_aborts_total{reason=\"body_timeout\"} 2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_and_gives_its_slot_back() {
    let app = spawn_app_with(
        AppOptions::new(Backend::Memory)
            .env("MAX_IN_FLIGHT", "2")
            .env("RESPONSE_WRITE_TIMEOUT", "5s")
            // The upstream timeout covers the answer's body too: long, so that it is the write
            // timeout that cuts the stalled answers off.
            .env("UPSTREAM_RESERVATION_TIMEOUT", "60s"),
    )
    .await;
    // A 16 MiB answer: far more than the socket buffers between the gateway and the client.
    app.reservation.set_padding(16 << 20);
    let _a = never_read(app.addr).await;
    let _b = never_read(app.addr).await;
    wait_until_shed(&app).await;
    // Within the write timeout (plus the time to back up) both are abandoned, sockets open or not.
    app.reservation.set_padding(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app
        .metrics_text()
        .await
        .contains("slow_client_aborts_total{reason=\"write_timeout\"} 2")
    {
        assert!(
            Instant::now() < deadline,
            "the stalled answers were never abandoned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_until_served(&app, Duration::from_secs(5)).await;
}

/// Issue #15's done-when: 50 trickling bodies and 50 answers nobody reads, then the gateway
/// serves everyone else normally once the timeouts have passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tricklers_and_fifty_non_readers_leave_the_gateway_serving() {
    let app = spawn_app_with(
        AppOptions::new(Backend::Memory)
            .env("MAX_IN_FLIGHT", "100")
            .env("REQUEST_BODY_TIMEOUT", "8s")
            .env("RESPONSE_WRITE_TIMEOUT", "8s")
            .env("UPSTREAM_RESERVATION_TIMEOUT", "60s"),
    )
    .await;
    app.reservation.set_padding(6 << 20);
    let tricklers: Vec<_> = (0..50).map(|_| trickle_body(app.addr, 100)).collect();
    let mut readers = Vec::new();
    for _ in 0..50 {
        readers.push(never_read(app.addr).await);
    }
    wait_until_shed(&app).await;
    app.reservation.set_padding(0);
    for t in tricklers {
        let answer = t.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    wait_until_served(&app, Duration::from_secs(20)).await;
    // Served normally: a burst of 50 concurrent requests, none shed.
    let burst = (0..50).map(|_| {
        app.get("/api/v1/reservations/r-1")
            .header("authorization", app.bearer("bystander"))
            .send()
    });
    for res in futures_util::future::join_all(burst).await {
        assert_ne!(res.unwrap().status(), 503);
    }
    assert_eq!(app.payment.count(), 0, "no trickled body was forwarded");
    drop(readers);
}
