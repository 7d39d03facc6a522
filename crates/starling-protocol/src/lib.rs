//! Wire types, codes and codecs of the Centrifugo client protocol v2, as
//! spoken by Starling's client plane so the real Centrifugo SDKs work.
//!
//! Pure data and functions: no I/O, no async runtime. The same structs encode
//! to JSON (text frames, `bytes` fields as embedded raw JSON) and to Protobuf
//! (binary frames, subprotocol [`PROTOBUF_SUBPROTOCOL`]).
//!
//! # Layout
//! - `types` — one struct per message of `centrifuge-client.proto`
//!   ([`Command`], [`Reply`], [`Push`], ...), plus [`Method`] and small
//!   constructors for replies.
//! - `raw` — serde helpers giving the structs Centrifugo's JSON shape.
//! - `codes` — [`ErrorCode`], [`DisconnectCode`], [`UnsubscribeCode`] and the
//!   reconnect / resubscribe rules.
//! - `codec` — [`Encoding`], frame decoding/encoding and [`FrameBuilder`].

mod codec;
mod codes;
mod raw;
mod types;

pub use codec::{
    DecodeError, EncodeError, Encoding, FrameBuilder, PROTOBUF_SUBPROTOCOL, decode_commands,
    decode_commands_limited, decode_replies, encode_command, encode_reply,
};
pub use codes::{
    DisconnectCode, ErrorCode, MAX_CLOSE_REASON_BYTES, UnsubscribeCode, disconnect_reconnects,
    unsubscribe_resubscribes,
};
pub use types::{
    ClientInfo, Command, Connect, ConnectRequest, ConnectResult, Disconnect, EmulationRequest,
    Error, FilterNode, HistoryRequest, HistoryResult, Join, Leave, Message, Method, PingRequest,
    PingResult, PresenceRequest, PresenceResult, PresenceStatsRequest, PresenceStatsResult,
    Publication, PublishRequest, PublishResult, Push, Refresh, RefreshRequest, RefreshResult,
    Reply, RpcRequest, RpcResult, SendRequest, StreamPosition, SubRefreshRequest, SubRefreshResult,
    Subscribe, SubscribeRequest, SubscribeResult, Unsubscribe, UnsubscribeRequest,
    UnsubscribeResult,
};
