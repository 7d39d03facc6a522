//! The cluster endpoints of the server API: `GET /api/cluster` (what `starling cluster status`
//! prints) and `POST /api/cluster/remove` (what `starling cluster remove` asks for).
//!
//! They are Starling's own, not Centrifugo methods, so they have their own paths beside
//! `/api/{method}` (axum matches a static segment before a parameter, so `/api/cluster` never
//! reaches the method handler). They check the key first, exactly like `/api/{method}`, then
//! the HTTP method. Unlike Centrifugo methods, their failures are HTTP statuses with an error
//! body `{"error": {"code", "message", "reason"}}`: they are operator tools, and a script or the
//! CLI should not have to look inside a 200 to learn that a removal failed.

use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use starling_node::{Node, NodeError};
use tracing::{debug, info, warn};

use super::error::{ApiError, ApiErrorCode};
use super::{authorized, json_response};

/// `GET /api/cluster`: this node's view of the cluster, as `starling_node::ClusterStatus`
/// serializes it.
pub(crate) async fn status(
    State(node): State<Node>,
    http_method: Method,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers, &node.config().http_api.key) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if http_method != Method::GET {
        return method_not_allowed("GET");
    }
    match node.cluster_status() {
        Some(status) => json_response(&status),
        None => no_cluster(),
    }
}

/// The body of `POST /api/cluster/remove`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveRequest {
    /// The member to remove.
    node_id: u64,
}

/// `POST /api/cluster/remove` with `{"node_id": N}`: moves the member's shards to others and
/// removes it. Answers `{}` once the leader has committed the removal.
pub(crate) async fn remove(
    State(node): State<Node>,
    http_method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&headers, &node.config().http_api.key) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if http_method != Method::POST {
        return method_not_allowed("POST");
    }
    let limit = node.config().http_api.max_request_body_size;
    let body = match to_bytes(body, limit).await {
        Ok(body) => body,
        Err(error) => {
            debug!(%error, limit, "cluster remove: body refused");
            return cluster_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ApiErrorCode::BadRequest,
                format!("the body is larger than {limit} bytes"),
            );
        }
    };
    let request: RemoveRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return cluster_error(
                StatusCode::BAD_REQUEST,
                ApiErrorCode::BadRequest,
                format!("expected {{\"node_id\": N}}: {error}"),
            );
        }
    };
    let Some(status) = node.cluster_status() else {
        return no_cluster();
    };
    // Checked here as well as in the node so an unknown id is a 404 the CLI can explain,
    // not a generic failure.
    if !status.members.iter().any(|m| m.node_id == request.node_id) {
        return cluster_error(
            StatusCode::NOT_FOUND,
            ApiErrorCode::NotFound,
            format!("node {} is not a member of the cluster", request.node_id),
        );
    }
    info!(
        node_id = request.node_id,
        "server API: removing cluster member"
    );
    match node.cluster_remove(request.node_id).await {
        Ok(()) => {
            info!(
                node_id = request.node_id,
                "server API: cluster member removed"
            );
            json_response(&serde_json::json!({}))
        }
        Err(error) => {
            warn!(node_id = request.node_id, %error, "server API: cluster remove failed");
            let status = match error {
                // Nothing is wrong with the request: the cluster cannot act on it right now.
                NodeError::PeerUnavailable { .. } | NodeError::NoQuorum => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                NodeError::Remote {
                    bad_request: true, ..
                } => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let reason = error.to_string();
            cluster_error(status, ApiError::Node(error).code(), reason)
        }
    }
}

/// 503: the node runs without a cluster runtime (an embedded node, as in tests).
fn no_cluster() -> Response {
    cluster_error(
        StatusCode::SERVICE_UNAVAILABLE,
        ApiErrorCode::NotAvailable,
        "this node runs without a cluster runtime".to_owned(),
    )
}

fn method_not_allowed(allow: &'static str) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, HeaderValue::from_static(allow))],
    )
        .into_response()
}

/// `{"error": {"code": .., "message": .., "reason": ..}}` with `status`.
fn cluster_error(status: StatusCode, code: ApiErrorCode, reason: String) -> Response {
    #[derive(Serialize)]
    struct ErrorBody {
        code: u32,
        message: &'static str,
        reason: String,
    }
    #[derive(Serialize)]
    struct Reply {
        error: ErrorBody,
    }
    let mut response = json_response(&Reply {
        error: ErrorBody {
            code: code.code(),
            message: code.message(),
            reason,
        },
    });
    *response.status_mut() = status;
    response
}
