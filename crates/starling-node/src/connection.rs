//! `ConnectionActor`: one per client connection, transport-independent.
//!
//! It owns the protocol session (token claims, subscriptions, heartbeat state) and answers
//! commands. It never writes to a socket: replies go into the connection's [`Outbound`] queue,
//! which the transport drains. Subscribe replies are queued by the room itself (see
//! `room_actor`), so a publication can never overtake the reply that starts its subscription.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use starling_auth::TokenError;
use starling_config::{ChannelOptions, ResolvedChannel};
use starling_protocol::{
    ClientInfo, Command, ConnectRequest, ConnectResult, DisconnectCode, Encoding, ErrorCode,
    HistoryRequest, HistoryResult, Method, PingResult, PresenceResult, PresenceStatsResult,
    Publication, PublishRequest, PublishResult, Push, Refresh, RefreshRequest, RefreshResult,
    Reply, StreamPosition, SubRefreshRequest, SubRefreshResult, SubscribeRequest, SubscribeResult,
    UnsubscribeCode, UnsubscribeResult, decode_commands_limited, encode_reply,
};
use starling_room::HistoryQuery;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::clock::unix_now_secs;
use crate::error::CommandError;
use crate::heartbeat::{Beat, BeatKey};
use crate::node::Node;
use crate::outbound::{Close, Outbound};
use crate::rate::TokenBucket;
use crate::room_actor::{Announce, SubscribeParams, Subscriber};
use crate::server_api::{ExpiryUpdate, ServerSubscription};
use crate::transport::TransportMode;

/// Most commands one transport message may carry; more is a bad request.
const MAX_COMMANDS_PER_FRAME: usize = 256;
/// A connection that has not sent `connect` by then is closed as stale (3502).
const STALE_CLOSE_DELAY: Duration = Duration::from_secs(10);
/// Longest connection lifetime a server API refresh may set (Centrifugo's cap: a year). Longer
/// is almost certainly a unit mistake, and unbounded values would overflow timer arithmetic.
const MAX_REFRESH_TTL_SECS: i64 = 365 * 24 * 3600;

/// Messages a connection actor handles.
#[derive(Debug)]
pub(crate) enum ConnectionMsg {
    /// One transport message from the client (may hold several commands).
    Inbound(Bytes),
    /// The transport ended (client closed, network error, or our own close completed).
    TransportClosed,
    /// The node asks this connection to go (shutdown, server API disconnect).
    Disconnect(Close),
    /// Server API: subscribe this connection to a channel; answers whether it did.
    ServerSubscribe {
        subscription: Arc<ServerSubscription>,
        reply: RpcReplyPort<bool>,
    },
    /// Server API: unsubscribe this connection from a channel with an unsubscribe push (2000);
    /// answers whether it was subscribed.
    ServerUnsubscribe {
        channel: Arc<str>,
        reply: RpcReplyPort<bool>,
    },
    /// Server API: change when this connection expires.
    ServerRefresh {
        update: ExpiryUpdate,
        reply: RpcReplyPort<()>,
    },
    /// The room's owner changed under this subscription (the room already let the client
    /// go): forget it and tell the client to resubscribe (2500), which recovers from history
    /// through the new owner.
    Resubscribe { channel: Arc<str> },
    /// Heartbeat: time to send the server ping.
    Ping,
    /// Heartbeat: the pong for ping number `.0` is due by now.
    PongDeadline(u64),
    /// The connection token may have expired.
    ExpiryCheck,
    /// The subscription token of a channel may have expired.
    SubExpiryCheck(String),
    /// No `connect` yet? Then close as stale.
    StaleCheck,
}

pub(crate) struct ConnectionActor;

pub(crate) struct ConnectionArgs {
    pub(crate) node: Node,
    pub(crate) client_id: Arc<str>,
    pub(crate) encoding: Encoding,
    pub(crate) outbound: Outbound,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) mode: TransportMode,
}

pub(crate) struct ConnectionState {
    node: Node,
    client_id: Arc<str>,
    encoding: Encoding,
    outbound: Outbound,
    remote: Option<SocketAddr>,
    mode: TransportMode,
    session: Option<Session>,
    /// Emulation session id, handed out in the connect reply and registered with the node.
    emulation_session: Option<Arc<str>>,
    awaiting_pong: bool,
    /// `client.command_rate_limit`; `None` when unlimited.
    command_rate: Option<TokenBucket>,
    timers: Timers,
    /// The pending heartbeat (next ping, or the pong deadline), on the node's shared timer.
    beat: Option<BeatKey>,
    ping_seq: u64,
    /// Unix second the pending connection-expiry check is armed for, if one is.
    expiry_armed: Option<i64>,
}

/// What a successful `connect` establishes.
struct Session {
    user: String,
    conn_info: Bytes,
    /// Unix seconds; `None` = the token never expires.
    expires_at: Option<i64>,
    /// Channels the connection token grants (`channels` claim).
    token_channels: Vec<String>,
    subscriptions: Subscriptions,
}

struct Subscription {
    chan_info: Bytes,
    expires_at: Option<i64>,
}

/// The channels a connection is subscribed to: a vector searched linearly while there are few,
/// a hash map past `FEW_SUBSCRIPTIONS`. Almost every connection holds one to a few
/// subscriptions, and an idle connection should carry as few bytes as possible — a one-entry
/// `HashMap` allocates four buckets, the vector one slot.
enum Subscriptions {
    Few(Vec<(String, Subscription)>),
    Many(HashMap<String, Subscription>),
}

/// Up to this many subscriptions a linear search is as fast as hashing.
const FEW_SUBSCRIPTIONS: usize = 16;

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions::Few(Vec::new())
    }
}

impl Subscriptions {
    fn contains_key(&self, channel: &str) -> bool {
        self.get(channel).is_some()
    }

    fn get(&self, channel: &str) -> Option<&Subscription> {
        match self {
            Subscriptions::Few(few) => few.iter().find(|(name, _)| name == channel).map(|e| &e.1),
            Subscriptions::Many(many) => many.get(channel),
        }
    }

    fn get_mut(&mut self, channel: &str) -> Option<&mut Subscription> {
        match self {
            Subscriptions::Few(few) => few
                .iter_mut()
                .find(|(name, _)| name == channel)
                .map(|e| &mut e.1),
            Subscriptions::Many(many) => many.get_mut(channel),
        }
    }

    fn len(&self) -> usize {
        match self {
            Subscriptions::Few(few) => few.len(),
            Subscriptions::Many(many) => many.len(),
        }
    }

    /// Adds or replaces the subscription to `channel`.
    fn insert(&mut self, channel: String, subscription: Subscription) {
        if let Some(existing) = self.get_mut(&channel) {
            *existing = subscription;
            return;
        }
        match self {
            Subscriptions::Few(few) if few.len() < FEW_SUBSCRIPTIONS => {
                if few.capacity() == 0 {
                    // The common single subscription costs one slot, not four.
                    few.reserve_exact(1);
                }
                few.push((channel, subscription));
            }
            Subscriptions::Few(few) => {
                let mut many: HashMap<String, Subscription> = few.drain(..).collect();
                many.insert(channel, subscription);
                *self = Subscriptions::Many(many);
            }
            Subscriptions::Many(many) => {
                many.insert(channel, subscription);
            }
        }
    }

    fn remove(&mut self, channel: &str) -> Option<Subscription> {
        match self {
            Subscriptions::Few(few) => {
                let i = few.iter().position(|(name, _)| name == channel)?;
                Some(few.swap_remove(i).1)
            }
            Subscriptions::Many(many) => many.remove(channel),
        }
    }

    /// Takes every subscription.
    fn drain(&mut self) -> Vec<(String, Subscription)> {
        match std::mem::take(self) {
            Subscriptions::Few(few) => few,
            Subscriptions::Many(many) => many.into_iter().collect(),
        }
    }
}

impl Actor for ConnectionActor {
    type Msg = ConnectionMsg;
    type State = ConnectionState;
    type Arguments = ConnectionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ConnectionMsg>,
        args: ConnectionArgs,
    ) -> Result<ConnectionState, ActorProcessingErr> {
        let stale = myself
            .send_after(STALE_CLOSE_DELAY, || ConnectionMsg::StaleCheck)
            .abort_handle();
        let client = &args.node.config().client;
        let command_rate = (client.command_rate_limit > 0).then(|| {
            TokenBucket::new(
                client.command_rate_limit,
                client.command_rate_burst,
                tokio::time::Instant::now(),
            )
        });
        let timers = Timers {
            stale: Some(stale),
            ..Timers::default()
        };
        Ok(ConnectionState {
            timers,
            node: args.node,
            client_id: args.client_id,
            encoding: args.encoding,
            outbound: args.outbound,
            remote: args.remote,
            mode: args.mode,
            session: None,
            emulation_session: None,
            awaiting_pong: false,
            command_rate,
            beat: None,
            ping_seq: 0,
            expiry_armed: None,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ConnectionMsg>,
        state: &mut ConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        state.timers.cancel_all();
        if let Some(beat) = state.beat.take() {
            state.node.heartbeats().cancel(beat);
        }
        state.leave_all_rooms();
        if let Some(session) = &state.session {
            state.node.unindex_user(&session.user, &state.client_id);
        }
        if let Some(session) = &state.emulation_session {
            state.node.forget_session(session);
        }
        // Make sure the transport ends too when the actor is the one going first.
        state
            .outbound
            .close(DisconnectCode::ConnectionClosed.into(), true);
        state.node.forget_connection(&state.client_id, state.remote);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ConnectionMsg>,
        msg: ConnectionMsg,
        state: &mut ConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        // The futures of commands (connect, subscribe, presence, history, server API
        // subscribe) are boxed while they run: ractor keeps this handler's future inside the
        // actor's processing loop for the connection's whole life, so an inline command future
        // would cost every idle connection its size (≈ 14 KiB measured) instead of costing a
        // short allocation per command.
        match msg {
            ConnectionMsg::Inbound(frame) => Box::pin(state.on_frame(&myself, frame)).await,
            ConnectionMsg::TransportClosed => myself.stop(None),
            ConnectionMsg::Disconnect(close) => state.disconnect(&myself, close),
            ConnectionMsg::ServerSubscribe {
                subscription,
                reply,
            } => {
                let subscribed = Box::pin(state.api_subscribe(&subscription)).await;
                let _ = reply.send(subscribed);
            }
            ConnectionMsg::ServerUnsubscribe { channel, reply } => {
                let _ = reply.send(state.api_unsubscribe(&channel));
            }
            ConnectionMsg::ServerRefresh { update, reply } => {
                state.api_refresh(&myself, update);
                let _ = reply.send(());
            }
            ConnectionMsg::Resubscribe { channel } => state.on_resubscribe(&channel),
            ConnectionMsg::Ping => state.on_ping(&myself),
            ConnectionMsg::PongDeadline(seq) => state.on_pong_deadline(&myself, seq),
            ConnectionMsg::ExpiryCheck => state.on_expiry_check(&myself),
            ConnectionMsg::SubExpiryCheck(channel) => state.on_sub_expiry_check(&channel),
            ConnectionMsg::StaleCheck => {
                if state.session.is_none() {
                    debug!(client = %state.client_id, "no connect command in time");
                    state.disconnect(&myself, DisconnectCode::Stale);
                }
            }
        }
        Ok(())
    }
}

impl ConnectionState {
    async fn on_frame(&mut self, myself: &ActorRef<ConnectionMsg>, frame: Bytes) {
        if self.outbound.is_closing() {
            return;
        }
        self.node.metrics().bytes_in(frame.len());
        let commands = match decode_commands_limited(self.encoding, &frame, MAX_COMMANDS_PER_FRAME)
        {
            Ok(commands) => commands,
            Err(error) => {
                info!(client = %self.client_id, remote = ?self.remote, %error, "malformed frame");
                self.node
                    .metrics()
                    .error_code(u32::from(DisconnectCode::BadRequest.code()));
                self.disconnect(myself, DisconnectCode::BadRequest);
                return;
            }
        };
        for command in commands {
            let id = command.id;
            let method = command.method();
            let started = tokio::time::Instant::now();
            // Pongs answer the server; limiting them would turn a busy client into a dead one.
            let limited = method != Method::Empty
                && self
                    .command_rate
                    .as_mut()
                    .is_some_and(|bucket| !bucket.try_take(started));
            let outcome = if limited {
                Err(CommandError::Reply(ErrorCode::TooManyRequests))
            } else {
                self.on_command(myself, command).await
            };
            match outcome {
                Ok(Some(reply)) => self.send_reply(reply),
                Ok(None) => {}
                Err(CommandError::Reply(code)) => {
                    self.node.metrics().error_code(code.code());
                    self.send_reply(Reply::error(id, code.to_error()));
                }
                Err(CommandError::Disconnect(code)) => {
                    self.node.metrics().error_code(u32::from(code.code()));
                    self.disconnect(myself, code);
                }
            }
            self.node.metrics().command_done(method, started.elapsed());
            if self.outbound.is_closing() {
                break;
            }
        }
    }

    async fn on_command(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        command: Command,
    ) -> Result<Option<Reply>, CommandError> {
        let id = command.id;
        let method = command.method();
        if self.session.is_none() && !matches!(method, Method::Connect) {
            // Protocol v2: connect comes first; anything else is a client bug.
            return Err(CommandError::Disconnect(DisconnectCode::BadRequest));
        }
        if id == 0 && !matches!(method, Method::Empty | Method::Send) {
            return Err(CommandError::Disconnect(DisconnectCode::BadRequest));
        }
        let reply = |reply: Reply| Ok(Some(Reply { id, ..reply }));
        match method {
            Method::Empty => {
                // Protocol v2 pong. An empty command carrying an id is nothing we know.
                if id != 0 {
                    return Err(CommandError::Reply(ErrorCode::MethodNotFound));
                }
                self.awaiting_pong = false;
                Ok(None)
            }
            // Connect and subscribe run once or a few times per connection and their futures
            // are large; boxed, they do not widen the future of every command (see `handle`).
            Method::Connect => {
                let request = command.connect.unwrap_or_default();
                Box::pin(self.connect(myself, id, request)).await?;
                Ok(None)
            }
            Method::Subscribe => {
                let request = command.subscribe.unwrap_or_default();
                Box::pin(self.subscribe(myself, id, request)).await?;
                Ok(None)
            }
            Method::Unsubscribe => {
                let channel = command.unsubscribe.unwrap_or_default().channel;
                self.unsubscribe(&channel);
                reply(Reply {
                    unsubscribe: Some(UnsubscribeResult::default()),
                    ..Reply::default()
                })
            }
            Method::Publish => {
                self.publish(command.publish.unwrap_or_default()).await?;
                reply(Reply {
                    publish: Some(PublishResult::default()),
                    ..Reply::default()
                })
            }
            Method::Presence => {
                let channel = command.presence.unwrap_or_default().channel;
                let result = Box::pin(self.presence(&channel)).await?;
                reply(Reply {
                    presence: Some(result),
                    ..Reply::default()
                })
            }
            Method::PresenceStats => {
                let channel = command.presence_stats.unwrap_or_default().channel;
                let result = Box::pin(self.presence_stats(&channel)).await?;
                reply(Reply {
                    presence_stats: Some(result),
                    ..Reply::default()
                })
            }
            Method::History => {
                let result = Box::pin(self.history(command.history.unwrap_or_default())).await?;
                reply(Reply {
                    history: Some(result),
                    ..Reply::default()
                })
            }
            Method::Ping => reply(Reply {
                ping: Some(PingResult::default()),
                ..Reply::default()
            }),
            Method::Refresh => {
                let result = self.refresh(myself, command.refresh.unwrap_or_default())?;
                reply(Reply {
                    refresh: Some(result),
                    ..Reply::default()
                })
            }
            Method::SubRefresh => {
                let result = self.sub_refresh(myself, command.sub_refresh.unwrap_or_default())?;
                reply(Reply {
                    sub_refresh: Some(result),
                    ..Reply::default()
                })
            }
            // No backend proxy exists yet, so there is nothing to route RPCs to.
            Method::Rpc => Err(CommandError::Reply(ErrorCode::NotAvailable)),
            Method::Send => {
                debug!(client = %self.client_id, "send dropped: no backend proxy configured");
                Ok(None)
            }
        }
    }

    // ---------------------------------------------------------------- connect and refresh

    async fn connect(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        id: u32,
        request: ConnectRequest,
    ) -> Result<(), CommandError> {
        if self.session.is_some() {
            return Err(CommandError::Disconnect(DisconnectCode::BadRequest));
        }
        let node = self.node.clone();
        let config = node.config();
        let now = unix_now_secs();
        let (user, conn_info, expires_at, token_channels) = if request.token.is_empty() {
            if !config.client.allow_anonymous_connect_without_token {
                return Err(CommandError::Reply(ErrorCode::Unauthorized));
            }
            (String::new(), Bytes::new(), None, Vec::new())
        } else {
            let claims = self
                .node
                .connect_tokens()
                .verify_connect(&request.token, now)
                .map_err(|error| connect_token_error(&self.client_id, &error))?;
            let expires_at = claims.expires_at();
            (
                claims.sub,
                claims.info.unwrap_or_default(),
                expires_at,
                claims.channels,
            )
        };

        // Indexed before the server-side subscriptions below: a server API call for this user
        // that arrives meanwhile waits in the mailbox and runs after connect.
        self.node.index_user(&user, &self.client_id);
        self.session = Some(Session {
            user,
            conn_info,
            expires_at,
            token_channels,
            subscriptions: Subscriptions::default(),
        });

        // Server-side subscriptions: the personal channel and the token's `channels`.
        let mut server_channels: Vec<String> = Vec::new();
        if let Some(session) = &self.session {
            let personal = &config.client.subscribe_to_user_personal_channel;
            if personal.enabled && !session.user.is_empty() {
                server_channels.push(config.personal_channel(&session.user));
            }
            for channel in &session.token_channels {
                if !server_channels.contains(channel) {
                    server_channels.push(channel.clone());
                }
            }
        }
        let mut subs = std::collections::BTreeMap::new();
        for channel in server_channels {
            let recover = self.server_recovery(&request, &channel);
            match self.server_subscribe(&channel, recover).await {
                Ok(result) => {
                    subs.insert(channel, result);
                }
                Err(error) => {
                    warn!(client = %self.client_id, %channel, ?error, "server-side subscription failed");
                }
            }
        }

        let ping = config.client.ping_interval.0;
        let session = if matches!(self.mode, TransportMode::Emulation) {
            let session: Arc<str> = crate::node::new_client_id().into();
            self.node.register_session(session.clone(), myself.clone());
            self.emulation_session = Some(session.clone());
            session.to_string()
        } else {
            String::new()
        };
        let result = ConnectResult {
            client: self.client_id.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            expires: expires_at.is_some(),
            ttl: expires_at.map_or(0, |exp| ttl_secs(exp, now)),
            subs,
            ping: u32::try_from(ping.as_secs()).unwrap_or(u32::MAX),
            pong: self.mode.answers_pings(),
            session,
            node: self.node.name().to_string(),
            time: if config.client.connect_include_server_time {
                crate::clock::unix_now_ms()
            } else {
                0
            },
            ..ConnectResult::default()
        };
        let reply = Reply {
            id,
            connect: Some(result),
            ..Reply::default()
        };
        match encode_reply(self.encoding, &reply) {
            Ok(frame) => self.outbound.release(frame),
            Err(error) => {
                warn!(client = %self.client_id, %error, "cannot encode connect reply");
                return Err(CommandError::Disconnect(DisconnectCode::ServerError));
            }
        }
        // Connected: the stale check has nothing left to do, and its pending timer task would
        // stay with the connection for the rest of `STALE_CLOSE_DELAY`.
        self.timers.cancel_stale();
        self.schedule_ping(myself, ping);
        if let Some(exp) = expires_at {
            self.arm_expiry_check(myself, self.expiry_check_at(exp), now);
        }
        Ok(())
    }

    /// What a server-side subscription made at connect recovers from: for a unidirectional
    /// connection the position its transport resumes from (fresher than anything in the
    /// connect request, which a browser repeats unchanged on every reconnect), else the
    /// request's `subs` entry. Unidirectional clients cannot ask per channel, so their
    /// subscriptions are recoverable wherever the namespace allows recovery.
    fn server_recovery(&self, request: &ConnectRequest, channel: &str) -> SubscribeRequest {
        let explicit = request.subs.get(channel).cloned();
        let TransportMode::Unidirectional(resume) = &self.mode else {
            return explicit.unwrap_or_default();
        };
        match resume.position(channel) {
            Some(position) => SubscribeRequest {
                recover: true,
                offset: position.offset,
                epoch: position.epoch,
                recoverable: true,
                ..SubscribeRequest::default()
            },
            None => SubscribeRequest {
                recoverable: true,
                ..explicit.unwrap_or_default()
            },
        }
    }

    fn refresh(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        request: RefreshRequest,
    ) -> Result<RefreshResult, CommandError> {
        let now = unix_now_secs();
        let claims = self
            .node
            .connect_tokens()
            .verify_connect(&request.token, now)
            .map_err(|error| connect_token_error(&self.client_id, &error))?;
        let session = self.session_mut()?;
        if claims.sub != session.user {
            return Err(CommandError::Disconnect(DisconnectCode::InvalidToken));
        }
        session.expires_at = claims.expires_at();
        let expires_at = session.expires_at;
        if let Some(exp) = expires_at {
            self.arm_expiry_check(myself, self.expiry_check_at(exp), now);
        }
        Ok(RefreshResult {
            client: self.client_id.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            expires: expires_at.is_some(),
            ttl: expires_at.map_or(0, |exp| ttl_secs(exp, now)),
        })
    }

    fn on_expiry_check(&mut self, myself: &ActorRef<ConnectionMsg>) {
        let expired = self
            .session
            .as_ref()
            .and_then(|s| s.expires_at)
            .is_some_and(|exp| exp <= unix_now_secs());
        if expired {
            self.disconnect(myself, DisconnectCode::Expired);
        }
    }

    // ---------------------------------------------------------------- subscriptions

    async fn subscribe(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        id: u32,
        request: SubscribeRequest,
    ) -> Result<(), CommandError> {
        let channel = request.channel.clone();
        if channel.is_empty() {
            return Err(CommandError::Reply(ErrorCode::BadRequest));
        }
        let config = self.node.config();
        let limit = config.client.channel_limit;
        let session = self.session()?;
        if session.subscriptions.contains_key(&channel) {
            return Err(CommandError::Reply(ErrorCode::AlreadySubscribed));
        }
        if limit > 0 && session.subscriptions.len() >= limit {
            return Err(CommandError::Reply(ErrorCode::LimitExceeded));
        }
        let resolved = self.node.resolve_channel(&channel)?;
        let now = unix_now_secs();

        let (chan_info, expires_at) = if request.token.is_empty() {
            if self.node.is_private_channel(&channel)
                || !may_subscribe_without_token(session, &channel, &resolved)
            {
                return Err(CommandError::Reply(ErrorCode::PermissionDenied));
            }
            (Bytes::new(), None)
        } else {
            let claims = self
                .node
                .subscription_tokens()
                .verify_subscribe(&request.token, now)
                .map_err(|error| subscription_token_error(&self.client_id, &error))?;
            if claims.sub != session.user || claims.channel != channel {
                return Err(CommandError::Reply(ErrorCode::PermissionDenied));
            }
            (claims.info.clone().unwrap_or_default(), claims.expires_at())
        };

        let params = self.subscribe_params(
            resolved.options,
            Announce::Reply(id),
            &request,
            chan_info.clone(),
            expires_at.map(|exp| ttl_secs(exp, now)),
        );
        self.node.subscribe(&channel, params).await?;
        self.session_mut()?.subscriptions.insert(
            channel.clone(),
            Subscription {
                chan_info,
                expires_at,
            },
        );
        if let Some(exp) = expires_at {
            let timer = schedule_at(myself, exp, now, move || {
                ConnectionMsg::SubExpiryCheck(channel.clone())
            });
            self.timers.keep(timer);
        }
        Ok(())
    }

    /// A subscription the server makes during connect; its result goes into the connect reply.
    async fn server_subscribe(
        &mut self,
        channel: &str,
        request: SubscribeRequest,
    ) -> Result<SubscribeResult, CommandError> {
        let resolved = self.node.resolve_channel(channel)?;
        let params = self.subscribe_params(
            resolved.options,
            Announce::ConnectReply,
            &request,
            Bytes::new(),
            None,
        );
        let result = self.node.subscribe(channel, params).await?;
        self.session_mut()?.subscriptions.insert(
            channel.to_string(),
            Subscription {
                chan_info: Bytes::new(),
                expires_at: None,
            },
        );
        Ok(result)
    }

    fn subscribe_params(
        &self,
        options: &ChannelOptions,
        announce: Announce,
        request: &SubscribeRequest,
        chan_info: Bytes,
        expires_in: Option<u32>,
    ) -> SubscribeParams {
        let history = options.history_size > 0 && !options.history_ttl.0.is_zero();
        let recoverable =
            history && (options.force_recovery || (options.allow_recovery && request.recoverable));
        let positioned = history
            && (options.force_positioning || (options.allow_positioning && request.positioned));
        let recover_from = (request.recover && recoverable).then(|| StreamPosition {
            offset: request.offset,
            epoch: request.epoch.clone(),
        });
        let (user, conn_info) = self
            .session
            .as_ref()
            .map(|s| (s.user.clone(), s.conn_info.clone()))
            .unwrap_or_default();
        let presence = options.presence.then(|| ClientInfo {
            user,
            client: self.client_id.to_string(),
            conn_info,
            chan_info: chan_info.clone(),
        });
        SubscribeParams {
            client_id: self.client_id.clone(),
            subscriber: Subscriber {
                outbound: self.outbound.clone(),
                encoding: self.encoding,
                join_leave: options.join_leave
                    && (options.force_push_join_leave || request.join_leave),
            },
            announce,
            recover_from,
            recoverable,
            positioned,
            presence,
            recovery_limit: self.node.config().client.recovery_max_publication_limit,
            data: Bytes::new(),
            expires_in,
        }
    }

    fn sub_refresh(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        request: SubRefreshRequest,
    ) -> Result<SubRefreshResult, CommandError> {
        let now = unix_now_secs();
        let claims = self
            .node
            .subscription_tokens()
            .verify_subscribe(&request.token, now)
            .map_err(|error| subscription_token_error(&self.client_id, &error))?;
        let session = self.session_mut()?;
        if claims.sub != session.user || claims.channel != request.channel {
            return Err(CommandError::Reply(ErrorCode::PermissionDenied));
        }
        let Some(subscription) = session.subscriptions.get_mut(&request.channel) else {
            return Err(CommandError::Reply(ErrorCode::BadRequest));
        };
        subscription.expires_at = claims.expires_at();
        let expires_at = subscription.expires_at;
        if let Some(exp) = expires_at {
            let channel = request.channel.clone();
            let timer = schedule_at(myself, exp, now, move || {
                ConnectionMsg::SubExpiryCheck(channel.clone())
            });
            self.timers.keep(timer);
        }
        Ok(SubRefreshResult {
            expires: expires_at.is_some(),
            ttl: expires_at.map_or(0, |exp| ttl_secs(exp, now)),
        })
    }

    fn on_sub_expiry_check(&mut self, channel: &str) {
        let expired = self
            .session
            .as_ref()
            .and_then(|s| s.subscriptions.get(channel))
            .and_then(|sub| sub.expires_at)
            .is_some_and(|exp| exp <= unix_now_secs());
        if expired {
            self.unsubscribe(channel);
            self.send_reply(Reply::push(starling_protocol::Push {
                channel: channel.to_string(),
                unsubscribe: Some(starling_protocol::UnsubscribeCode::Expired.to_unsubscribe()),
                ..Default::default()
            }));
        }
    }

    fn unsubscribe(&mut self, channel: &str) {
        let removed = self
            .session
            .as_mut()
            .and_then(|s| s.subscriptions.remove(channel));
        if removed.is_some() {
            self.node.unsubscribe(channel, self.client_id.clone(), None);
        }
    }

    fn leave_all_rooms(&mut self) {
        if let Some(session) = self.session.as_mut() {
            for (channel, _) in session.subscriptions.drain() {
                self.node
                    .unsubscribe(&channel, self.client_id.clone(), None);
            }
        }
    }

    // ---------------------------------------------------------------- publish, presence, history

    async fn publish(&mut self, request: PublishRequest) -> Result<(), CommandError> {
        let resolved = self.node.resolve_channel(&request.channel)?;
        let options = resolved.options;
        let session = self.session()?;
        let subscription = session.subscriptions.get(&request.channel);
        if !permitted(
            session,
            subscription.is_some(),
            options.allow_publish_for_client,
            options.allow_publish_for_subscriber,
            options.allow_publish_for_anonymous,
        ) {
            return Err(CommandError::Reply(ErrorCode::PermissionDenied));
        }
        let info = ClientInfo {
            user: session.user.clone(),
            client: self.client_id.to_string(),
            conn_info: session.conn_info.clone(),
            chan_info: subscription
                .map(|s| s.chan_info.clone())
                .unwrap_or_default(),
        };
        self.node
            .publish(
                &request.channel,
                request.data,
                Some(info),
                Default::default(),
            )
            .await?;
        Ok(())
    }

    /// Checks the `allow_*_for_client` / `_for_subscriber` / `_for_anonymous` triple of one
    /// operation, the way Centrifugo's namespace options define it.
    fn may_read(
        &self,
        channel: &str,
        for_client: bool,
        for_subscriber: bool,
        for_anonymous: bool,
    ) -> Result<(), CommandError> {
        let session = self.session()?;
        let subscribed = session.subscriptions.contains_key(channel);
        if permitted(
            session,
            subscribed,
            for_client,
            for_subscriber,
            for_anonymous,
        ) {
            Ok(())
        } else {
            Err(CommandError::Reply(ErrorCode::PermissionDenied))
        }
    }

    /// Presence and presence_stats: the namespace must keep presence (108 otherwise) and
    /// allow this connection to read it.
    fn may_read_presence(&self, channel: &str) -> Result<(), CommandError> {
        let o = self.node.resolve_channel(channel)?.options;
        if !o.presence {
            return Err(CommandError::Reply(ErrorCode::NotAvailable));
        }
        self.may_read(
            channel,
            o.allow_presence_for_client,
            o.allow_presence_for_subscriber,
            o.allow_presence_for_anonymous,
        )
    }

    async fn presence(&self, channel: &str) -> Result<PresenceResult, CommandError> {
        self.may_read_presence(channel)?;
        let entries = self.node.presence(channel).await?;
        Ok(PresenceResult {
            presence: entries
                .into_iter()
                .map(|info| (info.client.clone(), info))
                .collect(),
        })
    }

    async fn presence_stats(&self, channel: &str) -> Result<PresenceStatsResult, CommandError> {
        self.may_read_presence(channel)?;
        let stats = self.node.presence_stats(channel).await?;
        Ok(PresenceStatsResult {
            num_clients: stats.num_clients,
            num_users: stats.num_users,
        })
    }

    async fn history(&self, request: HistoryRequest) -> Result<HistoryResult, CommandError> {
        let resolved = self.node.resolve_channel(&request.channel)?;
        let o = resolved.options;
        if o.history_size == 0 || o.history_ttl.0.is_zero() {
            return Err(CommandError::Reply(ErrorCode::NotAvailable));
        }
        self.may_read(
            &request.channel,
            o.allow_history_for_client,
            o.allow_history_for_subscriber,
            o.allow_history_for_anonymous,
        )?;
        let page = self
            .node
            .history(
                &request.channel,
                HistoryQuery {
                    since: request.since,
                    limit: request.limit,
                    reverse: request.reverse,
                },
            )
            .await?;
        Ok(HistoryResult {
            publications: page
                .publications
                .iter()
                .map(|p| Publication::clone(p))
                .collect(),
            epoch: page.position.epoch,
            offset: page.position.offset,
        })
    }

    // ---------------------------------------------------------------- server API

    /// A server-side subscription made through the server API. The room announces it with a
    /// `subscribe` push queued before anything else from the channel. Returns whether the
    /// connection is now subscribed by this call; refusals (already subscribed, a connection
    /// that is closing) are not errors of the API call, as in Centrifugo.
    async fn api_subscribe(&mut self, subscription: &ServerSubscription) -> bool {
        let channel = subscription.channel.as_str();
        let Some(session) = &self.session else {
            return false;
        };
        if self.outbound.is_closing() || session.subscriptions.contains_key(channel) {
            return false;
        }
        let options = match self.node.resolve_channel(channel) {
            Ok(resolved) => subscription.overrides.apply(resolved.options),
            Err(error) => {
                debug!(client = %self.client_id, %channel, %error, "server API subscribe refused");
                return false;
            }
        };
        // Centrifugo's server-side subscriptions recover, position and receive join/leave
        // pushes only where the namespace (or the override) forces it; the API request only
        // supplies the position to recover from.
        let request = SubscribeRequest {
            channel: channel.to_owned(),
            recover: subscription.recover_since.is_some(),
            offset: subscription
                .recover_since
                .as_ref()
                .map_or(0, |position| position.offset),
            epoch: subscription
                .recover_since
                .as_ref()
                .map(|position| position.epoch.clone())
                .unwrap_or_default(),
            ..SubscribeRequest::default()
        };
        let mut params = self.subscribe_params(
            &options,
            Announce::Push,
            &request,
            subscription.chan_info.clone(),
            None,
        );
        params.data = subscription.data.clone();
        if let Err(error) = self.node.subscribe(channel, params).await {
            warn!(client = %self.client_id, %channel, %error, "server API subscribe failed");
            return false;
        }
        if let Some(session) = self.session.as_mut() {
            session.subscriptions.insert(
                channel.to_owned(),
                Subscription {
                    chan_info: subscription.chan_info.clone(),
                    expires_at: None,
                },
            );
        }
        true
    }

    fn on_resubscribe(&mut self, channel: &str) {
        let removed = self
            .session
            .as_mut()
            .and_then(|s| s.subscriptions.remove(channel));
        if removed.is_some() {
            debug!(client = %self.client_id, %channel, "owner changed: client resubscribes");
            self.send_reply(UnsubscribeCode::Insufficient.push(channel.to_string()));
        }
    }

    /// Server API unsubscribe: the room queues the unsubscribe push (2000, no resubscribe) after
    /// the last publication it sent this client.
    fn api_unsubscribe(&mut self, channel: &str) -> bool {
        let removed = self
            .session
            .as_mut()
            .and_then(|s| s.subscriptions.remove(channel));
        if removed.is_none() {
            return false;
        }
        self.node.unsubscribe(
            channel,
            self.client_id.clone(),
            Some(UnsubscribeCode::Server),
        );
        true
    }

    /// Server API refresh, with Centrifugo's rules: `expired` or an `expire_at` already past
    /// closes the connection with 3005; a later `expire_at` becomes the new expiry (closed
    /// `client.expired_close_delay` after it unless refreshed again); none lifts the expiry.
    /// The client gets a `refresh` push with the new expiry.
    fn api_refresh(&mut self, myself: &ActorRef<ConnectionMsg>, update: ExpiryUpdate) {
        let now = unix_now_secs();
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let refresh = match update {
            ExpiryUpdate::Expired => None,
            ExpiryUpdate::At(at) if at <= now => None,
            ExpiryUpdate::At(at) => {
                let at = at.min(now.saturating_add(MAX_REFRESH_TTL_SECS));
                session.expires_at = Some(at);
                self.arm_expiry_check(myself, self.expiry_check_at(at), now);
                Some(Refresh {
                    expires: true,
                    ttl: ttl_secs(at, now),
                })
            }
            ExpiryUpdate::Never => {
                session.expires_at = None;
                Some(Refresh {
                    expires: false,
                    ttl: 0,
                })
            }
        };
        match refresh {
            Some(refresh) => self.send_reply(Reply::push(Push {
                refresh: Some(refresh),
                ..Push::default()
            })),
            None => self.disconnect(myself, DisconnectCode::Expired),
        }
    }

    // ---------------------------------------------------------------- heartbeat and plumbing

    /// When a connection whose token expires at `exp` is closed unless refreshed:
    /// `client.expired_close_delay` later, the grace an SDK gets to refresh a token that has
    /// just run out.
    fn expiry_check_at(&self, exp: i64) -> i64 {
        let delay = self.node.config().client.expired_close_delay.0;
        exp.saturating_add(i64::try_from(delay.as_secs()).unwrap_or(i64::MAX))
    }

    /// Arms the connection-expiry check for Unix second `at`. A check further away than two
    /// ping intervals is not armed now but by a later ping (`on_ping`): each pending timer is
    /// a task that an idle connection would carry for the token's whole lifetime (typically an
    /// hour), while the ping timer runs anyway. Two intervals leave a full interval of slack
    /// for a late ping.
    fn arm_expiry_check(&mut self, myself: &ActorRef<ConnectionMsg>, at: i64, now: i64) {
        if self.expiry_armed == Some(at) {
            return;
        }
        let ping = self.node.config().client.ping_interval.0;
        let horizon = i64::try_from(ping.as_secs().saturating_mul(2)).unwrap_or(i64::MAX);
        if ping.is_zero() || at.saturating_sub(now) <= horizon {
            let timer = schedule_at(myself, at, now, || ConnectionMsg::ExpiryCheck);
            self.timers.keep(timer);
            self.expiry_armed = Some(at);
        }
    }

    fn schedule_ping(&mut self, myself: &ActorRef<ConnectionMsg>, after: Duration) {
        if !after.is_zero() {
            self.schedule_beat(myself, after, Beat::Ping);
        }
    }

    /// Replaces the pending heartbeat with `beat`, `after` from now.
    fn schedule_beat(&mut self, myself: &ActorRef<ConnectionMsg>, after: Duration, beat: Beat) {
        let heartbeats = self.node.heartbeats();
        if let Some(previous) = self.beat.take() {
            heartbeats.cancel(previous);
        }
        let at = tokio::time::Instant::now() + after;
        self.beat = Some(heartbeats.schedule(at, myself, beat));
    }

    fn on_ping(&mut self, myself: &ActorRef<ConnectionMsg>) {
        if self.outbound.is_closing() {
            return;
        }
        // Protocol v2 server ping: an empty reply. The client answers with an empty command.
        self.send_reply(Reply::default());
        // An expiry check left for later by `arm_expiry_check` is armed once it is near.
        if let Some(exp) = self.session.as_ref().and_then(|s| s.expires_at) {
            self.arm_expiry_check(myself, self.expiry_check_at(exp), unix_now_secs());
        }
        if !self.mode.answers_pings() {
            // A unidirectional client cannot answer; the ping only keeps intermediaries from
            // closing an idle stream, and a dead peer shows up as a failed write.
            self.schedule_ping(myself, self.node.config().client.ping_interval.0);
            return;
        }
        self.awaiting_pong = true;
        self.ping_seq += 1;
        let seq = self.ping_seq;
        let timeout = self.node.config().client.pong_timeout.0;
        self.schedule_beat(myself, timeout, Beat::PongDeadline(seq));
    }

    fn on_pong_deadline(&mut self, myself: &ActorRef<ConnectionMsg>, seq: u64) {
        if seq != self.ping_seq {
            return;
        }
        if self.awaiting_pong {
            debug!(client = %self.client_id, "no pong in time");
            self.disconnect(myself, DisconnectCode::NoPong);
            return;
        }
        let client = &self.node.config().client;
        let next = client.ping_interval.0.saturating_sub(client.pong_timeout.0);
        self.schedule_ping(myself, next.max(Duration::from_millis(1)));
    }

    fn send_reply(&mut self, reply: Reply) {
        match encode_reply(self.encoding, &reply) {
            Ok(frame) => {
                let queued = if self.session.is_some() {
                    self.outbound.push(frame)
                } else {
                    // Before connect succeeds the queue is held; an error reply to connect
                    // (or any early reply) releases it.
                    self.outbound.release(frame);
                    Ok(())
                };
                if queued.is_err() {
                    self.node.metrics().slow_consumer_disconnect();
                }
            }
            Err(error) => {
                warn!(client = %self.client_id, %error, "cannot encode reply");
                let fallback = Reply::error(reply.id, ErrorCode::Internal.to_error());
                if let Ok(frame) = encode_reply(self.encoding, &fallback) {
                    let _ = self.outbound.push(frame);
                }
            }
        }
    }

    /// Closes the connection with `close` after what is already queued; the rooms are left at
    /// once so presence and leave pushes do not wait for the transport.
    fn disconnect(&mut self, myself: &ActorRef<ConnectionMsg>, close: impl Into<Close>) {
        self.leave_all_rooms();
        self.outbound.close(close.into(), true);
        myself.stop(None);
    }

    fn session(&self) -> Result<&Session, CommandError> {
        self.session
            .as_ref()
            .ok_or(CommandError::Disconnect(DisconnectCode::BadRequest))
    }

    fn session_mut(&mut self) -> Result<&mut Session, CommandError> {
        self.session
            .as_mut()
            .ok_or(CommandError::Disconnect(DisconnectCode::BadRequest))
    }
}

/// One operation's `allow_*_for_client` / `_for_subscriber` / `_for_anonymous` options:
/// `for_client` admits every authenticated connection, `for_subscriber` whoever is subscribed
/// to the channel, `for_anonymous` connections without a user.
fn permitted(
    session: &Session,
    subscribed: bool,
    for_client: bool,
    for_subscriber: bool,
    for_anonymous: bool,
) -> bool {
    let anonymous = session.user.is_empty();
    (for_client && !anonymous) || (for_subscriber && subscribed) || (for_anonymous && anonymous)
}

/// Subscribing without a subscription token: allowed by the connection token's `channels`
/// claim, by a user-limited channel naming this user, or by the namespace's
/// `allow_subscribe_for_client` / `allow_subscribe_for_anonymous`.
fn may_subscribe_without_token(
    session: &Session,
    channel: &str,
    resolved: &ResolvedChannel<'_>,
) -> bool {
    if session.token_channels.iter().any(|c| c == channel) {
        return true;
    }
    if let Some(users) = &resolved.allowed_users {
        return !session.user.is_empty() && users.iter().any(|u| *u == session.user);
    }
    if session.user.is_empty() {
        resolved.options.allow_subscribe_for_anonymous
    } else {
        resolved.options.allow_subscribe_for_client
    }
}

fn connect_token_error(client: &str, error: &TokenError) -> CommandError {
    match error {
        // The SDK fetches a fresh token and reconnects. Centrifugo answers a not-yet-valid
        // token the same way.
        TokenError::Expired { .. } | TokenError::NotYetValid { .. } => {
            CommandError::Reply(ErrorCode::TokenExpired)
        }
        other => {
            info!(client, error = %other, "invalid connection token");
            CommandError::Disconnect(DisconnectCode::InvalidToken)
        }
    }
}

fn subscription_token_error(client: &str, error: &TokenError) -> CommandError {
    match error {
        TokenError::Expired { .. } | TokenError::NotYetValid { .. } => {
            CommandError::Reply(ErrorCode::TokenExpired)
        }
        other => {
            info!(client, error = %other, "invalid subscription token");
            CommandError::Reply(ErrorCode::PermissionDenied)
        }
    }
}

fn ttl_secs(exp: i64, now: i64) -> u32 {
    u32::try_from((exp - now).max(0)).unwrap_or(u32::MAX)
}

/// Schedules `msg` for Unix second `at` (at least a millisecond from now).
fn schedule_at<F>(myself: &ActorRef<ConnectionMsg>, at: i64, now: i64, msg: F) -> AbortHandle
where
    F: FnOnce() -> ConnectionMsg + Send + 'static,
{
    let secs = u64::try_from((at - now).max(0)).unwrap_or(0);
    let delay = Duration::from_secs(secs).max(Duration::from_millis(1));
    myself.send_after(delay, msg).abort_handle()
}

/// The connection's pending timers. ractor's timers hold a strong `ActorRef`, which keeps the
/// stopped actor's memory alive until they fire (25 s for a ping); so the connection keeps
/// their abort handles and cancels them when it stops.
#[derive(Default)]
struct Timers {
    /// The stale check, cancelled once `connect` succeeds.
    stale: Option<AbortHandle>,
    pending: Vec<AbortHandle>,
}

impl Timers {
    fn keep(&mut self, timer: AbortHandle) {
        // Fired timers are dropped here, so a long-lived connection holds only pending ones.
        self.pending.retain(|timer| !timer.is_finished());
        self.pending.push(timer);
    }

    fn cancel_stale(&mut self) {
        if let Some(timer) = self.stale.take() {
            timer.abort();
        }
    }

    fn cancel_all(&mut self) {
        self.cancel_stale();
        for timer in self.pending.drain(..) {
            timer.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(expires_at: i64) -> Subscription {
        Subscription {
            chan_info: Bytes::new(),
            expires_at: Some(expires_at),
        }
    }

    #[test]
    fn subscriptions_answer_alike_below_and_above_the_linear_limit() {
        let mut subs = Subscriptions::default();
        let count = FEW_SUBSCRIPTIONS as i64 * 3;
        for i in 0..count {
            subs.insert(format!("ch{i}"), subscription(i));
            assert_eq!(subs.len(), usize::try_from(i + 1).unwrap());
            assert!(subs.contains_key("ch0"));
        }
        assert!(matches!(subs, Subscriptions::Many(_)));
        subs.insert("ch3".to_owned(), subscription(100));
        assert_eq!(subs.get("ch3").and_then(|s| s.expires_at), Some(100));
        if let Some(sub) = subs.get_mut("ch4") {
            sub.expires_at = None;
        }
        assert_eq!(subs.get("ch4").map(|s| s.expires_at), Some(None));
        assert_eq!(subs.remove("ch5").and_then(|s| s.expires_at), Some(5));
        assert!(subs.remove("ch5").is_none());
        assert!(!subs.contains_key("missing"));
        let mut drained: Vec<String> = subs.drain().into_iter().map(|(name, _)| name).collect();
        drained.sort();
        assert_eq!(drained.len(), usize::try_from(count - 1).unwrap());
        assert_eq!(subs.len(), 0);
    }

    #[test]
    fn a_few_subscriptions_stay_in_one_small_vector() {
        let mut subs = Subscriptions::default();
        subs.insert("news".to_owned(), subscription(1));
        let Subscriptions::Few(few) = &subs else {
            panic!("one subscription is kept in the vector");
        };
        assert_eq!(few.capacity(), 1);
        assert_eq!(subs.remove("news").and_then(|s| s.expires_at), Some(1));
        assert_eq!(subs.len(), 0);
    }
}
