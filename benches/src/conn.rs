//! One lean client connection: TCP from a chosen source address, the
//! WebSocket handshake, and the protocol's own connect / subscribe /
//! publish exchange — Centrifugo's client protocol against Starling, NATS's
//! text protocol against nats-server, Socket.IO against the socket.io peer.
//!
//! Deliberately not `starling-client`: that SDK keeps a task, channels and
//! maps per connection for tests' convenience; here a connection is the
//! socket plus a few counters, so tens of thousands fit in one process.
//!
//! Whatever the protocol, a received frame becomes a list of [`Event`]s
//! (acknowledgements by id, publications with their time stamp, server
//! pings), so the worker counts the same things the same way for every
//! server.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;
use starling_protocol::{
    Command, ConnectRequest, Encoding, PublishRequest, Reply, SubscribeRequest, decode_replies,
    encode_command,
};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::payload::{leading_number, read_stamp};
use crate::{nats, socketio};

/// An open WebSocket over plain TCP.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Read buffer per connection. tungstenite allocates it eagerly (128 KiB by
/// default), which would cost the generator gigabytes at 15,000 connections.
const READ_BUFFER: usize = 4 * 1024;

/// The protocol spoken over the WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Centrifugo's client protocol v2 (Starling), in this encoding.
    Centrifugo(Encoding),
    /// NATS's text protocol in binary frames (nats-server's WebSocket listener).
    Nats,
    /// Socket.IO v5 over Engine.IO v4, WebSocket transport.
    SocketIo,
}

/// Where and how connections are made.
pub(crate) struct Target {
    url: String,
    addr: SocketAddr,
    protocol: Protocol,
    key: EncodingKey,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("addr", &self.addr)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

impl Target {
    /// A target for `url` (`ws://host:port/path`) speaking `protocol`;
    /// Centrifugo connection tokens are signed (HS256) with `secret`.
    pub(crate) fn new(url: &str, protocol: Protocol, secret: &str) -> anyhow::Result<Target> {
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
            protocol,
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
        if let Protocol::Centrifugo(encoding) = self.protocol
            && let Some(protocol) = encoding.subprotocol()
        {
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

/// Something a received frame told the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The answer to request `id` (a command reply, a NATS `PONG`, a
    /// Socket.IO ack), with the server's error if it refused.
    Ack {
        /// The request's id.
        id: u32,
        /// The error the server answered with.
        error: Option<String>,
    },
    /// A publication arrived.
    Publication {
        /// Its send time from the payload's stamp, if it carries one.
        sent_ns: Option<u64>,
        /// Its offset in the room's stream; only Starling numbers them.
        offset: Option<u64>,
    },
    /// The server checks the client is alive: answer with [`Session::pong`].
    Ping,
    /// The session is open (NATS `INFO`, Engine.IO open packet).
    Greeting,
    /// Socket.IO: the namespace accepted the connection.
    Connected,
    /// An error not tied to a request (NATS `-ERR`, Socket.IO refusal).
    ServerError(String),
}

/// A connected session of any [`Protocol`].
#[derive(Debug)]
pub(crate) struct Session {
    /// The socket; callers read frames from it and hand them to [`Session::events`].
    pub(crate) ws: Ws,
    protocol: Protocol,
    next_id: u32,
    /// NATS: the byte stream's state across frames.
    nats: NatsStream,
}

impl Session {
    /// Dials `target` from `source` and opens the protocol's session as
    /// user `user` (Centrifugo: a token with `sub` = `user`).
    pub(crate) async fn open(
        target: &Target,
        source: Option<IpAddr>,
        user: &str,
    ) -> anyhow::Result<Session> {
        let token = match target.protocol {
            Protocol::Centrifugo(_) => target.token(user)?,
            Protocol::Nats | Protocol::SocketIo => String::new(),
        };
        let ws = target.dial(source).await?;
        let mut session = Session {
            ws,
            protocol: target.protocol,
            next_id: 1,
            nats: NatsStream::default(),
        };
        match session.protocol {
            Protocol::Centrifugo(_) => {
                let connect = Command {
                    connect: Some(ConnectRequest {
                        token,
                        name: "starling-loadgen".to_owned(),
                        ..ConnectRequest::default()
                    }),
                    ..Command::default()
                };
                session.command(connect).await.context("connect")?;
            }
            Protocol::Nats => {
                session
                    .wait(|e| *e == Event::Greeting)
                    .await
                    .context("INFO")?;
                let id = session.next_id();
                session.nats.pongs_due.push_back(id);
                let message = Message::Binary(nats::connect_ping("starling-loadgen"));
                session.request(id, message).await.context("CONNECT")?;
            }
            Protocol::SocketIo => {
                session
                    .wait(|e| *e == Event::Greeting)
                    .await
                    .context("Engine.IO open")?;
                session
                    .ws
                    .send(Message::text(socketio::CONNECT))
                    .await
                    .context("send")?;
                session
                    .wait(|e| *e == Event::Connected)
                    .await
                    .context("Socket.IO connect")?;
            }
        }
        Ok(session)
    }

    /// Subscribes to `channel` and waits until the server confirms it.
    pub(crate) async fn subscribe(&mut self, channel: &str) -> anyhow::Result<()> {
        let outcome = match self.protocol {
            Protocol::Centrifugo(_) => {
                let subscribe = Command {
                    subscribe: Some(SubscribeRequest {
                        channel: channel.to_owned(),
                        ..SubscribeRequest::default()
                    }),
                    ..Command::default()
                };
                self.command(subscribe).await
            }
            Protocol::Nats => {
                let id = self.next_id();
                self.nats.pongs_due.push_back(id);
                // One subscription per connection, so sid 1 is unique.
                let message = Message::Binary(nats::sub_ping(channel, 1));
                self.request(id, message).await
            }
            Protocol::SocketIo => {
                let id = self.next_id();
                let message = Message::text(socketio::subscribe(channel, id));
                self.request(id, message).await
            }
        };
        outcome.with_context(|| format!("subscribe to {channel}"))
    }

    /// The id for the next request.
    pub(crate) fn next_id(&mut self) -> u32 {
        let id = self.next_id;
        // Ids only need to be unique among requests in flight; 0 is reserved
        // for Centrifugo commands without a reply.
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }

    /// The frame publishing `payload` into `channel` as request `id`; its
    /// [`Event::Ack`] comes back with the same id.
    pub(crate) fn publish_message(
        &mut self,
        id: u32,
        channel: &str,
        payload: Bytes,
    ) -> anyhow::Result<Message> {
        match self.protocol {
            Protocol::Centrifugo(encoding) => {
                let command = Command {
                    id,
                    publish: Some(PublishRequest {
                        channel: channel.to_owned(),
                        data: payload,
                    }),
                    ..Command::default()
                };
                centrifugo_frame(encoding, &command)
            }
            Protocol::Nats => {
                self.nats.pongs_due.push_back(id);
                Ok(Message::Binary(nats::pub_ping(channel, &payload)))
            }
            Protocol::SocketIo => {
                let payload =
                    std::str::from_utf8(&payload).context("Socket.IO payloads must be JSON")?;
                Ok(Message::text(socketio::publish(channel, payload, id)))
            }
        }
    }

    /// Appends the events in one received WebSocket message to `out`.
    /// Control frames carry none. Errors on a close frame or undecodable data.
    pub(crate) fn events(&mut self, message: &Message, out: &mut Vec<Event>) -> Result<(), Closed> {
        let data: &[u8] = match message {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
            Message::Close(frame) => {
                return Err(Closed::ByServer(
                    frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(1005),
                ));
            }
            _ => return Ok(()),
        };
        match self.protocol {
            Protocol::Centrifugo(Encoding::Json) => {
                // Publications take the scan; anything else (replies, other pushes) the
                // full decoder, a line at a time.
                for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if let Some(event) = json_publication(line) {
                        out.push(event);
                        continue;
                    }
                    let replies = decode_replies(Encoding::Json, line)
                        .map_err(|e| Closed::Failed(format!("undecodable frame: {e}")))?;
                    out.extend(replies.iter().filter_map(centrifugo_event));
                }
                Ok(())
            }
            Protocol::Centrifugo(encoding) => {
                let replies = decode_replies(encoding, data)
                    .map_err(|e| Closed::Failed(format!("undecodable frame: {e}")))?;
                out.extend(replies.iter().filter_map(centrifugo_event));
                Ok(())
            }
            Protocol::Nats => self.nats.events(data, out),
            Protocol::SocketIo => {
                let text = std::str::from_utf8(data)
                    .map_err(|_| Closed::Failed("Socket.IO frame is not UTF-8".to_owned()))?;
                let packet = socketio::parse(text).map_err(|e| Closed::Failed(e.to_string()))?;
                out.extend(socketio_event(packet)?);
                Ok(())
            }
        }
    }

    /// Sends a Centrifugo command with a fresh id and waits for its reply.
    async fn command(&mut self, mut command: Command) -> anyhow::Result<()> {
        let Protocol::Centrifugo(encoding) = self.protocol else {
            bail!("not a Centrifugo session");
        };
        let id = self.next_id();
        command.id = id;
        let message = centrifugo_frame(encoding, &command)?;
        self.request(id, message).await
    }

    /// Sends `message` and waits for the [`Event::Ack`] of `id`.
    async fn request(&mut self, id: u32, message: Message) -> anyhow::Result<()> {
        self.ws.send(message).await.context("send")?;
        let error = self
            .wait(|e| matches!(e, Event::Ack { id: acked, .. } if *acked == id))
            .await?;
        match error {
            Event::Ack {
                error: Some(error), ..
            } => bail!("{error}"),
            _ => Ok(()),
        }
    }

    /// Reads until an event `pick` accepts, answering pings meanwhile.
    async fn wait(&mut self, pick: impl Fn(&Event) -> bool) -> anyhow::Result<Event> {
        let mut events = Vec::new();
        loop {
            let message = match self.ws.next().await {
                Some(message) => message.context("read")?,
                None => bail!("connection closed during the handshake"),
            };
            events.clear();
            self.events(&message, &mut events)
                .map_err(|c| anyhow!("{c}"))?;
            let mut found = None;
            for event in events.drain(..) {
                match event {
                    Event::ServerError(error) => bail!("{error}"),
                    Event::Ping => self.pong().await?,
                    event if found.is_none() && pick(&event) => found = Some(event),
                    _ => {}
                }
            }
            if let Some(event) = found {
                return Ok(event);
            }
        }
    }

    /// Answers a server ping.
    pub(crate) async fn pong(&mut self) -> anyhow::Result<()> {
        let message = match self.protocol {
            Protocol::Centrifugo(encoding) => centrifugo_frame(encoding, &Command::default())?,
            Protocol::Nats => Message::Binary(Bytes::from_static(nats::PONG)),
            Protocol::SocketIo => Message::text(socketio::PONG),
        };
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

/// NATS's side of a session: messages cut by frame boundaries, and the
/// requests whose `PONG` is still due.
#[derive(Debug, Default)]
pub(crate) struct NatsStream {
    /// The tail of a protocol message cut off at a frame's end.
    partial: Vec<u8>,
    /// Request ids waiting for their `PONG`, oldest first (the server
    /// answers `PING`s in order and carries no id).
    pongs_due: VecDeque<u32>,
}

impl NatsStream {
    /// Parses the whole messages of what is left of earlier frames plus
    /// `data` into `out`, and keeps an incomplete tail for the next frame.
    pub(crate) fn events(&mut self, data: &[u8], out: &mut Vec<Event>) -> Result<(), Closed> {
        // Frames usually end on a message boundary: parse them in place and
        // copy only when a tail is pending.
        let mut joined = Vec::new();
        let buf: &[u8] = if self.partial.is_empty() {
            data
        } else {
            joined.append(&mut self.partial);
            joined.extend_from_slice(data);
            &joined
        };
        let mut used = 0;
        while let Some((op, len)) =
            nats::next_op(&buf[used..]).map_err(|e| Closed::Failed(e.to_string()))?
        {
            used += len;
            match op {
                nats::Op::Msg { payload, .. } => out.push(Event::Publication {
                    sent_ns: read_stamp(payload),
                    offset: None,
                }),
                nats::Op::Pong => {
                    if let Some(id) = self.pongs_due.pop_front() {
                        out.push(Event::Ack { id, error: None });
                    }
                }
                nats::Op::Ping => out.push(Event::Ping),
                nats::Op::Info => out.push(Event::Greeting),
                nats::Op::Ok => {}
                nats::Op::Err(text) => out.push(Event::ServerError(format!(
                    "-ERR {}",
                    String::from_utf8_lossy(text)
                ))),
            }
        }
        self.partial.extend_from_slice(&buf[used..]);
        Ok(())
    }
}

/// What one Centrifugo reply or push means to the generator.
///
/// By reference: a `Reply` is large, and moving it per delivery showed up
/// as memmove in profiles.
fn centrifugo_event(reply: &Reply) -> Option<Event> {
    if reply.id != 0 {
        return Some(Event::Ack {
            id: reply.id,
            error: reply
                .error
                .as_ref()
                .map(|e| format!("error {}: {}", e.code, e.message)),
        });
    }
    if let Some(publication) = reply.push.as_ref().and_then(|push| push.r#pub.as_ref()) {
        return Some(Event::Publication {
            sent_ns: read_stamp(&publication.data),
            offset: Some(publication.offset),
        });
    }
    reply.is_ping().then_some(Event::Ping)
}

/// A JSON publication push read by a scan instead of a decode, as the NATS client reads
/// `MSG`: the generator shares the machine with the server, and decoding every delivery into
/// a [`Reply`] (allocating its channel name and payload) cost it ≈ 2 µs of CPU per delivery —
/// more than the server spent — so at saturation the generator, not the server, was measured.
/// `None` for anything that is not exactly `{"push":{"channel":"…","pub":{"data":…,
/// …"offset":N}}}` (optionally with `,"time":T` after the offset), which then goes to the
/// full decoder.
fn json_publication(line: &[u8]) -> Option<Event> {
    let rest = line.strip_prefix(b"{\"push\":{\"channel\":\"")?;
    let quote = rest.iter().position(|b| *b == b'"')?;
    let data = rest[quote..].strip_prefix(b"\",\"pub\":{\"data\":")?;
    let tail = line.strip_suffix(b"}}}")?;
    const OFFSET: &[u8] = b"\"offset\":";
    let at = tail.windows(OFFSET.len()).rposition(|w| w == OFFSET)?;
    let (offset, after) = leading_number(&tail[at + OFFSET.len()..])?;
    // The publication time is the only field the encoder writes after the offset.
    if !after.is_empty() {
        let (_, end) = leading_number(after.strip_prefix(b",\"time\":")?)?;
        if !end.is_empty() {
            return None;
        }
    }
    Some(Event::Publication {
        sent_ns: read_stamp(data),
        offset: Some(offset),
    })
}

/// What one Socket.IO packet means to the generator.
fn socketio_event(packet: socketio::Packet<'_>) -> Result<Option<Event>, Closed> {
    use socketio::Packet;
    Ok(match packet {
        Packet::Open => Some(Event::Greeting),
        Packet::Connect => Some(Event::Connected),
        Packet::Ping => Some(Event::Ping),
        Packet::Ack { id, .. } => Some(Event::Ack { id, error: None }),
        Packet::Event { data, .. } => Some(Event::Publication {
            sent_ns: socketio::payload_of(data).and_then(|p| read_stamp(p.as_bytes())),
            offset: None,
        }),
        Packet::ConnectError(why) => Some(Event::ServerError(format!("connect error {why}"))),
        Packet::Close | Packet::Disconnect => {
            return Err(Closed::Failed("closed by the Socket.IO server".to_owned()));
        }
        Packet::Pong | Packet::Noop => None,
    })
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

/// `command` encoded and wrapped in the frame type of `encoding`.
fn centrifugo_frame(encoding: Encoding, command: &Command) -> anyhow::Result<Message> {
    let bytes = encode_command(encoding, command)?;
    Ok(if encoding.is_binary() {
        Message::Binary(bytes)
    } else {
        Message::Text(Utf8Bytes::try_from(bytes).context("JSON encoder produced invalid UTF-8")?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_pongs_ack_requests_in_order_across_frames() {
        let mut stream = NatsStream::default();
        stream.pongs_due.extend([7, 8]);
        let mut out = Vec::new();
        let stamp = crate::payload::stamped(1_763_900_000_000_000_042, 40);
        let msg = [
            format!("MSG bench-0 1 {}\r\n", stamp.len()).as_bytes(),
            &stamp[..],
            b"\r\nPONG\r\nPI",
        ]
        .concat();
        stream.events(b"INFO {}\r\n", &mut out).expect("INFO");
        // The frame ends inside a MSG and then inside a PING.
        stream.events(&msg[..20], &mut out).expect("head");
        stream.events(&msg[20..], &mut out).expect("tail");
        stream.events(b"NG\r\nPONG\r\n", &mut out).expect("rest");
        assert_eq!(
            out,
            vec![
                Event::Greeting,
                Event::Publication {
                    sent_ns: Some(1_763_900_000_000_000_042),
                    offset: None
                },
                Event::Ack { id: 7, error: None },
                Event::Ping,
                Event::Ack { id: 8, error: None },
            ]
        );
        assert!(stream.partial.is_empty() && stream.pongs_due.is_empty());
        assert!(stream.events(b"BOGUS\r\n", &mut out).is_err());
    }

    #[test]
    fn json_publications_scan_as_the_decoder_reads_them() {
        use starling_protocol::{Publication, Push, encode_reply};
        // As the server sends them: with the publisher's info and the publication time.
        let push = |offset, data: Bytes| Reply {
            push: Some(Push {
                channel: "bench-0".to_owned(),
                r#pub: Some(Publication {
                    data,
                    offset,
                    info: Some(starling_protocol::ClientInfo {
                        user: "u1".to_owned(),
                        client: "c1".to_owned(),
                        ..Default::default()
                    }),
                    time: 1_796_422_073_322,
                    ..Publication::default()
                }),
                ..Push::default()
            }),
            ..Reply::default()
        };
        let stamp = crate::payload::stamped(1_763_900_000_000_000_042, 100);
        for offset in [1, 42, u64::MAX] {
            let line = encode_reply(Encoding::Json, &push(offset, stamp.clone())).unwrap();
            let decoded = decode_replies(Encoding::Json, &line).unwrap();
            let full = centrifugo_event(&decoded[0]);
            assert!(full.is_some());
            assert_eq!(
                json_publication(&line),
                full,
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
        // What the scan does not recognise goes to the decoder: offset 0 is left out of the
        // JSON, a join push has no publication, a reply has an id.
        let line = encode_reply(Encoding::Json, &push(0, stamp)).unwrap();
        assert_eq!(json_publication(&line), None);
        assert_eq!(json_publication(br#"{"id":3,"publish":{}}"#), None);
        assert_eq!(
            json_publication(br#"{"push":{"channel":"c","join":{"info":{"client":"x"}}}}"#),
            None
        );
        // A batch of several lines yields every publication in order.
        let mut conn_stream = Vec::new();
        let a = encode_reply(Encoding::Json, &push(7, crate::payload::stamped(5, 40))).unwrap();
        let b = encode_reply(Encoding::Json, &push(8, crate::payload::stamped(6, 40))).unwrap();
        conn_stream.extend_from_slice(&a);
        conn_stream.push(b'\n');
        conn_stream.extend_from_slice(&b);
        let events: Vec<_> = conn_stream
            .split(|b| *b == b'\n')
            .filter_map(json_publication)
            .collect();
        assert_eq!(
            events,
            vec![
                Event::Publication {
                    sent_ns: Some(5),
                    offset: Some(7)
                },
                Event::Publication {
                    sent_ns: Some(6),
                    offset: Some(8)
                },
            ]
        );
    }

    #[test]
    fn socket_io_packets_become_events() {
        let event = |frame: &str| socketio_event(socketio::parse(frame).expect("packet"));
        assert_eq!(event("0{}"), Ok(Some(Event::Greeting)));
        assert_eq!(event("40{}"), Ok(Some(Event::Connected)));
        assert_eq!(event("2"), Ok(Some(Event::Ping)));
        assert_eq!(
            event("4312[]"),
            Ok(Some(Event::Ack {
                id: 12,
                error: None
            }))
        );
        assert_eq!(
            event(r#"42["msg",{"t":1763900000123456789,"p":"xx"}]"#),
            Ok(Some(Event::Publication {
                sent_ns: Some(1_763_900_000_123_456_789),
                offset: None
            }))
        );
        assert!(event("41").is_err());
        assert_eq!(event("3"), Ok(None));
    }
}
