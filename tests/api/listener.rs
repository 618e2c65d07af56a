//! Listener hardening (SPEC §4 "Limits on the listener", issue #4), on raw sockets: what an HTTP
//! client would refuse to send. (Bodies over `MAX_BODY_SIZE` → 413 are in `proxy.rs`.)
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Backend, TestApp, assert_error, raw_request, spawn_app_on};

fn write_head(app: &TestApp, extra: &str) -> String {
    format!(
        "POST /api/v1/reservations/create HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Idempotency-Key: {}\r\nContent-Type: application/json\r\n{extra}\r\n",
        app.bearer("u"),
        uuid::Uuid::new_v4()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_over_16_kib_is_431() {
    let app = spawn_app_on(Backend::Memory).await;
    let big = "a".repeat(17 * 1024);
    let req = format!("GET /api/v1/reservations/r1 HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let answer = raw_request(app.addr, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Just under the limit is fine.
    let ok = "a".repeat(12 * 1024);
    let req =
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {ok}\r\nConnection: close\r\n\r\n");
    let answer = raw_request(app.addr, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(app.reservation.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_100_headers_is_431() {
    let app = spawn_app_on(Backend::Memory).await;
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /api/v1/reservations/r1 HTTP/1.1\r\n{many}\r\n");
    let answer = raw_request(app.addr, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let fine: String = (0..90).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /healthz HTTP/1.1\r\n{fine}Connection: close\r\n\r\n");
    let answer = raw_request(app.addr, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(app.reservation.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_over_8_kib_is_414_json() {
    let app = spawn_app_on(Backend::Memory).await;
    let path = format!("/api/v1/reservations/r1?q={}", "a".repeat(9 * 1024));
    let res = app.get(&path).send().await.unwrap();
    assert_error(res, 414, "URI_TOO_LONG").await;
    assert_eq!(app.reservation.count(), 0);
}

/// Slowloris: a head trickled a byte a second is cut off by the 10 s head deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_is_cut_off() {
    let app = spawn_app_on(Backend::Memory).await;
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if wr.write_all(b"X").await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), rd.read_to_end(&mut buf)).await;
    trickle.abort();
    assert!(read.is_ok(), "still open after {:?}", started.elapsed());
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "closed too early: {:?}",
        started.elapsed()
    );
    let answer = String::from_utf8_lossy(&buf);
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_different_content_lengths_are_400() {
    let app = spawn_app_on(Backend::Memory).await;
    let req = write_head(&app, "Content-Length: 2\r\nContent-Length: 3\r\n") + "{}x";
    let answer = raw_request(app.addr, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(app.reservation.count(), 0);
}

/// SPEC §4: Content-Length with Transfer-Encoding is 400, the connection is closed and nothing
/// reaches the upstream (hyper alone would drop the Content-Length and forward the request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_400_and_closed() {
    let app = spawn_app_on(Backend::Memory).await;
    for extra in [
        "Content-Length: 7\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 7\r\n",
    ] {
        let req = write_head(&app, extra) + "2\r\n{}\r\n0\r\n\r\n";
        let started = Instant::now();
        let answer = raw_request(app.addr, req.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("\"BAD_REQUEST\""), "{answer}");
        assert!(answer.contains("application/json"), "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the connection was closed, not left open"
        );
    }
    // Pipelined behind an honest request: that one is served, the smuggling one refused.
    let mut req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    req.extend_from_slice(
        (write_head(&app, "Content-Length: 40\r\nTransfer-Encoding: chunked\r\n")
            + "0\r\n\r\nGET /api/v1/reservations/r1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .as_bytes(),
    );
    let answer = raw_request(app.addr, &req).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer}");
    assert!(answer.contains("HTTP/1.1 400"), "{answer}");
    assert_eq!(app.reservation.count(), 0, "nothing reached the upstream");
    // An honest chunked request still works.
    let req = write_head(&app, "Transfer-Encoding: chunked\r\nConnection: close\r\n")
        + "10\r\n{\"event_id\":\"e1\"\r\n1\r\n}\r\n0\r\n\r\n";
    let answer = raw_request(app.addr, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(app.reservation.count(), 1);
}
