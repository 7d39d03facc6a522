//! `GET /metrics`: the node's counters in Prometheus text format.
//!
//! Unauthenticated, like Centrifugo's: it exposes counts, never payloads or identities. Put the
//! client plane behind a proxy that hides it if that matters in your network.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use starling_node::Node;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn metrics(State(node): State<Node>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        node.metrics().render_prometheus(),
    )
}
