//! The HTTP-streaming transport with bidirectional emulation: `POST /connection/http_stream`.
//!
//! The request body holds the first commands (centrifuge-js sends its `connect`); the response
//! is a stream of replies for as long as the connection lives — newline-terminated JSON, or
//! length-delimited Protobuf when the request's `Content-Type` is `application/octet-stream`
//! (as centrifuge-js sends it in Protobuf mode). Later commands arrive through `/emulation`
//! (see `emulation`), addressed by the session id in the connect reply.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use starling_node::{Close, Node, TransportMode};
use starling_protocol::Encoding;

use crate::stream::open_stream;
use crate::stream::{
    Flow, Framer, TransportError, check_handshake, disconnect_push, preflight, read_body,
};

/// `Content-Type` that selects Protobuf, on requests and responses alike.
pub(crate) const PROTOBUF_CONTENT_TYPE: &str = "application/octet-stream";

pub(crate) async fn http_stream(
    State(node): State<Node>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if method == Method::OPTIONS {
        return preflight();
    }
    match open(node, remote, method, headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn open(
    node: Node,
    remote: SocketAddr,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, TransportError> {
    if method != Method::POST {
        return Err(TransportError::MethodNotAllowed {
            allow: "POST, OPTIONS",
        });
    }
    check_handshake(&node, &headers)?;
    let encoding = request_encoding(&headers);
    let first = read_body(body, node.config().websocket.message_size_limit).await?;
    if first.iter().all(u8::is_ascii_whitespace) {
        return Err(TransportError::MissingConnect);
    }
    let content_type = match encoding {
        Encoding::Json => "application/json",
        Encoding::Protobuf => PROTOBUF_CONTENT_TYPE,
    };
    let framer = StreamFramer { encoding };
    Ok(open_stream(
        &node,
        "http_stream",
        remote,
        encoding,
        TransportMode::Emulation,
        content_type,
        framer,
        first,
    )
    .await)
}

/// Protobuf when the client says its body is `application/octet-stream`, JSON otherwise.
pub(crate) fn request_encoding(headers: &HeaderMap) -> Encoding {
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case(PROTOBUF_CONTENT_TYPE));
    if protobuf {
        Encoding::Protobuf
    } else {
        Encoding::Json
    }
}

/// HTTP-streaming framing: every JSON reply ends with `\n` (the SDK reads lines); Protobuf
/// replies are already length-delimited and are written back to back.
struct StreamFramer {
    encoding: Encoding,
}

impl StreamFramer {
    fn write(&self, frame: &Bytes, out: &mut BytesMut) {
        out.extend_from_slice(frame);
        if self.encoding == Encoding::Json {
            out.extend_from_slice(b"\n");
        }
    }
}

impl Framer for StreamFramer {
    fn frames(&mut self, frames: &[Bytes], out: &mut BytesMut) -> Flow {
        for frame in frames {
            self.write(frame, out);
        }
        Flow::Continue
    }

    fn close(&mut self, close: &Close, out: &mut BytesMut) {
        if let Some(frame) = disconnect_push(self.encoding, close) {
            self.write(&frame, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use starling_protocol::{DisconnectCode, Reply, decode_replies, encode_reply};

    #[test]
    fn json_replies_are_newline_terminated_and_close_is_a_disconnect_push() {
        let mut framer = StreamFramer {
            encoding: Encoding::Json,
        };
        let mut out = BytesMut::new();
        framer.frames(
            &[Bytes::from_static(b"{}"), Bytes::from_static(b"{\"id\":1}")],
            &mut out,
        );
        framer.close(&DisconnectCode::Shutdown.into(), &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(text.ends_with('\n'));
        assert!(lines[2].contains("\"disconnect\":{\"code\":3001"), "{text}");
    }

    #[test]
    fn protobuf_replies_stay_length_delimited() {
        let mut framer = StreamFramer {
            encoding: Encoding::Protobuf,
        };
        let ping = encode_reply(Encoding::Protobuf, &Reply::default()).unwrap();
        let mut out = BytesMut::new();
        framer.frames(&[ping.clone(), ping], &mut out);
        framer.close(&DisconnectCode::Slow.into(), &mut out);
        let replies = decode_replies(Encoding::Protobuf, &out).unwrap();
        assert_eq!(replies.len(), 3);
        let disconnect = replies[2]
            .push
            .as_ref()
            .unwrap()
            .disconnect
            .as_ref()
            .unwrap();
        assert_eq!(disconnect.code, 3008);
    }

    #[test]
    fn octet_stream_content_type_selects_protobuf() {
        let mut headers = HeaderMap::new();
        assert_eq!(request_encoding(&headers), Encoding::Json);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        assert_eq!(request_encoding(&headers), Encoding::Protobuf);
    }
}
