//! The WebSocket transport: Centrifugo client protocol v2 over `/connection/websocket`.
//!
//! JSON by default; Protobuf when the client offers the `centrifuge-protobuf` subprotocol.
//! One task per connection runs the socket: it hands inbound messages to the connection actor
//! and writes the outbound queue, one WebSocket message per batch (coalesced writes).

use std::borrow::Cow;
use std::net::SocketAddr;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use starling_node::{Close, ConnectionHandle, Node};
use starling_protocol::{Encoding, FrameBuilder, PROTOBUF_SUBPROTOCOL};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tracing::{debug, info, warn};

use crate::stream::check_handshake;

/// WebSocket close code for a message over `websocket.message_size_limit` (RFC 6455 1009,
/// which is what Centrifugo's WebSocket library sends too).
const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
/// WebSocket close code for a text message that is not UTF-8 (RFC 6455 1007, "invalid frame
/// payload data").
const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Read buffer when `websocket.read_buffer_size` is 0: small, because most connections are
/// idle most of the time and tungstenite grows the buffer for larger messages.
const DEFAULT_READ_BUFFER: usize = 4096;

pub(crate) async fn websocket(
    State(node): State<Node>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Err(error) = check_handshake(&node, &headers) {
        return error.into_response();
    }
    let ws = &node.config().websocket;
    let limit = ws.message_size_limit;
    let read_buffer = if ws.read_buffer_size == 0 {
        DEFAULT_READ_BUFFER
    } else {
        ws.read_buffer_size
    };
    let upgrade = upgrade
        .protocols([PROTOBUF_SUBPROTOCOL])
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(read_buffer)
        // Each batch is already one coalesced message; write it out at once.
        .write_buffer_size(ws.write_buffer_size);
    let encoding = if upgrade.selected_protocol().is_some() {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    upgrade.on_upgrade(move |socket| run_socket(node, socket, encoding, remote))
}

async fn run_socket(node: Node, mut socket: WebSocket, encoding: Encoding, remote: SocketAddr) {
    let handle = match node.open_connection(encoding, Some(remote)).await {
        Ok(handle) => handle,
        Err(error) => {
            info!(%remote, %error, "connection refused");
            let _ = socket.send(close_message(error.refusal())).await;
            return;
        }
    };
    debug!(client = %handle.client_id, %remote, ?encoding, "websocket open");
    pump(&node, &mut socket, &handle, encoding).await;
    debug!(client = %handle.client_id, "websocket closed");
    handle.closed().await;
}

/// Moves messages both ways until either side ends the connection.
async fn pump(node: &Node, socket: &mut WebSocket, handle: &ConnectionHandle, encoding: Encoding) {
    loop {
        tokio::select! {
            batch = handle.outbound.next_batch() => {
                if !batch.frames.is_empty() {
                    let Some(message) = transport_message(encoding, &batch.frames) else {
                        return;
                    };
                    if socket.send(message).await.is_err() {
                        return;
                    }
                }
                if let Some(close) = batch.close {
                    let _ = socket.send(close_message(close)).await;
                    return;
                }
            }
            inbound = socket.recv() => match inbound {
                Some(Ok(message @ Message::Text(_))) => handle.inbound(message.into_data()),
                Some(Ok(Message::Binary(data))) => handle.inbound(data),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => return,
                Some(Err(error)) => {
                    let inner = error.into_inner();
                    match inner.downcast_ref::<WsError>() {
                        Some(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
                            info!(client = %handle.client_id, size, max_size, "message over size limit");
                            node.metrics().count_close(CLOSE_MESSAGE_TOO_BIG);
                            let _ = socket
                                .send(Message::Close(Some(CloseFrame {
                                    code: CLOSE_MESSAGE_TOO_BIG,
                                    reason: Utf8Bytes::from_static("message too big"),
                                })))
                                .await;
                        }
                        Some(WsError::Utf8(reason)) => {
                            info!(client = %handle.client_id, %reason, "text frame is not UTF-8");
                            node.metrics().count_close(CLOSE_INVALID_PAYLOAD);
                            let _ = socket
                                .send(Message::Close(Some(CloseFrame {
                                    code: CLOSE_INVALID_PAYLOAD,
                                    reason: Utf8Bytes::from_static("invalid UTF-8"),
                                })))
                                .await;
                        }
                        _ => debug!(client = %handle.client_id, error = %inner, "websocket read error"),
                    }
                    return;
                }
            }
        }
    }
}

/// One WebSocket message holding every frame of a batch: a text message of newline-separated
/// JSON replies, or a binary message of length-delimited Protobuf replies.
fn transport_message(encoding: Encoding, frames: &[Bytes]) -> Option<Message> {
    let payload = if let [single] = frames {
        single.clone()
    } else {
        let mut builder = FrameBuilder::new(encoding);
        for frame in frames {
            builder.push(frame);
        }
        builder.finish()
    };
    match encoding {
        Encoding::Protobuf => Some(Message::Binary(payload)),
        Encoding::Json => match Utf8Bytes::try_from(payload) {
            Ok(text) => Some(Message::Text(text)),
            Err(error) => {
                // Our JSON encoder only emits UTF-8; reaching this is a bug worth a loud log.
                warn!(%error, "outbound JSON frame is not UTF-8");
                None
            }
        },
    }
}

fn close_message(close: Close) -> Message {
    let reason = match close.reason {
        Cow::Borrowed(text) => Utf8Bytes::from_static(text),
        Cow::Owned(text) => Utf8Bytes::from(text),
    };
    Message::Close(Some(CloseFrame {
        code: close.code,
        reason,
    }))
}
