//! Shared fixtures for Starling's integration tests: real nodes on `127.0.0.1:0`, real sockets.
//!
//! Layout: [`TestNode`] starts a node with the WebSocket endpoint in-process; [`hs256_token`]
//! and friends mint the tokens clients present; [`eventually`] waits on a condition with a
//! deadline (tests never sleep to synchronise).

pub mod checker;
pub mod cluster;
pub mod http;
pub mod proxy;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use starling_config::Config;
use starling_node::Node;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running single node, serving its client plane on an OS-assigned port.
pub struct TestNode {
    /// The node's runtime handle (room and connection counts, metrics).
    pub node: Node,
    /// Where the client plane listens.
    pub http_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestNode {
    /// Starts a node configured by `config_toml` (a Starling TOML config; `node.http_addr` and
    /// `node.data_dir` are replaced by test values).
    pub async fn start(config_toml: &str) -> anyhow::Result<TestNode> {
        let mut config = Config::from_toml_str(config_toml).context("test config")?;
        Self::start_with(&mut config).await
    }

    /// Starts a node from an already-built configuration.
    pub async fn start_with(config: &mut Config) -> anyhow::Result<TestNode> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let data_dir =
            std::env::temp_dir().join(format!("starling-test-{}-{n}", std::process::id()));
        Self::start_in(config, data_dir).await
    }

    /// Starts a node from an already-built configuration with its data in `data_dir`.
    pub async fn start_in(
        config: &mut Config,
        data_dir: std::path::PathBuf,
    ) -> anyhow::Result<TestNode> {
        config.node.http_addr = "127.0.0.1:0".to_string();
        config.node.data_dir = data_dir;
        config.validate().context("test config is invalid")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let http_addr = listener.local_addr()?;
        let node = Node::new(config.clone())?;
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(starling_gateway::serve(listener, node.clone(), async {
            let _ = rx.await;
        }));
        Ok(TestNode {
            node,
            http_addr,
            shutdown: Some(tx),
            server: Some(server),
        })
    }

    /// `ws://127.0.0.1:PORT/connection/websocket`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.http_addr)
    }

    /// Stops accepting, disconnects every client with `shutdown`, and waits for the server.
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.node.shutdown(Duration::from_secs(5)).await;
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An HS256 connection token for user `sub`, optionally expiring at Unix second `exp`.
pub fn hs256_token(secret: &str, sub: &str, exp: Option<i64>) -> String {
    let mut claims = serde_json::json!({ "sub": sub });
    if let Some(exp) = exp {
        claims["exp"] = exp.into();
    }
    sign_hs256(secret, &claims)
}

/// An HS256 token with arbitrary claims.
pub fn sign_hs256(secret: &str, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing with an in-memory secret cannot fail")
}

/// An HS256 subscription token for `sub` on `channel`.
pub fn subscription_token(secret: &str, sub: &str, channel: &str, exp: Option<i64>) -> String {
    let mut claims = serde_json::json!({ "sub": sub, "channel": channel });
    if let Some(exp) = exp {
        claims["exp"] = exp.into();
    }
    sign_hs256(secret, &claims)
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Polls `condition` until it holds or `within` passes; returns whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until_ok(within, || {
        let held = condition();
        async move { if held.await { Ok(()) } else { Err(()) } }
    })
    .await
    .is_ok()
}

/// Retries `attempt` until it succeeds or `within` passes, as a client does with a temporary
/// error (a publish refused while a shard's replica is replaced); returns the success or the
/// last error.
pub async fn until_ok<T, E, F, Fut>(within: Duration, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if tokio::time::Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The secret [`BASE_CONFIG`] signs tokens with.
pub const SECRET: &str = "test-secret";

/// A configuration most tests share: history and presence in the default namespace, a
/// two-entry history namespace `small`, a history-less namespace `plain`, and open
/// subscribe/publish rules so tests can focus on behaviour rather than permissions.
pub const BASE_CONFIG: &str = r#"
[client.token]
hmac_secret_key = "test-secret"

[channel.without_namespace]
presence = true
join_leave = true
force_push_join_leave = true
history_size = 100
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true
allow_publish_for_subscriber = true
allow_presence_for_subscriber = true
allow_history_for_subscriber = true

[[channel.namespaces]]
name = "small"
history_size = 2
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true
allow_publish_for_client = true
allow_history_for_client = true

[[channel.namespaces]]
name = "plain"
allow_subscribe_for_client = true
allow_publish_for_client = true
"#;

/// How long a test waits for any single expected event before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// Connects user `user` to `node` with a fresh HS256 token signed with [`SECRET`].
pub async fn connect_as(
    node: &TestNode,
    user: &str,
    encoding: starling_protocol::Encoding,
) -> anyhow::Result<(starling_client::Client, starling_protocol::ConnectResult)> {
    let token = hs256_token(SECRET, user, None);
    Ok(starling_client::Client::builder(node.ws_url())
        .encoding(encoding)
        .token(token)
        .connect()
        .await?)
}

/// A subscribe request for `channel` with defaults.
pub fn sub(channel: &str) -> starling_protocol::SubscribeRequest {
    starling_protocol::SubscribeRequest {
        channel: channel.to_string(),
        ..Default::default()
    }
}

/// Waits up to [`WAIT`] for the next push that `pick` accepts; other pushes are skipped.
pub async fn next_push_where<T>(
    client: &starling_client::Client,
    mut pick: impl FnMut(starling_protocol::Push) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let push = tokio::time::timeout_at(deadline, client.next_push())
            .await
            .context("timed out waiting for a push")?
            .context("connection closed while waiting for a push")?;
        if let Some(found) = pick(push) {
            return Ok(found);
        }
    }
}

/// Waits for the next publication pushed in `channel`.
pub async fn next_pub(
    client: &starling_client::Client,
    channel: &str,
) -> anyhow::Result<starling_protocol::Publication> {
    next_push_where(client, |push| {
        if push.channel == channel {
            push.r#pub
        } else {
            None
        }
    })
    .await
}

/// Sends the nodes' logs to the test output when `STARLING_TEST_LOG` holds a filter (for
/// example `STARLING_TEST_LOG=starling_node=debug`); silent otherwise.
pub fn init_logs() {
    if let Ok(filter) = std::env::var("STARLING_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}
