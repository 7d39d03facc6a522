//! Runs one decoded server API command against the node and builds its result in
//! Centrifugo's JSON shape.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::value::RawValue;
use starling_node::{
    ChannelOverrides, ExpiryUpdate, HistoryQuery, Node, ServerSubscription, UserConnections,
    default_api_disconnect,
};
use starling_protocol::{ClientInfo, Disconnect, Publication, StreamPosition};

use super::command::{
    ApiCommand, BroadcastRequest, ChannelRequest, ChannelsRequest, DisconnectRequest,
    HistoryRequest, OverrideRequest, PublishRequest, RefreshRequest, StreamPositionRequest,
    SubscribeRequest, UnsubscribeRequest,
};
use super::error::{ApiError, ErrorBody};
use super::pattern::Pattern;

/// The result of one successful command, serialized as the `result` object (or, in a batch,
/// as the value under the method's key).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum ApiResult {
    /// `{}`: subscribe, unsubscribe, disconnect, refresh, history_remove.
    Empty(Empty),
    Publish(PublishResult),
    Broadcast(BroadcastResult),
    Presence(PresenceResult),
    PresenceStats(PresenceStatsResult),
    History(HistoryResult),
    Channels(ChannelsResult),
    Info(InfoResult),
}

/// `{}`.
#[derive(Debug, Serialize)]
pub(crate) struct Empty {}

/// `publish`: the stream position the publication got. Both are left out for a `skip_history`
/// publication, which has none (as in Centrifugo).
#[derive(Debug, Serialize)]
pub(crate) struct PublishResult {
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    epoch: String,
}

/// `broadcast`: one publish response per channel, in request order.
#[derive(Debug, Serialize)]
pub(crate) struct BroadcastResult {
    responses: Vec<Outcome<PublishResult>>,
}

/// `{"result": ..}` or `{"error": ..}`: Centrifugo's response envelope.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome<T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrorBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<T>,
}

impl<T> From<Result<T, ApiError>> for Outcome<T> {
    fn from(outcome: Result<T, ApiError>) -> Self {
        match outcome {
            Ok(result) => Outcome {
                error: None,
                result: Some(result),
            },
            Err(error) => Outcome {
                error: Some(error.code().body()),
                result: None,
            },
        }
    }
}

/// A connection as `presence` and publications describe it.
#[derive(Debug, Serialize)]
pub(crate) struct ClientInfoResult {
    client: String,
    user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    conn_info: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chan_info: Option<Box<RawValue>>,
}

/// `presence`: client id → who.
#[derive(Debug, Serialize)]
pub(crate) struct PresenceResult {
    presence: BTreeMap<String, ClientInfoResult>,
}

/// `presence_stats`.
#[derive(Debug, Serialize)]
pub(crate) struct PresenceStatsResult {
    num_clients: u32,
    num_users: u32,
}

/// One publication in a `history` result.
#[derive(Debug, Serialize)]
pub(crate) struct PublicationResult {
    data: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<ClientInfoResult>,
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
}

/// `history`: the publications found and the stream's current top.
#[derive(Debug, Serialize)]
pub(crate) struct HistoryResult {
    publications: Vec<PublicationResult>,
    epoch: String,
    offset: u64,
}

/// `channels`: channel → subscriber count.
#[derive(Debug, Serialize)]
pub(crate) struct ChannelsResult {
    channels: BTreeMap<String, ChannelInfo>,
}

/// One entry of [`ChannelsResult`].
#[derive(Debug, Serialize)]
pub(crate) struct ChannelInfo {
    num_clients: u32,
}

/// `info`: this node only, until the cluster exists.
#[derive(Debug, Serialize)]
pub(crate) struct InfoResult {
    nodes: Vec<NodeResult>,
}

/// Centrifugo's `NodeResult`; every field is always present.
#[derive(Debug, Serialize)]
pub(crate) struct NodeResult {
    uid: String,
    name: String,
    version: String,
    num_clients: u64,
    num_users: u64,
    num_channels: u64,
    uptime: u64,
    num_subs: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Runs `command` against `node`.
pub(crate) async fn execute(node: &Node, command: ApiCommand) -> Result<ApiResult, ApiError> {
    match command {
        ApiCommand::Publish(request) => publish(node, request).await.map(ApiResult::Publish),
        ApiCommand::Broadcast(request) => broadcast(node, request).await.map(ApiResult::Broadcast),
        ApiCommand::Subscribe(request) => subscribe(node, request).await,
        ApiCommand::Unsubscribe(request) => unsubscribe(node, request).await,
        ApiCommand::Disconnect(request) => Ok(disconnect(node, request).await),
        ApiCommand::Refresh(request) => Ok(refresh(node, request).await),
        ApiCommand::Presence(request) => presence(node, request).await,
        ApiCommand::PresenceStats(request) => presence_stats(node, request).await,
        ApiCommand::History(request) => history(node, request).await,
        ApiCommand::HistoryRemove(request) => history_remove(node, request).await,
        ApiCommand::Channels(request) => channels(node, request).await,
        ApiCommand::Info(_) => Ok(info(node).await),
        ApiCommand::Unknown { keys } => Err(ApiError::MethodNotFound {
            keys: keys.join(","),
        }),
    }
}

fn empty() -> ApiResult {
    ApiResult::Empty(Empty {})
}

/// `data`, or `b64data` decoded when it is set (binary payloads, which JSON subscribers
/// cannot receive).
fn payload(data: Option<Box<RawValue>>, b64data: &str) -> Result<Bytes, ApiError> {
    if !b64data.is_empty() {
        return BASE64
            .decode(b64data)
            .map(Bytes::from)
            .map_err(|_| ApiError::BadBase64 { field: "b64data" });
    }
    Ok(data.map_or_else(Bytes::new, |raw| {
        Bytes::from(String::from(Box::<str>::from(raw)))
    }))
}

fn info_payload(info: Option<Box<RawValue>>, b64info: &str) -> Result<Bytes, ApiError> {
    payload(info, b64info).map_err(|_| ApiError::BadBase64 { field: "b64info" })
}

async fn publish(node: &Node, request: PublishRequest) -> Result<PublishResult, ApiError> {
    node.resolve_channel(&request.channel)?;
    let data = payload(request.data, &request.b64data)?;
    let position = node
        .publish_from_api(&request.channel, data, request.tags, request.skip_history)
        .await?;
    Ok(publish_result(position))
}

fn publish_result(position: Option<StreamPosition>) -> PublishResult {
    let position = position.unwrap_or_default();
    PublishResult {
        offset: position.offset,
        epoch: position.epoch,
    }
}

async fn broadcast(node: &Node, request: BroadcastRequest) -> Result<BroadcastResult, ApiError> {
    if request.channels.is_empty() {
        return Err(ApiError::BadRequest {
            reason: "broadcast needs channels",
        });
    }
    let data = payload(request.data, &request.b64data)?;
    let mut responses = Vec::with_capacity(request.channels.len());
    for channel in &request.channels {
        let outcome = async {
            node.resolve_channel(channel)?;
            let position = node
                .publish_from_api(
                    channel,
                    data.clone(),
                    request.tags.clone(),
                    request.skip_history,
                )
                .await?;
            Ok(publish_result(position))
        }
        .await;
        responses.push(Outcome::from(outcome));
    }
    Ok(BroadcastResult { responses })
}

fn target(user: String, client: String, session: String) -> UserConnections {
    UserConnections {
        user,
        client,
        session,
        whitelist: Vec::new(),
    }
}

fn position(since: StreamPositionRequest) -> StreamPosition {
    StreamPosition {
        offset: since.offset,
        epoch: since.epoch,
    }
}

fn overrides(request: Option<OverrideRequest>) -> ChannelOverrides {
    let request = request.unwrap_or_default();
    let value = |v: Option<super::command::BoolValue>| v.map(|v| v.value);
    ChannelOverrides {
        presence: value(request.presence),
        join_leave: value(request.join_leave),
        force_push_join_leave: value(request.force_push_join_leave),
        force_recovery: value(request.force_recovery),
        force_positioning: value(request.force_positioning),
    }
}

async fn subscribe(node: &Node, request: SubscribeRequest) -> Result<ApiResult, ApiError> {
    let subscription = ServerSubscription {
        data: payload(request.data, &request.b64data)?,
        chan_info: info_payload(request.info, &request.b64info)?,
        recover_since: request.recover_since.map(position),
        overrides: overrides(request.overrides),
        channel: request.channel,
    };
    let who = target(request.user, request.client, request.session);
    node.subscribe_user(&who, subscription).await?;
    Ok(empty())
}

async fn unsubscribe(node: &Node, request: UnsubscribeRequest) -> Result<ApiResult, ApiError> {
    let who = target(request.user, request.client, request.session);
    node.unsubscribe_user(&who, &request.channel).await?;
    Ok(empty())
}

async fn disconnect(node: &Node, request: DisconnectRequest) -> ApiResult {
    let disconnect = request
        .disconnect
        .map_or_else(default_api_disconnect, |custom| {
            Disconnect::new(custom.code, custom.reason)
        });
    let who = UserConnections {
        whitelist: request.whitelist,
        ..target(request.user, request.client, request.session)
    };
    node.disconnect_user(&who, &disconnect).await;
    empty()
}

async fn refresh(node: &Node, request: RefreshRequest) -> ApiResult {
    let update = if request.expired {
        ExpiryUpdate::Expired
    } else if request.expire_at > 0 {
        ExpiryUpdate::At(request.expire_at)
    } else {
        ExpiryUpdate::Never
    };
    let who = target(request.user, request.client, request.session);
    node.refresh_user(&who, update).await;
    empty()
}

/// Checks that `channel` is usable and its namespace has `feature`.
fn require(
    node: &Node,
    channel: &str,
    feature: &'static str,
    enabled: impl Fn(&starling_config::ChannelOptions) -> bool,
) -> Result<(), ApiError> {
    let resolved = node.resolve_channel(channel)?;
    if enabled(resolved.options) {
        Ok(())
    } else {
        Err(ApiError::NotAvailable {
            channel: channel.to_owned(),
            feature,
        })
    }
}

async fn presence(node: &Node, request: ChannelRequest) -> Result<ApiResult, ApiError> {
    require(node, &request.channel, "presence", |o| o.presence)?;
    let entries = node.presence(&request.channel).await?;
    Ok(ApiResult::Presence(PresenceResult {
        presence: entries
            .into_iter()
            .map(|info| (info.client.clone(), client_info(info)))
            .collect(),
    }))
}

async fn presence_stats(node: &Node, request: ChannelRequest) -> Result<ApiResult, ApiError> {
    require(node, &request.channel, "presence", |o| o.presence)?;
    let stats = node.presence_stats(&request.channel).await?;
    Ok(ApiResult::PresenceStats(PresenceStatsResult {
        num_clients: stats.num_clients,
        num_users: stats.num_users,
    }))
}

async fn history(node: &Node, request: HistoryRequest) -> Result<ApiResult, ApiError> {
    require(node, &request.channel, "history", |o| o.history_enabled())?;
    let page = node
        .history(
            &request.channel,
            HistoryQuery {
                since: request.since.map(position),
                limit: request.limit,
                reverse: request.reverse,
            },
        )
        .await?;
    Ok(ApiResult::History(HistoryResult {
        publications: page.publications.iter().map(|p| publication(p)).collect(),
        epoch: page.position.epoch,
        offset: page.position.offset,
    }))
}

async fn history_remove(node: &Node, request: ChannelRequest) -> Result<ApiResult, ApiError> {
    require(node, &request.channel, "history", |o| o.history_enabled())?;
    node.remove_history(&request.channel).await?;
    Ok(empty())
}

async fn channels(node: &Node, request: ChannelsRequest) -> Result<ApiResult, ApiError> {
    let pattern = if request.pattern.is_empty() {
        None
    } else {
        Some(Pattern::compile(&request.pattern)?)
    };
    let found = node
        .channels(|name| pattern.as_ref().is_none_or(|p| p.matches(name)))
        .await;
    Ok(ApiResult::Channels(ChannelsResult {
        channels: found
            .into_iter()
            .map(|(name, num_clients)| (name, ChannelInfo { num_clients }))
            .collect(),
    }))
}

async fn info(node: &Node) -> ApiResult {
    let nodes = node.cluster_info().await;
    ApiResult::Info(InfoResult {
        nodes: nodes
            .into_iter()
            .map(|info| NodeResult {
                uid: info.uid,
                name: info.name,
                version: info.version,
                num_clients: info.num_clients,
                num_users: info.num_users,
                num_channels: info.num_channels,
                uptime: info.uptime_secs,
                num_subs: info.num_subs,
            })
            .collect(),
    })
}

/// Runs a batch: in order, or all at once when `parallel` (Centrifugo's option). Replies keep
/// the commands' order either way.
pub(crate) async fn execute_batch(
    node: &Node,
    commands: Vec<ApiCommand>,
    parallel: bool,
) -> Vec<(&'static str, Result<ApiResult, ApiError>)> {
    if parallel {
        join_all(commands.into_iter().map(|command| async move {
            let method = command.method();
            (method, execute(node, command).await)
        }))
        .await
    } else {
        let mut replies = Vec::with_capacity(commands.len());
        for command in commands {
            let method = command.method();
            replies.push((method, execute(node, command).await));
        }
        replies
    }
}

/// Raw JSON bytes as an embeddable value; `None` when empty or not JSON (binary data from a
/// Protobuf client, which a JSON reply cannot carry as it is).
fn raw_json(bytes: &Bytes) -> Option<Box<RawValue>> {
    if bytes.is_empty() {
        return None;
    }
    serde_json::from_slice::<Box<RawValue>>(bytes).ok()
}

fn client_info(info: ClientInfo) -> ClientInfoResult {
    ClientInfoResult {
        conn_info: raw_json(&info.conn_info),
        chan_info: raw_json(&info.chan_info),
        client: info.client,
        user: info.user,
    }
}

fn publication(publication: &Publication) -> PublicationResult {
    PublicationResult {
        data: raw_json(&publication.data).unwrap_or_else(null),
        info: publication.info.clone().map(client_info),
        offset: publication.offset,
        tags: publication.tags.clone(),
    }
}

fn null() -> Box<RawValue> {
    RawValue::NULL.to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn empty_and_error_outcomes_have_centrifugo_shapes() {
        let ok: Outcome<ApiResult> = Outcome::from(Ok(empty()));
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"result":{}}"#);
        let err: Outcome<ApiResult> = Outcome::from(Err(ApiError::BadRequest { reason: "x" }));
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"error":{"code":107,"message":"bad request"}}"#
        );
    }

    #[test]
    fn publish_result_omits_a_missing_position() {
        let none = PublishResult {
            offset: 0,
            epoch: String::new(),
        };
        assert_eq!(serde_json::to_string(&none).unwrap(), "{}");
        let some = PublishResult {
            offset: 3,
            epoch: "e".into(),
        };
        assert_eq!(
            serde_json::to_string(&some).unwrap(),
            r#"{"offset":3,"epoch":"e"}"#
        );
    }

    #[test]
    fn history_publication_embeds_data_and_falls_back_to_null() {
        let json = Publication {
            data: Bytes::from_static(br#"{"a":1}"#),
            offset: 2,
            ..Publication::default()
        };
        assert_eq!(
            serde_json::to_string(&publication(&json)).unwrap(),
            r#"{"data":{"a":1},"offset":2}"#
        );
        let binary = Publication {
            data: Bytes::from_static(&[0xff, 0x00]),
            offset: 3,
            ..Publication::default()
        };
        assert_eq!(
            serde_json::to_string(&publication(&binary)).unwrap(),
            r#"{"data":null,"offset":3}"#
        );
    }

    #[test]
    fn base64_payload_is_decoded_and_bad_base64_is_refused() {
        assert_eq!(payload(None, "AAE=").unwrap(), Bytes::from_static(&[0, 1]));
        assert!(matches!(
            payload(None, "!!"),
            Err(ApiError::BadBase64 { field: "b64data" })
        ));
        assert!(payload(None, "").unwrap().is_empty());
    }
}
