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
}

/// Runs the connection until it closes, then publishes the close reason.
///
/// The reason is published, and pending waiters and the push queue are
/// dropped, before the (bounded) close handshake, so callers learn about the
/// close at once and always find the reason set when their channel ends.
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
        pushes: Some(pushes),
        shared,
        server_wants_pong: false,
    };
    let ending = connection.serve(&mut requests).await;
    tracing::debug!(code = ending.reason.code, reason = %ending.reason.reason, "client connection ended");
    close.send_replace(Some(ending.reason));
    connection.pending.clear();
    connection.pushes = None;
    drop(requests);
    if let Some((code, reason)) = ending.send_close {
        connection.send_close(code, reason).await;
    }
    if ending.drain {
        connection.finish_close_handshake().await;
    }
}

/// Why the connection ends and what is left to do for a clean close.
struct Ending {
    reason: CloseReason,
    /// Close frame still to send.
    send_close: Option<(CloseCode, &'static str)>,
    /// Whether to read until the server ends the stream.
    drain: bool,
}

impl Ending {
    /// The transport failed: nothing more to say to the server.
    fn abnormal(reason: String) -> Ending {
        Ending {
            reason: CloseReason { code: 1006, reason },
            send_close: None,
            drain: false,
        }
    }
}

struct Connection {
    socket: Socket,
    encoding: Encoding,
    pending: HashMap<u32, oneshot::Sender<Reply>>,
    /// Taken when the connection ends, so `next_push` sees the end.
    pushes: Option<mpsc::UnboundedSender<Push>>,
    shared: Arc<Shared>,
    /// From `ConnectResult.pong`: the server expects empty commands back.
    server_wants_pong: bool,
}

impl Connection {
    async fn serve(&mut self, requests: &mut mpsc::UnboundedReceiver<Request>) -> Ending {
        loop {
            let step = tokio::select! {
                request = requests.recv() => match request {
                    Some(first) => {
                        let mut batch = vec![first];
                        while batch.len() < MAX_BATCH {
                            match requests.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                        self.handle_batch(batch).await
                    }
                    // Every Client handle is gone (dropped or closed).
                    None => Err(Ending {
                        reason: CloseReason {
                            code: 1000,
                            reason: "closed by client".to_owned(),
                        },
                        send_close: Some((CloseCode::Normal, "")),
                        drain: true,
                    }),
                },
                incoming = self.socket.next() => match incoming {
                    Some(Ok(message)) => self.handle_message(message).await,
                    Some(Err(err)) => Err(Ending::abnormal(format!("read failed: {err}"))),
                    None => Err(Ending::abnormal(
                        "connection ended without a close frame".to_owned(),
                    )),
                },
            };
            if let Err(ending) = step {
                return ending;
            }
        }
    }

    /// Writes a batch of requests, coalescing consecutive commands into one frame.
    async fn handle_batch(&mut self, batch: Vec<Request>) -> Result<(), Ending> {
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
    ) -> Result<(), Ending> {
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

    async fn write(&mut self, message: WsMessage) -> Result<(), Ending> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(Ending::abnormal(format!("write failed: {err}"))),
            Err(_) => Err(Ending::abnormal("write timed out".to_owned())),
        }
    }

    async fn handle_message(&mut self, message: WsMessage) -> Result<(), Ending> {
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
                // tungstenite queued the close reply; draining flushes it.
                return Err(Ending {
                    reason,
                    send_close: None,
                    drain: true,
                });
            }
            // tungstenite answers WebSocket pings itself.
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => return Ok(()),
        };
        let replies = match replies {
            Ok(replies) => replies,
            Err(err) => {
                tracing::warn!(error = %err, "undecodable server frame, closing");
                return Err(Ending {
                    reason: CloseReason {
                        code: 1002,
                        reason: format!("undecodable server frame: {err}"),
                    },
                    send_close: Some((CloseCode::Protocol, "undecodable frame")),
                    drain: true,
                });
            }
        };
        for reply in replies {
            self.route(reply).await?;
        }
        Ok(())
    }

    async fn route(&mut self, mut reply: Reply) -> Result<(), Ending> {
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
            if let Some(pushes) = &self.pushes {
                let _ = pushes.send(push);
            }
        } else if reply.is_ping() {
            self.shared.pings_received.fetch_add(1, Ordering::Relaxed);
            if self.server_wants_pong && self.shared.answer_pings.load(Ordering::Relaxed) {
                self.pong().await?;
            }
        }
        Ok(())
    }

    async fn pong(&mut self) -> Result<(), Ending> {
        match encode_command(self.encoding, &Command::default()) {
            Ok(frame) => {
                let message = self.to_message(frame);
                self.write(message).await
            }
            // An empty command has nothing that could fail to encode.
            Err(err) => Err(Ending::abnormal(format!("cannot encode pong: {err}"))),
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
