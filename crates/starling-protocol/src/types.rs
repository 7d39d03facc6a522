//! Wire messages of the Centrifugo client protocol v2.
//!
//! One set of structs serves both encodings: prost derives the Protobuf side
//! (field numbers as in `centrifuge-client.proto`), serde derives the JSON
//! side (snake_case proto names, default values omitted, `bytes` fields as
//! embedded raw JSON — see [`crate::raw`]).
//!
//! The protocol deliberately avoids `oneof` for JSON interoperability, so a
//! [`Command`] or [`Reply`] is a struct of optional members of which at most
//! one is expected to be set.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::raw::is_default;

/// An error returned to the client inside a [`Reply`].
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Error {
    /// Numeric error code, see [`crate::ErrorCode`].
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub code: u32,
    /// Human readable message.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub message: String,
    /// Whether the client may retry the request.
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default")]
    pub temporary: bool,
}

/// Bidirectional emulation request (HTTP-streaming / SSE fallbacks).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct EmulationRequest {
    /// Node that holds the emulated session.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub node: String,
    /// Session id of the emulated connection.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub session: String,
    /// Encoded commands for the session.
    #[prost(bytes = "bytes", tag = "3")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
}

/// A command sent from a client to the server.
///
/// Only the first set request (in field order) counts; see [`Command::method`].
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Command {
    /// Id the client uses to match the reply; 0 for commands without reply.
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub id: u32,
    /// Connect request.
    #[prost(message, optional, tag = "4")]
    #[serde(skip_serializing_if = "is_default")]
    pub connect: Option<ConnectRequest>,
    /// Subscribe request.
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "is_default")]
    pub subscribe: Option<SubscribeRequest>,
    /// Unsubscribe request.
    #[prost(message, optional, tag = "6")]
    #[serde(skip_serializing_if = "is_default")]
    pub unsubscribe: Option<UnsubscribeRequest>,
    /// Publish request.
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "is_default")]
    pub publish: Option<PublishRequest>,
    /// Presence request.
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "is_default")]
    pub presence: Option<PresenceRequest>,
    /// Presence stats request.
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "is_default")]
    pub presence_stats: Option<PresenceStatsRequest>,
    /// History request.
    #[prost(message, optional, tag = "10")]
    #[serde(skip_serializing_if = "is_default")]
    pub history: Option<HistoryRequest>,
    /// Ping request (protocol v1 style; v2 clients answer pings with an empty command).
    #[prost(message, optional, tag = "11")]
    #[serde(skip_serializing_if = "is_default")]
    pub ping: Option<PingRequest>,
    /// Asynchronous message to the server; gets no reply.
    #[prost(message, optional, tag = "12")]
    #[serde(skip_serializing_if = "is_default")]
    pub send: Option<SendRequest>,
    /// RPC request.
    #[prost(message, optional, tag = "13")]
    #[serde(skip_serializing_if = "is_default")]
    pub rpc: Option<RpcRequest>,
    /// Connection token refresh.
    #[prost(message, optional, tag = "14")]
    #[serde(skip_serializing_if = "is_default")]
    pub refresh: Option<RefreshRequest>,
    /// Subscription token refresh.
    #[prost(message, optional, tag = "15")]
    #[serde(skip_serializing_if = "is_default")]
    pub sub_refresh: Option<SubRefreshRequest>,
}

/// A message from the server: the reply to a [`Command`] (`id > 0`), an
/// asynchronous [`Push`] (`id == 0`), or — when empty — a server ping.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Reply {
    /// Id of the command this replies to; 0 for pushes.
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub id: u32,
    /// Set when the command failed.
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub error: Option<Error>,
    /// Asynchronous push.
    #[prost(message, optional, tag = "4")]
    #[serde(skip_serializing_if = "is_default")]
    pub push: Option<Push>,
    /// Result of a connect command.
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "is_default")]
    pub connect: Option<ConnectResult>,
    /// Result of a subscribe command.
    #[prost(message, optional, tag = "6")]
    #[serde(skip_serializing_if = "is_default")]
    pub subscribe: Option<SubscribeResult>,
    /// Result of an unsubscribe command.
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "is_default")]
    pub unsubscribe: Option<UnsubscribeResult>,
    /// Result of a publish command.
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "is_default")]
    pub publish: Option<PublishResult>,
    /// Result of a presence command.
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "is_default")]
    pub presence: Option<PresenceResult>,
    /// Result of a presence stats command.
    #[prost(message, optional, tag = "10")]
    #[serde(skip_serializing_if = "is_default")]
    pub presence_stats: Option<PresenceStatsResult>,
    /// Result of a history command.
    #[prost(message, optional, tag = "11")]
    #[serde(skip_serializing_if = "is_default")]
    pub history: Option<HistoryResult>,
    /// Result of a ping command.
    #[prost(message, optional, tag = "12")]
    #[serde(skip_serializing_if = "is_default")]
    pub ping: Option<PingResult>,
    /// Result of an RPC command.
    #[prost(message, optional, tag = "13")]
    #[serde(skip_serializing_if = "is_default")]
    pub rpc: Option<RpcResult>,
    /// Result of a refresh command.
    #[prost(message, optional, tag = "14")]
    #[serde(skip_serializing_if = "is_default")]
    pub refresh: Option<RefreshResult>,
    /// Result of a sub_refresh command.
    #[prost(message, optional, tag = "15")]
    #[serde(skip_serializing_if = "is_default")]
    pub sub_refresh: Option<SubRefreshResult>,
}

/// An asynchronous server-to-client message, carried in [`Reply::push`].
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Push {
    /// Optional numeric channel id (bandwidth optimisation).
    #[prost(int64, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub id: i64,
    /// Channel the push relates to; empty for connection-level pushes.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub channel: String,
    /// A publication in `channel` (JSON name `pub`).
    #[prost(message, optional, tag = "4")]
    #[serde(skip_serializing_if = "is_default")]
    pub r#pub: Option<Publication>,
    /// A client joined `channel`.
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "is_default")]
    pub join: Option<Join>,
    /// A client left `channel`.
    #[prost(message, optional, tag = "6")]
    #[serde(skip_serializing_if = "is_default")]
    pub leave: Option<Leave>,
    /// The server unsubscribed the client from `channel`.
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "is_default")]
    pub unsubscribe: Option<Unsubscribe>,
    /// An asynchronous message to this connection.
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "is_default")]
    pub message: Option<Message>,
    /// The server subscribed the client to `channel` (server-side subscription).
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "is_default")]
    pub subscribe: Option<Subscribe>,
    /// Connect push (unidirectional transports).
    #[prost(message, optional, tag = "10")]
    #[serde(skip_serializing_if = "is_default")]
    pub connect: Option<Connect>,
    /// The server is closing the connection.
    #[prost(message, optional, tag = "11")]
    #[serde(skip_serializing_if = "is_default")]
    pub disconnect: Option<Disconnect>,
    /// Connection refresh (unidirectional transports).
    #[prost(message, optional, tag = "12")]
    #[serde(skip_serializing_if = "is_default")]
    pub refresh: Option<Refresh>,
}

/// Information about a client connection.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientInfo {
    /// User id (empty for anonymous users).
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub user: String,
    /// Client (connection) id.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub client: String,
    /// Connection info attached by the application.
    #[prost(bytes = "bytes", tag = "3")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub conn_info: Bytes,
    /// Channel info attached by the application.
    #[prost(bytes = "bytes", tag = "4")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub chan_info: Bytes,
}

/// A publication in a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Publication {
    /// Payload.
    #[prost(bytes = "bytes", tag = "4")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
    /// Publisher, usually set only for client-side publications.
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "is_default")]
    pub info: Option<ClientInfo>,
    /// Stream offset; the epoch is given in [`SubscribeResult`].
    #[prost(uint64, tag = "6")]
    #[serde(skip_serializing_if = "is_default")]
    pub offset: u64,
    /// Optional tags.
    #[prost(btree_map = "string, string", tag = "7")]
    #[serde(skip_serializing_if = "is_default")]
    pub tags: BTreeMap<String, String>,
    /// Whether `data` is a delta from the previous publication.
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_default")]
    pub delta: bool,
    /// Publication time, Unix milliseconds (optional).
    #[prost(int64, tag = "9")]
    #[serde(skip_serializing_if = "is_default")]
    pub time: i64,
    /// Channel name, set for wildcard subscriptions.
    #[prost(string, tag = "10")]
    #[serde(skip_serializing_if = "is_default")]
    pub channel: String,
}

/// A client joined a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Join {
    /// Who joined.
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub info: Option<ClientInfo>,
}

/// A client left a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Leave {
    /// Who left.
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub info: Option<ClientInfo>,
}

/// The server unsubscribed the client from a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Unsubscribe {
    /// Unsubscribe code, see [`crate::UnsubscribeCode`].
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub code: u32,
    /// Reason text.
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "is_default")]
    pub reason: String,
}

/// The server subscribed the client to a channel (server-side subscription).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Subscribe {
    /// Whether the channel stream supports recovery.
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub recoverable: bool,
    /// Stream epoch.
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "is_default")]
    pub epoch: String,
    /// Current stream offset.
    #[prost(uint64, tag = "5")]
    #[serde(skip_serializing_if = "is_default")]
    pub offset: u64,
    /// Whether the stream is positioned.
    #[prost(bool, tag = "6")]
    #[serde(skip_serializing_if = "is_default")]
    pub positioned: bool,
    /// Subscription data attached by the application.
    #[prost(bytes = "bytes", tag = "7")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
}

/// An asynchronous message to a connection; no reply is sent for it.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Message {
    /// Payload.
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
}

/// Connect push, used by unidirectional transports instead of a connect reply.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Connect {
    /// Client id assigned by the server.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub client: String,
    /// Server version.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub version: String,
    /// Connection data attached by the application.
    #[prost(bytes = "bytes", tag = "3")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
    /// Server-side subscriptions, by channel.
    #[prost(btree_map = "string, message", tag = "4")]
    #[serde(skip_serializing_if = "is_default")]
    pub subs: BTreeMap<String, SubscribeResult>,
    /// Whether the connection expires.
    #[prost(bool, tag = "5")]
    #[serde(skip_serializing_if = "is_default")]
    pub expires: bool,
    /// Seconds until the connection expires.
    #[prost(uint32, tag = "6")]
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: u32,
    /// Server ping interval in seconds.
    #[prost(uint32, tag = "7")]
    #[serde(skip_serializing_if = "is_default")]
    pub ping: u32,
    /// Whether the client must answer pings.
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_default")]
    pub pong: bool,
    /// Session id (bidirectional emulation).
    #[prost(string, tag = "9")]
    #[serde(skip_serializing_if = "is_default")]
    pub session: String,
    /// Node id (bidirectional emulation).
    #[prost(string, tag = "10")]
    #[serde(skip_serializing_if = "is_default")]
    pub node: String,
    /// Server time, Unix milliseconds (optional).
    #[prost(int64, tag = "11")]
    #[serde(skip_serializing_if = "is_default")]
    pub time: i64,
}

/// The server is closing the connection.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Disconnect {
    /// Disconnect code, see [`crate::DisconnectCode`].
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub code: u32,
    /// Reason text.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub reason: String,
    /// Whether the client should reconnect (legacy; SDKs use the code range).
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default")]
    pub reconnect: bool,
}

/// Connection refresh push (unidirectional transports).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Refresh {
    /// Whether the connection expires.
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub expires: bool,
    /// Seconds until the connection expires.
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: u32,
}

/// First command of a connection: authenticate and optionally recover
/// server-side subscriptions.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectRequest {
    /// Connection JWT.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub token: String,
    /// Custom connect data.
    #[prost(bytes = "bytes", tag = "2")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
    /// Server-side subscriptions to recover, by channel.
    #[prost(btree_map = "string, message", tag = "3")]
    #[serde(skip_serializing_if = "is_default")]
    pub subs: BTreeMap<String, SubscribeRequest>,
    /// Client (SDK) name.
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "is_default")]
    pub name: String,
    /// Client (SDK) version.
    #[prost(string, tag = "5")]
    #[serde(skip_serializing_if = "is_default")]
    pub version: String,
    /// Emulated headers.
    #[prost(btree_map = "string, string", tag = "6")]
    #[serde(skip_serializing_if = "is_default")]
    pub headers: BTreeMap<String, String>,
    /// Connection-level feature flags.
    #[prost(int64, tag = "7")]
    #[serde(skip_serializing_if = "is_default")]
    pub flag: i64,
}

/// Result of a connect command.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectResult {
    /// Client id assigned by the server.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub client: String,
    /// Server version.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub version: String,
    /// Whether the connection expires.
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default")]
    pub expires: bool,
    /// Seconds until the connection expires.
    #[prost(uint32, tag = "4")]
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: u32,
    /// Connection data attached by the application.
    #[prost(bytes = "bytes", tag = "5")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
    /// Server-side subscriptions, by channel.
    #[prost(btree_map = "string, message", tag = "6")]
    #[serde(skip_serializing_if = "is_default")]
    pub subs: BTreeMap<String, SubscribeResult>,
    /// Server ping interval in seconds.
    #[prost(uint32, tag = "7")]
    #[serde(skip_serializing_if = "is_default")]
    pub ping: u32,
    /// Whether the client must answer pings with an empty command.
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_default")]
    pub pong: bool,
    /// Session id (bidirectional emulation).
    #[prost(string, tag = "9")]
    #[serde(skip_serializing_if = "is_default")]
    pub session: String,
    /// Node id (bidirectional emulation).
    #[prost(string, tag = "10")]
    #[serde(skip_serializing_if = "is_default")]
    pub node: String,
    /// Server time, Unix milliseconds (optional).
    #[prost(int64, tag = "11")]
    #[serde(skip_serializing_if = "is_default")]
    pub time: i64,
}

/// Refresh the connection token.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshRequest {
    /// New connection JWT.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub token: String,
}

/// Result of a refresh command.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshResult {
    /// Client id.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub client: String,
    /// Server version.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub version: String,
    /// Whether the connection expires.
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default")]
    pub expires: bool,
    /// Seconds until the connection expires.
    #[prost(uint32, tag = "4")]
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: u32,
}

/// Subscribe to a channel, optionally recovering missed publications.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub channel: String,
    /// Subscription JWT (private channels).
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub token: String,
    /// Whether to recover from `epoch`/`offset`.
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default")]
    pub recover: bool,
    /// Epoch the client last saw.
    #[prost(string, tag = "6")]
    #[serde(skip_serializing_if = "is_default")]
    pub epoch: String,
    /// Offset of the last publication the client saw.
    #[prost(uint64, tag = "7")]
    #[serde(skip_serializing_if = "is_default")]
    pub offset: u64,
    /// Custom subscribe data.
    #[prost(bytes = "bytes", tag = "8")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
    /// Ask for a positioned subscription.
    #[prost(bool, tag = "9")]
    #[serde(skip_serializing_if = "is_default")]
    pub positioned: bool,
    /// Ask for a recoverable subscription.
    #[prost(bool, tag = "10")]
    #[serde(skip_serializing_if = "is_default")]
    pub recoverable: bool,
    /// Ask for join/leave pushes.
    #[prost(bool, tag = "11")]
    #[serde(skip_serializing_if = "is_default")]
    pub join_leave: bool,
    /// Requested delta compression format (e.g. `fossil`).
    #[prost(string, tag = "12")]
    #[serde(skip_serializing_if = "is_default")]
    pub delta: String,
    /// Server-side filter on publication tags.
    #[prost(message, optional, tag = "13")]
    #[serde(skip_serializing_if = "is_default")]
    pub tf: Option<FilterNode>,
    /// Subscription-level feature flags.
    #[prost(int64, tag = "14")]
    #[serde(skip_serializing_if = "is_default")]
    pub flag: i64,
}

/// Result of a subscribe command (also used for server-side subscriptions).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeResult {
    /// Whether the subscription expires.
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub expires: bool,
    /// Seconds until the subscription expires.
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: u32,
    /// Whether the stream supports recovery.
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default")]
    pub recoverable: bool,
    /// Current stream epoch.
    #[prost(string, tag = "6")]
    #[serde(skip_serializing_if = "is_default")]
    pub epoch: String,
    /// Recovered publications, oldest first.
    #[prost(message, repeated, tag = "7")]
    #[serde(skip_serializing_if = "is_default")]
    pub publications: Vec<Publication>,
    /// Whether all missed publications were recovered.
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_default")]
    pub recovered: bool,
    /// Current stream offset.
    #[prost(uint64, tag = "9")]
    #[serde(skip_serializing_if = "is_default")]
    pub offset: u64,
    /// Whether the stream is positioned.
    #[prost(bool, tag = "10")]
    #[serde(skip_serializing_if = "is_default")]
    pub positioned: bool,
    /// Subscription data attached by the application.
    #[prost(bytes = "bytes", tag = "11")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
    /// Whether the client asked to recover.
    #[prost(bool, tag = "12")]
    #[serde(skip_serializing_if = "is_default")]
    pub was_recovering: bool,
    /// Whether delta compression was negotiated.
    #[prost(bool, tag = "13")]
    #[serde(skip_serializing_if = "is_default")]
    pub delta: bool,
    /// Optional numeric channel id used in later pushes.
    #[prost(int64, tag = "14")]
    #[serde(skip_serializing_if = "is_default")]
    pub id: i64,
}

/// Refresh a subscription token.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SubRefreshRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub channel: String,
    /// New subscription JWT.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub token: String,
}

/// Result of a sub_refresh command.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SubRefreshResult {
    /// Whether the subscription expires.
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub expires: bool,
    /// Seconds until the subscription expires.
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub ttl: u32,
}

/// Unsubscribe from a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct UnsubscribeRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub channel: String,
}

/// Result of an unsubscribe command (empty).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct UnsubscribeResult {}

/// Publish into a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub channel: String,
    /// Payload.
    #[prost(bytes = "bytes", tag = "2")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
}

/// Result of a publish command (empty).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishResult {}

/// Ask who is in a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub channel: String,
}

/// Result of a presence command.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceResult {
    /// Present clients, by client id.
    #[prost(btree_map = "string, message", tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub presence: BTreeMap<String, ClientInfo>,
}

/// Ask how many clients and users are in a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceStatsRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub channel: String,
}

/// Result of a presence stats command.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceStatsResult {
    /// Number of connections.
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub num_clients: u32,
    /// Number of distinct users.
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub num_users: u32,
}

/// A position in a channel stream.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamPosition {
    /// Offset.
    #[prost(uint64, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub offset: u64,
    /// Epoch.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub epoch: String,
}

/// Read a channel's history.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub channel: String,
    /// Maximum number of publications; 0 returns only the stream position,
    /// negative means no limit.
    #[prost(int32, tag = "7")]
    #[serde(skip_serializing_if = "is_default")]
    pub limit: i32,
    /// Return publications after this position.
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "is_default")]
    pub since: Option<StreamPosition>,
    /// Iterate from newest to oldest.
    #[prost(bool, tag = "9")]
    #[serde(skip_serializing_if = "is_default")]
    pub reverse: bool,
}

/// Result of a history command.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryResult {
    /// Publications in the requested order.
    #[prost(message, repeated, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub publications: Vec<Publication>,
    /// Current stream epoch.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub epoch: String,
    /// Current stream offset.
    #[prost(uint64, tag = "3")]
    #[serde(skip_serializing_if = "is_default")]
    pub offset: u64,
}

/// Ping command (empty).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PingRequest {}

/// Result of a ping command (empty).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PingResult {}

/// Call a server-side method.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcRequest {
    /// Arguments.
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
    /// Method name.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub method: String,
}

/// Result of an RPC command.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcResult {
    /// Return value.
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
}

/// Asynchronous message to the server; no reply is sent.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SendRequest {
    /// Payload.
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(with = "crate::raw::json", skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
}

/// A node of a server-side publication filter over tags.
///
/// `op` is `""` for a leaf comparison (`cmp` on `key` against `val`/`vals`),
/// or `and`/`or`/`not` over `nodes`.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterNode {
    /// `""` (leaf), `and`, `or` or `not`.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default")]
    pub op: String,
    /// Tag key compared by a leaf.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default")]
    pub key: String,
    /// Leaf comparison: eq, neq, in, nin, ex, nex, sw, ew, ct, lt, lte, gt, gte.
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "is_default")]
    pub cmp: String,
    /// Single comparison value.
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "is_default")]
    pub val: String,
    /// Values for set comparisons (`in`, `nin`).
    #[prost(string, repeated, tag = "5")]
    #[serde(skip_serializing_if = "is_default")]
    pub vals: Vec<String>,
    /// Children of a logical node.
    #[prost(message, repeated, tag = "6")]
    #[serde(skip_serializing_if = "is_default")]
    pub nodes: Vec<FilterNode>,
}

/// Which request a [`Command`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// [`Command::connect`].
    Connect,
    /// [`Command::subscribe`].
    Subscribe,
    /// [`Command::unsubscribe`].
    Unsubscribe,
    /// [`Command::publish`].
    Publish,
    /// [`Command::presence`].
    Presence,
    /// [`Command::presence_stats`].
    PresenceStats,
    /// [`Command::history`].
    History,
    /// [`Command::ping`].
    Ping,
    /// [`Command::send`].
    Send,
    /// [`Command::rpc`].
    Rpc,
    /// [`Command::refresh`].
    Refresh,
    /// [`Command::sub_refresh`].
    SubRefresh,
    /// No request set: in protocol v2 this is the client's pong.
    Empty,
}

impl Method {
    /// The proto field name of the request, as used in JSON and in logs/metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Connect => "connect",
            Method::Subscribe => "subscribe",
            Method::Unsubscribe => "unsubscribe",
            Method::Publish => "publish",
            Method::Presence => "presence",
            Method::PresenceStats => "presence_stats",
            Method::History => "history",
            Method::Ping => "ping",
            Method::Send => "send",
            Method::Rpc => "rpc",
            Method::Refresh => "refresh",
            Method::SubRefresh => "sub_refresh",
            Method::Empty => "empty",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Command {
    /// The request this command carries: the first one set in field order,
    /// since the server takes only the first non-null request.
    pub fn method(&self) -> Method {
        if self.connect.is_some() {
            Method::Connect
        } else if self.subscribe.is_some() {
            Method::Subscribe
        } else if self.unsubscribe.is_some() {
            Method::Unsubscribe
        } else if self.publish.is_some() {
            Method::Publish
        } else if self.presence.is_some() {
            Method::Presence
        } else if self.presence_stats.is_some() {
            Method::PresenceStats
        } else if self.history.is_some() {
            Method::History
        } else if self.ping.is_some() {
            Method::Ping
        } else if self.send.is_some() {
            Method::Send
        } else if self.rpc.is_some() {
            Method::Rpc
        } else if self.refresh.is_some() {
            Method::Refresh
        } else if self.sub_refresh.is_some() {
            Method::SubRefresh
        } else {
            Method::Empty
        }
    }

    /// How many requests are set; more than one is a malformed command the
    /// server may reject.
    pub fn request_count(&self) -> usize {
        [
            self.connect.is_some(),
            self.subscribe.is_some(),
            self.unsubscribe.is_some(),
            self.publish.is_some(),
            self.presence.is_some(),
            self.presence_stats.is_some(),
            self.history.is_some(),
            self.ping.is_some(),
            self.send.is_some(),
            self.rpc.is_some(),
            self.refresh.is_some(),
            self.sub_refresh.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count()
    }
}

impl Reply {
    /// An error reply to command `id`.
    pub fn error(id: u32, error: Error) -> Reply {
        Reply {
            id,
            error: Some(error),
            ..Reply::default()
        }
    }

    /// An asynchronous push (id 0).
    pub fn push(push: Push) -> Reply {
        Reply {
            push: Some(push),
            ..Reply::default()
        }
    }

    /// The empty reply the server sends as a protocol v2 ping.
    pub fn ping() -> Reply {
        Reply::default()
    }

    /// Whether this is a server ping: nothing set at all.
    pub fn is_ping(&self) -> bool {
        *self == Reply::default()
    }
}

impl Push {
    /// A publication push in `channel`.
    pub fn publication(channel: impl Into<String>, publication: Publication) -> Push {
        Push {
            channel: channel.into(),
            r#pub: Some(publication),
            ..Push::default()
        }
    }

    /// A join push in `channel`.
    pub fn join(channel: impl Into<String>, info: ClientInfo) -> Push {
        Push {
            channel: channel.into(),
            join: Some(Join { info: Some(info) }),
            ..Push::default()
        }
    }

    /// A leave push in `channel`.
    pub fn leave(channel: impl Into<String>, info: ClientInfo) -> Push {
        Push {
            channel: channel.into(),
            leave: Some(Leave { info: Some(info) }),
            ..Push::default()
        }
    }

    /// A server unsubscribe push for `channel`.
    pub fn unsubscribe(channel: impl Into<String>, unsubscribe: Unsubscribe) -> Push {
        Push {
            channel: channel.into(),
            unsubscribe: Some(unsubscribe),
            ..Push::default()
        }
    }

    /// A disconnect push (connection-level, no channel).
    pub fn disconnect(disconnect: Disconnect) -> Push {
        Push {
            disconnect: Some(disconnect),
            ..Push::default()
        }
    }
}

impl Error {
    /// An error with `code` and `message`, not temporary.
    pub fn new(code: u32, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            temporary: false,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for Error {}
