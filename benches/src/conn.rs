//! One lean client connection: TCP from a chosen source address, the
//! WebSocket handshake, and the `connect` / `subscribe` exchange.
//!
//! Deliberately not `starling-client`: that SDK keeps a task, channels and
//! maps per connection for tests' convenience; here a connection is the
//! socket plus a few counters, so tens of thousands fit in one process.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;
use starling_protocol::{
    Command, ConnectRequest, Encoding, Reply, SubscribeRequest, decode_replies, encode_command,
};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// An open WebSocket over plain TCP.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Read buffer per connection. tungstenite allocates it eagerly (128 KiB by
/// default), which would cost the generator gigabytes at 15,000 connections.
const READ_BUFFER: usize = 4 * 1024;

/// Where and how connections are made.
pub(crate) struct Target {
    url: String,
    addr: SocketAddr,
    encoding: Encoding,
    key: EncodingKey,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("addr", &self.addr)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

impl Target {
    /// A target for `url` (`ws://host:port/connection/websocket`), signing
    /// HS256 connection tokens with `secret`.
    pub(crate) fn new(url: &str, encoding: Encoding, secret: &str) -> anyhow::Result<Target> {
        let uri: Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
        if uri.scheme_str() != Some("ws") {
            bail!("only ws:// URLs are supported, got {url:?}");
        }
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("URL {url:?} has no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let addr = (host, port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {host}:{port}"))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| anyhow!("{host}:{port} has no IPv4 address"))?;
        Ok(Target {
            url: url.to_owned(),
            addr,
            encoding,
            key: EncodingKey::from_secret(secret.as_bytes()),
        })
    }

    /// The server's socket address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A connection token for `user`, valid for a day.
    fn token(&self, user: &str) -> anyhow::Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            sub: user,
            exp: now + 86_400,
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.key).context("signing token")
    }

    /// TCP (bound to `source` when given) plus the WebSocket handshake.
    async fn dial(&self, source: Option<IpAddr>) -> anyhow::Result<Ws> {
        let socket = TcpSocket::new_v4().context("socket")?;
        if let Some(ip) = source {
            // bind() picks the port before connect() knows the destination,
            // so without SO_REUSEADDR every port still in TIME_WAIT from an
            // earlier run is off limits, and handshakes stall on collisions.
            socket.set_reuseaddr(true).context("SO_REUSEADDR")?;
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("bind {ip}"))?;
        }
        let stream = socket
            .connect(self.addr)
            .await
            .with_context(|| format!("connect to {}", self.addr))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let mut request = self.url.as_str().into_client_request()?;
        if let Some(protocol) = self.encoding.subprotocol() {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0);
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .context("WebSocket handshake")?;
        Ok(ws)
    }
}

/// A connected Centrifugo-protocol session.
#[derive(Debug)]
pub(crate) struct Session {
    /// The socket; callers read pushes from it directly.
    pub(crate) ws: Ws,
    encoding: Encoding,
    next_id: u32,
}

impl Session {
    /// Dials `target` from `source`, then sends `connect` with a token for `user`.
    pub(crate) async fn open(
        target: &Target,
        source: Option<IpAddr>,
        user: &str,
    ) -> anyhow::Result<Session> {
        let token = target.token(user)?;
        let ws = target.dial(source).await?;
        let mut session = Session {
            ws,
            encoding: target.encoding,
            next_id: 1,
        };
        let connect = Command {
            connect: Some(ConnectRequest {
                token,
                name: "starling-loadgen".to_owned(),
                ..ConnectRequest::default()
            }),
            ..Command::default()
        };
        session.request(connect).await.context("connect")?;
        Ok(session)
    }

    /// Subscribes to `channel` and waits for the reply.
    pub(crate) async fn subscribe(&mut self, channel: &str) -> anyhow::Result<()> {
        let subscribe = Command {
            subscribe: Some(SubscribeRequest {
                channel: channel.to_owned(),
                ..SubscribeRequest::default()
            }),
            ..Command::default()
        };
        self.request(subscribe)
            .await
            .with_context(|| format!("subscribe to {channel}"))?;
        Ok(())
    }

    /// The id for the next command.
    pub(crate) fn next_id(&mut self) -> u32 {
        let id = self.next_id;
        // Ids only need to be unique among commands in flight; 0 is reserved
        // for commands without a reply.
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }

    /// The WebSocket message carrying `command`.
    pub(crate) fn message(&self, command: &Command) -> anyhow::Result<Message> {
        let bytes = encode_command(self.encoding, command)?;
        frame(self.encoding, bytes)
    }

    /// The replies in one received WebSocket message; `None` for control
    /// frames. Errors on a close frame or undecodable data.
    pub(crate) fn replies(&self, message: &Message) -> Result<Option<Vec<Reply>>, Closed> {
        let data: &[u8] = match message {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
            Message::Close(frame) => {
                return Err(Closed::ByServer(
                    frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(1005),
                ));
            }
            _ => return Ok(None),
        };
        decode_replies(self.encoding, data)
            .map(Some)
            .map_err(|e| Closed::Failed(format!("undecodable frame: {e}")))
    }

    /// Sends `command` and waits for its reply, answering pings meanwhile.
    async fn request(&mut self, mut command: Command) -> anyhow::Result<Reply> {
        let id = self.next_id();
        command.id = id;
        let message = self.message(&command)?;
        self.ws.send(message).await.context("send")?;
        loop {
            let message = match self.ws.next().await {
                Some(message) => message.context("read")?,
                None => bail!("connection closed before reply {id}"),
            };
            let Some(replies) = self.replies(&message).map_err(|c| anyhow!("{c}"))? else {
                continue;
            };
            for reply in replies {
                if reply.id == id {
                    if let Some(error) = reply.error {
                        bail!("error {}: {}", error.code, error.message);
                    }
                    return Ok(reply);
                }
                if reply.is_ping() {
                    self.pong().await?;
                }
            }
        }
    }

    /// Answers a server ping with an empty command.
    pub(crate) async fn pong(&mut self) -> anyhow::Result<()> {
        let message = self.message(&Command::default())?;
        self.ws.send(message).await.context("pong")
    }

    /// Closes the WebSocket and waits (bounded) for the server to end the
    /// TCP connection, so the TIME_WAIT state stays on the server's side and
    /// churn loops do not run out of client ports.
    pub(crate) async fn close(mut self) {
        if self.ws.close(None).await.is_err() {
            return;
        }
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }
}

/// Why a connection stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The server sent a close frame with this code.
    ByServer(u16),
    /// Reading or decoding failed.
    Failed(String),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::ByServer(code) => write!(f, "closed by server with code {code}"),
            Closed::Failed(reason) => f.write_str(reason),
        }
    }
}

/// Wraps encoded bytes in the frame type of `encoding`.
fn frame(encoding: Encoding, bytes: Bytes) -> anyhow::Result<Message> {
    Ok(if encoding.is_binary() {
        Message::Binary(bytes)
    } else {
        Message::Text(Utf8Bytes::try_from(bytes).context("JSON encoder produced invalid UTF-8")?)
    })
}
