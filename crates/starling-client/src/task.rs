//! The background task that owns the WebSocket: writes queued commands,
//! routes replies to their waiters and pushes to the push queue, answers
//! server pings, and records why the connection ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use starling_protocol::{
    Command, Encoding, FrameBuilder, Push, Reply, decode_replies, encode_command,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::CloseReason;

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Most requests coalesced into one frame, like SDKs batching a tick's commands.
const MAX_BATCH: usize = 32;
/// A write that takes longer means the server stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the server's half of a close handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// State the [`crate::Client`] and the task both see.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) answer_pings: AtomicBool,
    pub(crate) pings_received: AtomicU64,
}

/// Work for the task, sent by the client handle.
pub(crate) enum Request {
    /// An encoded command. `reply` waits for the reply with `id`; `written`
    /// fires once the frame carrying it was written.
    Command {
        id: u32,
        frame: Bytes,
        reply: Option<oneshot::Sender<Reply>>,
        written: Option<oneshot::Sender<()>>,
    },
    /// An arbitrary WebSocket message, written on its own.
    Raw {
        message: WsMessage,
        written: oneshot::Sender<()>,
    },
    /// Close the connection with code 1000.
    Close { done: oneshot::Sender<()> },
}

/// Runs the connection until it closes, then publishes the close reason.
///
/// The close reason is published before pending waiters and the push queue
/// are dropped, so anyone who sees the channel end finds the reason set.
pub(crate) async fn run(
    socket: Socket,
    encoding: Encoding,
    mut requests: mpsc::UnboundedReceiver<Request>,
    pushes: mpsc::UnboundedSender<Push>,
    shared: Arc<Shared>,
    close: watch::Sender<Option<CloseReason>>,
) {
    let mut connection = Connection {
        socket,
        encoding,
        pending: HashMap::new(),
        pushes,
        shared,
        server_wants_pong: false,
    };
    let reason = connection.serve(&mut requests).await;
    tracing::debug!(code = reason.code, reason = %reason.reason, "client connection ended");
    close.send_replace(Some(reason));
    drop(connection);
    drop(requests);
}

struct Connection {
    socket: Socket,
    encoding: Encoding,
    pending: HashMap<u32, oneshot::Sender<Reply>>,
    pushes: mpsc::UnboundedSender<Push>,
    shared: Arc<Shared>,
    /// From `ConnectResult.pong`: the server expects empty commands back.
    server_wants_pong: bool,
}

impl Connection {
    async fn serve(&mut self, requests: &mut mpsc::UnboundedReceiver<Request>) -> CloseReason {
        loop {
            tokio::select! {
                request = requests.recv() => {
                    let Some(first) = request else {
                        // The Client was dropped.
                        return self.close_locally().await;
                    };
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match requests.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    if let Err(reason) = self.handle_batch(batch).await {
                        return reason;
                    }
                }
                incoming = self.socket.next() => {
                    let message = match incoming {
                        Some(Ok(message)) => message,
                        Some(Err(err)) => return abnormal(format!("read failed: {err}")),
                        None => return abnormal("connection ended without a close frame".to_owned()),
                    };
                    if let Err(reason) = self.handle_message(message).await {
                        return reason;
                    }
                }
            }
        }
    }

    /// Writes a batch of requests, coalescing consecutive commands into one frame.
    async fn handle_batch(&mut self, batch: Vec<Request>) -> Result<(), CloseReason> {
        let mut frame = FrameBuilder::new(self.encoding);
        let mut written = Vec::new();
        for request in batch {
            match request {
                Request::Command {
                    id,
                    frame: part,
                    reply,
                    written: on_written,
                } => {
                    if let Some(reply) = reply {
                        self.register(id, reply);
                    }
                    written.extend(on_written);
                    frame.push(&part);
                }
                Request::Raw {
                    message,
                    written: on_written,
                } => {
                    self.flush(&mut frame, &mut written).await?;
                    self.write(message).await?;
                    let _ = on_written.send(());
                }
                Request::Close { done } => {
                    self.flush(&mut frame, &mut written).await?;
                    let reason = self.close_locally().await;
                    let _ = done.send(());
                    return Err(reason);
                }
            }
        }
        self.flush(&mut frame, &mut written).await
    }

    fn register(&mut self, id: u32, reply: oneshot::Sender<Reply>) {
        // Waiters whose caller gave up never get a reply removed; prune them
        // now and then so a long session does not accumulate them.
        if self.pending.len() >= 64 {
            self.pending.retain(|_, waiter| !waiter.is_closed());
        }
        self.pending.insert(id, reply);
    }

    async fn flush(
        &mut self,
        frame: &mut FrameBuilder,
        written: &mut Vec<oneshot::Sender<()>>,
    ) -> Result<(), CloseReason> {
        if frame.is_empty() {
            return Ok(());
        }
        let message = self.to_message(frame.finish());
        self.write(message).await?;
        for done in written.drain(..) {
            let _ = done.send(());
        }
        Ok(())
    }

    fn to_message(&self, frame: Bytes) -> WsMessage {
        match self.encoding {
            // serde_json only produces UTF-8, so the binary fallback is never
            // taken; it merely avoids a panic path.
            Encoding::Json => Utf8Bytes::try_from(frame.clone())
                .map(WsMessage::Text)
                .unwrap_or(WsMessage::Binary(frame)),
            Encoding::Protobuf => WsMessage::Binary(frame),
        }
    }

    async fn write(&mut self, message: WsMessage) -> Result<(), CloseReason> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(abnormal(format!("write failed: {err}"))),
            Err(_) => Err(abnormal("write timed out".to_owned())),
        }
    }

    async fn handle_message(&mut self, message: WsMessage) -> Result<(), CloseReason> {
        let replies = match &message {
            WsMessage::Text(text) => decode_replies(self.encoding, text.as_bytes()),
            WsMessage::Binary(bytes) => decode_replies(self.encoding, bytes),
            WsMessage::Close(frame) => {
                let reason = match frame {
                    Some(frame) => CloseReason {
                        code: u16::from(frame.code),
                        reason: frame.reason.to_string(),
                    },
                    None => CloseReason {
                        code: 1005,
                        reason: String::new(),
                    },
                };
                self.finish_close_handshake().await;
                return Err(reason);
            }
            // tungstenite answers WebSocket pings itself.
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => return Ok(()),
        };
        let replies = match replies {
            Ok(replies) => replies,
            Err(err) => {
                tracing::warn!(error = %err, "undecodable server frame, closing");
                let reason = format!("undecodable server frame: {err}");
                self.send_close(CloseCode::Protocol, "undecodable frame").await;
                return Err(CloseReason { code: 1002, reason });
            }
        };
        for reply in replies {
            self.route(reply).await?;
        }
        Ok(())
    }

    async fn route(&mut self, mut reply: Reply) -> Result<(), CloseReason> {
        if reply.id > 0 {
            if let Some(connect) = &reply.connect {
                self.server_wants_pong = connect.pong;
            }
            match self.pending.remove(&reply.id) {
                Some(waiter) => {
                    let _ = waiter.send(reply);
                }
                None => tracing::debug!(id = reply.id, "reply nobody waits for"),
            }
        } else if let Some(push) = reply.push.take() {
            let _ = self.pushes.send(push);
        } else if reply.is_ping() {
            self.shared.pings_received.fetch_add(1, Ordering::Relaxed);
            if self.server_wants_pong && self.shared.answer_pings.load(Ordering::Relaxed) {
                self.pong().await?;
            }
        }
        Ok(())
    }

    async fn pong(&mut self) -> Result<(), CloseReason> {
        match encode_command(self.encoding, &Command::default()) {
            Ok(frame) => {
                let message = self.to_message(frame);
                self.write(message).await
            }
            // An empty command has nothing that could fail to encode.
            Err(err) => Err(abnormal(format!("cannot encode pong: {err}"))),
        }
    }

    async fn close_locally(&mut self) -> CloseReason {
        self.send_close(CloseCode::Normal, "").await;
        self.finish_close_handshake().await;
        CloseReason {
            code: 1000,
            reason: "closed by client".to_owned(),
        }
    }

    async fn send_close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.socket.close(Some(frame))).await;
    }

    /// Reads until the server ends the stream, which also flushes the close
    /// reply tungstenite queued; bounded so a silent server cannot hold us.
    async fn finish_close_handshake(&mut self) {
        let drain = async { while let Some(Ok(_)) = self.socket.next().await {} };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
    }
}

fn abnormal(reason: String) -> CloseReason {
    CloseReason { code: 1006, reason }
}
