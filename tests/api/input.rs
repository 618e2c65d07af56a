//! The gateway's own inputs refused with a message naming the field by its serde path (issue
//! #18): the queue routes' JSON bodies and query strings, and the fields reservation create
//! reads when admission is required.
use serde_json::json;

use crate::helpers::{AppOptions, Backend, assert_error, spawn_app_on, spawn_app_with};

async fn message(res: reqwest::Response) -> String {
    let body = assert_error(res, 400, "BAD_REQUEST").await;
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn queue_inputs_name_the_field_that_is_wrong() {
    let app = spawn_app_on(Backend::Memory).await;
    let join = |body: serde_json::Value| app.post("/api/v1/queue/join").json(&body).send();
    assert_eq!(
        message(join(json!({})).await.unwrap()).await,
        "event_id: missing field"
    );
    assert_eq!(
        message(join(json!({"event_id": 7})).await.unwrap()).await,
        "event_id: expected a string"
    );
    assert_eq!(
        message(join(json!(["concert-2026"])).await.unwrap()).await,
        "body: expected a JSON object"
    );
    let res = app
        .post("/api/v1/queue/join")
        .header("content-type", "application/json")
        .body("{\"event_id\":")
        .send()
        .await
        .unwrap();
    assert!(message(res).await.starts_with("malformed JSON body"));

    let res = app.get("/api/v1/queue/status").send().await.unwrap();
    assert_eq!(message(res).await, "token: missing field");
    let res = app
        .client
        .delete(app.url("/api/v1/queue/leave?tokn=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(message(res).await, "token: missing field");
    let res = app
        .post_json("/api/v1/queue/enter", &json!({"waiting_token": 42}))
        .send()
        .await
        .unwrap();
    assert_eq!(message(res).await, "waiting_token: expected a string");
}

#[tokio::test]
async fn a_message_never_echoes_the_value_sent() {
    let app = spawn_app_on(Backend::Memory).await;
    let res = app
        .post_json(
            "/api/v1/queue/enter",
            &json!({"waiting_token": {"secret": "s3cr3t-value"}}),
        )
        .send()
        .await
        .unwrap();
    let m = message(res).await;
    assert!(!m.contains("s3cr3t"), "{m}");
    assert_eq!(m, "waiting_token: expected a string");
}

#[tokio::test]
async fn reservation_create_under_admission_names_event_id() {
    let app =
        spawn_app_with(AppOptions::new(Backend::Memory).env("QUEUE_REQUIRE_ADMISSION", "true"))
            .await;
    let res = app
        .post_json("/api/v1/reservations/create", &json!({"seats": 2}))
        .header("authorization", app.bearer("fan-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(message(res).await, "event_id: missing field");
}
