//! The scale-out invariants on a healthy cluster: three gateway processes, one client or one
//! key or one event spread over all three.
use std::time::Duration;

use crate::harness::{RedisCluster, Replicas, SERIAL};
use crate::invariants::{self, ENV, fresh_client};

async fn setup() -> (RedisCluster, Replicas) {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let replicas = Replicas::start(3, &cluster, ENV).await;
    (cluster, replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_over_three_replicas_gets_burst_plus_rate_times_t() {
    let _serial = SERIAL.lock().await;
    let (_cluster, replicas) = setup().await;
    invariants::rate_limit(&replicas, &fresh_client(), 4.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_identical_writes_over_three_replicas_reach_the_upstream_once() {
    let _serial = SERIAL.lock().await;
    let (_cluster, replicas) = setup().await;
    invariants::idempotency(&replicas, 30, "idem-user").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_admit_at_the_configured_rate_in_join_order() {
    let _serial = SERIAL.lock().await;
    let (_cluster, replicas) = setup().await;
    invariants::queue(&replicas, "on-sale", 300, Duration::from_secs(6)).await;
}
