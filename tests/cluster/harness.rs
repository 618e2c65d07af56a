//! The cluster harness: a real 3-master + 3-replica Redis Cluster started by
//! `scripts/cluster-up.sh` (the same script operators use), and three `gateway` processes on it,
//! each with its own recording mock upstreams.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use gateway_api::mock_upstream::{MockUpstream, Role};

use crate::helpers::{GatewayProcess, JwksServer, TestKey, base_env, bearer_for, jwt_env};

/// Cluster tests start six redis-servers and three gateways each; on a small machine they run
/// one at a time so that their timing (rates, failover windows) measures the code, not the
/// neighbours.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How fast the cluster declares a master dead (`cluster-node-timeout`, ms).
pub const NODE_TIMEOUT_MS: u64 = 2000;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster-up.sh")
}

/// A running cluster; torn down (`cluster-up.sh down`) on drop.
pub struct RedisCluster {
    pub dir: PathBuf,
    /// Every node, `127.0.0.1:port`.
    pub nodes: Vec<String>,
    password: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub port: u16,
    pub master: bool,
    pub failed: bool,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        Self::start_with_password(None)
    }

    pub fn start_with_password(password: Option<&str>) -> RedisCluster {
        let mut cmd = Command::new(script());
        cmd.env("CLUSTER_NODE_TIMEOUT", NODE_TIMEOUT_MS.to_string());
        match password {
            Some(pw) => cmd.env("REDIS_PASSWORD", pw),
            None => cmd.env_remove("REDIS_PASSWORD"),
        };
        let out = cmd.output().expect("run scripts/cluster-up.sh");
        assert!(
            out.status.success(),
            "cluster-up.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("cluster-up.sh printed no {name}: {text}"))
                .to_owned()
        };
        RedisCluster {
            dir: PathBuf::from(var("REDIS_CLUSTER_DIR")),
            nodes: var("REDIS_CLUSTER_NODES")
                .split(',')
                .map(str::to_owned)
                .collect(),
            password: password.map(str::to_owned),
        }
    }

    /// `REDIS_ADDR` for a gateway: every node, comma-separated.
    pub fn addr(&self) -> String {
        self.nodes.join(",")
    }

    fn ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter_map(|n| n.rsplit(':').next()?.parse().ok())
            .collect()
    }

    /// redis-cli against one node; stdout.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
        if let Some(pw) = &self.password {
            cmd.env("REDISCLI_AUTH", pw);
        }
        let out = cmd.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A node that is still alive (to ask about the cluster).
    fn live_port(&self) -> u16 {
        self.ports()
            .into_iter()
            .find(|p| self.cli(*p, &["ping"]).trim() == "PONG")
            .expect("a live node")
    }

    /// `CLUSTER NODES` as seen by a live node.
    pub fn topology(&self) -> Vec<Node> {
        self.cli(self.live_port(), &["cluster", "nodes"])
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let port = f
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                let flags = f.get(2)?;
                Some(Node {
                    id: f[0].to_owned(),
                    port,
                    master: flags.contains("master"),
                    failed: flags.split(',').any(|f| f == "fail"),
                })
            })
            .collect()
    }

    /// The live master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let port = self.live_port();
        let slot: u16 = self
            .cli(port, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("keyslot");
        for line in self.cli(port, &["cluster", "nodes"]).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            for range in &f[8..] {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>())
                    && (lo..=hi).contains(&slot)
                {
                    return f[1]
                        .split('@')
                        .next()
                        .unwrap()
                        .rsplit(':')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                }
            }
        }
        panic!("no master for slot {slot}");
    }

    /// The live masters.
    pub fn masters(&self) -> Vec<u16> {
        self.topology()
            .into_iter()
            .filter(|n| n.master && !n.failed)
            .map(|n| n.port)
            .collect()
    }

    /// The master holding some key that matches `pattern` (test set-up only: SCAN).
    pub fn master_holding(&self, pattern: &str) -> Option<u16> {
        self.masters().into_iter().find(|p| {
            !self
                .cli(*p, &["--scan", "--pattern", pattern])
                .trim()
                .is_empty()
        })
    }

    /// Kills one node with SIGKILL (a crash, not a shutdown).
    pub fn kill(&self, port: u16) {
        let pid = std::fs::read_to_string(self.dir.join(port.to_string()).join("redis.pid"))
            .expect("pid file");
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Is the cluster serving every slot, as every live node sees it?
    pub fn state_ok(&self) -> bool {
        let live: Vec<u16> = self
            .ports()
            .into_iter()
            .filter(|p| self.cli(*p, &["ping"]).trim() == "PONG")
            .collect();
        !live.is_empty()
            && live.iter().all(|p| {
                self.cli(*p, &["cluster", "info"])
                    .lines()
                    .any(|l| l.trim() == "cluster_state:ok")
            })
    }

    /// Waits until the cluster has failed `dead` over: marked failed, its slots served by a
    /// promoted replica, and every live node saying ok. Returns how long that took.
    pub fn wait_failover(&self, dead: u16, limit: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < limit {
            let topology = self.topology();
            let marked = topology.iter().any(|n| n.port == dead && n.failed);
            if marked && self.state_ok() {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cluster did not fail over {dead} within {limit:?}");
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("down").arg(&self.dir).status();
    }
}

/// Gateway replicas on one cluster, behind which sits one pair of recording mock upstreams (as
/// in production: many gateways, one reservation API).
pub struct Replicas {
    pub gateways: Vec<GatewayProcess>,
    pub reservation: MockUpstream,
    pub payment: MockUpstream,
    pub env: Vec<(String, String)>,
    pub client: reqwest::Client,
    /// The identity provider every replica trusts (`helpers::bearer(sub)` tokens verify).
    pub jwks: JwksServer,
}

impl Replicas {
    /// Starts `n` gateways on `cluster` with `extra` environment and waits until each is ready.
    pub async fn start(n: usize, cluster: &RedisCluster, extra: &[(&str, &str)]) -> Replicas {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let reservation = MockUpstream::start(Role::Reservation, loopback)
            .await
            .expect("mock");
        let payment = MockUpstream::start(Role::Payment, loopback)
            .await
            .expect("mock");
        let jwks = JwksServer::start(&TestKey::defaults()).await;
        let mut env = base_env(&reservation, &payment, Some(&cluster.addr()));
        env.extend(jwt_env(&jwks));
        env.push(("REDIS_CLUSTER".to_owned(), "true".to_owned()));
        if let Some(pw) = &cluster.password {
            env.push(("REDIS_PASSWORD".to_owned(), pw.clone()));
        }
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut gateways = Vec::new();
        for _ in 0..n {
            gateways.push(GatewayProcess::start(&env).await);
        }
        let r = Replicas {
            gateways,
            reservation,
            payment,
            env,
            jwks,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(64)
                .build()
                .expect("client"),
        };
        for i in 0..n {
            r.wait_ready(i, Duration::from_secs(20)).await;
        }
        r
    }

    pub fn len(&self) -> usize {
        self.gateways.len()
    }

    /// `path` on replica `i` (modulo the number of replicas: round robin by counter).
    pub fn url(&self, i: usize, path: &str) -> String {
        self.gateways[i % self.gateways.len()].url(path)
    }

    pub async fn ready(&self, i: usize) -> bool {
        matches!(self.client.get(self.url(i, "/readyz")).send().await, Ok(r) if r.status() == 200)
    }

    /// Replica `i`'s `/readyz` body `store` field (`up` or `down`).
    pub async fn store_state(&self, i: usize) -> String {
        let res = self.client.get(self.url(i, "/readyz")).send().await;
        let body: serde_json::Value = match res {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        body["store"].as_str().unwrap_or("").to_owned()
    }

    pub async fn wait_ready(&self, i: usize, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.ready(i).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway {i} not ready within {limit:?}");
    }

    /// Replica `i`'s `ratelimit_fallback_active` gauge (1 while it limits with local buckets).
    pub async fn rate_limit_fallback(&self, i: usize) -> bool {
        let text = self
            .client
            .get(self.url(i, "/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .any(|l| l.starts_with("ratelimit_fallback_active") && l.trim_end().ends_with(" 1"))
    }

    /// An `Authorization` value these gateways accept for `sub`.
    pub fn bearer(&self, sub: &str) -> String {
        bearer_for(&self.env, sub)
    }
}
