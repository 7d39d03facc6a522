//! The SSE transport with bidirectional emulation: `GET /connection/sse?cf_connect=<commands>`
//! (what centrifuge-js's EventSource does), or `POST` with the commands as the body.
//!
//! JSON only. Every reply is one SSE `message` event (`data: <reply>`); later commands arrive
//! through `/emulation` (see `emulation`), addressed by the session id in the connect reply.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use starling_node::{Close, Node, TransportMode};
use starling_protocol::Encoding;

use crate::stream::open_stream;
use crate::stream::{
    Flow, Framer, TransportError, check_handshake, disconnect_push, read_body, sse_data,
};

/// Content type of every SSE response.
pub(crate) const EVENT_STREAM: &str = "text/event-stream; charset=utf-8";

/// The query parameter that carries the connect request, as Centrifugo names it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConnectParam {
    /// Commands (bidirectional SSE) or a `ConnectRequest` (uni-SSE), as JSON.
    pub(crate) cf_connect: Option<String>,
}

pub(crate) async fn sse(
    State(node): State<Node>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    method: Method,
    query: Result<Query<ConnectParam>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match open(node, remote, method, query, headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn open(
    node: Node,
    remote: SocketAddr,
    method: Method,
    query: Result<Query<ConnectParam>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, TransportError> {
    check_handshake(&node, &headers)?;
    let first = connect_data(&node, method, query, body).await?;
    if first.iter().all(u8::is_ascii_whitespace) {
        return Err(TransportError::MissingConnect);
    }
    Ok(open_stream(
        &node,
        "sse",
        remote,
        Encoding::Json,
        TransportMode::Emulation,
        EVENT_STREAM,
        SseFramer,
        first,
    )
    .await)
}

/// The connect data of an SSE request: the `cf_connect` query parameter of a `GET`, or the body
/// of a `POST` (at most `websocket.message_size_limit` bytes). Empty when neither has any.
pub(crate) async fn connect_data(
    node: &Node,
    method: Method,
    query: Result<Query<ConnectParam>, QueryRejection>,
    body: Body,
) -> Result<Bytes, TransportError> {
    if method == Method::GET {
        let Query(param) = query.map_err(|rejection| TransportError::MalformedQuery {
            reason: rejection.body_text(),
        })?;
        Ok(param.cf_connect.map(Bytes::from).unwrap_or_default())
    } else if method == Method::POST {
        read_body(body, node.config().websocket.message_size_limit).await
    } else {
        Err(TransportError::MethodNotAllowed { allow: "GET, POST" })
    }
}

/// SSE framing for the bidirectional transport: one unnamed event per reply.
struct SseFramer;

impl Framer for SseFramer {
    fn frames(&mut self, frames: &[Bytes], out: &mut BytesMut) -> Flow {
        for frame in frames {
            sse_data(frame, out);
            out.extend_from_slice(b"\n");
        }
        Flow::Continue
    }

    fn close(&mut self, close: &Close, out: &mut BytesMut) {
        if let Some(frame) = disconnect_push(Encoding::Json, close) {
            sse_data(&frame, out);
            out.extend_from_slice(b"\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::DisconnectCode;

    #[test]
    fn every_reply_is_one_event_and_close_is_a_disconnect_event() {
        let mut out = BytesMut::new();
        SseFramer.frames(
            &[Bytes::from_static(b"{}"), Bytes::from_static(b"{\"id\":1}")],
            &mut out,
        );
        SseFramer.close(&DisconnectCode::NoPong.into(), &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let events: Vec<&str> = text.split_terminator("\n\n").collect();
        assert_eq!(events[0], "data: {}");
        assert_eq!(events[1], "data: {\"id\":1}");
        assert!(
            events[2].starts_with("data: {\"push\":{\"disconnect\":{\"code\":3012"),
            "{text}"
        );
        assert_eq!(events.len(), 3);
    }
}
