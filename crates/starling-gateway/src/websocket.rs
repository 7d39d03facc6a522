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
        return (
            StatusCode::UPGRADE_REQUIRED,
            "connection cannot be upgraded",
        )
            .into_response();
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
    HeaderValue::from_str(&STANDARD.encode(digest.as_ref())).map_err(|_| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode accept key",
        )
    })
}

fn offers_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|protocol| protocol.trim() == PROTOBUF_SUBPROTOCOL)
}

/// Takes the raw stream back out of hyper's upgrade wrapper — the socket is then polled
/// directly, without a boxed `dyn` layer in between — opens the connection, and hands it to
/// a task of its own (see [`serve`]).
async fn run_upgraded(node: Node, upgraded: Upgraded, encoding: Encoding, remote: SocketAddr) {
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let io = parts.io.into_inner();
            return open(node, io, parts.read_buf, encoding, remote).await;
        }
        Err(upgraded) => upgraded,
    };
    let upgraded = match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
        Ok(parts) => {
            let io = parts.io.into_inner();
            return Box::pin(open(node, io, parts.read_buf, encoding, remote)).await;
        }
        Err(upgraded) => upgraded,
    };
    let io = TokioIo::new(upgraded);
    Box::pin(open(node, io, Bytes::new(), encoding, remote)).await;
}

/// Admits the connection and starts its actor, handles what the client sent right behind its
/// handshake, and spawns the task that serves the socket from then on.
async fn open<S>(node: Node, io: S, early: Bytes, encoding: Encoding, remote: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut socket = Socket {
        io,
        reader: Reader::new(node.config().websocket.message_size_limit),
        encoding,
        closing: false,
    };
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
    let read_wake = Arc::new(ReadWake {
        woken: AtomicBool::new(true),
        task: Mutex::new(None),
    });
    let mut conn = Box::new(Conn {
        socket,
        read_waker: Waker::from(Arc::clone(&read_wake)),
        read_wake,
        task_waker: None,
        frames: Frames::default(),
        node,
        handle,
    });
    let mut items = Vec::new();
    // These bytes point into hyper's read buffer for the request (kilobytes): they are not
    // kept past this function.
    let outcome = conn.socket.reader.feed(&early, &mut items);
    drop(early);
    if conn.on_read(items, outcome).await {
        tokio::spawn(serve(conn));
    } else {
        conn.finish().await;
    }
}

/// The connection's long-lived task. Everything it needs sits in one allocation of exactly
/// its size, so the task itself stays small: an async function keeps a copy of every
/// argument and local it is given for its whole life.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut conn: Box<Conn<S>>) {
    conn.pump().await;
    Box::pin(conn.finish()).await;
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

/// One open WebSocket connection: the socket, its connection actor, and the socket task's
/// bookkeeping.
struct Conn<S> {
    socket: Socket<S>,
    node: Node,
    handle: ConnectionHandle,
    /// Frames taken from the outbound queue, reused batch after batch.
    frames: Frames,
    read_wake: Arc<ReadWake>,
    /// A waker for `read_wake`, given to the socket in place of the task's.
    read_waker: Waker,
    /// The task's waker as last stored in `read_wake`.
    task_waker: Option<Waker>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Moves messages both ways until either side ends the connection.
    async fn pump(&mut self) {
        // Which side goes first alternates, so a flood on one cannot starve the other (a client
        // whose pongs are never read would be closed for not answering pings).
        let mut read_first = false;
        loop {
            read_first = !read_first;
            let event = poll_fn(|cx| self.poll_event(cx, read_first)).await;
            let more = match event {
                Event::Write(close) => self.write_batch(close).await,
                // Boxed: reads are rare next to writes, and inline this future would make the
                // task larger for the connection's whole life.
                Event::Read(items, outcome) => Box::pin(self.on_read(items, outcome)).await,
                Event::Gone(error) => {
                    if let Some(error) = error {
                        debug!(client = %self.handle.client_id, %error, "websocket read error");
                    }
                    false
                }
            };
            if !more {
                return;
            }
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>, read_first: bool) -> Poll<Event> {
        if !self
            .task_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            let mut task = self
                .read_wake
                .task
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *task = Some(cx.waker().clone());
            self.task_waker = Some(cx.waker().clone());
        }
        if read_first && let Some(event) = self.poll_read() {
            return Poll::Ready(event);
        }
        if let Poll::Ready(close) = self.handle.outbound.poll_take(cx, &mut self.frames) {
            return Poll::Ready(Event::Write(close));
        }
        if !read_first && let Some(event) = self.poll_read() {
            return Poll::Ready(event);
        }
        Poll::Pending
    }

    /// Reads the socket if it signalled since the last read, with `read_waker` standing in for
    /// the task's waker so the next signal is remembered.
    fn poll_read(&mut self) -> Option<Event> {
        if !self.read_wake.woken.swap(false, Ordering::AcqRel) {
            return None;
        }
        let mut read_cx = Context::from_waker(&self.read_waker);
        // Bytes to read at once (`websocket.read_buffer_size`).
        let size = match self.node.config().websocket.read_buffer_size {
            0 => DEFAULT_READ_BUFFER,
            size => size,
        };
        let socket = &mut self.socket;
        let event = READ_BUFFER.with_borrow_mut(|buffer| {
            if buffer.len() < size {
                buffer.resize(size, 0);
            }
            let mut buf = ReadBuf::new(&mut buffer[..size]);
            match Pin::new(&mut socket.io).poll_read(&mut read_cx, &mut buf) {
                Poll::Pending => None,
                Poll::Ready(Err(error)) => Some(Event::Gone(Some(error))),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => Some(Event::Gone(None)),
                Poll::Ready(Ok(())) => {
                    let mut items = Vec::new();
                    let outcome = socket.reader.feed(buf.filled(), &mut items);
                    Some(Event::Read(items, outcome))
                }
            }
        });
        if event.is_some() {
            // More may be waiting already: look again on the next turn.
            self.read_wake.woken.store(true, Ordering::Release);
        }
        event
    }

    /// Handles what the socket produced; `false` when the connection is over.
    async fn on_read(&mut self, items: Vec<Inbound>, outcome: Result<(), ReadError>) -> bool {
        let socket = &mut self.socket;
        for item in items {
            match item {
                Inbound::Text(data) | Inbound::Binary(data) => self.handle.inbound(data),
                Inbound::Ping(data) => {
                    if socket.write_frame(Opcode::Pong, &data).await.is_err() {
                        return false;
                    }
                }
                Inbound::Pong => {}
                Inbound::Close(code) => {
                    // Echo the client's code (RFC 6455 §5.5.1) and end.
                    let payload = code.map(u16::to_be_bytes);
                    let payload = payload.as_ref().map_or(&[][..], |code| &code[..]);
                    let _ = socket.write_frame(Opcode::Close, payload).await;
                    socket.closing = true;
                    return false;
                }
            }
        }
        let Err(error) = outcome else {
            return true;
        };
        let client = &self.handle.client_id;
        let (code, reason) = error.close();
        match &error {
            ReadError::TooBig { size, max_size } => {
                info!(%client, size, max_size, "message over size limit");
            }
            ReadError::InvalidUtf8 => info!(%client, "text frame is not UTF-8"),
            ReadError::Protocol(what) => {
                info!(%client, violation = what, "websocket protocol error");
            }
        }
        self.node.metrics().count_close(code);
        let close = Close {
            code,
            reason: Cow::Borrowed(reason),
            reconnect: false,
        };
        let _ = socket.close(&close).await;
        false
    }

    /// Writes the taken frames as one message, then the close if one came with them; `false`
    /// when the connection is over.
    async fn write_batch(&mut self, close: Option<Close>) -> bool {
        if !self.frames.is_empty() {
            let (opcode, payload) = transport_message(self.socket.encoding, &mut self.frames);
            self.frames.shrink();
            if self.socket.write_frame(opcode, &payload).await.is_err() {
                return false;
            }
        }
        match close {
            Some(close) => {
                let _ = self.socket.close(&close).await;
                false
            }
            None => true,
        }
    }

    /// Lets the connection actor clean up, then closes the socket.
    async fn finish(mut self: Box<Self>) {
        debug!(client = %self.handle.client_id, "websocket closed");
        self.handle.closed().await;
        self.socket.linger().await;
    }
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
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
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
        assert_eq!(
            refused(&[("sec-websocket-version", "8")]).unwrap_err().0,
            426
        );
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
