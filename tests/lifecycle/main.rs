//! Connection lifecycle and bad input over real sockets: malformed and oversized frames,
//! heartbeats and dead clients, slow consumers, connection limits, shutdown.
//!
//! After every bad input the node must answer with the documented close code and keep serving
//! other clients (promise 6).

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use starling_client::{Client, CloseReason};
use starling_config::{Config, GoDuration};
use starling_protocol::{Command, ConnectRequest, Encoding, SubscribeRequest, encode_command};
use starling_tests::{
    BASE_CONFIG, SECRET, TestNode, WAIT, connect_as, eventually, hs256_token, next_push_where, sub,
};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Sends `message` on a fresh, not yet connected socket and returns how the server closed it.
async fn close_after_raw(
    node: &TestNode,
    encoding: Encoding,
    connect_first: bool,
    message: Message,
) -> anyhow::Result<CloseReason> {
    let client = Client::builder(node.ws_url())
        .encoding(encoding)
        .open()
        .await?;
    if connect_first {
        client
            .send_connect(ConnectRequest {
                token: hs256_token(SECRET, "fuzzer", None),
                ..Default::default()
            })
            .await?;
    }
    client.send_raw(message).await?;
    Ok(tokio::time::timeout(WAIT, client.closed()).await?)
}

async fn assert_still_serving(node: &TestNode) -> anyhow::Result<()> {
    let (client, _) = connect_as(node, "healthy", Encoding::Json).await?;
    client.subscribe(sub("health-check")).await?;
    client
        .publish("health-check", Bytes::from_static(b"1"))
        .await?;
    client.close().await;
    Ok(())
}

#[tokio::test]
async fn malformed_frames_close_with_bad_request() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let cases: Vec<(Encoding, bool, Message)> = vec![
        (Encoding::Json, true, Message::text("{not json")),
        (
            Encoding::Json,
            true,
            Message::text(r#"{"id":1,"publish":{"channel":"c","data":}}"#),
        ),
        (
            Encoding::Json,
            false,
            Message::binary(vec![0xff, 0xfe, 0x00, 0x80]),
        ),
        (Encoding::Json, true, Message::text("[".repeat(10_000))),
        // A varint length prefix promising more bytes than follow.
        (
            Encoding::Protobuf,
            true,
            Message::binary(vec![0x7f, 0x08, 0x01]),
        ),
        (Encoding::Protobuf, false, Message::binary(vec![0xff; 64])),
        // A command before connect.
        (
            Encoding::Json,
            false,
            Message::text(r#"{"id":1,"subscribe":{"channel":"x"}}"#),
        ),
        // A command without an id.
        (Encoding::Json, true, Message::text(r#"{"ping":{}}"#)),
        // Too many commands in one frame.
        (Encoding::Json, true, Message::text("{}\n".repeat(300))),
    ];
    for (encoding, connect_first, message) in cases {
        let shown = format!("{message:.60}");
        let close = close_after_raw(&node, encoding, connect_first, message).await?;
        assert_eq!(close.code, 3501, "{encoding:?} {shown}: {close}");
        assert_still_serving(&node).await?;
    }
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn oversized_message_closes_with_1009() -> anyhow::Result<()> {
    let mut config = Config::from_toml_str(BASE_CONFIG)?;
    config.websocket.message_size_limit = 4096;
    let node = TestNode::start_with(&mut config).await?;
    let big = format!(
        r#"{{"id":2,"publish":{{"channel":"c","data":"{}"}}}}"#,
        "a".repeat(8192)
    );
    let close = close_after_raw(&node, Encoding::Json, true, Message::text(big)).await?;
    assert_eq!(close.code, 1009, "{close}");
    assert_still_serving(&node).await?;
    node.stop().await;
    Ok(())
}

fn heartbeat_config() -> anyhow::Result<Config> {
    let mut config = Config::from_toml_str(BASE_CONFIG)?;
    config.client.ping_interval = GoDuration::from_millis(300);
    config.client.pong_timeout = GoDuration::from_millis(200);
    Ok(config)
}

/// Promise 7: a client that stops answering pings is found and cleaned up — connection,
/// subscription and presence.
#[tokio::test]
async fn silent_client_is_closed_with_no_pong_and_its_presence_goes() -> anyhow::Result<()> {
    let node = TestNode::start_with(&mut heartbeat_config()?).await?;
    let (watcher, _) = connect_as(&node, "watcher", Encoding::Json).await?;
    watcher.subscribe(sub("room")).await?;
    let (silent, connected) = Client::builder(node.ws_url())
        .encoding(Encoding::Protobuf)
        .token(hs256_token(SECRET, "ghost", None))
        .answer_pings(false)
        .connect()
        .await?;
    silent.subscribe(sub("room")).await?;
    let stats = watcher.presence_stats("room").await?;
    assert_eq!(stats.num_clients, 2);

    let close = tokio::time::timeout(WAIT, silent.closed()).await?;
    assert_eq!(close.code, 3012, "{close}");
    let leave = next_push_where(&watcher, |p| p.leave).await?;
    assert_eq!(leave.info.expect("info").client, connected.client);
    let stats = watcher.presence_stats("room").await?;
    assert_eq!(stats.num_clients, 1);
    assert!(
        eventually(WAIT, || async { node.node.connection_count() == 1 }).await,
        "the dead connection is gone from the node"
    );
    // The watcher answers pings and survives several rounds.
    assert!(eventually(WAIT, || async { watcher.pings_received() >= 3 }).await);
    assert!(watcher.close_reason().is_none());
    watcher.ping().await?;
    node.stop().await;
    Ok(())
}

/// Promise 8: a consumer that stops reading is disconnected with `slow` once its queue passes
/// `client.queue_max_size`; server memory for it stays bounded.
#[tokio::test]
async fn slow_consumer_is_disconnected_with_slow() -> anyhow::Result<()> {
    let mut config = Config::from_toml_str(BASE_CONFIG)?;
    config.client.queue_max_size = 64 * 1024;
    let node = TestNode::start_with(&mut config).await?;

    // A raw socket that subscribes and then never reads again.
    let request = node.ws_url().into_client_request()?;
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let connect = Command {
        id: 1,
        connect: Some(ConnectRequest {
            token: hs256_token(SECRET, "sloth", None),
            ..Default::default()
        }),
        ..Default::default()
    };
    let subscribe = Command {
        id: 2,
        subscribe: Some(SubscribeRequest {
            channel: "plain:firehose".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    for command in [connect, subscribe] {
        let frame = encode_command(Encoding::Json, &command)?;
        socket
            .send(Message::text(String::from_utf8(frame.to_vec())?))
            .await?;
    }
    assert!(
        eventually(WAIT, || async {
            node.node.metrics().snapshot().subscriptions == 1
        })
        .await
    );

    let payload = Bytes::from(format!("\"{}\"", "x".repeat(16 * 1024)));
    let mut published = 0;
    while node.node.metrics().snapshot().slow_consumer_disconnects == 0 {
        assert!(
            published < 20_000,
            "no slow-consumer disconnect after {published} publications"
        );
        node.node
            .publish("plain:firehose", payload.clone(), None, BTreeMap::new())
            .await?;
        published += 1;
    }

    // Reading now drains what the kernel buffered, then the close frame says why.
    let close = tokio::time::timeout(WAIT, async {
        while let Some(message) = socket.next().await {
            if let Message::Close(frame) = message? {
                return anyhow::Ok(frame.map(|f| f.code));
            }
        }
        anyhow::Ok(None)
    })
    .await??;
    assert_eq!(close, Some(CloseCode::from(3008)));
    assert!(eventually(WAIT, || async { node.node.connection_count() == 0 }).await);
    assert_still_serving(&node).await?;
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn connection_limit_closes_extra_connections() -> anyhow::Result<()> {
    let mut config = Config::from_toml_str(BASE_CONFIG)?;
    config.client.connection_limit = 2;
    let node = TestNode::start_with(&mut config).await?;
    let (_a, _) = connect_as(&node, "a", Encoding::Json).await?;
    let (_b, _) = connect_as(&node, "b", Encoding::Json).await?;
    let third = Client::builder(node.ws_url()).open().await?;
    let close = tokio::time::timeout(WAIT, third.closed()).await?;
    assert_eq!(close.code, 3504, "{close}");
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_tells_clients_to_reconnect() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let (json, _) = connect_as(&node, "a", Encoding::Json).await?;
    let (proto, _) = connect_as(&node, "b", Encoding::Protobuf).await?;
    json.subscribe(sub("bye")).await?;
    node.stop().await;
    for client in [&json, &proto] {
        let close = tokio::time::timeout(WAIT, client.closed()).await?;
        assert_eq!(close.code, 3001, "{close}");
    }
    Ok(())
}

#[tokio::test]
async fn per_ip_limit_refuses_with_3504_until_a_slot_frees() -> anyhow::Result<()> {
    let mut config = Config::from_toml_str(BASE_CONFIG)?;
    config.client.connection_limit_per_ip = 2;
    let node = TestNode::start_with(&mut config).await?;
    let (first, _) = connect_as(&node, "a", Encoding::Json).await?;
    let (_second, _) = connect_as(&node, "b", Encoding::Json).await?;
    let third = Client::builder(node.ws_url()).open().await?;
    let close = tokio::time::timeout(WAIT, third.closed()).await?;
    assert_eq!(close.code, 3504, "{close}");
    assert_eq!(node.node.metrics().errors_by_code().get(&3504), Some(&1));
    first.close().await;
    assert!(eventually(WAIT, || async { node.node.connection_count() == 1 }).await);
    connect_as(&node, "c", Encoding::Json).await?;
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn connection_rate_limit_queues_a_storm_instead_of_refusing_it() -> anyhow::Result<()> {
    // Promise 9: 12 connections at once against 5 per second with a 2 s queue: 5 from the
    // burst, 7 queued and admitted at the rate; none refused.
    let mut config = Config::from_toml_str(BASE_CONFIG)?;
    config.client.connection_rate_limit = 5;
    config.client.connection_queue_timeout = GoDuration::from_secs(2);
    let node = TestNode::start_with(&mut config).await?;
    let connects = (0..12).map(|i| {
        let node = &node;
        async move { connect_as(node, &format!("storm{i}"), Encoding::Json).await }
    });
    let results = futures_util::future::join_all(connects).await;
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(failed.is_empty(), "refused: {failed:?}");
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn connection_rate_limit_refuses_with_3013() -> anyhow::Result<()> {
    let mut config = Config::from_toml_str(BASE_CONFIG)?;
    config.client.connection_rate_limit = 3;
    config.client.connection_queue_timeout = GoDuration::from_secs(0);
    let node = TestNode::start_with(&mut config).await?;
    let mut codes = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..6 {
        let client = Client::builder(node.ws_url()).open().await?;
        clients.push(client);
    }
    for client in &clients {
        let code = tokio::time::timeout(std::time::Duration::from_millis(300), client.closed())
            .await
            .map(|close| close.code)
            .unwrap_or(0);
        codes.push(code);
    }
    // A burst of one second's worth (3) is admitted; the rest of the burst is refused with
    // 3013, which SDKs answer by reconnecting with backoff.
    let refused = codes.iter().filter(|c| **c == 3013).count();
    assert!(refused >= 2, "codes {codes:?}");
    assert!(
        codes.iter().filter(|c| **c == 0).count() >= 3,
        "codes {codes:?}"
    );
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn command_rate_limit_answers_too_many_requests() -> anyhow::Result<()> {
    let mut config = Config::from_toml_str(BASE_CONFIG)?;
    config.client.command_rate_limit = 1;
    config.client.command_rate_burst = 5;
    let node = TestNode::start_with(&mut config).await?;
    let (client, _) = connect_as(&node, "chatty", Encoding::Json).await?;
    let mut limited = 0;
    for _ in 0..10 {
        match client.ping().await {
            Ok(()) => {}
            Err(starling_client::ClientError::Reply(error)) => {
                assert_eq!(error.code, 111);
                limited += 1;
            }
            Err(other) => return Err(other.into()),
        }
    }
    // The connect command took one token of the burst of 5.
    assert!(limited >= 5, "{limited} of 10 pings limited");
    // Limited, not disconnected: pongs still flow and the connection stays.
    assert!(client.close_reason().is_none());
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn channel_names_with_whitespace_or_non_ascii_are_bad_requests() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let (client, _) = connect_as(&node, "namer", Encoding::Json).await?;
    for name in ["two words", "caf\u{e9}", "tab\there"] {
        match client.subscribe(sub(name)).await {
            Err(starling_client::ClientError::Reply(error)) => {
                assert_eq!(error.code, 107, "{name:?}")
            }
            other => panic!("{name:?}: expected error 107, got {other:?}"),
        }
    }
    client.subscribe(sub("news/2026.11-23_a@b=c")).await?;
    node.stop().await;
    Ok(())
}

/// Cross-Site WebSocket Hijacking: a browser page on another site is refused at the handshake
/// (HTTP 403); same-origin pages, allowed origins and non-browser clients get through.
#[tokio::test]
async fn origin_check_refuses_foreign_pages_at_the_handshake() -> anyhow::Result<()> {
    async fn handshake_status(node: &TestNode, origin: Option<&str>) -> anyhow::Result<u16> {
        let mut request = node.ws_url().into_client_request()?;
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse()?);
        }
        Ok(match tokio_tungstenite::connect_async(request).await {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                response.status().as_u16()
            }
            Err(other) => return Err(other.into()),
        })
    }

    // Default (empty list): same-origin only.
    let node = TestNode::start(BASE_CONFIG).await?;
    let same = format!("http://{}", node.http_addr);
    assert_eq!(handshake_status(&node, Some(&same)).await?, 101);
    assert_eq!(handshake_status(&node, None).await?, 101);
    assert_eq!(
        handshake_status(&node, Some("https://evil.example")).await?,
        403
    );
    assert_eq!(node.node.metrics().snapshot().origin_rejections, 1);
    node.stop().await;

    let mut config = Config::from_toml_str(BASE_CONFIG)?;
    config.client.allowed_origins = vec!["https://*.good.example".into()];
    let node = TestNode::start_with(&mut config).await?;
    assert_eq!(
        handshake_status(&node, Some("https://app.good.example")).await?,
        101
    );
    assert_eq!(
        handshake_status(&node, Some("https://good.example.evil")).await?,
        403
    );
    assert_still_serving(&node).await?;
    node.stop().await;
    Ok(())
}

/// Promise 6, no leaks: thousands of connections that connect, subscribe and go leave no task,
/// connection, room entry or subscription behind once their timers have nothing to hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churned_connections_leave_no_tasks_or_state_behind() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    // Warm up: one full cycle so lazily started runtime tasks exist before the baseline.
    let (warm, _) = connect_as(&node, "warm", Encoding::Json).await?;
    warm.subscribe(sub("plain:churn")).await?;
    warm.close().await;
    assert!(eventually(WAIT, || async { node.node.connection_count() == 0 }).await);
    let baseline = alive();
    for round in 0..20 {
        let mut clients = Vec::new();
        for i in 0..100 {
            let (client, _) = connect_as(&node, &format!("c{round}-{i}"), Encoding::Json).await?;
            client
                .subscribe(sub(&format!("plain:churn-{}", i % 10)))
                .await?;
            clients.push(client);
        }
        for client in clients {
            client.close().await;
        }
    }
    let settled = eventually(std::time::Duration::from_secs(10), || async {
        node.node.connection_count() == 0
            && node.node.metrics().snapshot().subscriptions == 0
            && node.node.room_count() == 0
            && alive() <= baseline + 5
    })
    .await;
    assert!(
        settled,
        "after churn: {} connections, {} subscriptions, {} rooms, {} tasks (baseline {baseline})",
        node.node.connection_count(),
        node.node.metrics().snapshot().subscriptions,
        node.node.room_count(),
        alive()
    );
    node.stop().await;
    Ok(())
}
