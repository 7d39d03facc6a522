//! The HTTP fallback transports over real HTTP: HTTP-streaming and SSE with bidirectional
//! emulation (`/connection/http_stream`, `/connection/sse`, `/emulation`) and unidirectional
//! SSE (`/connection/uni_sse`) — their framing, and the documented answer to each bad request,
//! with the node still serving afterwards. The SDK-level checks are the interop tests.
//!
//! Requests go out through [`http`], a minimal streaming HTTP/1.1 client on a `TcpStream`.

mod http;

use anyhow::Context as _;
use serde_json::{Value, json};
use starling_tests::{BASE_CONFIG, SECRET, TestNode, hs256_token, sign_hs256};

use crate::http::{Stream, request};

/// Opens an HTTP-streaming connection for `user` and returns the stream and the connect result.
async fn http_stream_as(node: &TestNode, user: &str) -> anyhow::Result<(Stream, Value)> {
    let connect = json!({"id": 1, "connect": {"token": hs256_token(SECRET, user, None)}});
    let mut stream = request(
        node.http_addr,
        "POST",
        "/connection/http_stream",
        &[("Content-Type", "application/json")],
        connect.to_string().as_bytes(),
    )
    .await?;
    assert_eq!(stream.status, 200);
    let reply = next_json_line(&mut stream).await?;
    let result = reply["connect"].clone();
    assert!(result["session"].is_string(), "no session in {reply}");
    Ok((stream, result))
}

async fn next_json_line(stream: &mut Stream) -> anyhow::Result<Value> {
    let line = stream
        .until(b"\n")
        .await?
        .context("stream ended before a line")?;
    serde_json::from_slice(&line).with_context(|| format!("{:?}", String::from_utf8_lossy(&line)))
}

/// The next SSE event's `data`, parsed, and its `id` if it had one.
async fn next_sse_event(stream: &mut Stream) -> anyhow::Result<(Option<String>, Value)> {
    let event = stream
        .until(b"\n\n")
        .await?
        .context("stream ended before an event")?;
    let text = String::from_utf8(event)?;
    let mut id = None;
    let mut data = String::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim_start().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim_start());
        }
    }
    Ok((
        id,
        serde_json::from_str(&data).with_context(|| text.clone())?,
    ))
}

async fn emulate(node: &TestNode, body: &[u8], content_type: &str) -> anyhow::Result<u16> {
    let mut response = request(
        node.http_addr,
        "POST",
        "/emulation",
        &[("Content-Type", content_type)],
        body,
    )
    .await?;
    response.rest().await?;
    Ok(response.status)
}

/// Checks that the node still opens and serves a fresh HTTP-streaming connection.
async fn still_serving(node: &TestNode) -> anyhow::Result<()> {
    let (mut stream, connect) = http_stream_as(node, "probe").await?;
    let ping = json!({"session": connect["session"], "node": connect["node"],
        "data": json!({"id": 2, "ping": {}}).to_string()});
    assert_eq!(
        emulate(node, ping.to_string().as_bytes(), "application/json").await?,
        204
    );
    let reply = next_json_line(&mut stream).await?;
    assert_eq!(reply["id"], 2, "{reply}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_stream_commands_go_through_emulation_and_replies_come_down_the_stream()
-> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let (mut stream, connect) = http_stream_as(&node, "alice").await?;
    assert_eq!(connect["node"], node.node.name());
    assert_eq!(connect["pong"], true);
    let commands = [
        json!({"id": 2, "subscribe": {"channel": "news"}}).to_string(),
        json!({"id": 3, "publish": {"channel": "news", "data": {"n": 1}}}).to_string(),
    ]
    .join("\n");
    let body = json!({"session": connect["session"], "node": connect["node"], "data": commands});
    assert_eq!(
        emulate(&node, body.to_string().as_bytes(), "application/json").await?,
        204
    );
    // Subscribe reply, join push, publish reply and the publication, in the room's order.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next_json_line(&mut stream).await?);
    }
    assert!(
        seen.iter()
            .any(|r| r["id"] == 2 && r["subscribe"].is_object()),
        "{seen:?}"
    );
    assert!(seen.iter().any(|r| r["id"] == 3), "{seen:?}");
    assert!(
        seen.iter().any(|r| r["push"]["pub"]["data"]["n"] == 1),
        "{seen:?}"
    );
    node.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulation_requests_get_their_documented_statuses_and_the_node_keeps_serving()
-> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let (_stream, connect) = http_stream_as(&node, "alice").await?;
    let name = node.node.name().to_owned();
    let ping = json!({"id": 9, "ping": {}}).to_string();

    // A session this node does not hold: 204, as Centrifugo answers, and nothing happens.
    let unknown = json!({"session": "no-such-session", "node": name, "data": ping});
    assert_eq!(
        emulate(&node, unknown.to_string().as_bytes(), "application/json").await?,
        204
    );
    // Another node's session: 404, the SDK then closes its transport and reconnects.
    let elsewhere = json!({"session": connect["session"], "node": "other-node", "data": ping});
    assert_eq!(
        emulate(&node, elsewhere.to_string().as_bytes(), "application/json").await?,
        404
    );
    // Malformed bodies: 400.
    for body in [
        &b"not json"[..],
        br#"{"node":"x"}"#,
        br#"{"session":"s","node":"n","data":{"id":1}}"#,
    ] {
        assert_eq!(
            emulate(&node, body, "application/json").await?,
            400,
            "{body:?}"
        );
    }
    assert_eq!(
        emulate(&node, b"\xff\xff\xff", "application/octet-stream").await?,
        400
    );
    // Over websocket.message_size_limit (64 KiB): 413.
    let huge = vec![b' '; 70_000];
    assert_eq!(emulate(&node, &huge, "application/json").await?, 413);
    // Other methods: 405; the CORS pre-flight: 204.
    let mut get = request(node.http_addr, "GET", "/emulation", &[], b"").await?;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST, OPTIONS"));
    get.rest().await?;
    let mut options = request(node.http_addr, "OPTIONS", "/emulation", &[], b"").await?;
    assert_eq!(options.status, 204);
    options.rest().await?;

    still_serving(&node).await?;
    node.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_commands_over_emulation_end_the_stream_with_a_disconnect_push()
-> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let (mut stream, connect) = http_stream_as(&node, "alice").await?;
    let body = json!({"session": connect["session"], "node": connect["node"], "data": "{not json"});
    assert_eq!(
        emulate(&node, body.to_string().as_bytes(), "application/json").await?,
        204
    );
    let push = next_json_line(&mut stream).await?;
    assert_eq!(push["push"]["disconnect"]["code"], 3501, "{push}");
    assert!(
        stream.rest().await?.is_empty(),
        "nothing after the disconnect push"
    );
    // The session is gone with its connection.
    let ping = json!({"session": connect["session"], "node": connect["node"],
        "data": json!({"id": 2, "ping": {}}).to_string()});
    assert_eq!(
        emulate(&node, ping.to_string().as_bytes(), "application/json").await?,
        204
    );
    still_serving(&node).await?;
    node.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reaches_streaming_clients_as_a_disconnect_push() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let (mut stream, _) = http_stream_as(&node, "alice").await?;
    let token = hs256_token(SECRET, "bob", None);
    let connect = json!({"id": 1, "connect": {"token": token}}).to_string();
    let path = format!("/connection/sse?cf_connect={}", urlencode(&connect));
    let mut sse = request(node.http_addr, "GET", &path, &[], b"").await?;
    assert_eq!(sse.status, 200);
    assert_eq!(
        sse.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let (_, reply) = next_sse_event(&mut sse).await?;
    assert!(reply["connect"]["session"].is_string(), "{reply}");
    let stop = tokio::spawn(node.stop());
    let push = next_json_line(&mut stream).await?;
    assert_eq!(push["push"]["disconnect"]["code"], 3001, "{push}");
    let (_, push) = next_sse_event(&mut sse).await?;
    assert_eq!(push["push"]["disconnect"]["code"], 3001, "{push}");
    stop.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_requests_without_a_connect_or_with_a_bad_one_are_refused() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let cases: [(&str, &str, &[u8], u16); 6] = [
        ("POST", "/connection/http_stream", b"", 400),
        ("GET", "/connection/http_stream", b"", 405),
        ("GET", "/connection/sse", b"", 400),
        ("PUT", "/connection/sse", b"", 405),
        (
            "GET",
            "/connection/uni_sse?cf_connect=%7Bnot%20json",
            b"",
            400,
        ),
        ("POST", "/connection/uni_sse", b"[1,2]", 400),
    ];
    for (method, path, body, status) in cases {
        let mut response = request(node.http_addr, method, path, &[], body).await?;
        assert_eq!(response.status, status, "{method} {path}");
        response.rest().await?;
    }
    // A connect over the limit: 413.
    let huge = vec![b' '; 70_000];
    let mut response = request(
        node.http_addr,
        "POST",
        "/connection/http_stream",
        &[],
        &huge,
    )
    .await?;
    assert_eq!(response.status, 413);
    response.rest().await?;
    still_serving(&node).await?;
    node.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uni_sse_refused_connect_is_a_disconnect_event() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    // No token and anonymous connections not allowed: 3500, and the stream ends.
    let mut sse = request(node.http_addr, "GET", "/connection/uni_sse", &[], b"").await?;
    assert_eq!(sse.status, 200);
    let (_, push) = next_sse_event(&mut sse).await?;
    assert_eq!(push["disconnect"]["code"], 3500, "{push}");
    assert!(sse.rest().await?.is_empty());
    // A garbage token: the connection closes with 3500 too.
    let path = format!(
        "/connection/uni_sse?cf_connect={}",
        urlencode(r#"{"token":"x.y.z"}"#)
    );
    let mut sse = request(node.http_addr, "GET", &path, &[], b"").await?;
    let (_, push) = next_sse_event(&mut sse).await?;
    assert_eq!(push["disconnect"]["code"], 3500, "{push}");
    still_serving(&node).await?;
    node.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uni_sse_resumes_each_room_from_last_event_id() -> anyhow::Result<()> {
    let node = TestNode::start(BASE_CONFIG).await?;
    let token = sign_hs256(
        SECRET,
        &json!({"sub": "carol", "channels": ["feed", "small:feed"]}),
    );
    let connect = json!({"token": token}).to_string();
    let path = format!("/connection/uni_sse?cf_connect={}", urlencode(&connect));
    let mut sse = request(node.http_addr, "GET", &path, &[], b"").await?;
    let (id, push) = next_sse_event(&mut sse).await?;
    assert_eq!(
        push["connect"]["pong"],
        Value::Null,
        "uni connections expect no pong: {push}"
    );
    assert!(id.is_some_and(|id| !id.is_empty()));
    node.node
        .publish("feed", r#"{"n":1}"#.into(), None, Default::default())
        .await?;
    node.node
        .publish("small:feed", r#"{"n":1}"#.into(), None, Default::default())
        .await?;
    let (_, _) = next_sse_event(&mut sse).await?;
    let (last_id, _) = next_sse_event(&mut sse).await?;
    let last_id = last_id.context("publication event without id")?;
    drop(sse);
    for n in 2..=4 {
        let data = format!(r#"{{"n":{n}}}"#);
        node.node
            .publish("feed", data.clone().into(), None, Default::default())
            .await?;
        node.node
            .publish("small:feed", data.into(), None, Default::default())
            .await?;
    }
    let mut again = request(
        node.http_addr,
        "GET",
        &path,
        &[("Last-Event-ID", &last_id)],
        b"",
    )
    .await?;
    let (_, push) = next_sse_event(&mut again).await?;
    let feed = &push["connect"]["subs"]["feed"];
    assert_eq!(feed["recovered"], true, "{push}");
    let missed: Vec<&Value> = feed["publications"]
        .as_array()
        .context("publications")?
        .iter()
        .map(|p| &p["data"]["n"])
        .collect();
    assert_eq!(missed, [2, 3, 4]);
    let small = &push["connect"]["subs"]["small:feed"];
    assert_eq!(small["was_recovering"], true, "{push}");
    assert_eq!(
        small["recovered"],
        Value::Null,
        "small history cannot cover 3 missed: {push}"
    );
    drop(again);

    // A Last-Event-ID that does not decode: a fresh connect, nothing recovering.
    let mut fresh = request(
        node.http_addr,
        "GET",
        &path,
        &[("Last-Event-ID", "%%%")],
        b"",
    )
    .await?;
    let (_, push) = next_sse_event(&mut fresh).await?;
    assert_eq!(
        push["connect"]["subs"]["feed"]["was_recovering"],
        Value::Null,
        "{push}"
    );
    node.stop().await;
    Ok(())
}

/// Percent-encodes a query parameter value.
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
