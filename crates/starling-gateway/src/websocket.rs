//! The WebSocket transport: Centrifugo client protocol v2 over `/connection/websocket`.
//!
//! JSON by default; Protobuf when the client offers the `centrifuge-protobuf` subprotocol.
//! One task per connection runs the socket: it hands inbound messages to the connection actor
//! and writes the outbound queue, one WebSocket message per batch (coalesced writes).
//!
//! The task is woken once per batch on the fan-out path, so it only touches what woke it: the
//! socket is read only after the socket itself signalled (tungstenite's read prepares its
//! whole read buffer on every call, which on a cold buffer costs more than the write that
//! follows), and batches go into one reused [`Frames`] that holds a lone frame inline.

use std::borrow::Cow;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use starling_node::{Close, ConnectionHandle, Frames, Node};
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
/// idle most of the time and every connection holds its buffer for life. Tungstenite grows it
/// for a larger message (reading it in chunks of this size), so the cost of a small buffer is
/// a few more `read` calls for large inbound messages only.
const DEFAULT_READ_BUFFER: usize = 512;

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
    // Boxed: the connection's task lives as long as the connection, and this future (admission,
    // spawning the actor) is only needed for the first moment of it.
    let handle = match Box::pin(node.open_connection(encoding, Some(remote))).await {
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

/// What woke the socket task.
enum Event {
    /// Frames were taken from the outbound queue (into the task's `Frames`), maybe with a close.
    Write(Option<Close>),
    /// The socket produced a message, an error, or its end.
    Read(Option<Result<Message, axum::Error>>),
}

/// Remembers whether the socket woke the task since it was last read: the socket is given this
/// waker instead of the task's, and passes the wake-up on.
struct ReadWake {
    woken: AtomicBool,
    /// The task's waker. Kept, not taken, by a wake-up, so the task sets it only when it
    /// changes (in tokio: once) and the fan-out path never touches this lock.
    task: Mutex<Option<Waker>>,
}

impl Wake for ReadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self
            .task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(waker) = task.as_ref() {
            waker.wake_by_ref();
        }
    }
}

/// Moves messages both ways until either side ends the connection.
async fn pump(node: &Node, socket: &mut WebSocket, handle: &ConnectionHandle, encoding: Encoding) {
    let read_wake = Arc::new(ReadWake {
        woken: AtomicBool::new(true),
        task: Mutex::new(None),
    });
    let mut task_waker: Option<Waker> = None;
    let read_waker = Waker::from(Arc::clone(&read_wake));
    let mut frames = Frames::default();
    // Which side goes first alternates, so a flood on one cannot starve the other (a client
    // whose pongs are never read would be closed for not answering pings).
    let mut read_first = false;
    loop {
        read_first = !read_first;
        let event = poll_fn(|cx| {
            if !task_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                let mut task = read_wake.task.lock().unwrap_or_else(|p| p.into_inner());
                *task = Some(cx.waker().clone());
                task_waker = Some(cx.waker().clone());
            }
            if read_first && let Some(event) = poll_read(socket, &read_wake, &read_waker) {
                return Poll::Ready(event);
            }
            if let Poll::Ready(close) = handle.outbound.poll_take(cx, &mut frames) {
                return Poll::Ready(Event::Write(close));
            }
            if !read_first && let Some(event) = poll_read(socket, &read_wake, &read_waker) {
                return Poll::Ready(event);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Write(close) => {
                if !frames.is_empty() {
                    let message = transport_message(encoding, &mut frames);
                    frames.shrink();
                    let Some(message) = message else {
                        return;
                    };
                    if socket.send(message).await.is_err() {
                        return;
                    }
                }
                if let Some(close) = close {
                    let _ = socket.send(close_message(close)).await;
                    return;
                }
            }
            Event::Read(inbound) => {
                if !on_inbound(node, socket, handle, inbound).await {
                    return;
                }
            }
        }
    }
}

/// Handles what the socket produced; `false` when the connection is over.
async fn on_inbound(
    node: &Node,
    socket: &mut WebSocket,
    handle: &ConnectionHandle,
    inbound: Option<Result<Message, axum::Error>>,
) -> bool {
    match inbound {
        Some(Ok(message @ Message::Text(_))) => handle.inbound(message.into_data()),
        Some(Ok(Message::Binary(data))) => handle.inbound(data),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
        Some(Ok(Message::Close(_))) | None => return false,
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
            return false;
        }
    }
    true
}

/// Reads the socket if it signalled since the last read, with `read_waker` standing in for the
/// task's waker so the next signal is remembered.
fn poll_read(socket: &mut WebSocket, read_wake: &ReadWake, read_waker: &Waker) -> Option<Event> {
    if !read_wake.woken.swap(false, Ordering::AcqRel) {
        return None;
    }
    let mut read_cx = Context::from_waker(read_waker);
    match socket.poll_next_unpin(&mut read_cx) {
        Poll::Ready(inbound) => {
            // More may be buffered already: look again on the next turn.
            read_wake.woken.store(true, Ordering::Release);
            Some(Event::Read(inbound))
        }
        Poll::Pending => None,
    }
}

/// One WebSocket message holding every frame of a batch (which it empties): a text message of
/// newline-separated JSON replies, or a binary message of length-delimited Protobuf replies.
fn transport_message(encoding: Encoding, frames: &mut Frames) -> Option<Message> {
    // A lone frame is moved, not cloned: in fan-out every subscriber shares one buffer, and
    // each clone and drop is an atomic on its reference count, contended between the room
    // pushing and the writers taking.
    let payload = if frames.len() == 1
        && let Some(single) = frames.pop_front()
    {
        single
    } else {
        let mut builder = FrameBuilder::new(encoding);
        for frame in frames.drain() {
            builder.push(&frame);
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
