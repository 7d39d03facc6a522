//! The one error type of this crate.

use thiserror::Error;

/// Why a room refused a request. All variants are "this request failed"; none
/// means the room or the node is broken. The gateway maps them to protocol
/// error codes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RoomError {
    /// A history query named a stream position from another epoch, so its
    /// offsets mean nothing in the current stream (Centrifugo's
    /// "unrecoverable position").
    #[error(
        "stream position is from epoch {requested_epoch:?}, the room is at epoch {current_epoch:?}"
    )]
    UnrecoverablePosition {
        /// The epoch the caller sent.
        requested_epoch: String,
        /// The room's epoch.
        current_epoch: String,
    },
    /// A reverse history query started at offset 0: there is nothing before
    /// it (Centrifugo answers this with "bad request").
    #[error("reverse history query cannot start before offset 0")]
    ReverseFromOffsetZero,
    /// History handed to [`Room::resume`](crate::Room::resume) is not a
    /// contiguous run of offsets: it would break recovery.
    #[error("history is not contiguous: expected offset {expected}, found {found}")]
    HistoryNotContiguous {
        /// The offset the entry at this place must have.
        expected: u64,
        /// The offset it has.
        found: u64,
    },
    /// History handed to [`Room::resume`](crate::Room::resume) does not end at
    /// the stream position's offset.
    #[error("history ends at offset {history_top}, the stream position is at {position_offset}")]
    HistoryTopMismatch {
        /// The offset of the last history entry.
        history_top: u64,
        /// The offset of the stream position.
        position_offset: u64,
    },
}
