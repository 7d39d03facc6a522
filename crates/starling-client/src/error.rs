//! The client's error type.

use starling_protocol::{EncodeError, Method, Reply};
use tokio_tungstenite::tungstenite;

/// How and why the connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// WebSocket close code: the server's (e.g. 3012 "no pong"), 1000 after
    /// [`Client::close`](crate::Client::close), 1005 for a close frame without
    /// status, 1006 when the connection dropped without a close frame.
    pub code: u16,
    /// Close reason text, or a description of what ended the connection.
    pub reason: String,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The WebSocket handshake with `url` failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL dialled.
        url: String,
        /// What tungstenite reported.
        #[source]
        source: Box<tungstenite::Error>,
    },
    /// The server answered the command with an error reply.
    #[error("server replied with error {} ({})", .0.message, .0.code)]
    Reply(starling_protocol::Error),
    /// The connection is closed (before or while waiting for the reply).
    #[error("connection closed: {reason} ({code})")]
    Closed {
        /// WebSocket close code, see [`CloseReason::code`].
        code: u16,
        /// Close reason text.
        reason: String,
    },
    /// The command could not be encoded (e.g. non-JSON data on a JSON connection).
    #[error("cannot encode command: {0}")]
    Encode(#[from] EncodeError),
    /// The reply lacks the result the command asks for.
    #[error("reply to a {expected} command carries no {expected} result")]
    UnexpectedReply {
        /// The command's method.
        expected: Method,
        /// The reply received.
        reply: Box<Reply>,
    },
}

impl From<CloseReason> for ClientError {
    fn from(close: CloseReason) -> ClientError {
        ClientError::Closed {
            code: close.code,
            reason: close.reason,
        }
    }
}
