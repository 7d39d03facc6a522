//! Authentication over real sockets: connection tokens (HS256, RS256, ES256), anonymous mode,
//! subscription tokens, token expiry and refresh, server-side and user-limited channels.

use std::collections::BTreeMap;

use bytes::Bytes;
use starling_auth::testing::{
    EC_PRIVATE_KEY_PEM, EC_PUBLIC_KEY_PEM, RSA_PRIVATE_KEY_PEM, RSA_PUBLIC_KEY_PEM, mint_es256,
    mint_rs256,
};
use starling_client::{Client, ClientError};
use starling_config::Config;
use starling_protocol::{Encoding, SubscribeRequest};
use starling_tests::{
    BASE_CONFIG, SECRET, TestNode, WAIT, connect_as, hs256_token, next_pub, sign_hs256, sub,
    subscription_token, unix_now,
};

/// BASE_CONFIG plus a namespace that needs subscription tokens and one with user-limited
/// channels.
const AUTH_CONFIG: &str = r#"
[[channel.namespaces]]
name = "secure"
allow_publish_for_subscriber = true

[[channel.namespaces]]
name = "dialog"
allow_user_limited_channels = true
"#;

async fn auth_node() -> anyhow::Result<TestNode> {
    TestNode::start(&format!("{BASE_CONFIG}{AUTH_CONFIG}")).await
}

fn reply_code(result: Result<impl std::fmt::Debug, ClientError>) -> u32 {
    match result {
        Err(ClientError::Reply(error)) => error.code,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

async fn connect_with(node: &TestNode, token: &str) -> Result<Client, ClientError> {
    Client::builder(node.ws_url())
        .encoding(Encoding::Json)
        .token(token)
        .connect()
        .await
        .map(|(client, _)| client)
}

#[tokio::test]
async fn connect_without_token_is_unauthorized_unless_anonymous_is_allowed() -> anyhow::Result<()> {
    let node = auth_node().await?;
    assert_eq!(reply_code(connect_with(&node, "").await), 101);
    node.stop().await;

    let mut config = Config::from_toml_str(BASE_CONFIG)?;
    config.client.allow_anonymous_connect_without_token = true;
    config
        .channel
        .without_namespace
        .allow_subscribe_for_anonymous = true;
    let node = TestNode::start_with(&mut config).await?;
    let (client, connected) = Client::builder(node.ws_url()).connect().await?;
    assert!(!connected.client.is_empty());
    client.subscribe(sub("open-room")).await?;
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_tokens_close_with_invalid_token_and_node_keeps_serving() -> anyhow::Result<()> {
    let node = auth_node().await?;
    let wrong_secret = hs256_token("another-secret", "mallory", None);
    let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.";
    let wrong_type = sign_hs256(SECRET, &serde_json::json!({"sub": 42}));
    for token in [
        wrong_secret.as_str(),
        unsigned,
        "garbage",
        "a.b.c",
        &"x".repeat(60_000),
        wrong_type.as_str(),
    ] {
        match connect_with(&node, token).await {
            Err(ClientError::Closed { code, .. }) => assert_eq!(code, 3500, "token {token:.40}"),
            other => panic!("token {token:.40}: expected close 3500, got {other:?}"),
        }
    }
    // Still serving.
    let (alice, _) = connect_as(&node, "alice", Encoding::Json).await?;
    alice.subscribe(sub("still-here")).await?;
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn expired_connection_token_gets_token_expired() -> anyhow::Result<()> {
    let node = auth_node().await?;
    let expired = hs256_token(SECRET, "alice", Some(unix_now() - 10));
    assert_eq!(reply_code(connect_with(&node, &expired).await), 109);
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn rs256_and_es256_connection_tokens_are_accepted() -> anyhow::Result<()> {
    let mut config = Config::from_toml_str(BASE_CONFIG)?;
    config.client.token.rsa_public_key = RSA_PUBLIC_KEY_PEM.to_string();
    config.client.token.ecdsa_public_key = EC_PUBLIC_KEY_PEM.to_string();
    let node = TestNode::start_with(&mut config).await?;
    let claims = serde_json::json!({"sub": "rsa-user", "info": {"plan": "pro"}});
    let rs = mint_rs256(RSA_PRIVATE_KEY_PEM, &claims)?;
    let es = mint_es256(EC_PRIVATE_KEY_PEM, &serde_json::json!({"sub": "ec-user"}))?;
    let rsa_client = connect_with(&node, &rs).await?;
    let ec_client = connect_with(&node, &es).await?;
    rsa_client.subscribe(sub("keys")).await?;
    ec_client.subscribe(sub("keys")).await?;
    rsa_client.publish("keys", Bytes::from_static(b"1")).await?;
    let publication = next_pub(&ec_client, "keys").await?;
    let info = publication.info.expect("publisher info");
    assert_eq!(info.user, "rsa-user");
    assert_eq!(&info.conn_info[..], br#"{"plan":"pro"}"#);
    // HS256 still works alongside.
    connect_as(&node, "hs-user", Encoding::Protobuf).await?;
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn subscription_tokens_gate_channels_that_need_them() -> anyhow::Result<()> {
    let node = auth_node().await?;
    let (alice, _) = connect_as(&node, "alice", Encoding::Json).await?;
    let channel = "secure:vault";
    let with_token = |token: String| SubscribeRequest {
        channel: channel.to_string(),
        token,
        ..Default::default()
    };
    assert_eq!(reply_code(alice.subscribe(sub(channel)).await), 103);
    let other_user = subscription_token(SECRET, "bob", channel, None);
    assert_eq!(
        reply_code(alice.subscribe(with_token(other_user)).await),
        103
    );
    let other_channel = subscription_token(SECRET, "alice", "secure:other", None);
    assert_eq!(
        reply_code(alice.subscribe(with_token(other_channel)).await),
        103
    );
    let expired = subscription_token(SECRET, "alice", channel, Some(unix_now() - 5));
    assert_eq!(reply_code(alice.subscribe(with_token(expired)).await), 109);
    let forged = subscription_token("not-the-secret", "alice", channel, None);
    assert_eq!(reply_code(alice.subscribe(with_token(forged)).await), 103);

    let good = subscription_token(SECRET, "alice", channel, Some(unix_now() + 600));
    let result = alice.subscribe(with_token(good)).await?;
    assert!(result.expires);
    assert!(result.ttl > 500 && result.ttl <= 600);
    // Already subscribed is its own error.
    let again = subscription_token(SECRET, "alice", channel, None);
    assert_eq!(reply_code(alice.subscribe(with_token(again)).await), 105);
    // A subscriber may publish (allow_publish_for_subscriber).
    alice.publish(channel, Bytes::from_static(b"\"x\"")).await?;
    // Unknown namespace.
    assert_eq!(reply_code(alice.subscribe(sub("nope:room")).await), 102);
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn user_limited_channels_admit_only_listed_users() -> anyhow::Result<()> {
    let node = auth_node().await?;
    let channel = "dialog:chat#alice,bob";
    let (alice, _) = connect_as(&node, "alice", Encoding::Json).await?;
    let (carol, _) = connect_as(&node, "carol", Encoding::Json).await?;
    alice.subscribe(sub(channel)).await?;
    assert_eq!(reply_code(carol.subscribe(sub(channel)).await), 103);
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn personal_channel_and_token_channels_are_server_side_subscriptions() -> anyhow::Result<()> {
    let mut config = Config::from_toml_str(&format!("{BASE_CONFIG}{AUTH_CONFIG}"))?;
    config.client.subscribe_to_user_personal_channel.enabled = true;
    let node = TestNode::start_with(&mut config).await?;
    let token = sign_hs256(
        SECRET,
        &serde_json::json!({"sub": "alice", "channels": ["secure:news"]}),
    );
    let (alice, connected) = Client::builder(node.ws_url())
        .encoding(Encoding::Protobuf)
        .token(token)
        .connect()
        .await?;
    assert!(
        connected.subs.contains_key("#alice"),
        "{:?}",
        connected.subs.keys()
    );
    assert!(connected.subs.contains_key("secure:news"));

    node.node
        .publish(
            "#alice",
            Bytes::from_static(b"\"note\""),
            None,
            BTreeMap::new(),
        )
        .await?;
    assert_eq!(&next_pub(&alice, "#alice").await?.data[..], b"\"note\"");
    node.node
        .publish(
            "secure:news",
            Bytes::from_static(b"\"headline\""),
            None,
            BTreeMap::new(),
        )
        .await?;
    assert_eq!(
        &next_pub(&alice, "secure:news").await?.data[..],
        b"\"headline\""
    );
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn unrefreshed_token_expiry_disconnects_and_refresh_keeps_connection() -> anyhow::Result<()> {
    // No grace after expiry (client.expired_close_delay), so the test does not wait out the
    // 25 s default.
    let mut config = Config::from_toml_str(&format!("{BASE_CONFIG}{AUTH_CONFIG}"))?;
    config.client.expired_close_delay = starling_config::GoDuration::ZERO;
    let node = TestNode::start_with(&mut config).await?;
    let soon = unix_now() + 2;
    let (lapsing, connected) = Client::builder(node.ws_url())
        .token(hs256_token(SECRET, "alice", Some(soon)))
        .connect()
        .await?;
    assert!(connected.expires);
    assert!(connected.ttl <= 2);
    let (refreshing, _) = Client::builder(node.ws_url())
        .token(hs256_token(SECRET, "bob", Some(soon)))
        .connect()
        .await?;
    let refreshed = refreshing
        .refresh(&hs256_token(SECRET, "bob", Some(unix_now() + 600)))
        .await?;
    assert!(refreshed.expires);
    assert!(refreshed.ttl > 500);
    // A refresh for another user is an invalid token.
    let (other, _) = connect_as(&node, "carol", Encoding::Json).await?;
    let _ = other.refresh(&hs256_token(SECRET, "mallory", None)).await;
    assert_eq!(tokio::time::timeout(WAIT, other.closed()).await?.code, 3500);

    let closed = tokio::time::timeout(WAIT, lapsing.closed()).await?;
    assert_eq!(closed.code, 3005);
    // The refreshed connection is still alive well past the first expiry.
    refreshing.ping().await?;
    node.stop().await;
    Ok(())
}
