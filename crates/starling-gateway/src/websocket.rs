//! The WebSocket transport: Centrifugo client protocol v2 over `/connection/websocket`.
//!
//! JSON by default; Protobuf when the client offers the `centrifuge-protobuf` subprotocol.
//! The handshake (RFC 6455 §4.2) is answered here, and after hyper hands over the connection
//! one task per connection runs the socket: it hands inbound messages to the connection actor
//! and writes the outbound queue, one WebSocket message per batch (coalesced writes).
//!
//! The socket is driven directly rather than through a WebSocket library, for what an idle
//! connection costs and what a delivery costs (see [`crate::ws_frame`]): reads go through a
//! read buffer shared by the worker thread, and a batch is written with one vectored write of
//! a frame header and the batch's bytes — which, for a lone frame, are the room's own shared
//! buffer, never copied.
//!
//! The task is woken once per batch on the fan-out path, so it only touches what woke it: the
//! socket is read only after the socket itself signalled, and batches go into one reused
//! [`Frames`] that holds a lone frame inline.

use std::borrow::Cow;
use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use starling_node::{Close, ConnectionHandle, Frames, Node};
use starling_protocol::{Encoding, FrameBuilder, PROTOBUF_SUBPROTOCOL};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info};

use crate::stream::check_handshake;
use crate::ws_frame::{Inbound, Opcode, ReadError, Reader, close_payload, server_header};

/// Read size when `websocket.read_buffer_size` is 0. The buffer belongs to the worker thread,
/// not to the connection, so it can be generous: most inbound messages take one read.
const DEFAULT_READ_BUFFER: usize = 16 * 1024;
/// After the server's close frame: how long the client gets to answer with its own before the
/// socket is closed. Closing at once with the client's close frame still unread would make
/// the kernel reset the connection, and a reset can destroy our close frame before the client
/// reads it — the client would see 1006 instead of the code.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// RFC 6455 §1.3: appended to the client's key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `GET /connection/websocket`: checks the handshake, answers 101, and starts the socket task
/// once hyper has handed the connection over.
pub(crate) async fn websocket(
    State(node): State<Node>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    if let Err(error) = check_handshake(&node, headers) {
        return error.into_response();
    }
    let accept = match accept_key(headers) {
        Ok(accept) => accept,
        Err(refusal) => {
            debug!(%remote, reason = refusal.1, "websocket handshake refused");
            return refusal.into_response();
        }
    };
    let encoding = if offers_protobuf(headers) {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        // Not an HTTP/1.1 connection that can be upgraded.
        return (StatusCode::UPGRADE_REQUIRED, "connection cannot be upgraded").into_response();
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run_upgraded(node, upgraded, encoding, remote).await,
            Err(error) => debug!(%remote, %error, "websocket upgrade failed"),
        }
    });
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if encoding == Encoding::Protobuf {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(PROTOBUF_SUBPROTOCOL),
        );
    }
    response
}

/// A refused handshake: its status and reason (also the response body).
type Refusal = (StatusCode, &'static str);

/// Checks the upgrade headers (RFC 6455 §4.2.1) and computes `Sec-WebSocket-Accept`.
fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, Refusal> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has_token(header::CONNECTION, "upgrade") {
        return Err((
            StatusCode::BAD_REQUEST,
            "Connection header did not include 'upgrade'",
        ));
    }
    if !has_token(header::UPGRADE, "websocket") {
        return Err((
            StatusCode::BAD_REQUEST,
            "Upgrade header did not include 'websocket'",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            "Sec-WebSocket-Version must be 13",
        ));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or((StatusCode::BAD_REQUEST, "Sec-WebSocket-Key header missing"))?;
    let mut hashed = Vec::with_capacity(key.len() + ACCEPT_GUID.len());
    hashed.extend_from_slice(key.as_bytes());
    hashed.extend_from_slice(ACCEPT_GUID);
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &hashed);
    HeaderValue::from_str(&STANDARD.encode(digest.as_ref()))
        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode accept key"))
}

fn offers_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|protocol| protocol.trim() == PROTOBUF_SUBPROTOCOL)
}

/// Takes the raw stream back out of hyper's upgrade wrapper: the socket task then polls the
/// TCP (or TLS) stream itself, without a boxed `dyn` layer and its buffer in between.
async fn run_upgraded(node: Node, upgraded: Upgraded, encoding: Encoding, remote: SocketAddr) {
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let io = parts.io.into_inner();
            return Box::pin(run_socket(node, io, parts.read_buf, encoding, remote)).await;
        }
        Err(upgraded) => upgraded,
    };
    let upgraded = match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
        Ok(parts) => {
            let io = parts.io.into_inner();
            return Box::pin(run_socket(node, io, parts.read_buf, encoding, remote)).await;
        }
        Err(upgraded) => upgraded,
    };
    let io = TokioIo::new(upgraded);
    Box::pin(run_socket(node, io, Bytes::new(), encoding, remote)).await;
}

async fn run_socket<S>(node: Node, io: S, early: Bytes, encoding: Encoding, remote: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut socket = Socket {
        io,
        reader: Reader::new(node.config().websocket.message_size_limit),
        encoding,
        closing: false,
    };
    // Boxed: the connection's task lives as long as the connection, and this future (admission,
    // spawning the actor) is only needed for the first moment of it.
    let handle = match Box::pin(node.open_connection(encoding, Some(remote))).await {
        Ok(handle) => handle,
        Err(error) => {
            info!(%remote, %error, "connection refused");
            let _ = socket.close(&error.refusal()).await;
            socket.linger().await;
            return;
        }
    };
    debug!(client = %handle.client_id, %remote, ?encoding, "websocket open");
    let mut items = Vec::new();
    let early = if early.is_empty() {
        Ok(())
    } else {
        // What the client sent right behind its handshake, already read by hyper.
        socket.reader.feed(&early, &mut items)
    };
    if socket.on_read(&node, &handle, items, early).await {
        socket.pump(&node, &handle).await;
    }
    debug!(client = %handle.client_id, "websocket closed");
    handle.closed().await;
    socket.linger().await;
}

/// What woke the socket task.
enum Event {
    /// Frames were taken from the outbound queue (into the task's `Frames`), maybe with a close.
    Write(Option<Close>),
    /// The socket produced messages (maybe followed by a violation of the protocol).
    Read(Vec<Inbound>, Result<(), ReadError>),
    /// The client is gone: end of stream or a socket error.
    Gone(Option<io::Error>),
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

thread_local! {
    /// The read buffer of every connection this worker thread polls: a read happens inside
    /// one poll, and whatever a read leaves incomplete moves into the connection's [`Reader`].
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One client's socket.
struct Socket<S> {
    io: S,
    reader: Reader,
    encoding: Encoding,
    /// The server has sent its close frame; nothing more is written.
    closing: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    /// Moves messages both ways until either side ends the connection.
    async fn pump(&mut self, node: &Node, handle: &ConnectionHandle) {
        let read_wake = Arc::new(ReadWake {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        let mut task_waker: Option<Waker> = None;
        let read_waker = Waker::from(Arc::clone(&read_wake));
        let read_size = match node.config().websocket.read_buffer_size {
            0 => DEFAULT_READ_BUFFER,
            size => size,
        };
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
                if read_first && let Some(event) = self.poll_read(&read_wake, &read_waker, read_size)
                {
                    return Poll::Ready(event);
                }
                if let Poll::Ready(close) = handle.outbound.poll_take(cx, &mut frames) {
                    return Poll::Ready(Event::Write(close));
                }
                if !read_first
                    && let Some(event) = self.poll_read(&read_wake, &read_waker, read_size)
                {
                    return Poll::Ready(event);
                }
                Poll::Pending
            })
            .await;
            let more = match event {
                Event::Write(close) => self.write_batch(&mut frames, close).await,
                Event::Read(items, outcome) => self.on_read(node, handle, items, outcome).await,
                Event::Gone(error) => {
                    if let Some(error) = error {
                        debug!(client = %handle.client_id, %error, "websocket read error");
                    }
                    false
                }
            };
            if !more {
                return;
            }
        }
    }

    /// Reads the socket if it signalled since the last read, with `read_waker` standing in for
    /// the task's waker so the next signal is remembered.
    fn poll_read(&mut self, read_wake: &ReadWake, read_waker: &Waker, size: usize) -> Option<Event> {
        if !read_wake.woken.swap(false, Ordering::AcqRel) {
            return None;
        }
        let mut read_cx = Context::from_waker(read_waker);
        let event = READ_BUFFER.with_borrow_mut(|buffer| {
            if buffer.len() < size {
                buffer.resize(size, 0);
            }
            let mut buf = ReadBuf::new(&mut buffer[..size]);
            match Pin::new(&mut self.io).poll_read(&mut read_cx, &mut buf) {
                Poll::Pending => None,
                Poll::Ready(Err(error)) => Some(Event::Gone(Some(error))),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => Some(Event::Gone(None)),
                Poll::Ready(Ok(())) => {
                    let mut items = Vec::new();
                    let outcome = self.reader.feed(buf.filled(), &mut items);
                    Some(Event::Read(items, outcome))
                }
            }
        });
        if event.is_some() {
            // More may be waiting already: look again on the next turn.
            read_wake.woken.store(true, Ordering::Release);
        }
        event
    }

    /// Handles what the socket produced; `false` when the connection is over.
    async fn on_read(
        &mut self,
        node: &Node,
        handle: &ConnectionHandle,
        items: Vec<Inbound>,
        outcome: Result<(), ReadError>,
    ) -> bool {
        for item in items {
            match item {
                Inbound::Text(data) | Inbound::Binary(data) => handle.inbound(data),
                Inbound::Ping(data) => {
                    if self.write_frame(Opcode::Pong, &data).await.is_err() {
                        return false;
                    }
                }
                Inbound::Pong => {}
                Inbound::Close(code) => {
                    // Echo the client's code (RFC 6455 §5.5.1) and end.
                    let payload = code.map(u16::to_be_bytes);
                    let payload = payload.as_ref().map_or(&[][..], |code| &code[..]);
                    let _ = self.write_frame(Opcode::Close, payload).await;
                    self.closing = true;
                    return false;
                }
            }
        }
        let Err(error) = outcome else {
            return true;
        };
        let (code, reason) = error.close();
        match &error {
            ReadError::TooBig { size, max_size } => {
                info!(client = %handle.client_id, size, max_size, "message over size limit");
            }
            ReadError::InvalidUtf8 => {
                info!(client = %handle.client_id, "text frame is not UTF-8");
            }
            ReadError::Protocol(what) => {
                info!(client = %handle.client_id, violation = what, "websocket protocol error");
            }
        }
        node.metrics().count_close(code);
        let _ = self
            .close(&Close {
                code,
                reason: Cow::Borrowed(reason),
                reconnect: false,
            })
            .await;
        false
    }

    /// Writes the taken frames as one message, then the close if one came with them; `false`
    /// when the connection is over.
    async fn write_batch(&mut self, frames: &mut Frames, close: Option<Close>) -> bool {
        if !frames.is_empty() {
            let (opcode, payload) = transport_message(self.encoding, frames);
            frames.shrink();
            if self.write_frame(opcode, &payload).await.is_err() {
                return false;
            }
        }
        match close {
            Some(close) => {
                let _ = self.close(&close).await;
                false
            }
            None => true,
        }
    }

    /// Writes one unfragmented frame: header and payload in one vectored write where the
    /// stream takes it, the payload never copied into a buffer of ours.
    async fn write_frame(&mut self, opcode: Opcode, payload: &[u8]) -> io::Result<()> {
        let (head, head_len) = server_header(opcode, payload.len());
        let mut head = &head[..head_len];
        let mut body = payload;
        while !head.is_empty() || !body.is_empty() {
            let slices = [IoSlice::new(head), IoSlice::new(body)];
            let written = self.io.write_vectored(&slices).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let from_head = written.min(head.len());
            head = &head[from_head..];
            body = &body[written - from_head..];
        }
        // A no-op on TCP; TLS hands its records to the socket here.
        self.io.flush().await
    }

    /// Sends the close frame for `close`.
    async fn close(&mut self, close: &Close) -> io::Result<()> {
        self.closing = true;
        self.write_frame(Opcode::Close, &close_payload(close.code, &close.reason))
            .await
    }

    /// After a close frame: ends our half of the stream and gives the client a moment to
    /// close its own, discarding what it still sends, so the socket is not closed on unread
    /// bytes (see [`CLOSE_LINGER`]).
    async fn linger(&mut self) {
        if !self.closing {
            return;
        }
        let drain = async {
            let _ = self.io.shutdown().await;
            let mut scratch = [0u8; 512];
            while matches!(self.io.read(&mut scratch).await, Ok(n) if n > 0) {}
        };
        let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
    }
}

/// One WebSocket message holding every frame of a batch (which it empties): a text message of
/// newline-separated JSON replies, or a binary message of length-delimited Protobuf replies.
fn transport_message(encoding: Encoding, frames: &mut Frames) -> (Opcode, Bytes) {
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
    // JSON replies come from our encoder, which only writes UTF-8.
    let opcode = match encoding {
        Encoding::Protobuf => Opcode::Binary,
        Encoding::Json => Opcode::Text,
    };
    (opcode, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(extra: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        for (name, value) in extra {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn accept_key_is_the_rfc_example() {
        // RFC 6455 §1.3.
        let accept = accept_key(&handshake(&[])).unwrap();
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn handshakes_missing_a_piece_are_refused() {
        let refused = |extra: &[(&'static str, &'static str)]| accept_key(&handshake(extra));
        assert_eq!(refused(&[("connection", "keep-alive")]).unwrap_err().0, 400);
        assert_eq!(refused(&[("upgrade", "h2c")]).unwrap_err().0, 400);
        assert_eq!(refused(&[("sec-websocket-version", "8")]).unwrap_err().0, 426);
        let mut headers = handshake(&[]);
        headers.remove(header::SEC_WEBSOCKET_KEY);
        assert_eq!(accept_key(&headers).unwrap_err().0, 400);
    }

    #[test]
    fn protobuf_is_chosen_from_any_place_in_the_offer() {
        assert!(!offers_protobuf(&handshake(&[])));
        assert!(offers_protobuf(&handshake(&[(
            "sec-websocket-protocol",
            "chat, centrifuge-protobuf"
        )])));
        assert!(!offers_protobuf(&handshake(&[(
            "sec-websocket-protocol",
            "centrifuge-json"
        )])));
    }
}
