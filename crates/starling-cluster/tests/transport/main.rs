//! The cluster transport over real QUIC on 127.0.0.1: mutual TLS, the Hello
//! exchange, frames both ways, and peers that must be refused without
//! disturbing the endpoint.

mod fixtures;

use fixtures::{Ca, Logs, app_code, link, raw_client, raw_node_client, send_raw, within};
use starling_cluster::{
    CloseCode, ClusterEndpoint, ClusterTls, Frame, Hello, LinkError, NODE_CERT_FILE, NODE_KEY_FILE,
    NodeId, PROTOCOL_VERSION, encode,
};

/// Wraps `body` in a length prefix.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn two_nodes_say_hello_and_exchange_frames_both_ways() {
    let ca = Ca::new("both-ways");
    let (a, _a_in) = ca.endpoint(1);
    let (b, mut b_in) = ca.endpoint(2);

    let (mut ab, mut ba) = link(&a, &b, &mut b_in).await;
    assert_eq!(ab.peer(), NodeId(2));
    assert_eq!(ba.peer(), NodeId(1));
    assert_eq!(ab.remote_addr(), b.local_addr());

    // A → B and B → A: plain delivery.
    ab.send(Frame::Pong { seq: 10 }).await.expect("send a→b");
    assert_eq!(
        within("b recv", ba.recv()).await,
        Some(Frame::Pong { seq: 10 })
    );
    ba.sender()
        .send(Frame::Pong { seq: 20 })
        .await
        .expect("send b→a");
    assert_eq!(
        within("a recv", ab.recv()).await,
        Some(Frame::Pong { seq: 20 })
    );

    // Pings are answered by the link itself, in both directions.
    ab.send(Frame::Ping { seq: 1 }).await.expect("ping a→b");
    assert_eq!(
        within("pong at a", ab.recv()).await,
        Some(Frame::Pong { seq: 1 })
    );
    ba.send(Frame::Ping { seq: 2 }).await.expect("ping b→a");
    assert_eq!(
        within("pong at b", ba.recv()).await,
        Some(Frame::Pong { seq: 2 })
    );
}

#[tokio::test]
async fn many_frames_arrive_in_order() {
    let ca = Ca::new("order");
    let (a, _a_in) = ca.endpoint(1);
    let (b, mut b_in) = ca.endpoint(2);
    let (ab, mut ba) = link(&a, &b, &mut b_in).await;

    let sender = ab.sender();
    let sending = tokio::spawn(async move {
        for seq in 0..5_000 {
            sender.send(Frame::Pong { seq }).await.expect("send");
        }
    });
    for seq in 0..5_000 {
        assert_eq!(within("frame", ba.recv()).await, Some(Frame::Pong { seq }));
    }
    sending.await.expect("sender task");
}

#[tokio::test]
async fn peer_without_client_certificate_is_refused() {
    let (logs, _guard) = Logs::capture();
    let ca = Ca::new("no-client-cert");
    let (server, mut incoming) = ca.endpoint(1);

    let client = raw_client(&ca.node_dir(1), None);
    let hello = encode(&Frame::Hello(Hello::new(NodeId(2)))).expect("hello");
    let ended = send_raw(&client, server.local_addr(), 1, &hello).await;
    assert!(
        matches!(
            ended,
            quinn::ConnectionError::ConnectionClosed(_) | quinn::ConnectionError::TransportError(_)
        ),
        "expected a TLS refusal, got {ended:?}"
    );
    logs.wait_for(&["refused cluster peer", "peer sent no certificates"])
        .await;

    // The endpoint still serves a node with a certificate, and the refused
    // peer never became a link.
    let (good, _good_in) = ca.endpoint(2);
    let link = within("good connect", good.connect(server.local_addr(), NodeId(1)))
        .await
        .expect("good peer connects");
    let accepted = within("accepted", incoming.next()).await.expect("link");
    assert_eq!(accepted.peer(), NodeId(2));
    drop(link);
}

#[tokio::test]
async fn peer_with_certificate_from_another_ca_is_refused() {
    let (logs, _guard) = Logs::capture();
    let ours = Ca::new("ca-ours");
    let theirs = Ca::new("ca-theirs");
    let (server, mut incoming) = ours.endpoint(1);

    // Trusts our CA (so the client side is happy) but presents a certificate
    // for node 2 signed by another CA: the server must refuse it.
    let foreign = theirs.node_dir(2);
    let client = raw_client(
        &ours.node_dir(1),
        Some((&foreign.join(NODE_CERT_FILE), &foreign.join(NODE_KEY_FILE))),
    );
    let hello = encode(&Frame::Hello(Hello::new(NodeId(2)))).expect("hello");
    let ended = send_raw(&client, server.local_addr(), 1, &hello).await;
    assert_eq!(
        app_code(&ended),
        None,
        "refused by TLS, not after: {ended:?}"
    );
    logs.wait_for(&["refused cluster peer", "invalid peer certificate"])
        .await;

    // A whole node of the other cluster cannot dial in either.
    let (stranger, _s_in) = theirs.endpoint(3);
    let err = within(
        "stranger connect",
        stranger.connect(server.local_addr(), NodeId(1)),
    )
    .await
    .expect_err("foreign node refused");
    assert!(matches!(err, LinkError::Connection { .. }), "{err}");

    let (good, _good_in) = ours.endpoint(2);
    let _link = within("good connect", good.connect(server.local_addr(), NodeId(1)))
        .await
        .expect("good peer connects");
    let accepted = within("accepted", incoming.next()).await.expect("link");
    assert_eq!(accepted.peer(), NodeId(2));
}

#[tokio::test]
async fn garbage_instead_of_hello_is_refused_and_the_endpoint_keeps_serving() {
    let (logs, _guard) = Logs::capture();
    let ca = Ca::new("garbage");
    let (server, mut incoming) = ca.endpoint(1);

    let client = raw_node_client(&ca.node_dir(5));
    let ended = send_raw(
        &client,
        server.local_addr(),
        1,
        &framed(b"\xc1\xc1\xc1 this is not msgpack"),
    )
    .await;
    assert_eq!(
        app_code(&ended),
        Some(u64::from(CloseCode::ProtocolViolation.code())),
        "{ended:?}"
    );
    logs.wait_for(&["refused cluster peer", "malformed frame"])
        .await;

    // An absurd length prefix is refused from the prefix alone.
    let ended = send_raw(&client, server.local_addr(), 1, &[0xff, 0xff, 0xff, 0xff]).await;
    assert_eq!(
        app_code(&ended),
        Some(u64::from(CloseCode::ProtocolViolation.code()))
    );
    logs.wait_for(&["refused cluster peer", "exceeds the maximum"])
        .await;

    let (good, _good_in) = ca.endpoint(2);
    let (mut ga, ag) = link(&good, &server, &mut incoming).await;
    assert_eq!(ag.peer(), NodeId(2));
    ga.send(Frame::Ping { seq: 9 }).await.expect("ping");
    assert_eq!(
        within("pong", ga.recv()).await,
        Some(Frame::Pong { seq: 9 })
    );
    ag.send(Frame::Pong { seq: 3 }).await.expect("pong");
    assert_eq!(
        within("frame", ga.recv()).await,
        Some(Frame::Pong { seq: 3 })
    );
    drop(ag);
}

#[tokio::test]
async fn unknown_version_is_refused_with_its_close_code() {
    let (logs, _guard) = Logs::capture();
    let ca = Ca::new("version");
    let (server, mut incoming) = ca.endpoint(1);

    let future = rmp_serde::to_vec(&(PROTOCOL_VERSION + 1, "Hello", [5, 99])).expect("body");
    let client = raw_node_client(&ca.node_dir(5));
    let ended = send_raw(&client, server.local_addr(), 1, &framed(&future)).await;
    assert_eq!(
        app_code(&ended),
        Some(u64::from(CloseCode::UnsupportedVersion.code())),
        "{ended:?}"
    );
    logs.wait_for(&[
        "refused cluster peer",
        &format!("version {} is not supported", PROTOCOL_VERSION + 1),
    ])
    .await;

    let (good, _good_in) = ca.endpoint(2);
    let (_ga, ag) = link(&good, &server, &mut incoming).await;
    assert_eq!(ag.peer(), NodeId(2));
}

#[tokio::test]
async fn hello_claiming_another_node_is_refused() {
    let (logs, _guard) = Logs::capture();
    let ca = Ca::new("impostor");
    let (server, _incoming) = ca.endpoint(1);

    // Node 5's certificate, node 6's name.
    let client = raw_node_client(&ca.node_dir(5));
    let hello = encode(&Frame::Hello(Hello::new(NodeId(6)))).expect("hello");
    let ended = send_raw(&client, server.local_addr(), 1, &hello).await;
    assert_eq!(
        app_code(&ended),
        Some(u64::from(CloseCode::IdentityMismatch.code())),
        "{ended:?}"
    );
    logs.wait_for(&["refused cluster peer", "node 6"]).await;
}

#[tokio::test]
async fn garbage_on_an_established_link_closes_only_that_link() {
    let (logs, _guard) = Logs::capture();
    let ca = Ca::new("late-garbage");
    let (server, mut incoming) = ca.endpoint(1);

    let client = raw_node_client(&ca.node_dir(5));
    let conn = within(
        "raw connect",
        client
            .connect(
                server.local_addr(),
                &starling_cluster::node_dns_name(NodeId(1)),
            )
            .expect("connect"),
    )
    .await
    .expect("tls");
    let (mut send, recv) = conn.open_bi().await.expect("stream");
    send.write_all(&encode(&Frame::Hello(Hello::new(NodeId(5)))).expect("hello"))
        .await
        .expect("write hello");
    let mut reader = starling_cluster::FrameReader::new(recv, server.local_addr());
    let reply = within("hello reply", reader.next()).await.expect("read");
    assert!(matches!(
        reply,
        Some(Frame::Hello(Hello {
            node_id: NodeId(1),
            ..
        }))
    ));
    let mut accepted = within("accepted", incoming.next()).await.expect("link");
    assert_eq!(accepted.peer(), NodeId(5));

    // A well-formed envelope of our version naming a kind nobody has.
    let garbage = rmp_serde::to_vec(&(PROTOCOL_VERSION, "Teleport")).expect("body");
    send.write_all(&framed(&garbage))
        .await
        .expect("write garbage");
    let ended = within("close", conn.closed()).await;
    assert_eq!(
        app_code(&ended),
        Some(u64::from(CloseCode::ProtocolViolation.code()))
    );
    assert_eq!(within("link ends", accepted.recv()).await, None);
    logs.wait_for(&["closing link: peer sent a bad frame", "Teleport"])
        .await;

    let (good, _good_in) = ca.endpoint(2);
    let (_ga, ag) = link(&good, &server, &mut incoming).await;
    assert_eq!(ag.peer(), NodeId(2));
}

#[tokio::test]
async fn dialling_a_node_by_the_wrong_id_fails() {
    let ca = Ca::new("wrong-id");
    let (a, _a_in) = ca.endpoint(1);
    let (b, _b_in) = ca.endpoint(2);
    let err = within("connect", a.connect(b.local_addr(), NodeId(3)))
        .await
        .expect_err("node 2 is not node 3");
    assert!(matches!(err, LinkError::Connection { .. }), "{err}");
    let err = within("connect self", a.connect(b.local_addr(), NodeId(1)))
        .await
        .expect_err("self");
    assert!(matches!(err, LinkError::SelfConnection { .. }), "{err}");
}

#[tokio::test]
async fn endpoint_refuses_a_certificate_for_another_node() {
    let ca = Ca::new("wrong-cert");
    let err = ClusterEndpoint::bind(fixtures::localhost(), ca.node_tls(1), NodeId(2))
        .expect_err("node 1's cert for node 2");
    assert!(err.to_string().contains("node-2.starling.cluster"), "{err}");
}

#[tokio::test]
async fn dropping_a_link_ends_it_at_the_peer() {
    let ca = Ca::new("drop");
    let (a, _a_in) = ca.endpoint(1);
    let (b, mut b_in) = ca.endpoint(2);
    let (ab, mut ba) = link(&a, &b, &mut b_in).await;
    drop(ab);
    assert_eq!(within("link ends", ba.recv()).await, None);
    let err = within("closed", ba.closed()).await;
    assert!(
        matches!(err, LinkError::Refused { code: 0, .. }),
        "closed normally: {err}"
    );
}

#[tokio::test]
async fn shutdown_stops_accepting_and_ends_links() {
    let ca = Ca::new("shutdown");
    let (a, _a_in) = ca.endpoint(1);
    let (b, mut b_in) = ca.endpoint(2);
    let (mut ab, _ba) = link(&a, &b, &mut b_in).await;
    within("shutdown", b.shutdown()).await;
    assert!(within("incoming ends", b_in.next()).await.is_none());
    assert_eq!(within("link ends", ab.recv()).await, None);
}

#[tokio::test]
async fn generated_dev_certificates_link_two_nodes_sharing_a_ca() {
    let ca = Ca::new("dev");
    let dir1 = ca.dir.join("dev-1");
    let dir2 = ca.dir.join("dev-2");
    for dir in [&dir1, &dir2] {
        std::fs::create_dir_all(dir).expect("dir");
        for file in [
            starling_cluster::CA_CERT_FILE,
            starling_cluster::CA_KEY_FILE,
        ] {
            std::fs::copy(ca.ca_dir().join(file), dir.join(file)).expect("copy ca");
        }
    }
    let (tls1, _) = ClusterTls::generate_dev(&dir1, NodeId(1)).expect("dev 1");
    let (tls2, _) = ClusterTls::generate_dev(&dir2, NodeId(2)).expect("dev 2");
    let (a, _a_in) = ClusterEndpoint::bind(fixtures::localhost(), tls1, NodeId(1)).expect("a");
    let (b, mut b_in) = ClusterEndpoint::bind(fixtures::localhost(), tls2, NodeId(2)).expect("b");
    let (_ab, ba) = link(&a, &b, &mut b_in).await;
    assert_eq!(ba.peer(), NodeId(1));
}
