//! [`PeerLink`]: one established link to another node — the QUIC connection,
//! its long-lived frame stream, a bounded send queue and the incoming frames.

use std::net::SocketAddr;

use quinn::{Connection, VarInt};
use starling_placement::NodeId;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::codec::{FrameReader, FrameWriter};
use crate::error::LinkError;
use crate::frame::Frame;

/// Frames a link queues for sending before [`PeerLink::send`] waits
/// (and [`PeerSender::try_send`] fails).
pub const SEND_QUEUE: usize = 1024;

/// Incoming frames a link buffers before it stops reading the stream
/// (QUIC flow control then slows the peer down).
pub const RECV_QUEUE: usize = 1024;

/// Encoded bytes the writer gathers into one stream write (64 KiB).
const WRITE_BATCH: usize = 64 * 1024;

/// Application close codes of the cluster plane, sent in QUIC
/// CONNECTION_CLOSE frames. Values are part of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// Orderly close: the link was dropped or the node is shutting down.
    Normal,
    /// The peer sent bytes that are not a frame, or a frame out of place.
    ProtocolViolation,
    /// The peer speaks a frame version this node does not.
    UnsupportedVersion,
    /// The peer's Hello does not match its certificate, or names the wrong
    /// (or this very) node.
    IdentityMismatch,
    /// The peer did not complete the Hello exchange in time.
    HelloTimeout,
}

impl CloseCode {
    /// The code on the wire.
    pub fn code(self) -> u32 {
        match self {
            CloseCode::Normal => 0,
            CloseCode::ProtocolViolation => 1,
            CloseCode::UnsupportedVersion => 2,
            CloseCode::IdentityMismatch => 3,
            CloseCode::HelloTimeout => 4,
        }
    }

    /// The close code for a wire value, if it is one of ours.
    pub fn from_code(code: u64) -> Option<Self> {
        [
            CloseCode::Normal,
            CloseCode::ProtocolViolation,
            CloseCode::UnsupportedVersion,
            CloseCode::IdentityMismatch,
            CloseCode::HelloTimeout,
        ]
        .into_iter()
        .find(|c| u64::from(c.code()) == code)
    }

    /// The reason text sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "closed",
            CloseCode::ProtocolViolation => "protocol violation",
            CloseCode::UnsupportedVersion => "unsupported frame version",
            CloseCode::IdentityMismatch => "identity mismatch",
            CloseCode::HelloTimeout => "hello timeout",
        }
    }

    /// The close code that answers a failed read or handshake step, if the
    /// failure is the peer's doing.
    pub(crate) fn for_error(error: &LinkError) -> Option<Self> {
        use crate::error::FrameError;
        match error {
            LinkError::Frame {
                source: FrameError::UnknownVersion { .. },
                ..
            } => Some(CloseCode::UnsupportedVersion),
            LinkError::Frame { .. }
            | LinkError::ExpectedHello { .. }
            | LinkError::StreamEnded { .. } => Some(CloseCode::ProtocolViolation),
            LinkError::PeerIdentity { .. }
            | LinkError::WrongPeer { .. }
            | LinkError::SelfConnection { .. } => Some(CloseCode::IdentityMismatch),
            LinkError::HelloTimeout { .. } => Some(CloseCode::HelloTimeout),
            _ => None,
        }
    }
}

/// Closes `conn` with `code`.
pub(crate) fn close(conn: &Connection, code: CloseCode) {
    conn.close(VarInt::from_u32(code.code()), code.reason().as_bytes());
}

/// A cloneable handle that queues frames on a [`PeerLink`].
#[derive(Debug, Clone)]
pub struct PeerSender {
    peer: NodeId,
    tx: mpsc::Sender<Frame>,
}

impl PeerSender {
    /// Queues `frame`, waiting while the queue is full.
    pub async fn send(&self, frame: Frame) -> Result<(), LinkError> {
        self.tx
            .send(frame)
            .await
            .map_err(|_| LinkError::Closed { peer: self.peer })
    }

    /// Queues `frame` if there is room now.
    pub fn try_send(&self, frame: Frame) -> Result<(), LinkError> {
        self.tx.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LinkError::QueueFull { peer: self.peer },
            mpsc::error::TrySendError::Closed(_) => LinkError::Closed { peer: self.peer },
        })
    }

    /// The node this sender sends to.
    pub fn peer(&self) -> NodeId {
        self.peer
    }
}

/// An established link to another node, after the Hello exchange.
///
/// It owns two tasks: a writer that drains the send queue into the frame
/// stream (batching what has queued up into one write), and a reader that
/// decodes the peer's frames, answers [`Frame::Ping`] itself and passes every
/// other frame to [`recv`](Self::recv). A bad frame from the peer closes the
/// link with [`CloseCode::ProtocolViolation`] (or
/// [`CloseCode::UnsupportedVersion`]) and a warning in the log.
///
/// Dropping the link closes the connection with [`CloseCode::Normal`] and
/// stops both tasks.
#[derive(Debug)]
pub struct PeerLink {
    peer: NodeId,
    conn: Connection,
    sender: PeerSender,
    incoming: mpsc::Receiver<Frame>,
    tasks: [AbortHandle; 2],
}

impl PeerLink {
    /// Starts the reader and writer tasks on an established frame stream.
    pub(crate) fn start(
        peer: NodeId,
        conn: Connection,
        reader: FrameReader,
        writer: FrameWriter,
    ) -> Self {
        let (out_tx, out_rx) = mpsc::channel(SEND_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(RECV_QUEUE);
        let sender = PeerSender { peer, tx: out_tx };
        let writer_task = tokio::spawn(write_loop(peer, writer, out_rx));
        let reader_task =
            tokio::spawn(read_loop(peer, conn.clone(), reader, sender.clone(), in_tx));
        PeerLink {
            peer,
            conn,
            sender,
            incoming: in_rx,
            tasks: [writer_task.abort_handle(), reader_task.abort_handle()],
        }
    }

    /// The node at the other end.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The peer's UDP address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// The QUIC connection, for planes that open their own streams on it
    /// (Raft dials connections of its own instead).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Queues `frame`, waiting while the send queue is full.
    pub async fn send(&self, frame: Frame) -> Result<(), LinkError> {
        self.sender.send(frame).await
    }

    /// A cloneable handle for sending from other tasks.
    pub fn sender(&self) -> PeerSender {
        self.sender.clone()
    }

    /// The next frame from the peer; `None` once the link is down.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.incoming.recv().await
    }

    /// Closes the link with `code`.
    pub fn close(&self, code: CloseCode) {
        close(&self.conn, code);
    }

    /// Waits until the connection is closed, by either side, and says why.
    pub async fn closed(&self) -> LinkError {
        crate::codec::connection_error(self.conn.remote_address(), self.conn.closed().await)
    }
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        close(&self.conn, CloseCode::Normal);
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn write_loop(peer: NodeId, mut writer: FrameWriter, mut queue: mpsc::Receiver<Frame>) {
    while let Some(frame) = queue.recv().await {
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            if let Err(error) = writer.queue(&frame) {
                // Our own frame failed to encode (too large): drop that
                // frame, keep the link.
                tracing::error!(%peer, kind = frame.kind(), %error, "cannot encode frame; dropped");
            }
            if writer.pending() < WRITE_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if let Err(error) = writer.flush().await {
            tracing::debug!(%peer, %error, "link write failed");
            return;
        }
    }
    // Every sender is gone: end the stream cleanly.
    writer.finish();
}

async fn read_loop(
    peer: NodeId,
    conn: Connection,
    mut reader: FrameReader,
    sender: PeerSender,
    incoming: mpsc::Sender<Frame>,
) {
    loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                tracing::debug!(%peer, "peer ended the frame stream");
                close(&conn, CloseCode::Normal);
                return;
            }
            Err(error) => {
                match CloseCode::for_error(&error) {
                    Some(code) => {
                        tracing::warn!(%peer, addr = %conn.remote_address(), %error, "closing link: peer sent a bad frame");
                        close(&conn, code);
                    }
                    None => tracing::debug!(%peer, %error, "link read ended"),
                }
                return;
            }
        };
        match frame {
            Frame::Ping { seq } => {
                // A peer that pings faster than we can answer loses pongs,
                // not the link.
                if let Err(error) = sender.try_send(Frame::Pong { seq }) {
                    tracing::debug!(%peer, %error, "pong dropped");
                }
            }
            Frame::Hello(_) => {
                tracing::warn!(%peer, addr = %conn.remote_address(), "closing link: second Hello on an established link");
                close(&conn, CloseCode::ProtocolViolation);
                return;
            }
            frame => {
                if incoming.send(frame).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_round_trip_and_are_distinct() {
        let all = [
            CloseCode::Normal,
            CloseCode::ProtocolViolation,
            CloseCode::UnsupportedVersion,
            CloseCode::IdentityMismatch,
            CloseCode::HelloTimeout,
        ];
        for code in all {
            assert_eq!(CloseCode::from_code(u64::from(code.code())), Some(code));
        }
        assert_eq!(CloseCode::from_code(99), None);
    }

    #[test]
    fn unknown_version_gets_its_own_close_code() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let error = LinkError::Frame {
            addr,
            source: crate::error::FrameError::UnknownVersion {
                got: 2,
                supported: 1,
            },
        };
        assert_eq!(
            CloseCode::for_error(&error),
            Some(CloseCode::UnsupportedVersion)
        );
        let error = LinkError::Frame {
            addr,
            source: crate::error::FrameError::TrailingBytes { extra: 1 },
        };
        assert_eq!(
            CloseCode::for_error(&error),
            Some(CloseCode::ProtocolViolation)
        );
    }
}
