//! Unidirectional SSE for plain `EventSource` clients: `GET /connection/uni_sse?cf_connect=<JSON
//! ConnectRequest>` (or `POST` with it as the body).
//!
//! The client sends nothing after the connect: its subscriptions are the server-side ones (the
//! personal channel, the token's `channels` claim, server API subscribes). The server writes
//! `Push` objects, as Centrifugo does on unidirectional transports — first
//! `{"connect": {...}}`, then `{"channel": .., "pub": {..}}` and the rest — each as one SSE
//! event, pings as `event: ping` with empty data, and a `{"disconnect": ..}` push before it
//! ends the stream.
//!
//! Every event carries an `id` with the stream positions of all recoverable subscriptions (see
//! `event_id`). When the browser reconnects it sends the last one back as `Last-Event-ID`, and
//! each room recovers from its own position: the connect push's `subs` then hold, per channel,
//! `was_recovering: true` with `recovered: true` and the missed publications, or
//! `recovered: false` when the room's history no longer covers the gap (the client should
//! reload that channel's state from the application).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use starling_node::{Close, Node, Resume, TransportMode};
use starling_protocol::{
    Command, Connect, ConnectRequest, ConnectResult, DisconnectCode, Encoding, ErrorCode, Push,
    Reply, StreamPosition, decode_replies,
};
use tracing::{info, warn};

use crate::event_id::{self, channel_digest};
use crate::sse::{ConnectParam, EVENT_STREAM, connect_data};
use crate::stream::open_stream;
use crate::stream::{Flow, Framer, TransportError, check_handshake, disconnect_of, sse_data};

/// Command id of the connect the transport sends for the client.
const CONNECT_ID: u32 = 1;

pub(crate) async fn uni_sse(
    State(node): State<Node>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    method: Method,
    query: Result<Query<ConnectParam>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match open(node, remote, method, query, headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn open(
    node: Node,
    remote: SocketAddr,
    method: Method,
    query: Result<Query<ConnectParam>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, TransportError> {
    check_handshake(&node, &headers)?;
    let data = connect_data(&node, method, query, body).await?;
    // No connect request at all is an anonymous connect, which the node refuses unless
    // anonymous connections are allowed.
    let request: ConnectRequest = if data.iter().all(u8::is_ascii_whitespace) {
        ConnectRequest::default()
    } else {
        serde_json::from_slice(&data)
            .map_err(|source| TransportError::MalformedConnect { source })?
    };
    let command = Command {
        id: CONNECT_ID,
        connect: Some(request),
        ..Command::default()
    };
    // The JSON codec's encoding of a command (what `encode_command` does for JSON); it fails
    // only for a `data` that is not JSON, which parsing above already ruled out.
    let connect = Bytes::from(
        serde_json::to_vec(&command)
            .map_err(|source| TransportError::MalformedConnect { source })?,
    );
    let mode = TransportMode::Unidirectional(resume_from(&headers));
    Ok(open_stream(
        &node,
        "uni_sse",
        remote,
        Encoding::Json,
        mode,
        EVENT_STREAM,
        UniSseFramer::default(),
        connect,
    )
    .await)
}

/// The positions in the request's `Last-Event-ID`, as the connection's lookup. An id that does
/// not decode is logged and ignored: the connect is then a fresh one (`was_recovering: false`).
fn resume_from(headers: &HeaderMap) -> Resume {
    let Some(id) = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
    else {
        return Resume::none();
    };
    match event_id::decode(id) {
        Ok(positions) if positions.is_empty() => Resume::none(),
        Ok(positions) => {
            Resume::with(move |channel| positions.get(&channel_digest(channel)).cloned())
        }
        Err(error) => {
            info!(%error, "uni_sse: ignoring Last-Event-ID");
            Resume::none()
        }
    }
}

/// Writes pushes as SSE events and keeps the positions the event ids carry.
#[derive(Default)]
struct UniSseFramer {
    /// Last position sent, per recoverable subscription.
    positions: BTreeMap<String, StreamPosition>,
    /// `positions` encoded; rebuilt only when a position moved.
    id: String,
    stale: bool,
}

impl UniSseFramer {
    /// One reply of the connection, as the uni client should see it.
    fn reply(&mut self, reply: Reply, out: &mut BytesMut) -> Flow {
        if reply == Reply::default() {
            // The server ping.
            out.extend_from_slice(b"event: ping\ndata:\n\n");
            return Flow::Continue;
        }
        if let Some(error) = reply.error {
            // Only the connect can fail: there are no other commands.
            let close: Close = connect_refusal(error.code).into();
            self.event(&disconnect_push(&close), out);
            return Flow::End;
        }
        if let Some(result) = reply.connect {
            for (channel, sub) in &result.subs {
                self.track(channel, sub.recoverable, sub.offset, &sub.epoch);
            }
            let push = Push {
                connect: Some(connect_push(result)),
                ..Push::default()
            };
            self.event(&push, out);
            return Flow::Continue;
        }
        if let Some(push) = reply.push {
            self.observe(&push);
            self.event(&push, out);
        }
        Flow::Continue
    }

    /// Moves the positions by what `push` tells the client.
    fn observe(&mut self, push: &Push) {
        if let Some(publication) = &push.r#pub {
            // Offset 0: a publication outside the stream (no history), which moves nothing.
            if publication.offset > 0
                && let Some(position) = self.positions.get_mut(&push.channel)
            {
                position.offset = publication.offset;
                self.stale = true;
            }
        } else if let Some(subscribe) = &push.subscribe {
            self.track(
                &push.channel,
                subscribe.recoverable,
                subscribe.offset,
                &subscribe.epoch,
            );
        } else if push.unsubscribe.is_some() && self.positions.remove(&push.channel).is_some() {
            self.stale = true;
        }
    }

    fn track(&mut self, channel: &str, recoverable: bool, offset: u64, epoch: &str) {
        if recoverable && !epoch.is_empty() {
            self.positions.insert(
                channel.to_owned(),
                StreamPosition {
                    offset,
                    epoch: epoch.to_owned(),
                },
            );
            self.stale = true;
        }
    }

    /// One `message` event: the id of the positions after it, then the push.
    fn event(&mut self, push: &Push, out: &mut BytesMut) {
        let json = match serde_json::to_vec(push) {
            Ok(json) => json,
            Err(error) => {
                warn!(%error, "uni_sse: cannot encode push");
                return;
            }
        };
        if self.stale {
            self.id = event_id::encode(&self.positions);
            self.stale = false;
        }
        // Every event carries the id, even an unchanged one, so a client that reconnects
        // after any event resumes from exactly there.
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(b"\n");
        sse_data(&json, out);
        out.extend_from_slice(b"\n");
    }
}

impl Framer for UniSseFramer {
    fn frames(&mut self, frames: &[Bytes], out: &mut BytesMut) -> Flow {
        for frame in frames {
            let replies = match decode_replies(Encoding::Json, frame) {
                Ok(replies) => replies,
                Err(error) => {
                    // The node encodes every frame; one that does not decode is a bug.
                    warn!(%error, "uni_sse: cannot decode an outbound frame");
                    continue;
                }
            };
            for reply in replies {
                if self.reply(reply, out) == Flow::End {
                    return Flow::End;
                }
            }
        }
        Flow::Continue
    }

    fn close(&mut self, close: &Close, out: &mut BytesMut) {
        self.event(&disconnect_push(close), out);
    }
}

fn disconnect_push(close: &Close) -> Push {
    Push {
        disconnect: Some(disconnect_of(close)),
        ..Push::default()
    }
}

/// A unidirectional client cannot retry a command, so a refused connect becomes a disconnect,
/// as in Centrifugo: an expired token → 3005 (reconnect with a fresh token), no or bad
/// credentials → 3500, no permission → 3507, rate limited → 3013, anything else → 3004.
fn connect_refusal(error_code: u32) -> DisconnectCode {
    match error_code {
        c if c == ErrorCode::TokenExpired.code() || c == ErrorCode::Expired.code() => {
            DisconnectCode::Expired
        }
        c if c == ErrorCode::Unauthorized.code() => DisconnectCode::InvalidToken,
        c if c == ErrorCode::PermissionDenied.code() => DisconnectCode::PermissionDenied,
        c if c == ErrorCode::TooManyRequests.code() => DisconnectCode::TooManyRequests,
        _ => DisconnectCode::ServerError,
    }
}

/// The connect reply's result as the `connect` push of unidirectional transports.
fn connect_push(result: ConnectResult) -> Connect {
    Connect {
        client: result.client,
        version: result.version,
        data: result.data,
        subs: result.subs,
        expires: result.expires,
        ttl: result.ttl,
        ping: result.ping,
        pong: result.pong,
        session: result.session,
        node: result.node,
        time: result.time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::{Publication, SubscribeResult, encode_reply};

    fn frame(reply: &Reply) -> Bytes {
        encode_reply(Encoding::Json, reply).unwrap()
    }

    fn connect_reply(channel: &str, offset: u64) -> Reply {
        let mut subs = BTreeMap::new();
        subs.insert(
            channel.to_string(),
            SubscribeResult {
                recoverable: true,
                positioned: true,
                offset,
                epoch: "AbCdEfGh".into(),
                ..SubscribeResult::default()
            },
        );
        Reply {
            id: CONNECT_ID,
            connect: Some(ConnectResult {
                client: "c1".into(),
                subs,
                ..ConnectResult::default()
            }),
            ..Reply::default()
        }
    }

    fn publication(channel: &str, offset: u64) -> Reply {
        Reply::push(Push {
            channel: channel.into(),
            r#pub: Some(Publication {
                offset,
                data: Bytes::from_static(b"{\"n\":1}"),
                ..Publication::default()
            }),
            ..Push::default()
        })
    }

    /// (id, data) of each event in `out`.
    fn events(out: &[u8]) -> Vec<(Option<String>, String)> {
        std::str::from_utf8(out)
            .unwrap()
            .split_terminator("\n\n")
            .map(|event| {
                let mut id = None;
                let mut data = String::new();
                for line in event.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    } else if line == "id: " || line == "id:" {
                        id = Some(String::new());
                    }
                }
                (id, data)
            })
            .collect()
    }

    #[test]
    fn connect_and_publications_become_pushes_with_advancing_positions() {
        let mut framer = UniSseFramer::default();
        let mut out = BytesMut::new();
        let flow = framer.frames(
            &[
                frame(&connect_reply("news", 4)),
                frame(&publication("news", 5)),
            ],
            &mut out,
        );
        assert_eq!(flow, Flow::Continue);
        let events = events(&out);
        assert_eq!(events.len(), 2);
        let connect: serde_json::Value = serde_json::from_str(&events[0].1).unwrap();
        assert_eq!(connect["connect"]["client"], "c1");
        assert_eq!(connect["connect"]["subs"]["news"]["offset"], 4);
        let publication: serde_json::Value = serde_json::from_str(&events[1].1).unwrap();
        assert_eq!(publication["channel"], "news");
        assert_eq!(publication["pub"]["offset"], 5);

        let at = |event: &(Option<String>, String)| {
            let id = event.0.as_deref().unwrap();
            event_id::decode(id).unwrap()[&channel_digest("news")].clone()
        };
        assert_eq!(at(&events[0]).offset, 4);
        assert_eq!(at(&events[1]).offset, 5);
        assert_eq!(at(&events[1]).epoch, "AbCdEfGh");
    }

    #[test]
    fn pings_are_named_events_without_id() {
        let mut framer = UniSseFramer::default();
        let mut out = BytesMut::new();
        framer.frames(&[frame(&Reply::default())], &mut out);
        assert_eq!(&out[..], b"event: ping\ndata:\n\n");
    }

    #[test]
    fn refused_connect_ends_the_stream_with_a_disconnect() {
        let mut framer = UniSseFramer::default();
        let mut out = BytesMut::new();
        let error = Reply::error(CONNECT_ID, ErrorCode::Unauthorized.to_error());
        assert_eq!(framer.frames(&[frame(&error)], &mut out), Flow::End);
        let events = events(&out);
        let push: serde_json::Value = serde_json::from_str(&events[0].1).unwrap();
        assert_eq!(push["disconnect"]["code"], 3500);
    }

    #[test]
    fn unsubscribe_drops_the_channel_from_the_id() {
        let mut framer = UniSseFramer::default();
        let mut out = BytesMut::new();
        let unsubscribe = Reply::push(Push {
            channel: "news".into(),
            unsubscribe: Some(starling_protocol::Unsubscribe::default()),
            ..Push::default()
        });
        framer.frames(
            &[frame(&connect_reply("news", 1)), frame(&unsubscribe)],
            &mut out,
        );
        let events = events(&out);
        assert_eq!(events[1].0.as_deref(), Some(""));
    }

    #[test]
    fn connect_refusals_map_to_disconnect_codes() {
        assert_eq!(
            connect_refusal(ErrorCode::TokenExpired.code()),
            DisconnectCode::Expired
        );
        assert_eq!(
            connect_refusal(ErrorCode::Unauthorized.code()),
            DisconnectCode::InvalidToken
        );
        assert_eq!(
            connect_refusal(ErrorCode::Internal.code()),
            DisconnectCode::ServerError
        );
    }
}
