//! Error, disconnect and unsubscribe codes of the Centrifugo client protocol.
//!
//! Numbers, texts and reconnect semantics follow Centrifugo's "Client
//! protocol codes" documentation (centrifugal.dev `docs/server/codes.md`) and
//! the centrifuge library, because the SDKs branch on them.

use crate::types::{Disconnect, Error, Push, Reply, Unsubscribe};

/// Longest close reason a WebSocket close frame can carry: 125 bytes of
/// control-frame payload minus the 2-byte code.
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// Built-in client error codes, returned in [`Reply::error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 100: something went wrong on the server; temporary.
    Internal,
    /// 101: the request is unauthorized.
    Unauthorized,
    /// 102: the channel (namespace) does not exist.
    UnknownChannel,
    /// 103: access to the resource is not allowed.
    PermissionDenied,
    /// 104: the command's method does not exist.
    MethodNotFound,
    /// 105: the client is already subscribed to the channel.
    AlreadySubscribed,
    /// 106: some limit was exceeded.
    LimitExceeded,
    /// 107: the request is malformed; retrying makes no sense.
    BadRequest,
    /// 108: the feature (history, presence, ...) is not enabled.
    NotAvailable,
    /// 109: the connection token expired; SDKs refresh it.
    TokenExpired,
    /// 110: the connection expired (no token involved).
    Expired,
    /// 111: rate limited; temporary.
    TooManyRequests,
    /// 112: the stream no longer holds the requested range (e.g. wrong epoch).
    UnrecoverablePosition,
}

impl ErrorCode {
    /// Every built-in error code, in numeric order.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::Internal,
        ErrorCode::Unauthorized,
        ErrorCode::UnknownChannel,
        ErrorCode::PermissionDenied,
        ErrorCode::MethodNotFound,
        ErrorCode::AlreadySubscribed,
        ErrorCode::LimitExceeded,
        ErrorCode::BadRequest,
        ErrorCode::NotAvailable,
        ErrorCode::TokenExpired,
        ErrorCode::Expired,
        ErrorCode::TooManyRequests,
        ErrorCode::UnrecoverablePosition,
    ];

    /// The numeric code.
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::Internal => 100,
            ErrorCode::Unauthorized => 101,
            ErrorCode::UnknownChannel => 102,
            ErrorCode::PermissionDenied => 103,
            ErrorCode::MethodNotFound => 104,
            ErrorCode::AlreadySubscribed => 105,
            ErrorCode::LimitExceeded => 106,
            ErrorCode::BadRequest => 107,
            ErrorCode::NotAvailable => 108,
            ErrorCode::TokenExpired => 109,
            ErrorCode::Expired => 110,
            ErrorCode::TooManyRequests => 111,
            ErrorCode::UnrecoverablePosition => 112,
        }
    }

    /// The canonical message text.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::Internal => "internal server error",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnknownChannel => "unknown channel",
            ErrorCode::PermissionDenied => "permission denied",
            ErrorCode::MethodNotFound => "method not found",
            ErrorCode::AlreadySubscribed => "already subscribed",
            ErrorCode::LimitExceeded => "limit exceeded",
            ErrorCode::BadRequest => "bad request",
            ErrorCode::NotAvailable => "not available",
            ErrorCode::TokenExpired => "token expired",
            ErrorCode::Expired => "expired",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::UnrecoverablePosition => "unrecoverable position",
        }
    }

    /// Whether the error is temporary, i.e. the SDK may retry the request.
    pub fn is_temporary(self) -> bool {
        matches!(self, ErrorCode::Internal | ErrorCode::TooManyRequests)
    }

    /// The built-in code with this number, if any.
    pub fn from_code(code: u32) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|known| known.code() == code)
    }

    /// The wire error with the canonical message and temporary flag.
    pub fn to_error(self) -> Error {
        Error {
            code: self.code(),
            message: self.message().to_owned(),
            temporary: self.is_temporary(),
        }
    }

    /// An error reply to command `id`.
    pub fn reply(self, id: u32) -> Reply {
        Reply::error(id, self.to_error())
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Error {
        code.to_error()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message(), self.code())
    }
}

/// Built-in disconnect codes: sent in a [`Disconnect`] push and as the
/// WebSocket close code.
///
/// SDKs reconnect after codes in 3000..=3499, 4000..=4499 and >= 5000, and
/// stop for 3500..=3999 and 4500..=4999 (see [`disconnect_reconnects`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectCode {
    /// 3000: closed without advice from the server (clean close or network loss).
    ConnectionClosed,
    /// 3001: the node is shutting down.
    Shutdown,
    /// 3004: internal server error.
    ServerError,
    /// 3005: the connection expired.
    Expired,
    /// 3006: a subscription expired.
    SubExpired,
    /// 3008: the client cannot read fast enough.
    Slow,
    /// 3009: writing to the connection failed.
    WriteError,
    /// 3010: the server detected a wrong client position in a stream.
    InsufficientState,
    /// 3011: the server wants the client to reconnect.
    ForceReconnect,
    /// 3012: no pong to the server's pings in time.
    NoPong,
    /// 3013: the client sends too many commands.
    TooManyRequests,
    /// 3500: the connection token is invalid.
    InvalidToken,
    /// 3501: malformed protocol frames or wrong command order.
    BadRequest,
    /// 3502: the connection did not authenticate in time.
    Stale,
    /// 3503: the server disconnected the client and asks it not to reconnect.
    ForceNoReconnect,
    /// 3504: a connection limit was exceeded.
    ConnectionLimit,
    /// 3505: a channel limit was exceeded.
    ChannelLimit,
    /// 3506: the connection's format cannot carry the data (binary to JSON).
    InappropriateProtocol,
    /// 3507: the client lacks permission.
    PermissionDenied,
    /// 3508: the feature is not available.
    NotAvailable,
    /// 3509: the client caused too many errors.
    TooManyErrors,
}

impl DisconnectCode {
    /// Every built-in disconnect code, in numeric order.
    pub const ALL: [DisconnectCode; 21] = [
        DisconnectCode::ConnectionClosed,
        DisconnectCode::Shutdown,
        DisconnectCode::ServerError,
        DisconnectCode::Expired,
        DisconnectCode::SubExpired,
        DisconnectCode::Slow,
        DisconnectCode::WriteError,
        DisconnectCode::InsufficientState,
        DisconnectCode::ForceReconnect,
        DisconnectCode::NoPong,
        DisconnectCode::TooManyRequests,
        DisconnectCode::InvalidToken,
        DisconnectCode::BadRequest,
        DisconnectCode::Stale,
        DisconnectCode::ForceNoReconnect,
        DisconnectCode::ConnectionLimit,
        DisconnectCode::ChannelLimit,
        DisconnectCode::InappropriateProtocol,
        DisconnectCode::PermissionDenied,
        DisconnectCode::NotAvailable,
        DisconnectCode::TooManyErrors,
    ];

    /// The numeric code (also the WebSocket close code).
    pub fn code(self) -> u16 {
        match self {
            DisconnectCode::ConnectionClosed => 3000,
            DisconnectCode::Shutdown => 3001,
            DisconnectCode::ServerError => 3004,
            DisconnectCode::Expired => 3005,
            DisconnectCode::SubExpired => 3006,
            DisconnectCode::Slow => 3008,
            DisconnectCode::WriteError => 3009,
            DisconnectCode::InsufficientState => 3010,
            DisconnectCode::ForceReconnect => 3011,
            DisconnectCode::NoPong => 3012,
            DisconnectCode::TooManyRequests => 3013,
            DisconnectCode::InvalidToken => 3500,
            DisconnectCode::BadRequest => 3501,
            DisconnectCode::Stale => 3502,
            DisconnectCode::ForceNoReconnect => 3503,
            DisconnectCode::ConnectionLimit => 3504,
            DisconnectCode::ChannelLimit => 3505,
            DisconnectCode::InappropriateProtocol => 3506,
            DisconnectCode::PermissionDenied => 3507,
            DisconnectCode::NotAvailable => 3508,
            DisconnectCode::TooManyErrors => 3509,
        }
    }

    /// The canonical reason text (also the WebSocket close reason).
    pub fn reason(self) -> &'static str {
        match self {
            DisconnectCode::ConnectionClosed => "connection closed",
            DisconnectCode::Shutdown => "shutdown",
            DisconnectCode::ServerError => "internal server error",
            DisconnectCode::Expired => "connection expired",
            DisconnectCode::SubExpired => "subscription expired",
            DisconnectCode::Slow => "slow",
            DisconnectCode::WriteError => "write error",
            DisconnectCode::InsufficientState => "insufficient state",
            DisconnectCode::ForceReconnect => "force reconnect",
            DisconnectCode::NoPong => "no pong",
            DisconnectCode::TooManyRequests => "too many requests",
            DisconnectCode::InvalidToken => "invalid token",
            DisconnectCode::BadRequest => "bad request",
            DisconnectCode::Stale => "stale",
            DisconnectCode::ForceNoReconnect => "force disconnect",
            DisconnectCode::ConnectionLimit => "connection limit",
            DisconnectCode::ChannelLimit => "channel limit",
            DisconnectCode::InappropriateProtocol => "inappropriate protocol",
            DisconnectCode::PermissionDenied => "permission denied",
            DisconnectCode::NotAvailable => "not available",
            DisconnectCode::TooManyErrors => "too many errors",
        }
    }

    /// Whether an SDK reconnects after this code.
    pub fn reconnect(self) -> bool {
        disconnect_reconnects(u32::from(self.code()))
    }

    /// The built-in code with this number, if any.
    pub fn from_code(code: u32) -> Option<DisconnectCode> {
        DisconnectCode::ALL
            .into_iter()
            .find(|known| u32::from(known.code()) == code)
    }

    /// The wire [`Disconnect`] message for this code.
    pub fn to_disconnect(self) -> Disconnect {
        Disconnect {
            code: u32::from(self.code()),
            reason: self.reason().to_owned(),
            reconnect: self.reconnect(),
        }
    }

    /// The disconnect push to send before closing.
    pub fn push(self) -> Reply {
        Reply::push(Push::disconnect(self.to_disconnect()))
    }

    /// WebSocket close code and reason for this disconnect.
    pub fn close_frame(self) -> (u16, &'static str) {
        (self.code(), self.reason())
    }
}

impl From<DisconnectCode> for Disconnect {
    fn from(code: DisconnectCode) -> Disconnect {
        code.to_disconnect()
    }
}

impl std::fmt::Display for DisconnectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason(), self.code())
    }
}

/// Whether an SDK reconnects after disconnect `code`, built-in or custom:
/// codes below 3500, 4000..=4499 and from 5000 on are non-terminal.
pub fn disconnect_reconnects(code: u32) -> bool {
    code < 3500 || (4000..4500).contains(&code) || code >= 5000
}

impl Disconnect {
    /// A disconnect with a custom `code` and `reason`; `reconnect` follows the
    /// code range.
    pub fn new(code: u32, reason: impl Into<String>) -> Disconnect {
        Disconnect {
            code,
            reason: reason.into(),
            reconnect: disconnect_reconnects(code),
        }
    }

    /// WebSocket close code and reason for this disconnect.
    ///
    /// A close frame only carries codes 3000..=4999 for applications and at
    /// most [`MAX_CLOSE_REASON_BYTES`] of reason, so other codes become
    /// 3011 (force reconnect) or 3503 (force disconnect), keeping the SDK's
    /// reconnect decision, and the reason is cut at a character boundary.
    pub fn close_frame(&self) -> (u16, &str) {
        let code = match u16::try_from(self.code) {
            Ok(code) if (3000..=4999).contains(&code) => code,
            _ if disconnect_reconnects(self.code) => DisconnectCode::ForceReconnect.code(),
            _ => DisconnectCode::ForceNoReconnect.code(),
        };
        (
            code,
            truncate_at_char_boundary(&self.reason, MAX_CLOSE_REASON_BYTES),
        )
    }
}

fn truncate_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Built-in unsubscribe codes, sent in an [`Unsubscribe`] push.
///
/// Codes >= 2500 make the SDK resubscribe; codes below 2500 leave the
/// subscription unsubscribed. [`UnsubscribeCode::Client`] and
/// [`UnsubscribeCode::Disconnect`] never go on the wire: they label
/// server-side unsubscribe events (hooks, metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnsubscribeCode {
    /// 0: the client unsubscribed itself (server-side event only).
    Client,
    /// 1: the client disconnected (server-side event only).
    Disconnect,
    /// 2000: unsubscribed by the server API; no resubscribe.
    Server,
    /// 2500: the stream state is insufficient; the client resubscribes and recovers.
    Insufficient,
    /// 2501: the subscription expired; the client resubscribes with a new token.
    Expired,
}

impl UnsubscribeCode {
    /// Every built-in unsubscribe code, in numeric order.
    pub const ALL: [UnsubscribeCode; 5] = [
        UnsubscribeCode::Client,
        UnsubscribeCode::Disconnect,
        UnsubscribeCode::Server,
        UnsubscribeCode::Insufficient,
        UnsubscribeCode::Expired,
    ];

    /// The numeric code.
    pub fn code(self) -> u32 {
        match self {
            UnsubscribeCode::Client => 0,
            UnsubscribeCode::Disconnect => 1,
            UnsubscribeCode::Server => 2000,
            UnsubscribeCode::Insufficient => 2500,
            UnsubscribeCode::Expired => 2501,
        }
    }

    /// The canonical reason text.
    pub fn reason(self) -> &'static str {
        match self {
            UnsubscribeCode::Client => "client unsubscribed",
            UnsubscribeCode::Disconnect => "client disconnected",
            UnsubscribeCode::Server => "server unsubscribe",
            UnsubscribeCode::Insufficient => "insufficient state",
            UnsubscribeCode::Expired => "subscription expired",
        }
    }

    /// Whether an SDK resubscribes after this code.
    pub fn resubscribe(self) -> bool {
        unsubscribe_resubscribes(self.code())
    }

    /// The built-in code with this number, if any.
    pub fn from_code(code: u32) -> Option<UnsubscribeCode> {
        UnsubscribeCode::ALL
            .into_iter()
            .find(|known| known.code() == code)
    }

    /// The wire [`Unsubscribe`] message for this code.
    pub fn to_unsubscribe(self) -> Unsubscribe {
        Unsubscribe {
            code: self.code(),
            reason: self.reason().to_owned(),
        }
    }

    /// The unsubscribe push for `channel`.
    pub fn push(self, channel: impl Into<String>) -> Reply {
        Reply::push(Push::unsubscribe(channel, self.to_unsubscribe()))
    }
}

impl From<UnsubscribeCode> for Unsubscribe {
    fn from(code: UnsubscribeCode) -> Unsubscribe {
        code.to_unsubscribe()
    }
}

impl std::fmt::Display for UnsubscribeCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason(), self.code())
    }
}

/// Whether an SDK resubscribes after unsubscribe `code`: codes >= 2500 do.
pub fn unsubscribe_resubscribes(code: u32) -> bool {
    code >= 2500
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_match_documented_numbers_and_texts() {
        let table: Vec<(u32, &str, bool)> = ErrorCode::ALL
            .iter()
            .map(|c| (c.code(), c.message(), c.is_temporary()))
            .collect();
        assert_eq!(
            table,
            vec![
                (100, "internal server error", true),
                (101, "unauthorized", false),
                (102, "unknown channel", false),
                (103, "permission denied", false),
                (104, "method not found", false),
                (105, "already subscribed", false),
                (106, "limit exceeded", false),
                (107, "bad request", false),
                (108, "not available", false),
                (109, "token expired", false),
                (110, "expired", false),
                (111, "too many requests", true),
                (112, "unrecoverable position", false),
            ]
        );
    }

    #[test]
    fn codes_round_trip_through_from_code() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.code()), Some(code));
        }
        for code in DisconnectCode::ALL {
            assert_eq!(
                DisconnectCode::from_code(u32::from(code.code())),
                Some(code)
            );
        }
        for code in UnsubscribeCode::ALL {
            assert_eq!(UnsubscribeCode::from_code(code.code()), Some(code));
        }
        assert_eq!(ErrorCode::from_code(99), None);
        assert_eq!(DisconnectCode::from_code(3002), None);
        assert_eq!(UnsubscribeCode::from_code(2002), None);
    }

    #[test]
    fn disconnect_codes_below_3500_reconnect_and_above_do_not() {
        for code in DisconnectCode::ALL {
            assert_eq!(code.reconnect(), code.code() < 3500, "{code}");
        }
        assert!(DisconnectCode::Shutdown.reconnect());
        assert!(!DisconnectCode::InvalidToken.reconnect());
        assert!(disconnect_reconnects(4100));
        assert!(!disconnect_reconnects(4500));
        assert!(disconnect_reconnects(5000));
    }

    #[test]
    fn disconnect_push_carries_code_reason_and_reconnect() {
        let reply = DisconnectCode::Slow.push();
        let push = reply.push.unwrap_or_default();
        assert_eq!(
            push.disconnect,
            Some(Disconnect {
                code: 3008,
                reason: "slow".to_owned(),
                reconnect: true
            })
        );
        assert!(push.channel.is_empty());
    }

    #[test]
    fn close_frame_keeps_valid_codes_and_maps_others_by_reconnect_rule() {
        assert_eq!(
            DisconnectCode::NoPong.to_disconnect().close_frame(),
            (3012, "no pong")
        );
        assert_eq!(
            Disconnect::new(4321, "custom").close_frame(),
            (4321, "custom")
        );
        assert_eq!(Disconnect::new(5001, "x").close_frame().0, 3011);
        assert_eq!(Disconnect::new(2999, "x").close_frame().0, 3011);
        assert_eq!(Disconnect::new(70_000, "x").close_frame().0, 3011);
        assert_eq!(Disconnect::new(4600, "x").close_frame(), (4600, "x"));
    }

    #[test]
    fn close_reason_is_cut_to_123_bytes_on_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes, 2 per char
        let disconnect = Disconnect::new(4000, reason);
        let (_, cut) = disconnect.close_frame();
        assert_eq!(cut.len(), 122);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn unsubscribe_codes_from_2500_resubscribe() {
        assert!(!UnsubscribeCode::Server.resubscribe());
        assert!(UnsubscribeCode::Insufficient.resubscribe());
        assert!(UnsubscribeCode::Expired.resubscribe());
        assert_eq!(UnsubscribeCode::Expired.reason(), "subscription expired");
        let reply = UnsubscribeCode::Server.push("news");
        let push = reply.push.unwrap_or_default();
        assert_eq!(push.channel, "news");
        assert_eq!(push.unsubscribe.map(|u| u.code), Some(2000));
    }

    #[test]
    fn error_code_reply_carries_id_and_canonical_error() {
        let reply = ErrorCode::TooManyRequests.reply(7);
        assert_eq!(reply.id, 7);
        assert_eq!(
            reply.error,
            Some(Error {
                code: 111,
                message: "too many requests".to_owned(),
                temporary: true
            })
        );
    }
}
