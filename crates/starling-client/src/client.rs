//! The [`Client`] handle and its [`ClientBuilder`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use bytes::Bytes;
use starling_protocol::{
    Command, ConnectRequest, ConnectResult, Encoding, HistoryRequest, HistoryResult, Method,
    PingRequest, PresenceRequest, PresenceResult, PresenceStatsRequest, PresenceStatsResult,
    PublishRequest, Push, RefreshRequest, RefreshResult, Reply, RpcRequest, RpcResult, SendRequest,
    SubRefreshRequest, SubRefreshResult, SubscribeRequest, SubscribeResult, UnsubscribeRequest,
    encode_command,
};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::error::{ClientError, CloseReason};
use crate::task::{self, Request, Shared};

/// Configures and opens a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: String,
    encoding: Encoding,
    request: ConnectRequest,
    headers: Vec<(String, String)>,
    answer_pings: bool,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl ClientBuilder {
    /// A builder for `url` (`ws://host:port/connection/websocket`, or `wss://` with the
    /// `tls` feature and [`ClientBuilder::tls_config`]), JSON
    /// encoding, no token, answering server pings.
    pub fn new(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            encoding: Encoding::Json,
            request: ConnectRequest {
                name: "starling-client".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..ConnectRequest::default()
            },
            headers: Vec::new(),
            answer_pings: true,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// TLS settings for a `wss://` URL (feature `tls`): which roots to trust, client
    /// certificates. Build the configuration on rustls' ring provider; a `wss://` URL without
    /// one fails to connect, as no roots are trusted by default.
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> ClientBuilder {
        self.tls = Some(config);
        self
    }

    /// Wire encoding; Protobuf requests the `centrifuge-protobuf` subprotocol.
    pub fn encoding(mut self, encoding: Encoding) -> ClientBuilder {
        self.encoding = encoding;
        self
    }

    /// Connection token sent in the connect command.
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.request.token = token.into();
        self
    }

    /// Client name sent in the connect command.
    pub fn name(mut self, name: impl Into<String>) -> ClientBuilder {
        self.request.name = name.into();
        self
    }

    /// Client version sent in the connect command.
    pub fn version(mut self, version: impl Into<String>) -> ClientBuilder {
        self.request.version = version.into();
        self
    }

    /// Custom connect data (raw JSON on JSON connections).
    pub fn data(mut self, data: Bytes) -> ClientBuilder {
        self.request.data = data;
        self
    }

    /// A server-side subscription to recover on connect.
    pub fn subscription(
        mut self,
        channel: impl Into<String>,
        req: SubscribeRequest,
    ) -> ClientBuilder {
        self.request.subs.insert(channel.into(), req);
        self
    }

    /// Replaces the whole connect request.
    pub fn request(mut self, request: ConnectRequest) -> ClientBuilder {
        self.request = request;
        self
    }

    /// An extra HTTP header for the WebSocket handshake (e.g. `Origin`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> ClientBuilder {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Whether to answer server pings when the server asks for pongs
    /// (default true); turn off to simulate a dead client.
    pub fn answer_pings(mut self, answer: bool) -> ClientBuilder {
        self.answer_pings = answer;
        self
    }

    /// Opens the WebSocket without sending the connect command.
    pub async fn open(self) -> Result<Client, ClientError> {
        let connect_error = |source| ClientError::Connect {
            url: self.url.clone(),
            source: Box::new(source),
        };
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(connect_error)?;
        let headers = request.headers_mut();
        if let Some(protocol) = self.encoding.subprotocol() {
            headers.insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
        }
        for (name, value) in &self.headers {
            let name = tokio_tungstenite::tungstenite::http::HeaderName::try_from(name.as_str())
                .map_err(|err| connect_error(err.into()))?;
            let value =
                HeaderValue::try_from(value.as_str()).map_err(|err| connect_error(err.into()))?;
            headers.append(name, value);
        }
        #[cfg(feature = "tls")]
        let (socket, _response) = {
            let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector)
                .await
                .map_err(connect_error)?
        };
        #[cfg(not(feature = "tls"))]
        let (socket, _response) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(connect_error)?;
        Ok(Client::spawn(socket, self.encoding, self.answer_pings))
    }

    /// Opens the WebSocket and sends the connect command.
    pub async fn connect(self) -> Result<(Client, ConnectResult), ClientError> {
        let request = self.request.clone();
        let client = self.open().await?;
        let result = client.send_connect(request).await?;
        Ok((client, result))
    }
}

/// A connected session speaking the Centrifugo client protocol.
///
/// One background task owns the socket. Every method takes `&self` and is
/// cancel-safe: dropping a call's future abandons only that wait. Dropping
/// the `Client` closes the connection and ends the task.
#[derive(Debug)]
pub struct Client {
    encoding: Encoding,
    requests: mpsc::UnboundedSender<Request>,
    pushes: Mutex<mpsc::UnboundedReceiver<Push>>,
    close: watch::Receiver<Option<CloseReason>>,
    shared: Arc<Shared>,
    next_id: AtomicU32,
    task: JoinHandle<()>,
}

impl Client {
    /// A [`ClientBuilder`] for `url`.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// Opens `url` with `encoding` and sends `req` as the connect command.
    pub async fn connect(
        url: &str,
        encoding: Encoding,
        req: ConnectRequest,
    ) -> Result<(Client, ConnectResult), ClientError> {
        ClientBuilder::new(url)
            .encoding(encoding)
            .request(req)
            .connect()
            .await
    }

    fn spawn(socket: task::Socket, encoding: Encoding, answer_pings: bool) -> Client {
        let (requests_tx, requests_rx) = mpsc::unbounded_channel();
        let (pushes_tx, pushes_rx) = mpsc::unbounded_channel();
        let (close_tx, close_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            answer_pings: AtomicBool::new(answer_pings),
            pings_received: AtomicU64::new(0),
        });
        let task = tokio::spawn(task::run(
            socket,
            encoding,
            requests_rx,
            pushes_tx,
            Arc::clone(&shared),
            close_tx,
        ));
        Client {
            encoding,
            requests: requests_tx,
            pushes: Mutex::new(pushes_rx),
            close: close_rx,
            shared,
            next_id: AtomicU32::new(1),
            task,
        }
    }

    /// The connection's wire encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Sends a connect command (for connections made with [`ClientBuilder::open`]).
    pub async fn send_connect(&self, req: ConnectRequest) -> Result<ConnectResult, ClientError> {
        let command = Command {
            connect: Some(req),
            ..Command::default()
        };
        self.expect(command, Method::Connect, |reply| reply.connect.take())
            .await
    }

    /// Subscribes to `req.channel`.
    pub async fn subscribe(&self, req: SubscribeRequest) -> Result<SubscribeResult, ClientError> {
        let command = Command {
            subscribe: Some(req),
            ..Command::default()
        };
        self.expect(command, Method::Subscribe, |reply| reply.subscribe.take())
            .await
    }

    /// Unsubscribes from `channel`.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        let command = Command {
            unsubscribe: Some(UnsubscribeRequest {
                channel: channel.to_owned(),
            }),
            ..Command::default()
        };
        self.call(command).await.map(drop)
    }

    /// Publishes `data` (raw JSON on JSON connections) into `channel`.
    pub async fn publish(&self, channel: &str, data: Bytes) -> Result<(), ClientError> {
        let command = Command {
            publish: Some(PublishRequest {
                channel: channel.to_owned(),
                data,
            }),
            ..Command::default()
        };
        self.call(command).await.map(drop)
    }

    /// Who is in `channel`.
    pub async fn presence(&self, channel: &str) -> Result<PresenceResult, ClientError> {
        let command = Command {
            presence: Some(PresenceRequest {
                channel: channel.to_owned(),
            }),
            ..Command::default()
        };
        // An empty presence map is an empty result object, which may be omitted.
        self.expect(command, Method::Presence, |reply| {
            Some(reply.presence.take().unwrap_or_default())
        })
        .await
    }

    /// How many clients and users are in `channel`.
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStatsResult, ClientError> {
        let command = Command {
            presence_stats: Some(PresenceStatsRequest {
                channel: channel.to_owned(),
            }),
            ..Command::default()
        };
        self.expect(command, Method::PresenceStats, |reply| {
            Some(reply.presence_stats.take().unwrap_or_default())
        })
        .await
    }

    /// Reads a channel's history.
    pub async fn history(&self, req: HistoryRequest) -> Result<HistoryResult, ClientError> {
        let command = Command {
            history: Some(req),
            ..Command::default()
        };
        self.expect(command, Method::History, |reply| {
            Some(reply.history.take().unwrap_or_default())
        })
        .await
    }

    /// Refreshes the connection token.
    pub async fn refresh(&self, token: &str) -> Result<RefreshResult, ClientError> {
        let command = Command {
            refresh: Some(RefreshRequest {
                token: token.to_owned(),
            }),
            ..Command::default()
        };
        self.expect(command, Method::Refresh, |reply| reply.refresh.take())
            .await
    }

    /// Refreshes the subscription token of `channel`.
    pub async fn sub_refresh(
        &self,
        channel: &str,
        token: &str,
    ) -> Result<SubRefreshResult, ClientError> {
        let command = Command {
            sub_refresh: Some(SubRefreshRequest {
                channel: channel.to_owned(),
                token: token.to_owned(),
            }),
            ..Command::default()
        };
        self.expect(command, Method::SubRefresh, |reply| {
            Some(reply.sub_refresh.take().unwrap_or_default())
        })
        .await
    }

    /// Calls server method `method` with `data`.
    pub async fn rpc(&self, method: &str, data: Bytes) -> Result<RpcResult, ClientError> {
        let command = Command {
            rpc: Some(RpcRequest {
                data,
                method: method.to_owned(),
            }),
            ..Command::default()
        };
        self.expect(command, Method::Rpc, |reply| {
            Some(reply.rpc.take().unwrap_or_default())
        })
        .await
    }

    /// Sends a ping command and waits for its reply.
    pub async fn ping(&self) -> Result<(), ClientError> {
        let command = Command {
            ping: Some(PingRequest {}),
            ..Command::default()
        };
        self.call(command).await.map(drop)
    }

    /// Sends an asynchronous message; the server sends no reply. Returns once
    /// the frame carrying it was written.
    pub async fn send(&self, data: Bytes) -> Result<(), ClientError> {
        let command = Command {
            send: Some(SendRequest { data }),
            ..Command::default()
        };
        self.send_command(command).await
    }

    /// Sends any command and awaits its reply, matched by id. A command with
    /// id 0 gets the next free id. Error replies become [`ClientError::Reply`].
    pub async fn call(&self, mut command: Command) -> Result<Reply, ClientError> {
        if command.id == 0 {
            command.id = self.next_id();
        }
        let frame = encode_command(self.encoding, &command)?;
        let (reply_tx, reply_rx) = oneshot::channel();
        self.submit(Request::Command {
            id: command.id,
            frame,
            reply: Some(reply_tx),
            written: None,
        })?;
        let mut reply = reply_rx.await.map_err(|_| self.closed_error())?;
        match reply.error.take() {
            Some(error) => Err(ClientError::Reply(error)),
            None => Ok(reply),
        }
    }

    /// Sends any command as is (its id included) without waiting for a
    /// reply; returns once it was written. `Command::default()` is a pong.
    pub async fn send_command(&self, command: Command) -> Result<(), ClientError> {
        let frame = encode_command(self.encoding, &command)?;
        let (written_tx, written_rx) = oneshot::channel();
        self.submit(Request::Command {
            id: command.id,
            frame,
            reply: None,
            written: Some(written_tx),
        })?;
        written_rx.await.map_err(|_| self.closed_error())
    }

    /// Sends an arbitrary WebSocket message (text or binary), for bad-input
    /// tests; returns once it was written.
    pub async fn send_raw(&self, message: WsMessage) -> Result<(), ClientError> {
        let (written_tx, written_rx) = oneshot::channel();
        self.submit(Request::Raw {
            message,
            written: written_tx,
        })?;
        written_rx.await.map_err(|_| self.closed_error())
    }

    /// The next server push (publication, join, leave, unsubscribe, subscribe,
    /// disconnect, ...), or `None` once the connection closed and every push
    /// received before was taken.
    pub async fn next_push(&self) -> Option<Push> {
        self.pushes.lock().await.recv().await
    }

    /// A push already received, without waiting.
    pub fn try_next_push(&self) -> Option<Push> {
        self.pushes.try_lock().ok()?.try_recv().ok()
    }

    /// Why the connection closed, or `None` while it is open.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close.borrow().clone()
    }

    /// Waits until the connection closes and says why.
    pub async fn closed(&self) -> CloseReason {
        let mut close = self.close.clone();
        // An error means the task is gone; it records the reason before that.
        let waited = close
            .wait_for(Option::is_some)
            .await
            .map(|reason| reason.clone());
        match waited {
            Ok(reason) => reason,
            Err(_) => close.borrow().clone(),
        }
        .unwrap_or_else(task_ended)
    }

    /// Whether to answer server pings with pongs from now on.
    pub fn set_answer_pings(&self, answer: bool) {
        self.shared.answer_pings.store(answer, Ordering::Relaxed);
    }

    /// How many server pings (empty replies) arrived so far.
    pub fn pings_received(&self) -> u64 {
        self.shared.pings_received.load(Ordering::Relaxed)
    }

    /// Closes the connection with code 1000 and waits for the task to end
    /// (the close handshake is bounded by a timeout).
    pub async fn close(self) {
        let Client { requests, task, .. } = self;
        // The task closes the socket once every handle to its queue is gone,
        // after writing what was queued before.
        drop(requests);
        let _ = task.await;
    }

    fn next_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            // 0 means "no reply wanted" on the wire; skip it when the counter wraps.
            if id != 0 {
                return id;
            }
        }
    }

    fn submit(&self, request: Request) -> Result<(), ClientError> {
        self.requests.send(request).map_err(|_| self.closed_error())
    }

    fn closed_error(&self) -> ClientError {
        self.close_reason().unwrap_or_else(task_ended).into()
    }

    async fn expect<T>(
        &self,
        command: Command,
        method: Method,
        pick: impl FnOnce(&mut Reply) -> Option<T>,
    ) -> Result<T, ClientError> {
        let mut reply = self.call(command).await?;
        match pick(&mut reply) {
            Some(result) => Ok(result),
            None => Err(ClientError::UnexpectedReply {
                expected: method,
                reply: Box::new(reply),
            }),
        }
    }
}

/// The task ended without recording a reason; it always records one, so this
/// only covers a panic in the task.
fn task_ended() -> CloseReason {
    CloseReason {
        code: 1006,
        reason: "connection task ended".to_owned(),
    }
}
