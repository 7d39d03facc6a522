//! A minimal stand-in for a Starling node, for the generator's own tests:
//! it accepts `connect`, `subscribe` and `publish` (JSON or Protobuf),
//! broadcasts every publication to every subscriber with increasing
//! offsets, and pings each connection once after it subscribes, counting
//! the pongs that come back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use starling_protocol::{
    ConnectResult, Encoding, Publication, PublishResult, Push, Reply, SubscribeResult,
    decode_commands, encode_reply,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// What the fake server saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Empty commands (pongs) received.
    pub(crate) pongs: AtomicU64,
    /// Publish commands received.
    pub(crate) publishes: AtomicU64,
}

/// Starts the fake server on an ephemeral loopback port.
pub(crate) async fn start() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let seen = Arc::new(Seen::default());
    let (publications, _) = broadcast::channel::<Reply>(1024);
    let offsets = Arc::new(AtomicU64::new(0));
    let state = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(
                stream,
                state.clone(),
                publications.clone(),
                offsets.clone(),
            ));
        }
    });
    (addr, seen)
}

async fn serve(
    stream: TcpStream,
    seen: Arc<Seen>,
    publications: broadcast::Sender<Reply>,
    offsets: Arc<AtomicU64>,
) {
    let mut encoding = Encoding::Json;
    // The callback's Result type is tungstenite's, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| {
        let protocol = request
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|value| value.to_str().ok());
        encoding = Encoding::from_subprotocol(protocol);
        if let Some(protocol) = encoding.subprotocol() {
            response
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
        }
        Ok(response)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let send = |reply: &Reply| {
        let bytes = encode_reply(encoding, reply).expect("encode reply");
        if encoding.is_binary() {
            Message::Binary(bytes)
        } else {
            Message::Text(bytes.try_into().expect("JSON is UTF-8"))
        }
    };
    let mut subscribed: Option<broadcast::Receiver<Reply>> = None;
    loop {
        let next_publication = async {
            match subscribed.as_mut() {
                Some(receiver) => receiver.recv().await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = ws.next() => {
                let data = match message {
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(_)) => continue,
                    _ => return,
                };
                for command in decode_commands(encoding, &data).expect("decodable command") {
                    let mut reply = Reply { id: command.id, ..Reply::default() };
                    if command.connect.is_some() {
                        reply.connect = Some(ConnectResult {
                            client: "fake".to_owned(),
                            ..ConnectResult::default()
                        });
                    } else if command.subscribe.is_some() {
                        subscribed = Some(publications.subscribe());
                        reply.subscribe = Some(SubscribeResult::default());
                        // Then a server ping, which the generator must answer.
                        let _ = ws.send(send(&reply)).await;
                        reply = Reply::ping();
                    } else if let Some(publish) = command.publish {
                        seen.publishes.fetch_add(1, Ordering::Relaxed);
                        let offset = offsets.fetch_add(1, Ordering::Relaxed) + 1;
                        let publication = Publication {
                            data: publish.data,
                            offset,
                            ..Publication::default()
                        };
                        let _ = publications.send(Reply::push(Push::publication(publish.channel, publication)));
                        reply.publish = Some(PublishResult {});
                    } else {
                        seen.pongs.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if ws.send(send(&reply)).await.is_err() {
                        return;
                    }
                }
            }
            Some(publication) = next_publication => {
                if ws.send(send(&publication)).await.is_err() {
                    return;
                }
            }
        }
    }
}
