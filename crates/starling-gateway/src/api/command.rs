//! Server API requests as they arrive: one struct per method, with Centrifugo's field names,
//! and [`ApiCommand`], a request tagged with its method.
//!
//! Decoding is lenient the way Centrifugo's is: unknown fields are ignored and missing ones
//! take their zero value; a field of the wrong JSON type fails the whole request (HTTP 400).
//! `data` and `info` are kept as the raw JSON text they were sent as.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// A JSON value kept verbatim. `Some` whenever the field is present, `null` included.
type Raw = Option<Box<RawValue>>;

fn raw<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Raw, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

/// `{"offset": .., "epoch": ..}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StreamPositionRequest {
    pub(crate) offset: u64,
    pub(crate) epoch: String,
}

/// `{"value": true}`: Centrifugo's wrapper for an optional bool.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BoolValue {
    pub(crate) value: bool,
}

/// `publish`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PublishRequest {
    pub(crate) channel: String,
    #[serde(deserialize_with = "raw")]
    pub(crate) data: Raw,
    pub(crate) b64data: String,
    pub(crate) skip_history: bool,
    pub(crate) tags: BTreeMap<String, String>,
}

/// `broadcast`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BroadcastRequest {
    pub(crate) channels: Vec<String>,
    #[serde(deserialize_with = "raw")]
    pub(crate) data: Raw,
    pub(crate) b64data: String,
    pub(crate) skip_history: bool,
    pub(crate) tags: BTreeMap<String, String>,
}

/// `subscribe`'s `override` object.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub(crate) struct OverrideRequest {
    pub(crate) presence: Option<BoolValue>,
    pub(crate) join_leave: Option<BoolValue>,
    pub(crate) force_push_join_leave: Option<BoolValue>,
    pub(crate) force_recovery: Option<BoolValue>,
    pub(crate) force_positioning: Option<BoolValue>,
}

/// `subscribe`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SubscribeRequest {
    pub(crate) user: String,
    pub(crate) channel: String,
    #[serde(deserialize_with = "raw")]
    pub(crate) info: Raw,
    pub(crate) b64info: String,
    pub(crate) client: String,
    pub(crate) session: String,
    #[serde(deserialize_with = "raw")]
    pub(crate) data: Raw,
    pub(crate) b64data: String,
    pub(crate) recover_since: Option<StreamPositionRequest>,
    #[serde(rename = "override")]
    pub(crate) overrides: Option<OverrideRequest>,
}

/// `unsubscribe`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct UnsubscribeRequest {
    pub(crate) user: String,
    pub(crate) channel: String,
    pub(crate) client: String,
    pub(crate) session: String,
}

/// `disconnect`'s custom `disconnect` object.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct DisconnectObject {
    pub(crate) code: u32,
    pub(crate) reason: String,
}

/// `disconnect`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct DisconnectRequest {
    pub(crate) user: String,
    pub(crate) client: String,
    pub(crate) session: String,
    pub(crate) whitelist: Vec<String>,
    pub(crate) disconnect: Option<DisconnectObject>,
}

/// `refresh`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RefreshRequest {
    pub(crate) user: String,
    pub(crate) client: String,
    pub(crate) session: String,
    pub(crate) expired: bool,
    pub(crate) expire_at: i64,
}

/// `presence`, `presence_stats` and `history_remove`: just a channel.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ChannelRequest {
    pub(crate) channel: String,
}

/// `history`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct HistoryRequest {
    pub(crate) channel: String,
    pub(crate) limit: i32,
    pub(crate) since: Option<StreamPositionRequest>,
    pub(crate) reverse: bool,
}

/// `channels`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ChannelsRequest {
    pub(crate) pattern: String,
}

/// `info`: no fields.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct InfoRequest {}

/// `batch`: commands, each an object with one method key (`{"publish": {...}}`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BatchRequest {
    commands: Vec<HashMap<String, Box<RawValue>>>,
    parallel: bool,
}

/// One API request with its method.
#[derive(Debug)]
pub(crate) enum ApiCommand {
    Publish(PublishRequest),
    Broadcast(BroadcastRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe(UnsubscribeRequest),
    Disconnect(DisconnectRequest),
    Refresh(RefreshRequest),
    Presence(ChannelRequest),
    PresenceStats(ChannelRequest),
    History(HistoryRequest),
    HistoryRemove(ChannelRequest),
    Channels(ChannelsRequest),
    Info(InfoRequest),
    /// A batch command that names no known method; its reply is an error, as in Centrifugo.
    Unknown {
        /// The keys the command object had.
        keys: Vec<String>,
    },
}

/// A whole request to `/api/<method>`.
#[derive(Debug)]
pub(crate) enum ApiRequest {
    /// One command.
    Single(ApiCommand),
    /// `batch`: commands run in order, or concurrently when `parallel`.
    Batch {
        commands: Vec<ApiCommand>,
        parallel: bool,
    },
}

/// The methods of this API, in the order Centrifugo checks a batch command's keys.
pub(crate) const METHODS: [&str; 12] = [
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "history",
    "history_remove",
    "presence",
    "presence_stats",
    "info",
    "refresh",
    "channels",
];

/// Why a request body cannot be read as the method's request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The path names no method.
    #[error("unknown server API method {method:?}")]
    UnknownMethod {
        /// The method from the path.
        method: String,
    },
    /// The body is not JSON of the expected shape.
    #[error("malformed {method} request: {source}")]
    Malformed {
        /// The method.
        method: String,
        /// What serde_json said.
        source: serde_json::Error,
    },
}

/// Reads the body of a request to `/api/<method>`. An empty body counts as `{}`.
pub(crate) fn decode(method: &str, body: &[u8]) -> Result<ApiRequest, DecodeError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    if method == "batch" {
        let batch: BatchRequest =
            serde_json::from_slice(body).map_err(|source| DecodeError::Malformed {
                method: method.to_owned(),
                source,
            })?;
        let commands = batch
            .commands
            .iter()
            .map(batch_command)
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(ApiRequest::Batch {
            commands,
            parallel: batch.parallel,
        });
    }
    if !METHODS.contains(&method) {
        return Err(DecodeError::UnknownMethod {
            method: method.to_owned(),
        });
    }
    command(method, body).map(ApiRequest::Single)
}

/// One batch command: the first key, in [`METHODS`] order, that names a method.
fn batch_command(object: &HashMap<String, Box<RawValue>>) -> Result<ApiCommand, DecodeError> {
    match METHODS.iter().find(|m| object.contains_key(**m)) {
        Some(method) => {
            let params = object.get(*method).map_or("{}", |raw| raw.get());
            command(method, params.as_bytes())
        }
        None => {
            let mut keys: Vec<String> = object.keys().cloned().collect();
            keys.sort();
            Ok(ApiCommand::Unknown { keys })
        }
    }
}

fn command(method: &str, params: &[u8]) -> Result<ApiCommand, DecodeError> {
    fn parse<'a, T: Deserialize<'a>>(method: &str, params: &'a [u8]) -> Result<T, DecodeError> {
        serde_json::from_slice(params).map_err(|source| DecodeError::Malformed {
            method: method.to_owned(),
            source,
        })
    }
    Ok(match method {
        "publish" => ApiCommand::Publish(parse(method, params)?),
        "broadcast" => ApiCommand::Broadcast(parse(method, params)?),
        "subscribe" => ApiCommand::Subscribe(parse(method, params)?),
        "unsubscribe" => ApiCommand::Unsubscribe(parse(method, params)?),
        "disconnect" => ApiCommand::Disconnect(parse(method, params)?),
        "refresh" => ApiCommand::Refresh(parse(method, params)?),
        "presence" => ApiCommand::Presence(parse(method, params)?),
        "presence_stats" => ApiCommand::PresenceStats(parse(method, params)?),
        "history" => ApiCommand::History(parse(method, params)?),
        "history_remove" => ApiCommand::HistoryRemove(parse(method, params)?),
        "channels" => ApiCommand::Channels(parse(method, params)?),
        "info" => ApiCommand::Info(parse(method, params)?),
        other => {
            return Err(DecodeError::UnknownMethod {
                method: other.to_owned(),
            });
        }
    })
}

impl ApiCommand {
    /// The method name, the key of this command's reply in a batch.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            ApiCommand::Publish(_) => "publish",
            ApiCommand::Broadcast(_) => "broadcast",
            ApiCommand::Subscribe(_) => "subscribe",
            ApiCommand::Unsubscribe(_) => "unsubscribe",
            ApiCommand::Disconnect(_) => "disconnect",
            ApiCommand::Refresh(_) => "refresh",
            ApiCommand::Presence(_) => "presence",
            ApiCommand::PresenceStats(_) => "presence_stats",
            ApiCommand::History(_) => "history",
            ApiCommand::HistoryRemove(_) => "history_remove",
            ApiCommand::Channels(_) => "channels",
            ApiCommand::Info(_) => "info",
            ApiCommand::Unknown { .. } => "unknown",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn single(method: &str, body: &str) -> ApiCommand {
        match decode(method, body.as_bytes()).unwrap() {
            ApiRequest::Single(command) => command,
            other => panic!("expected one command, got {other:?}"),
        }
    }

    #[test]
    fn publish_keeps_data_verbatim_and_ignores_unknown_fields() {
        let ApiCommand::Publish(p) = single(
            "publish",
            r#"{"channel":"c","data":{"b":1, "a":[2]},"tags":{"k":"v"},"idempotency_key":"x"}"#,
        ) else {
            panic!("not a publish");
        };
        assert_eq!(p.channel, "c");
        assert_eq!(p.data.unwrap().get(), r#"{"b":1, "a":[2]}"#);
        assert_eq!(p.tags.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn null_data_is_kept_and_missing_data_is_none() {
        let ApiCommand::Publish(p) = single("publish", r#"{"channel":"c","data":null}"#) else {
            panic!("not a publish");
        };
        assert_eq!(p.data.unwrap().get(), "null");
        let ApiCommand::Publish(p) = single("publish", r#"{"channel":"c"}"#) else {
            panic!("not a publish");
        };
        assert!(p.data.is_none());
    }

    #[test]
    fn empty_body_reads_as_empty_object() {
        assert!(matches!(single("info", ""), ApiCommand::Info(_)));
        assert!(matches!(single("channels", " \n"), ApiCommand::Channels(_)));
    }

    #[test]
    fn malformed_or_mistyped_bodies_are_errors() {
        for (method, body) in [
            ("publish", "{not json"),
            ("publish", r#"{"channel": 5}"#),
            ("history", r#"{"channel":"c","limit":"ten"}"#),
            ("batch", r#"{"commands":[{"publish":{"channel":1}}]}"#),
        ] {
            assert!(
                matches!(
                    decode(method, body.as_bytes()),
                    Err(DecodeError::Malformed { .. })
                ),
                "{method} {body}"
            );
        }
    }

    #[test]
    fn unknown_method_is_its_own_error() {
        assert!(matches!(
            decode("rpc", b"{}"),
            Err(DecodeError::UnknownMethod { .. })
        ));
    }

    #[test]
    fn batch_commands_keep_their_order_and_unknown_ones_stay_in_place() {
        let body = r#"{"commands":[{"publish":{"channel":"a","data":1}},{"nope":{}},{"info":{}}],"parallel":true}"#;
        let ApiRequest::Batch { commands, parallel } = decode("batch", body.as_bytes()).unwrap()
        else {
            panic!("not a batch");
        };
        assert!(parallel);
        let methods: Vec<&str> = commands.iter().map(ApiCommand::method).collect();
        assert_eq!(methods, ["publish", "unknown", "info"]);
    }

    #[test]
    fn subscribe_reads_override_and_recover_since() {
        let ApiCommand::Subscribe(s) = single(
            "subscribe",
            r#"{"user":"u","channel":"c","override":{"presence":{"value":false}},"recover_since":{"offset":3,"epoch":"e"}}"#,
        ) else {
            panic!("not a subscribe");
        };
        assert!(!s.overrides.unwrap().presence.unwrap().value);
        let since = s.recover_since.unwrap();
        assert_eq!((since.offset, since.epoch.as_str()), (3, "e"));
    }
}
