//! The HTTP router and the public entry points that serve it, plain or over TLS.

use std::future::Future;
use std::io;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, get};
use starling_node::Node;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::warn;

use crate::accept::ConnectionSettings;
use crate::emulation::emulation;
use crate::http_stream::http_stream;
use crate::sse::sse;
use crate::tls::ServerTls;
use crate::uni_sse::uni_sse;
use crate::websocket::websocket;

/// All client-plane routes, with `node` as their state.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/connection/websocket", get(websocket))
        .route("/connection/http_stream", any(http_stream))
        .route("/connection/sse", any(sse))
        .route("/emulation", any(emulation))
        .route("/connection/uni_sse", any(uni_sse))
        // Static paths win over `{method}` in axum's router, whatever the order here.
        .route("/api/cluster", any(crate::api::cluster::status))
        .route("/api/cluster/remove", any(crate::api::cluster::remove))
        .route("/api/cluster/drain", any(crate::api::cluster::drain))
        .route("/api/shards/move", any(crate::api::cluster::move_shard))
        .route(
            "/api/shards/split",
            any(crate::api::cluster::shards_without_arguments),
        )
        .route(
            "/api/shards/rebalance",
            any(crate::api::cluster::shards_without_arguments),
        )
        .route("/api/{method}", any(crate::api::handle))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { (StatusCode::OK, "ready\n") }))
        .with_state(node)
}

/// Serves the client plane on `listener` until `shutdown` completes. Then it stops accepting;
/// open WebSocket connections are closed by [`Node::shutdown`], which the caller runs next.
///
/// Every connection must send a complete request head within
/// `http_server.read_header_timeout` (see the `accept` module for why `axum::serve` is not
/// used).
pub async fn serve<F>(listener: TcpListener, node: Node, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let settings = connection_settings(node, None);
    crate::accept::run(listener, settings, shutdown).await
}

/// Like [`serve`], but every connection must first complete a TLS handshake with `tls`
/// (`wss://`, `https://`); the handshake shares the `http_server.read_header_timeout` deadline.
pub async fn serve_tls<F>(
    listener: TcpListener,
    node: Node,
    tls: ServerTls,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let settings = connection_settings(node, Some(tls.acceptor()));
    crate::accept::run(listener, settings, shutdown).await
}

fn connection_settings(node: Node, tls: Option<TlsAcceptor>) -> ConnectionSettings {
    if node.config().http_api.key.is_empty() {
        warn!("http_api.key is empty: the server API at /api is disabled and answers 401");
    }
    let read_header_timeout = node.config().http_server.read_header_timeout.get();
    ConnectionSettings {
        app: router(node),
        read_header_timeout,
        tls,
    }
}
