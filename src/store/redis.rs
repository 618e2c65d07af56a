//! The Redis backend: one multiplexed, self-reconnecting connection (a `ConnectionManager`, or a
//! cluster connection that follows MOVED/ASK and failovers), and [`RedisStore::eval`], which runs
//! a policy's Lua script with EVALSHA (loaded once, reloaded on NOSCRIPT) under a short timeout.
//!
//! The connection is made in the background: until it exists every call fails fast with
//! `StoreError::Unavailable`, so a gateway started before Redis simply is not ready yet.
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ErrorKind, FromRedisValue, IntoConnectionInfo, RedisError, RedisResult, Script,
    ServerErrorKind, ToRedisArgs,
};
use tokio::sync::OnceCell;
use tracing::Instrument;

use super::StoreError;
use crate::config::RedisConfig;
use crate::telemetry::traces;

/// Upper bound on one store call. A policy that cannot get an answer by then treats the store as
/// down for this request (fallback or fail closed), so Redis trouble never stalls requests.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);

/// One run of a policy script, `EVALSHA sha numkeys keys… args…`, written straight into the
/// command's own buffer. (redis-rs's `ScriptInvocation` first collects keys and arguments in
/// `Vec`s of their own, then copies them into the command on every call: five to ten
/// allocations a call, and a stored idempotent answer's body copied twice.)
pub struct ScriptCall<'s> {
    script: &'s Script,
    cmd: Cmd,
}

impl<'s> ScriptCall<'s> {
    /// The call with its keys (`KEYS[1..]`); add the arguments (`ARGV[1..]`) with [`Self::arg`].
    pub fn new<K: ToRedisArgs>(script: &'s Script, keys: &[K]) -> Self {
        let mut cmd = Cmd::with_capacity(8, 256);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys.len());
        for key in keys {
            cmd.arg(key);
        }
        ScriptCall { script, cmd }
    }

    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// EVALSHA; on NOSCRIPT (a restarted or flushed server, a new cluster node) the script is
    /// loaded and the same command sent again.
    async fn invoke<T: FromRedisValue>(
        &self,
        con: &mut impl redis::aio::ConnectionLike,
    ) -> RedisResult<T> {
        match self.cmd.query_async(con).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.load_async(con).await?;
                self.cmd.query_async(con).await
            }
            other => other,
        }
    }
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

#[derive(Clone)]
pub struct RedisStore {
    conn: Arc<OnceCell<Conn>>,
    cluster: bool,
}

impl RedisStore {
    pub fn new(cfg: &RedisConfig) -> Result<RedisStore, StoreError> {
        let cell = Arc::new(OnceCell::new());
        let store = RedisStore {
            conn: cell.clone(),
            cluster: cfg.cluster,
        };
        let cfg = cfg.clone();
        // Validate the URLs now so a typo fails start-up, not the first request.
        for url in &cfg.urls {
            url.as_str()
                .into_connection_info()
                .map_err(|e| StoreError::Unavailable(format!("bad REDIS_ADDR: {e}")))?;
        }
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match connect(&cfg).await {
                    Ok(conn) => {
                        let _ = cell.set(conn);
                        tracing::info!(store.cluster = cfg.cluster, "connected to redis");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "redis not reachable yet");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        Ok(store)
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        self.conn
            .get()
            .cloned()
            .ok_or_else(|| StoreError::Unavailable("not connected yet".to_owned()))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let cmd = redis::cmd("PING");
        self.query::<String>(&cmd).await.map(|_| ())
    }

    /// Runs one command (for the rare non-script call).
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.call("redis", "COMMAND", |conn| async move {
            match conn {
                Conn::Single(mut c) => cmd.query_async(&mut c).await,
                Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
            }
        })
        .await
    }

    /// Runs a policy script: EVALSHA, falling back to loading it on NOSCRIPT.
    pub async fn eval<T: FromRedisValue>(&self, call: &ScriptCall<'_>) -> Result<T, StoreError> {
        self.call("redis EVALSHA", "EVALSHA", |conn| async move {
            match conn {
                Conn::Single(mut c) => call.invoke(&mut c).await,
                Conn::Cluster(mut c) => call.invoke(&mut c).await,
            }
        })
        .await
    }

    /// One call on the connection: traced when the request is sampled, bounded by
    /// [`CALL_TIMEOUT`], errors sorted into [`StoreError`].
    async fn call<T, F, Fut>(
        &self,
        name: &'static str,
        op: &'static str,
        f: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let conn = self.conn()?;
        traced(name, op, async {
            tokio::time::timeout(CALL_TIMEOUT, f(conn))
                .await
                .map_err(|_| StoreError::Timeout)?
                .map_err(map_err)
        })
        .await
    }
}

impl RedisStore {
    /// `WAIT replicas timeout` on the connection that carried the last write to `key` (for a
    /// cluster: that key's master), so the write is known to be on `replicas` replicas before the
    /// caller relies on it. Returns how many acknowledged within the store timeout.
    ///
    /// WAIT blocks the connection it runs on, and the connection is shared (multiplexed): other
    /// calls queue behind it for as long as replication takes (sub-millisecond on a healthy
    /// link, up to the timeout on a broken one). That is the price of `REDIS_WAIT_REPLICAS`.
    pub async fn wait_replicas(&self, key: &str, replicas: u32) -> Result<u32, StoreError> {
        let wait_ms = u64::try_from((CALL_TIMEOUT * 4 / 5).as_millis()).unwrap_or(200);
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(wait_ms);
        self.call("redis WAIT", "WAIT", |conn| async move {
            match conn {
                Conn::Single(mut c) => cmd.query_async::<u32>(&mut c).await,
                Conn::Cluster(mut c) => {
                    use redis::cluster_routing::{
                        Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr,
                    };
                    let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                    let routing =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                    let v = c.route_command(cmd, routing).await?;
                    redis::from_redis_value::<u32>(v).map_err(RedisError::from)
                }
            }
        })
        .await
    }
}

/// Runs `call` inside a client span for the store (issue #7) when the request's trace is
/// sampled; otherwise as it is, so an unsampled request pays one check, not a span.
async fn traced<T>(
    name: &'static str,
    op: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    if !traces::is_sampled(&tracing::Span::current()) {
        return call.await;
    }
    let span = tracing::info_span!(
        "store",
        otel.name = name,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        db.system.name = "redis",
        db.operation.name = op,
        error.type = tracing::field::Empty,
    );
    let result = call.instrument(span.clone()).await;
    if let Err(e) = &result {
        span.record("otel.status_code", "error");
        let kind = match e {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Timeout => "timeout",
            StoreError::Protocol(_) => "protocol_error",
        };
        span.record("error.type", kind);
    }
    result
}

fn map_err(e: RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
    {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Protocol(e.to_string())
    }
}

/// `TCP_NODELAY` on: the crate leaves Nagle on, which holds back a small command written while an
/// earlier one is unanswered (every pipelined call of a multiplexed connection).
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
}

async fn connect(cfg: &RedisConfig) -> Result<Conn, RedisError> {
    if cfg.cluster {
        // MOVED/ASK are followed at once; a node that drops is reconnected in the background
        // while the call falls back to its shard's replica (which answers MOVED to the new
        // master once one is promoted) and a slot-map refresh. The default retry waits (1.28 s
        // and up) could never fit in CALL_TIMEOUT, so TRYAGAIN/CLUSTERDOWN are retried after
        // 10–100 ms instead; what still fails within CALL_TIMEOUT is the policy's fallback.
        let mut builder =
            redis::cluster::ClusterClientBuilder::new(cfg.urls.iter().map(String::as_str))
                .connection_timeout(Duration::from_secs(1))
                .response_timeout(CALL_TIMEOUT)
                .retries(3)
                .min_retry_wait(10)
                .max_retry_wait(100)
                .tcp_settings(tcp_settings());
        if let Some(pw) = &cfg.password {
            builder = builder.password(pw.expose());
        }
        if cfg.tls {
            builder = builder.tls(redis::TlsMode::Secure);
        }
        let client = builder.build()?;
        Ok(Conn::Cluster(client.get_async_connection().await?))
    } else {
        let mut info = cfg.urls[0].as_str().into_connection_info()?;
        let mut settings = info.redis_settings().clone().set_db(cfg.db);
        if let Some(pw) = &cfg.password {
            settings = settings.set_password(pw.expose());
        }
        info = info
            .set_redis_settings(settings)
            .set_tcp_settings(tcp_settings());
        let client = redis::Client::open(info)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            // `call` bounds every call with CALL_TIMEOUT already: one timer per call, not two.
            .set_response_timeout(None)
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        Ok(Conn::Single(
            ConnectionManager::new_with_config(client, config).await?,
        ))
    }
}
