//! Client behaviour against an in-process fake server speaking raw frames.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use starling_protocol::{
    Command, ConnectResult, Encoding, ErrorCode, FrameBuilder, Method, Publication, PublishResult,
    Push, Reply, SubscribeRequest, SubscribeResult, decode_commands, encode_reply,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::{Client, ClientError, CloseReason};

struct FakeServer {
    socket: WebSocketStream<TcpStream>,
    encoding: Encoding,
}

impl FakeServer {
    /// Binds `:0` and returns the URL plus a future accepting one connection.
    // The handshake callback's error type is tungstenite's, not ours to shrink.
    #[allow(clippy::result_large_err)]
    async fn bind() -> (String, impl Future<Output = FakeServer>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "ws://{}/connection/websocket",
            listener.local_addr().expect("addr")
        );
        let accept = async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut encoding = Encoding::Json;
            let socket = tokio_tungstenite::accept_hdr_async(
                stream,
                |request: &Request, mut response: Response| {
                    let protocol = request
                        .headers()
                        .get("Sec-WebSocket-Protocol")
                        .and_then(|v| v.to_str().ok());
                    encoding = Encoding::from_subprotocol(protocol);
                    if let Some(p) = encoding.subprotocol() {
                        response
                            .headers_mut()
                            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(p));
                    }
                    Ok(response)
                },
            )
            .await
            .expect("handshake");
            FakeServer { socket, encoding }
        };
        (url, accept)
    }

    async fn recv_commands(&mut self) -> Vec<Command> {
        loop {
            let message = self
                .socket
                .next()
                .await
                .expect("client frame")
                .expect("readable");
            let bytes: Bytes = match message {
                WsMessage::Text(text) => {
                    assert_eq!(self.encoding, Encoding::Json, "text frame on protobuf");
                    Bytes::copy_from_slice(text.as_bytes())
                }
                WsMessage::Binary(bytes) => {
                    assert_eq!(self.encoding, Encoding::Protobuf, "binary frame on JSON");
                    bytes
                }
                WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            };
            return decode_commands(self.encoding, &bytes).expect("decodes");
        }
    }

    /// Reads commands until `n` arrived (the client may batch them).
    async fn recv_n_commands(&mut self, n: usize) -> Vec<Command> {
        let mut commands = Vec::new();
        while commands.len() < n {
            commands.extend(self.recv_commands().await);
        }
        commands
    }

    async fn send(&mut self, replies: &[Reply]) {
        let mut frame = FrameBuilder::new(self.encoding);
        for reply in replies {
            frame.push(&encode_reply(self.encoding, reply).expect("encodes"));
        }
        let bytes = frame.finish();
        let message = match self.encoding {
            Encoding::Json => WsMessage::Text(bytes.try_into().expect("utf-8")),
            Encoding::Protobuf => WsMessage::Binary(bytes),
        };
        self.socket.send(message).await.expect("send");
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        self.socket.close(Some(frame)).await.expect("close");
    }

    /// Answers the connect command with `pong` as asked.
    async fn accept_connect(&mut self, pong: bool) -> Command {
        let mut commands = self.recv_commands().await;
        assert_eq!(commands.len(), 1);
        let connect = commands.remove(0);
        assert_eq!(connect.method(), Method::Connect);
        self.send(&[Reply {
            id: connect.id,
            connect: Some(ConnectResult {
                client: "c1".into(),
                ping: 25,
                pong,
                ..ConnectResult::default()
            }),
            ..Reply::default()
        }])
        .await;
        connect
    }
}

async fn connected(encoding: Encoding, answer_pings: bool) -> (Client, FakeServer) {
    let (url, accept) = FakeServer::bind().await;
    let connect = Client::builder(url)
        .encoding(encoding)
        .token("tok")
        .answer_pings(answer_pings)
        .connect();
    let server = async {
        let mut server = accept.await;
        let command = server.accept_connect(true).await;
        assert_eq!(command.connect.map(|c| c.token), Some("tok".to_owned()));
        server
    };
    let (client, server) = tokio::join!(connect, server);
    let (client, result) = client.expect("connects");
    assert_eq!(result.client, "c1");
    (client, server)
}

const ENCODINGS: [Encoding; 2] = [Encoding::Json, Encoding::Protobuf];

#[tokio::test]
async fn replies_are_routed_by_id_even_out_of_order() {
    for encoding in ENCODINGS {
        let (client, mut server) = connected(encoding, true).await;
        let subscribe = client.subscribe(SubscribeRequest {
            channel: "chat".into(),
            ..SubscribeRequest::default()
        });
        let publish = client.publish("chat", Bytes::from_static(b"{\"n\":1}"));
        let serve = async {
            let commands = server.recv_n_commands(2).await;
            let sub = commands.iter().find(|c| c.method() == Method::Subscribe);
            let publ = commands.iter().find(|c| c.method() == Method::Publish);
            let (sub_id, pub_id) = (sub.map(|c| c.id), publ.map(|c| c.id));
            assert_ne!(sub_id, pub_id);
            // Publish answered first, in one coalesced frame with the subscribe reply.
            server
                .send(&[
                    Reply {
                        id: pub_id.unwrap_or_default(),
                        publish: Some(PublishResult {}),
                        ..Reply::default()
                    },
                    Reply {
                        id: sub_id.unwrap_or_default(),
                        subscribe: Some(SubscribeResult {
                            epoch: "e".into(),
                            ..SubscribeResult::default()
                        }),
                        ..Reply::default()
                    },
                ])
                .await;
        };
        let (sub, publ, ()) = tokio::join!(subscribe, publish, serve);
        assert_eq!(sub.expect("subscribed").epoch, "e");
        publ.expect("published");
        // The server side completes the close handshake, so close() returns promptly.
        // tungstenite leaves closing the TCP connection to the server's owner.
        let drain = async move {
            while let Some(Ok(_)) = server.socket.next().await {}
            drop(server);
        };
        let started = std::time::Instant::now();
        tokio::join!(client.close(), drain);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

#[tokio::test]
async fn pushes_are_queued_in_order() {
    for encoding in ENCODINGS {
        let (client, mut server) = connected(encoding, true).await;
        let publication = |n: u64| {
            Reply::push(Push::publication(
                "chat",
                Publication {
                    data: Bytes::from(format!("{{\"n\":{n}}}")),
                    offset: n,
                    ..Publication::default()
                },
            ))
        };
        server.send(&[publication(1), publication(2)]).await;
        server.send(&[publication(3)]).await;
        for n in 1..=3 {
            let push = client.next_push().await.expect("push");
            assert_eq!(push.channel, "chat");
            assert_eq!(push.r#pub.map(|p| p.offset), Some(n));
        }
        assert!(client.try_next_push().is_none());
    }
}

#[tokio::test]
async fn server_ping_is_answered_with_an_empty_command() {
    for encoding in ENCODINGS {
        let (client, mut server) = connected(encoding, true).await;
        server.send(&[Reply::ping()]).await;
        let commands = server.recv_commands().await;
        assert_eq!(commands, vec![Command::default()]);
        assert_eq!(client.pings_received(), 1);
    }
}

#[tokio::test]
async fn ping_is_not_answered_when_turned_off() {
    let (client, mut server) = connected(Encoding::Json, false).await;
    server.send(&[Reply::ping()]).await;
    let silent = tokio::time::timeout(Duration::from_millis(200), server.recv_commands()).await;
    assert!(silent.is_err(), "client answered a ping");
    // Turning it back on answers the next one.
    client.set_answer_pings(true);
    server.send(&[Reply::ping()]).await;
    assert_eq!(server.recv_commands().await, vec![Command::default()]);
    assert_eq!(client.pings_received(), 2);
}

#[tokio::test]
async fn error_reply_becomes_client_error() {
    let (client, mut server) = connected(Encoding::Json, true).await;
    let presence = client.presence("secret");
    let serve = async {
        let command = server.recv_commands().await.remove(0);
        server
            .send(&[ErrorCode::PermissionDenied.reply(command.id)])
            .await;
    };
    let (result, ()) = tokio::join!(presence, serve);
    match result {
        Err(ClientError::Reply(error)) => assert_eq!(error.code, 103),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn server_close_is_reported_to_waiting_and_later_calls() {
    for encoding in ENCODINGS {
        let (client, mut server) = connected(encoding, true).await;
        let history = client.history(starling_protocol::HistoryRequest {
            channel: "c".into(),
            ..Default::default()
        });
        let serve = async {
            server.recv_commands().await;
            server.close(3012, "no pong").await;
        };
        let (result, ()) = tokio::join!(history, serve);
        assert!(
            matches!(result, Err(ClientError::Closed { code: 3012, ref reason }) if reason == "no pong"),
            "{result:?}"
        );
        let expected = CloseReason {
            code: 3012,
            reason: "no pong".into(),
        };
        assert_eq!(client.closed().await, expected);
        assert_eq!(client.close_reason(), Some(expected));
        assert!(matches!(
            client.ping().await,
            Err(ClientError::Closed { code: 3012, .. })
        ));
        assert!(client.next_push().await.is_none());
    }
}

#[tokio::test]
async fn dropping_the_client_closes_the_socket_normally() {
    let (client, mut server) = connected(Encoding::Json, true).await;
    drop(client);
    let close = loop {
        match server.socket.next().await {
            Some(Ok(WsMessage::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1000));
}

#[tokio::test]
async fn raw_messages_reach_the_server_verbatim() {
    let (client, mut server) = connected(Encoding::Json, true).await;
    client
        .send_raw(WsMessage::text("{\"id\":9}\n{}"))
        .await
        .expect("written");
    let commands = server.recv_commands().await;
    assert_eq!(commands.len(), 2);
    assert_eq!(commands[0].id, 9);
}

#[tokio::test]
async fn abandoned_call_does_not_disturb_later_ones() {
    let (client, mut server) = connected(Encoding::Json, true).await;
    // Give up on a call before its reply arrives.
    let abandoned = tokio::time::timeout(Duration::from_millis(50), client.ping()).await;
    assert!(abandoned.is_err());
    let first = server.recv_commands().await.remove(0);
    let rpc = client.rpc("m", Bytes::from_static(b"[1]"));
    let serve = async {
        let second = server.recv_commands().await.remove(0);
        server
            .send(&[
                Reply {
                    id: first.id,
                    ping: Some(Default::default()),
                    ..Reply::default()
                },
                Reply {
                    id: second.id,
                    rpc: Some(starling_protocol::RpcResult {
                        data: Bytes::from_static(b"\"ok\""),
                    }),
                    ..Reply::default()
                },
            ])
            .await;
    };
    let (result, ()) = tokio::join!(rpc, serve);
    assert_eq!(&result.expect("rpc").data[..], b"\"ok\"");
}
