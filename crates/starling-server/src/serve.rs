//! `starling serve`: load configuration, start the node, its cluster runtime and the client
//! plane, shut down on SIGINT/SIGTERM.
//!
//! Start-up order: bind the client plane (so its real address can be advertised), create the
//! node, start the cluster runtime (bind QUIC, start Raft, initialize or join), then serve
//! HTTP. Shutdown order: stop accepting, disconnect clients and drain rooms
//! (`Node::shutdown`), then stop the cluster runtime, so other members hear from this node
//! until its clients are gone.

use anyhow::Context as _;
use starling_config::{Config, LogFormat};
use starling_gateway::ServerTls;
use starling_node::Node;
use tokio::net::TcpListener;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use crate::cli::ServeArgs;
use crate::{cluster_setup, dev_secret};

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref(), starling_config::process_env())?;
    if let Some(addr) = args.http_addr {
        config.node.http_addr = addr;
    }
    if let Some(dir) = args.data_dir {
        config.node.data_dir = dir;
    }
    if let Some(node_id) = args.node_id {
        config.cluster.node_id = node_id;
    }
    if let Some(addr) = args.cluster_addr {
        config.cluster.addr = addr;
    }
    // Flags replace the configured seed list as a whole rather than adding to it, like every
    // other flag replaces its key.
    if !args.join.is_empty() {
        config.cluster.join = args.join;
    }
    if let Some(dir) = args.cluster_tls {
        config.cluster.tls_dir = dir;
    }
    config.validate()?;
    init_logging(&config)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.node.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            config.node.data_dir.display()
        )
    })?;
    if dev_secret::needed(&config) {
        config.client.token.hmac_secret_key = dev_secret::load_or_create(&config.node.data_dir)?;
        warn!(
            path = %dev_secret::path(&config.node.data_dir).display(),
            "no client.token key configured: using a generated development HMAC secret; \
             mint tokens with `starling gentoken --user NAME`"
        );
    }
    let addr = config.node.http_socket_addr()?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (node.http_addr)"))?;
    // Loaded before the node starts, so a bad certificate stops start-up with the key named.
    let tls = if config.http_server.tls.enabled {
        Some(ServerTls::from_config(&config.http_server.tls)?)
    } else {
        None
    };
    let http_addr = listener.local_addr()?;
    let settings = cluster_setup::settings(&config, http_addr).await?;
    let data_dir = config.node.data_dir.clone();
    let grace = config.node.shutdown_grace.0;
    let node_id = config.cluster.node_id;
    let node = Node::new(config)?;
    let cluster = match starling_node::start_cluster(&node, settings).await {
        Ok(cluster) => cluster,
        Err(error) => {
            // Nothing serves yet; stop the node's actors before reporting the failure.
            node.shutdown(grace).await;
            return Err(error).context("cannot start the cluster runtime");
        }
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    info!(
        version = env!("CARGO_PKG_VERSION"),
        http = %http_addr,
        cluster = %cluster.local_addr(),
        node_id,
        tls = tls.is_some(),
        data_dir = %data_dir.display(),
        "starling node started; WebSocket at {scheme}://{http_addr}/connection/websocket"
    );

    let served = match tls {
        Some(tls) => {
            starling_gateway::serve_tls(listener, node.clone(), tls, shutdown_signal()).await
        }
        None => starling_gateway::serve(listener, node.clone(), shutdown_signal()).await,
    };
    info!("shutting down: disconnecting clients");
    node.shutdown(grace).await;
    cluster.shutdown().await;
    info!("stopped");
    served?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    // STARLING_LOG (or RUST_LOG) overrides log.level, for debugging one module.
    let directive = std::env::var("STARLING_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| config.log.level.clone());
    let filter = EnvFilter::try_new(&directive)
        .with_context(|| format!("log.level: invalid filter {directive:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let result = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|error| anyhow::anyhow!("cannot install logger: {error}"))
}
