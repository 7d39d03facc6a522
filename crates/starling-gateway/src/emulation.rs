//! `POST /emulation`: client-to-server commands of the bidirectional emulation transports
//! (HTTP-streaming and SSE), after the first request opened the stream.
//!
//! The body is an `EmulationRequest {node, session, data}` — JSON, where `data` is a JSON string
//! holding the commands, or Protobuf when `Content-Type` is `application/octet-stream`, where
//! `data` holds the length-delimited commands. The commands go to the connection holding
//! `session`, which decodes them in its own encoding, as if they had come on its stream.
//!
//! Answers, as Centrifugo gives them: **204** once the commands are handed over, and also when
//! this node has no such session (it ended; its stream has ended too, which is what the client
//! acts on — and a prober learns nothing about which sessions exist); **404** for another
//! node's session (cross-node routing comes with the cluster); **400** for a body that does not
//! decode or lacks node, session or data; **413** over `websocket.message_size_limit`; **405**
//! for other methods; `OPTIONS` gets the CORS pre-flight answer.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prost::Message as _;
use starling_node::{Node, NodeError};
use starling_protocol::{EmulationRequest, Encoding};
use tracing::debug;

use crate::http_stream::request_encoding;
use crate::stream::{TransportError, preflight, read_body};

pub(crate) async fn emulation(
    State(node): State<Node>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if method == Method::OPTIONS {
        return preflight();
    }
    match deliver(&node, method, &headers, body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn deliver(
    node: &Node,
    method: Method,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), TransportError> {
    if method != Method::POST {
        return Err(TransportError::MethodNotAllowed {
            allow: "POST, OPTIONS",
        });
    }
    let body = read_body(body, node.config().websocket.message_size_limit).await?;
    let (target, session, data) = decode(request_encoding(headers), &body)?;
    if target != node.name() {
        return Err(TransportError::UnknownNode { node: target });
    }
    match node.emulate(&session, data) {
        Ok(()) => Ok(()),
        Err(NodeError::UnknownSession) => {
            debug!("emulation request for a session this node does not hold");
            Ok(())
        }
        Err(error) => Err(TransportError::MalformedEmulation {
            reason: error.to_string(),
        }),
    }
}

/// Node, session and the commands of one emulation request.
fn decode(encoding: Encoding, body: &[u8]) -> Result<(String, String, Bytes), TransportError> {
    let malformed = |reason: String| TransportError::MalformedEmulation { reason };
    let request = match encoding {
        Encoding::Protobuf => {
            EmulationRequest::decode(body).map_err(|error| malformed(error.to_string()))?
        }
        Encoding::Json => {
            serde_json::from_slice(body).map_err(|error| malformed(error.to_string()))?
        }
    };
    let EmulationRequest {
        node,
        session,
        data,
    } = request;
    if node.is_empty() || session.is_empty() {
        return Err(malformed("node and session are required".into()));
    }
    let data = match encoding {
        Encoding::Protobuf => data,
        // The JSON SDK sends its encoded commands as a JSON string.
        Encoding::Json => serde_json::from_slice::<String>(&data)
            .map(Bytes::from)
            .map_err(|_| malformed("data must be a JSON string of commands".into()))?,
    };
    if data.is_empty() {
        return Err(malformed("no commands in data".into()));
    }
    Ok((node, session, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_request_data_is_the_unescaped_command_string() {
        let body = br#"{"node":"n1","session":"s1","data":"{\"id\":2,\"ping\":{}}"}"#;
        let (node, session, data) = decode(Encoding::Json, body).unwrap();
        assert_eq!((node.as_str(), session.as_str()), ("n1", "s1"));
        assert_eq!(&data[..], br#"{"id":2,"ping":{}}"#);
    }

    #[test]
    fn protobuf_request_data_is_taken_as_is() {
        let request = EmulationRequest {
            node: "n1".into(),
            session: "s1".into(),
            data: Bytes::from_static(b"\x02\x08\x01"),
        };
        let (_, _, data) = decode(Encoding::Protobuf, &request.encode_to_vec()).unwrap();
        assert_eq!(&data[..], b"\x02\x08\x01");
    }

    #[test]
    fn requests_without_node_session_or_string_data_are_malformed() {
        for body in [
            &br#"{"session":"s","data":"{}"}"#[..],
            br#"{"node":"n","data":"{}"}"#,
            br#"{"node":"n","session":"s","data":{"id":1}}"#,
            br#"{"node":"n","session":"s"}"#,
            b"not json",
        ] {
            let error = decode(Encoding::Json, body).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{error}");
        }
        assert!(decode(Encoding::Protobuf, b"\xff\xff").is_err());
    }
}
