//! What the HTTP-based transports share: the task that turns a connection's outbound queue into
//! a streaming response body, the handshake hook, request-body limits, and [`TransportError`]
//! with its one mapping to HTTP statuses.
//!
//! Each transport supplies a [`Framer`] that writes a batch of encoded replies in its framing
//! (newline-delimited JSON, length-delimited Protobuf, SSE events). A close becomes a
//! `disconnect` push written last, since an HTTP response has no close frame to carry a code.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use starling_node::{Close, ConnectionHandle, Node, TransportMode};
use starling_protocol::{Disconnect, Encoding, Push, Reply, encode_reply};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::origin::origin_allowed;

/// Why an HTTP transport request was refused before a connection existed. Each maps to one
/// HTTP status in [`TransportError::status`]; none of them affects the node.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The endpoint does not take this HTTP method.
    #[error("method not allowed here (allowed: {allow})")]
    MethodNotAllowed {
        /// The methods it does take, for the `Allow` header.
        allow: &'static str,
    },
    /// The request body is over the limit (or could not be read).
    #[error("request body over {limit} bytes or unreadable")]
    BodyTooLarge {
        /// The limit in bytes (`websocket.message_size_limit`).
        limit: usize,
    },
    /// No connect command: no `cf_connect` parameter and no body.
    #[error("no connect command in the request")]
    MissingConnect,
    /// The query string does not decode.
    #[error("malformed query string: {reason}")]
    MalformedQuery {
        /// The decoder's message.
        reason: String,
    },
    /// The unidirectional connect request is not a JSON `ConnectRequest`.
    #[error("connect request is not a JSON ConnectRequest: {source}")]
    MalformedConnect {
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The emulation request does not decode, or lacks its node, session or data.
    #[error("malformed emulation request: {reason}")]
    MalformedEmulation {
        /// What is wrong.
        reason: String,
    },
    /// The `Origin` header is not in `client.allowed_origins` (or not same-origin).
    #[error("origin {origin:?} is not allowed")]
    OriginNotAllowed {
        /// The refused origin (cut to 200 characters for the log).
        origin: String,
    },
    /// The emulation request is for a session on another node.
    #[error("emulation request for node {node:?}, which is not this node")]
    UnknownNode {
        /// The node the request names.
        node: String,
    },
}

impl TransportError {
    /// The HTTP status each refusal answers with (documented in `docs/transports.md`).
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            TransportError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            TransportError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            TransportError::MissingConnect
            | TransportError::MalformedQuery { .. }
            | TransportError::MalformedConnect { .. }
            | TransportError::MalformedEmulation { .. } => StatusCode::BAD_REQUEST,
            TransportError::UnknownNode { .. } => StatusCode::NOT_FOUND,
            TransportError::OriginNotAllowed { .. } => StatusCode::FORBIDDEN,
        }
    }
}

impl IntoResponse for TransportError {
    fn into_response(self) -> Response {
        debug!(error = %self, "transport request refused");
        let status = self.status();
        let body = format!("{self}\n");
        match self {
            TransportError::MethodNotAllowed { allow } => (
                status,
                [(header::ALLOW, HeaderValue::from_static(allow))],
                body,
            )
                .into_response(),
            _ => (status, body).into_response(),
        }
    }
}

/// The check every client-plane handshake (WebSocket upgrade, HTTP-streaming, SSE, uni-SSE)
/// passes before a connection is opened: `client.allowed_origins` (see `origin`).
pub(crate) fn check_handshake(node: &Node, headers: &HeaderMap) -> Result<(), TransportError> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let origin = text(header::ORIGIN);
    if origin_allowed(
        origin,
        text(header::HOST),
        &node.config().client.allowed_origins,
    ) {
        return Ok(());
    }
    node.metrics().origin_rejected();
    Err(TransportError::OriginNotAllowed {
        origin: origin.unwrap_or_default().chars().take(200).collect(),
    })
}

/// Reads a request body of at most `limit` bytes.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, TransportError> {
    to_bytes(body, limit)
        .await
        .map_err(|_| TransportError::BodyTooLarge { limit })
}

/// The answer to a browser's CORS pre-flight request, as Centrifugo gives it.
pub(crate) fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("300"),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, OPTIONS"),
            ),
        ],
    )
        .into_response()
}

/// Whether the stream goes on after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    End,
}

/// A transport's framing of encoded replies into response-body bytes.
pub(crate) trait Framer: Send + 'static {
    /// Appends `frames` (encoded replies, in order) to `out`. A framer that finds the stream
    /// must end (a refused unidirectional connect) returns [`Flow::End`].
    fn frames(&mut self, frames: &[Bytes], out: &mut BytesMut) -> Flow;

    /// Appends what tells the client the connection is closing with `close`.
    fn close(&mut self, close: &Close, out: &mut BytesMut);
}

/// Response headers of every streaming transport: no caching, no proxy buffering.
pub(crate) fn streaming_response(content_type: &'static str, body: Body) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CACHE_CONTROL,
                "private, no-cache, no-store, must-revalidate, max-age=0",
            ),
            (header::PRAGMA, "no-cache"),
            (header::EXPIRES, "0"),
            // nginx buffers responses unless told not to; a buffered stream is no stream.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// A body that streams `handle`'s outbound queue through `framer` until the connection closes
/// or the client goes away.
///
/// One task per connection owns the handle. It hands each framed batch to the body through a
/// one-slot channel, so a slow client holds the next batch in the `Outbound` queue, whose byte
/// budget then closes it as `slow` (3008) exactly as on WebSocket. When hyper drops the body
/// (the client is gone) the channel closes, and the task tells the connection its transport
/// ended.
pub(crate) fn stream_connection<F: Framer>(handle: ConnectionHandle, mut framer: F) -> Body {
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        loop {
            let batch = tokio::select! {
                batch = handle.outbound.next_batch() => batch,
                () = tx.closed() => break,
            };
            let mut out = BytesMut::new();
            let mut flow = framer.frames(&batch.frames, &mut out);
            if let Some(close) = &batch.close {
                framer.close(close, &mut out);
                flow = Flow::End;
            }
            if !out.is_empty() && tx.send(out.freeze()).await.is_err() {
                break;
            }
            if flow == Flow::End {
                break;
            }
        }
        drop(tx);
        debug!(client = %handle.client_id, "stream closed");
        handle.closed().await;
    });
    body_from(rx)
}

/// A body holding only the disconnect push for a connection the node refused to open.
/// What every HTTP streaming transport does once its request is checked: open a connection in
/// `mode`, hand it the client's first message (`first`), and answer with its outbound stream
/// through `framer` — or, when the node refuses the connection, with a body that carries only
/// the refusal's disconnect (a 200 stream, so the SDK reads the code as it would on WebSocket).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn open_stream<F: Framer>(
    node: &Node,
    transport: &'static str,
    remote: SocketAddr,
    encoding: Encoding,
    mode: TransportMode,
    content_type: &'static str,
    framer: F,
    first: Bytes,
) -> Response {
    match node
        .open_connection_with(encoding, Some(remote), mode)
        .await
    {
        Ok(handle) => {
            debug!(client = %handle.client_id, %remote, ?encoding, transport, "stream open");
            handle.inbound(first);
            streaming_response(content_type, stream_connection(handle, framer))
        }
        Err(error) => {
            info!(%remote, %error, transport, "connection refused");
            streaming_response(content_type, refused_body(framer, &error.refusal()))
        }
    }
}

pub(crate) fn refused_body<F: Framer>(mut framer: F, close: &Close) -> Body {
    let mut out = BytesMut::new();
    framer.close(close, &mut out);
    Body::from(out.freeze())
}

fn body_from(rx: mpsc::Receiver<Bytes>) -> Body {
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<Bytes, Infallible>(chunk), rx))
    });
    Body::from_stream(chunks)
}

/// A `disconnect` push for `close`, encoded as a reply in `encoding`.
pub(crate) fn disconnect_push(encoding: Encoding, close: &Close) -> Option<Bytes> {
    let reply = Reply::push(Push {
        disconnect: Some(disconnect_of(close)),
        ..Push::default()
    });
    match encode_reply(encoding, &reply) {
        Ok(frame) => Some(frame),
        Err(error) => {
            warn!(%error, "cannot encode disconnect push");
            None
        }
    }
}

/// The protocol's `Disconnect` for a close.
pub(crate) fn disconnect_of(close: &Close) -> Disconnect {
    Disconnect {
        code: u32::from(close.code),
        reason: close.reason.to_string(),
        reconnect: close.reconnect,
    }
}

/// Appends `payload` as the `data:` lines of one SSE event (without the blank line that ends
/// it). Encoded JSON is one line, but a payload with line breaks stays one event: each line
/// becomes its own `data:` field, which the client joins back with `\n`.
pub(crate) fn sse_data(payload: &[u8], out: &mut BytesMut) {
    for line in payload.split(|b| *b == b'\n' || *b == b'\r') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::DisconnectCode;

    #[test]
    fn sse_payload_with_line_breaks_stays_one_event() {
        let mut out = BytesMut::new();
        sse_data(b"{\"a\":\n1}", &mut out);
        assert_eq!(&out[..], b"data: {\"a\":\ndata: 1}\n");
    }

    #[test]
    fn disconnect_push_carries_code_reason_and_advice() {
        let close = Close::from(DisconnectCode::Shutdown);
        let frame = disconnect_push(Encoding::Json, &close).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(json["push"]["disconnect"]["code"], 3001);
        assert_eq!(json["push"]["disconnect"]["reason"], "shutdown");
        assert_eq!(json["push"]["disconnect"]["reconnect"], true);
    }

    #[test]
    fn each_refusal_has_its_documented_status() {
        assert_eq!(TransportError::MissingConnect.status(), 400);
        assert_eq!(
            TransportError::BodyTooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            TransportError::UnknownNode { node: "x".into() }.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            TransportError::MethodNotAllowed { allow: "POST" }.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
