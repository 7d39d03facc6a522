//! The HTTP router and the accept loop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, get};
use starling_node::Node;
use tokio::net::TcpListener;
use tracing::warn;

use crate::websocket::websocket;

/// All client-plane routes, with `node` as their state.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/connection/websocket", get(websocket))
        .route("/api/{method}", any(crate::api::handle))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { (StatusCode::OK, "ready\n") }))
        .with_state(node)
}

/// Serves the client plane on `listener` until `shutdown` completes. Then it stops accepting;
/// open WebSocket connections are closed by [`Node::shutdown`], which the caller runs next.
pub async fn serve<F>(listener: TcpListener, node: Node, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    if node.config().http_api.key.is_empty() {
        warn!("http_api.key is empty: the server API at /api is disabled and answers 401");
    }
    let app = router(node).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
