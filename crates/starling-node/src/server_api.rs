//! The node operations behind the server HTTP API: per-user operations on live connections
//! (subscribe, unsubscribe, disconnect, refresh), history removal, the channel list and node
//! info. Request parsing, key checks and Centrifugo's reply shapes live in the gateway; this
//! module only acts on the node.
//!
//! Per-user operations find a user's connections through the node's user index, then message
//! each connection actor. Subscribe, unsubscribe and refresh wait for each connection's answer
//! (bounded by [`CONNECTION_CALL_TIMEOUT`]), so when the API call returns, the subscribe or
//! unsubscribe push is already queued ahead of anything published afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use starling_cluster::{Call, CallReply, WireNodeInfo, WireTarget, WireUserOp};
use starling_config::ChannelOptions;
use starling_protocol::{Disconnect, DisconnectCode, StreamPosition};
use tracing::{debug, warn};

use crate::cluster::{RelayMsg, position_from_wire, position_to_wire};
use crate::connection::ConnectionMsg;
use crate::error::NodeError;
use crate::node::Node;
use crate::outbound::Close;
use crate::room_actor::RoomMsg;

/// Upper bound on one server API call into a connection actor. A connection answers at once
/// unless it is itself waiting on a room; this only keeps a wedged actor from hanging the API.
const CONNECTION_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Which of a user's connections a server API call applies to (Centrifugo's `user`, `client`,
/// `session` and `whitelist` fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserConnections {
    /// User id; `""` selects anonymous connections.
    pub user: String,
    /// Only the connection with this client id; empty selects every connection of the user.
    pub client: String,
    /// Only connections of this session. Starling has no sessions yet (they come with the
    /// HTTP-streaming and SSE transports), so a non-empty value selects nothing.
    pub session: String,
    /// Client ids to leave alone (`disconnect` only).
    pub whitelist: Vec<String>,
}

impl UserConnections {
    /// Every connection of `user`.
    pub fn of(user: impl Into<String>) -> UserConnections {
        UserConnections {
            user: user.into(),
            ..UserConnections::default()
        }
    }

    fn selects(&self, client_id: &str) -> bool {
        self.session.is_empty()
            && (self.client.is_empty() || self.client == client_id)
            && !self.whitelist.iter().any(|kept| kept == client_id)
    }
}

/// Per-subscription overrides of namespace options (Centrifugo's `override` object). `None`
/// keeps the namespace's value.
///
/// Presence and join/leave messages are kept per room with the namespace's settings, so
/// `presence` and `join_leave` can only take this subscriber out of them, not add it to a room
/// that keeps none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelOverrides {
    /// Appear in presence (and join/leave messages).
    pub presence: Option<bool>,
    /// Receive join/leave messages.
    pub join_leave: Option<bool>,
    /// Receive join/leave messages without asking.
    pub force_push_join_leave: Option<bool>,
    /// Recover missed publications on resubscribe (needs history).
    pub force_recovery: Option<bool>,
    /// Track the stream position (needs history).
    pub force_positioning: Option<bool>,
}

impl ChannelOverrides {
    /// The overrides in the cluster plane's fixed order.
    fn to_wire(self) -> [Option<bool>; 5] {
        [
            self.presence,
            self.join_leave,
            self.force_push_join_leave,
            self.force_recovery,
            self.force_positioning,
        ]
    }

    fn from_wire(wire: [Option<bool>; 5]) -> Self {
        let [
            presence,
            join_leave,
            force_push_join_leave,
            force_recovery,
            force_positioning,
        ] = wire;
        ChannelOverrides {
            presence,
            join_leave,
            force_push_join_leave,
            force_recovery,
            force_positioning,
        }
    }

    /// `options` with these overrides applied.
    pub(crate) fn apply(&self, options: &ChannelOptions) -> ChannelOptions {
        let mut options = options.clone();
        let set = |field: &mut bool, value: Option<bool>| {
            if let Some(value) = value {
                *field = value;
            }
        };
        set(&mut options.presence, self.presence);
        set(&mut options.join_leave, self.join_leave);
        set(
            &mut options.force_push_join_leave,
            self.force_push_join_leave,
        );
        set(&mut options.force_recovery, self.force_recovery);
        set(&mut options.force_positioning, self.force_positioning);
        options
    }
}

/// A server-side subscription made through the server API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerSubscription {
    /// The channel.
    pub channel: String,
    /// Subscription data, sent to the client in the `subscribe` push.
    pub data: Bytes,
    /// Channel info of the subscriber, shown in presence and join/leave messages.
    pub chan_info: Bytes,
    /// Recover publications after this position (when the namespace recovers).
    pub recover_since: Option<StreamPosition>,
    /// Namespace option overrides for this subscription.
    pub overrides: ChannelOverrides,
}

impl From<WireNodeInfo> for NodeInfo {
    fn from(info: WireNodeInfo) -> Self {
        let WireNodeInfo {
            uid,
            name,
            version,
            num_clients,
            num_users,
            num_channels,
            num_subs,
            uptime_secs,
        } = info;
        NodeInfo {
            uid,
            name,
            version,
            num_clients,
            num_users,
            num_channels,
            num_subs,
            uptime_secs,
        }
    }
}

/// How a server API `refresh` changes a connection's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryUpdate {
    /// Expire now: close with 3005 `connection expired`.
    Expired,
    /// Expire at this Unix second (a time already past expires now).
    At(i64),
    /// Never expire.
    Never,
}

/// What `info` reports about this node (Centrifugo's `NodeResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Random id of this node process.
    pub uid: String,
    /// Node name.
    pub name: String,
    /// Starling version.
    pub version: String,
    /// Open client connections.
    pub num_clients: u64,
    /// Distinct users with a connection.
    pub num_users: u64,
    /// Rooms with at least one subscriber.
    pub num_channels: u64,
    /// Subscriptions (connection × room).
    pub num_subs: u64,
    /// Seconds since the node started.
    pub uptime_secs: u64,
}

impl Node {
    /// Publishes as the server API does: no publisher info, optional tags, and with
    /// `skip_history` a publication that bypasses the stream. Returns the stream position the
    /// publication got: offset and the room's epoch, or `None` for a `skip_history` one.
    pub async fn publish_from_api(
        &self,
        room: &str,
        data: Bytes,
        tags: BTreeMap<String, String>,
        skip_history: bool,
    ) -> Result<Option<StreamPosition>, NodeError> {
        let (publication, epoch) = self
            .publish_to_room(room, data, None, tags, skip_history)
            .await?;
        Ok((publication.offset > 0).then(|| StreamPosition {
            offset: publication.offset,
            epoch: epoch.to_string(),
        }))
    }

    /// The selected connections of a user.
    fn selected(&self, target: &UserConnections) -> Vec<(Arc<str>, ActorRef<ConnectionMsg>)> {
        self.user_connections(&target.user)
            .into_iter()
            .filter(|(id, _)| target.selects(id))
            .collect()
    }

    /// Subscribes the selected connections to `subscription.channel`; returns how many got
    /// subscribed by this call (connections already subscribed are left as they are).
    ///
    /// Fails only when the channel cannot be used (empty, too long, unknown namespace).
    pub async fn subscribe_user(
        &self,
        target: &UserConnections,
        subscription: ServerSubscription,
    ) -> Result<usize, NodeError> {
        self.resolve_channel(&subscription.channel)?;
        let op = WireUserOp::Subscribe {
            channel: subscription.channel.clone(),
            data: subscription.data.clone(),
            chan_info: subscription.chan_info.clone(),
            recover_since: subscription.recover_since.as_ref().map(position_to_wire),
            overrides: subscription.overrides.to_wire(),
        };
        let here = self.local_subscribe_user(target, subscription).await;
        Ok(here + self.on_other_nodes(target, op).await)
    }

    async fn local_subscribe_user(
        &self,
        target: &UserConnections,
        subscription: ServerSubscription,
    ) -> usize {
        let subscription = Arc::new(subscription);
        self.ask_selected(
            target,
            |reply| ConnectionMsg::ServerSubscribe {
                subscription: Arc::clone(&subscription),
                reply,
            },
            |subscribed| *subscribed,
            "subscribe",
        )
        .await
    }

    /// Unsubscribes the selected connections from `channel`, each with an `unsubscribe` push
    /// (2000 `server unsubscribe`); returns how many were subscribed.
    pub async fn unsubscribe_user(
        &self,
        target: &UserConnections,
        channel: &str,
    ) -> Result<usize, NodeError> {
        self.resolve_channel(channel)?;
        let op = WireUserOp::Unsubscribe {
            channel: channel.to_string(),
        };
        let here = self.local_unsubscribe_user(target, channel).await;
        Ok(here + self.on_other_nodes(target, op).await)
    }

    async fn local_unsubscribe_user(&self, target: &UserConnections, channel: &str) -> usize {
        let channel: Arc<str> = channel.into();
        self.ask_selected(
            target,
            |reply| ConnectionMsg::ServerUnsubscribe {
                channel: Arc::clone(&channel),
                reply,
            },
            |was_subscribed| *was_subscribed,
            "unsubscribe",
        )
        .await
    }

    /// Closes the selected connections with `disconnect` (Centrifugo's default for the API is
    /// 3503 `force disconnect`); returns how many were told to go.
    pub async fn disconnect_user(
        &self,
        target: &UserConnections,
        disconnect: &Disconnect,
    ) -> usize {
        let op = WireUserOp::Disconnect {
            code: disconnect.code,
            reason: disconnect.reason.clone(),
        };
        self.local_disconnect_user(target, disconnect) + self.on_other_nodes(target, op).await
    }

    fn local_disconnect_user(&self, target: &UserConnections, disconnect: &Disconnect) -> usize {
        let close = Close::from(disconnect);
        let mut told = 0;
        for (_, actor) in self.selected(target) {
            if actor
                .send_message(ConnectionMsg::Disconnect(close.clone()))
                .is_ok()
            {
                told += 1;
            }
        }
        told
    }

    /// Changes the expiry of the selected connections; returns how many were reached.
    pub async fn refresh_user(&self, target: &UserConnections, update: ExpiryUpdate) -> usize {
        let op = match update {
            ExpiryUpdate::Expired => WireUserOp::Refresh {
                expired: true,
                expire_at: None,
            },
            ExpiryUpdate::At(at) => WireUserOp::Refresh {
                expired: false,
                expire_at: Some(at),
            },
            ExpiryUpdate::Never => WireUserOp::Refresh {
                expired: false,
                expire_at: None,
            },
        };
        self.local_refresh_user(target, update).await + self.on_other_nodes(target, op).await
    }

    async fn local_refresh_user(&self, target: &UserConnections, update: ExpiryUpdate) -> usize {
        self.ask_selected(
            target,
            |reply| ConnectionMsg::ServerRefresh { update, reply },
            |()| true,
            "refresh",
        )
        .await
    }

    /// Asks each selected connection in turn and counts the answers `counts` accepts. A
    /// connection that closed meanwhile or is wedged is skipped; the others still get theirs.
    async fn ask_selected<T>(
        &self,
        target: &UserConnections,
        mut build: impl FnMut(RpcReplyPort<T>) -> ConnectionMsg,
        counts: impl Fn(&T) -> bool,
        what: &'static str,
    ) -> usize
    where
        T: Send + std::fmt::Debug + 'static,
    {
        let mut reached = 0;
        for (client, actor) in self.selected(target) {
            match actor.call(&mut build, Some(CONNECTION_CALL_TIMEOUT)).await {
                Ok(CallResult::Success(answer)) => reached += usize::from(counts(&answer)),
                other => debug!(%client, ?other, what, "server API call not delivered"),
            }
        }
        reached
    }

    /// Drops the retained publications of `room`, keeping its stream position. A room that is
    /// not running holds no history, so there is nothing to do.
    pub async fn remove_history(&self, room: &str) -> Result<(), NodeError> {
        self.resolve_channel(room)?;
        self.at_owner(
            room,
            |map_version| starling_cluster::Call::RemoveHistory {
                map_version,
                room: room.to_string(),
            },
            || self.local_remove_history(room),
            |reply| match reply {
                starling_cluster::CallReply::Done => Ok(()),
                other => Err(crate::cluster::unexpected(other)),
            },
        )
        .await
    }

    /// [`Node::remove_history`] in the room actor on this node.
    pub(crate) async fn local_remove_history(&self, room: &str) -> Result<(), NodeError> {
        let Some(actor) = self.existing_room(room) else {
            return Ok(());
        };
        match actor
            .call(
                |reply| RoomMsg::RemoveHistory { reply },
                Some(CONNECTION_CALL_TIMEOUT),
            )
            .await
        {
            Ok(CallResult::Success(())) => Ok(()),
            Ok(CallResult::Timeout) => Err(NodeError::RoomTimeout { room: room.into() }),
            // The room stopped (idle, so without history) between lookup and delivery.
            Ok(CallResult::SenderError) | Err(_) => Ok(()),
        }
    }

    /// The rooms with at least one subscriber anywhere in the cluster whose name passes
    /// `filter`, with their subscriber counts, sorted by name.
    pub async fn channels(&self, filter: impl Fn(&str) -> bool) -> BTreeMap<String, u32> {
        let mut channels = self.local_channels(&filter).await;
        for reply in self.ask_other_nodes(Call::Channels).await {
            if let CallReply::Channels { channels: theirs } = reply {
                for (name, count) in theirs.into_iter().filter(|(name, _)| filter(name)) {
                    let total = channels.entry(name).or_insert(0);
                    *total = total.saturating_add(count);
                }
            }
        }
        channels
    }

    /// Subscribers on this node, per room: those of rooms owned here and those of relays.
    pub(crate) async fn local_channels(
        &self,
        filter: &impl Fn(&str) -> bool,
    ) -> BTreeMap<String, u32> {
        let mut channels = BTreeMap::new();
        for (name, _, relay) in self.relay_refs() {
            if !filter(&name) {
                continue;
            }
            let count = relay
                .call(
                    |reply| RelayMsg::SubscriberCount { reply },
                    Some(CONNECTION_CALL_TIMEOUT),
                )
                .await;
            if let Ok(CallResult::Success(count)) = count
                && count > 0
            {
                channels.insert(name.to_string(), u32::try_from(count).unwrap_or(u32::MAX));
            }
        }
        for (name, actor) in self.room_refs() {
            if !filter(&name) {
                continue;
            }
            let count = actor
                .call(
                    |reply| RoomMsg::SubscriberCount { reply },
                    Some(CONNECTION_CALL_TIMEOUT),
                )
                .await;
            // A room that stopped meanwhile had no subscribers.
            if let Ok(CallResult::Success(count)) = count
                && count > 0
            {
                let total = channels.entry(name.to_string()).or_insert(0);
                *total = total.saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
            }
        }
        channels
    }

    /// The counters of every node the cluster reaches, this one first (the server API's
    /// `info`).
    pub async fn cluster_info(&self) -> Vec<NodeInfo> {
        let mut nodes = vec![self.info()];
        for reply in self.ask_other_nodes(Call::Info).await {
            if let CallReply::Info(info) = reply {
                nodes.push(info.into());
            }
        }
        nodes
    }

    /// Carries out a user operation another node received through its server API, on this
    /// node's connections.
    pub(crate) async fn local_user_op(&self, target: WireTarget, op: WireUserOp) -> usize {
        let target = UserConnections {
            user: target.user,
            client: target.client,
            session: target.session,
            whitelist: target.whitelist,
        };
        match op {
            WireUserOp::Subscribe {
                channel,
                data,
                chan_info,
                recover_since,
                overrides,
            } => {
                let subscription = ServerSubscription {
                    channel,
                    data,
                    chan_info,
                    recover_since: recover_since.map(position_from_wire),
                    overrides: ChannelOverrides::from_wire(overrides),
                };
                self.local_subscribe_user(&target, subscription).await
            }
            WireUserOp::Unsubscribe { channel } => {
                self.local_unsubscribe_user(&target, &channel).await
            }
            WireUserOp::Disconnect { code, reason } => {
                self.local_disconnect_user(&target, &Disconnect::new(code, reason))
            }
            WireUserOp::Refresh { expired, expire_at } => {
                let update = match (expired, expire_at) {
                    (true, _) => ExpiryUpdate::Expired,
                    (false, Some(at)) => ExpiryUpdate::At(at),
                    (false, None) => ExpiryUpdate::Never,
                };
                self.local_refresh_user(&target, update).await
            }
        }
    }

    /// This node's counters in wire form.
    pub(crate) fn info_to_wire(&self) -> WireNodeInfo {
        let NodeInfo {
            uid,
            name,
            version,
            num_clients,
            num_users,
            num_channels,
            num_subs,
            uptime_secs,
        } = self.info();
        WireNodeInfo {
            uid,
            name,
            version,
            num_clients,
            num_users,
            num_channels,
            num_subs,
            uptime_secs,
        }
    }

    /// Runs a user operation on every other live member; how many connections it reached.
    async fn on_other_nodes(&self, target: &UserConnections, op: WireUserOp) -> usize {
        let call = Call::User {
            target: WireTarget {
                user: target.user.clone(),
                client: target.client.clone(),
                session: target.session.clone(),
                whitelist: target.whitelist.clone(),
            },
            op,
        };
        self.ask_other_nodes(call)
            .await
            .into_iter()
            .map(|reply| match reply {
                CallReply::Count { n } => usize::try_from(n).unwrap_or(usize::MAX),
                _ => 0,
            })
            .sum()
    }

    /// Calls every other live member at once and returns the answers that came.
    async fn ask_other_nodes(&self, call: Call) -> Vec<CallReply> {
        let Some(cluster) = self.cluster() else {
            return Vec::new();
        };
        let mut calls = tokio::task::JoinSet::new();
        for member in cluster.live_peers() {
            let cluster = Arc::clone(cluster);
            let call = call.clone();
            calls.spawn(async move { (member, cluster.call(member, call).await) });
        }
        let mut replies = Vec::new();
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok((_, Ok(reply))) => replies.push(reply),
                Ok((member, Err(error))) => {
                    warn!(%member, %error, "server API call to another node failed");
                }
                Err(error) => warn!(%error, "server API call task failed"),
            }
        }
        replies
    }

    /// This node's counters, as the server API's `info` reports them.
    pub fn info(&self) -> NodeInfo {
        let metrics = self.metrics().snapshot();
        NodeInfo {
            uid: self.uid().to_owned(),
            name: self.name().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            num_clients: u64::try_from(self.connection_count()).unwrap_or(u64::MAX),
            num_users: u64::try_from(self.user_count()).unwrap_or(u64::MAX),
            num_channels: metrics.channels,
            num_subs: metrics.subscriptions,
            uptime_secs: self.uptime().as_secs(),
        }
    }
}

/// Centrifugo's default for a server API disconnect without a custom code: 3503
/// `force disconnect`, no reconnect.
pub fn default_api_disconnect() -> Disconnect {
    DisconnectCode::ForceNoReconnect.to_disconnect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_by_client_whitelist_and_session() {
        let all = UserConnections::of("alice");
        assert!(all.selects("c1") && all.selects("c2"));
        let one = UserConnections {
            client: "c1".into(),
            ..UserConnections::of("alice")
        };
        assert!(one.selects("c1") && !one.selects("c2"));
        let kept = UserConnections {
            whitelist: vec!["c2".into()],
            ..UserConnections::of("alice")
        };
        assert!(kept.selects("c1") && !kept.selects("c2"));
        let session = UserConnections {
            session: "s1".into(),
            ..UserConnections::of("alice")
        };
        assert!(!session.selects("c1"));
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let base = ChannelOptions {
            presence: true,
            join_leave: true,
            history_size: 10,
            ..ChannelOptions::default()
        };
        let overridden = ChannelOverrides {
            presence: Some(false),
            force_recovery: Some(true),
            ..ChannelOverrides::default()
        }
        .apply(&base);
        assert!(!overridden.presence);
        assert!(overridden.join_leave);
        assert!(overridden.force_recovery);
        assert_eq!(overridden.history_size, 10);
    }
}
