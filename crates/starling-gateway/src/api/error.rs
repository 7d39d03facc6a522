//! Why a server API command failed, and the one place that turns it into Centrifugo's API
//! error codes.

use serde::Serialize;
use starling_config::ChannelError;
use starling_node::{NodeError, RoomError};

use super::pattern::PatternError;

/// A failed server API command. None of these affect the node; each becomes an `error` object
/// in the reply.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The request is well-formed JSON but asks for something impossible.
    #[error("bad request: {reason}")]
    BadRequest {
        /// What is wrong.
        reason: &'static str,
    },
    /// `b64data` / `b64info` is not valid base64.
    #[error("field {field} is not valid base64")]
    BadBase64 {
        /// The field.
        field: &'static str,
    },
    /// The `channels` pattern does not compile.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// The feature is off in the channel's namespace.
    #[error("{feature} is not enabled for channel {channel:?}")]
    NotAvailable {
        /// The channel.
        channel: String,
        /// `"history"` or `"presence"`.
        feature: &'static str,
    },
    /// A batch command names no method this API has.
    #[error("no such method in batch command (keys: {keys})")]
    MethodNotFound {
        /// The keys the command object had.
        keys: String,
    },
    /// The node refused or failed.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Centrifugo's server API error codes (its `apiproto` table, which differs from the client
/// protocol's in the texts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiErrorCode {
    /// 100.
    Internal,
    /// 102.
    UnknownChannel,
    /// 104: the method does not exist.
    NotFound,
    /// 107.
    BadRequest,
    /// 108.
    NotAvailable,
    /// 112.
    UnrecoverablePosition,
}

impl ApiErrorCode {
    pub(crate) fn code(self) -> u32 {
        match self {
            ApiErrorCode::Internal => 100,
            ApiErrorCode::UnknownChannel => 102,
            ApiErrorCode::NotFound => 104,
            ApiErrorCode::BadRequest => 107,
            ApiErrorCode::NotAvailable => 108,
            ApiErrorCode::UnrecoverablePosition => 112,
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            ApiErrorCode::Internal => "internal server error",
            ApiErrorCode::UnknownChannel => "unknown channel",
            ApiErrorCode::NotFound => "not found",
            ApiErrorCode::BadRequest => "bad request",
            ApiErrorCode::NotAvailable => "not available",
            ApiErrorCode::UnrecoverablePosition => "unrecoverable position",
        }
    }

    /// The `{"code": .., "message": ..}` object.
    pub(crate) fn body(self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.message(),
        }
    }
}

/// Centrifugo's `Error` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct ErrorBody {
    pub(crate) code: u32,
    pub(crate) message: &'static str,
}

impl ApiError {
    /// The API error code this failure is reported with.
    pub(crate) fn code(&self) -> ApiErrorCode {
        match self {
            ApiError::BadRequest { .. } | ApiError::BadBase64 { .. } | ApiError::Pattern(_) => {
                ApiErrorCode::BadRequest
            }
            ApiError::NotAvailable { .. } => ApiErrorCode::NotAvailable,
            ApiError::MethodNotFound { .. } => ApiErrorCode::NotFound,
            ApiError::Node(NodeError::Channel(ChannelError::UnknownNamespace { .. })) => {
                ApiErrorCode::UnknownChannel
            }
            ApiError::Node(NodeError::Channel(_)) => ApiErrorCode::BadRequest,
            ApiError::Node(NodeError::Room(RoomError::UnrecoverablePosition { .. })) => {
                ApiErrorCode::UnrecoverablePosition
            }
            ApiError::Node(NodeError::Room(RoomError::ReverseFromOffsetZero)) => {
                ApiErrorCode::BadRequest
            }
            // Another node (a room's owner, the leader) judged the request malformed; the
            // client protocol maps the same error to its bad request too.
            ApiError::Node(NodeError::Remote {
                bad_request: true, ..
            }) => ApiErrorCode::BadRequest,
            ApiError::Node(_) => ApiErrorCode::Internal,
        }
    }
}

impl From<ChannelError> for ApiError {
    fn from(error: ChannelError) -> Self {
        ApiError::Node(NodeError::Channel(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_errors_map_to_centrifugo_codes() {
        let unknown: ApiError = ChannelError::UnknownNamespace {
            namespace: "x".into(),
        }
        .into();
        assert_eq!(unknown.code().code(), 102);
        let empty: ApiError = ChannelError::Empty.into();
        assert_eq!(empty.code().code(), 107);
    }

    #[test]
    fn room_and_runtime_errors_map_to_centrifugo_codes() {
        let unrecoverable = ApiError::Node(NodeError::Room(RoomError::UnrecoverablePosition {
            requested_epoch: "a".into(),
            current_epoch: "b".into(),
        }));
        assert_eq!(unrecoverable.code().code(), 112);
        let timeout = ApiError::Node(NodeError::RoomTimeout { room: "r".into() });
        assert_eq!(timeout.code().body().message, "internal server error");
        let refused = ApiError::Node(NodeError::Remote {
            bad_request: true,
            reason: "x".into(),
        });
        assert_eq!(refused.code().code(), 107);
    }
}
