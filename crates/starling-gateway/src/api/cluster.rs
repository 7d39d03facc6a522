//! The cluster endpoints of the server API: `GET /api/cluster` (what `starling cluster status`
//! prints), `POST /api/cluster/remove` and `POST /api/cluster/drain` (membership), and
//! `POST /api/shards/move`, `/api/shards/split` and `/api/shards/rebalance` (the shard map).
//! The shard commands and drain answer once the hand-offs they started are over, with what
//! moved and how long it took (`starling_node::AdminReport`).
//!
//! They are Starling's own, not Centrifugo methods, so they have their own paths beside
//! `/api/{method}` (axum matches a static segment before a parameter, so `/api/cluster` never
//! reaches the method handler). They check the key first, exactly like `/api/{method}`, then
//! the HTTP method. Unlike Centrifugo methods, their failures are HTTP statuses with an error
//! body `{"error": {"code", "message", "reason"}}`: they are operator tools, and a script or the
//! CLI should not have to look inside a 200 to learn that a removal failed.

use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use starling_node::{AdminOp, AdminReport, Node, NodeError};
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

/// The body of `POST /api/cluster/drain`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainRequest {
    node_id: u64,
}

/// The body of `POST /api/shards/move`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveRequest {
    shard: u32,
    to: u64,
}

/// The body of `POST /api/shards/split` and `/api/shards/rebalance`: nothing (or `{}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArguments {}

/// `POST /api/cluster/drain` with `{"node_id": N}`: moves every shard off the member (with
/// hand-offs) and marks it draining; its clients are then advised to reconnect elsewhere.
pub(crate) async fn drain(
    State(node): State<Node>,
    http_method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    admin(
        node,
        http_method,
        headers,
        body,
        "{\"node_id\": N}",
        |r: DrainRequest| AdminOp::Drain {
            node: starling_node::NodeId(r.node_id),
        },
    )
    .await
}

/// `POST /api/shards/move` with `{"shard": S, "to": N}`: moves one shard with a hand-off.
pub(crate) async fn move_shard(
    State(node): State<Node>,
    http_method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    admin(
        node,
        http_method,
        headers,
        body,
        "{\"shard\": S, \"to\": N}",
        |r: MoveRequest| AdminOp::MoveShard {
            shard: starling_node::ShardId(r.shard),
            to: starling_node::NodeId(r.to),
        },
    )
    .await
}

/// `POST /api/shards/split` (doubles the shard count; no room changes owner) and
/// `POST /api/shards/rebalance` (moves shards to their rendezvous owners, a few at a time):
/// the path names the command, the body is empty or `{}`.
pub(crate) async fn shards_without_arguments(
    State(node): State<Node>,
    uri: Uri,
    http_method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let op = if uri.path().ends_with("/split") {
        AdminOp::Split
    } else {
        AdminOp::Rebalance
    };
    admin(node, http_method, headers, body, "{}", |_: NoArguments| op).await
}

/// What the shard commands answer.
#[derive(Debug, Serialize)]
struct AdminAnswer {
    /// Shards moved.
    moves: Vec<MoveAnswer>,
    shard_map_version: u64,
    shard_count: u32,
    /// Rooms handed over.
    rooms: u64,
    /// Milliseconds from committing the moves to the new owners holding their rooms.
    handoff_ms: u64,
    /// Moves whose old owner went silent before shipping every room.
    incomplete: u32,
    /// Milliseconds the whole command took on the node that answered.
    elapsed_ms: u64,
}

#[derive(Debug, Serialize)]
struct MoveAnswer {
    shard: u32,
    from: u64,
    to: u64,
}

fn answer(report: AdminReport, elapsed_ms: u64) -> AdminAnswer {
    AdminAnswer {
        moves: report
            .moves
            .iter()
            .map(|(shard, from, to)| MoveAnswer {
                shard: shard.0,
                from: from.0,
                to: to.0,
            })
            .collect(),
        shard_map_version: report.map_version,
        shard_count: report.shard_count,
        rooms: report.rooms,
        handoff_ms: report.handoff_millis,
        incomplete: report.incomplete,
        elapsed_ms,
    }
}

/// The shared shape of the admin commands: key, method, a JSON body of type `R` (empty means
/// `{}`), then the command on the leader.
async fn admin<R: serde::de::DeserializeOwned>(
    node: Node,
    http_method: Method,
    headers: HeaderMap,
    body: Body,
    shape: &'static str,
    op: impl FnOnce(R) -> AdminOp,
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
        Err(_) => {
            return cluster_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ApiErrorCode::BadRequest,
                format!("the body is larger than {limit} bytes"),
            );
        }
    };
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    let request: R = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => {
            return cluster_error(
                StatusCode::BAD_REQUEST,
                ApiErrorCode::BadRequest,
                format!("expected {shape}: {error}"),
            );
        }
    };
    if node.cluster_status().is_none() {
        return no_cluster();
    }
    let op = op(request);
    let started = std::time::Instant::now();
    match node.admin(op.clone()).await {
        Ok(report) => {
            let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            info!(
                ?op,
                elapsed_ms = elapsed,
                "server API: operator command done"
            );
            json_response(&answer(report, elapsed))
        }
        Err(error) => {
            warn!(?op, %error, "server API: operator command failed");
            let status = match error {
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
