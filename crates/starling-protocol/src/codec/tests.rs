use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::codes::ErrorCode;
use crate::types::*;

fn json_reply(reply: &Reply) -> String {
    let bytes = encode_reply(Encoding::Json, reply).expect("encodes");
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

fn json_command(command: &Command) -> String {
    let bytes = encode_command(Encoding::Json, command).expect("encodes");
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

fn one_command(encoding: Encoding, frame: &[u8]) -> Command {
    let mut commands = decode_commands(encoding, frame).expect("decodes");
    assert_eq!(commands.len(), 1);
    commands.remove(0)
}

#[test]
fn publication_push_has_centrifugo_json_shape() {
    let reply = Reply::push(Push::publication(
        "news",
        Publication {
            data: Bytes::from_static(br#"{"text":"hi"}"#),
            offset: 3,
            info: Some(ClientInfo {
                user: "42".into(),
                client: "c1".into(),
                ..ClientInfo::default()
            }),
            tags: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            ..Publication::default()
        },
    ));
    assert_eq!(
        json_reply(&reply),
        r#"{"push":{"channel":"news","pub":{"data":{"text":"hi"},"info":{"user":"42","client":"c1"},"offset":3,"tags":{"k":"v"}}}}"#
    );
}

#[test]
fn connect_result_has_centrifugo_json_shape() {
    let reply = Reply {
        id: 1,
        connect: Some(ConnectResult {
            client: "abc".into(),
            version: "0.1.0".into(),
            data: Bytes::from_static(b"[1,2]"),
            ping: 25,
            pong: true,
            subs: BTreeMap::from([(
                "#42".to_owned(),
                SubscribeResult {
                    recoverable: true,
                    epoch: "e".into(),
                    offset: 9,
                    ..SubscribeResult::default()
                },
            )]),
            ..ConnectResult::default()
        }),
        ..Reply::default()
    };
    assert_eq!(
        json_reply(&reply),
        r##"{"id":1,"connect":{"client":"abc","version":"0.1.0","data":[1,2],"subs":{"#42":{"recoverable":true,"epoch":"e","offset":9}},"ping":25,"pong":true}}"##
    );
}

#[test]
fn error_reply_has_centrifugo_json_shape() {
    assert_eq!(
        json_reply(&ErrorCode::PermissionDenied.reply(2)),
        r#"{"id":2,"error":{"code":103,"message":"permission denied"}}"#
    );
    assert_eq!(
        json_reply(&ErrorCode::Internal.reply(3)),
        r#"{"id":3,"error":{"code":100,"message":"internal server error","temporary":true}}"#
    );
}

#[test]
fn subscribe_with_recovery_decodes_from_sdk_json() {
    let frame = br#"{"id":3,"subscribe":{"channel":"chat","recover":true,"epoch":"xyz","offset":18446744073709551615,"join_leave":true}}"#;
    let command = one_command(Encoding::Json, frame);
    assert_eq!(command.id, 3);
    assert_eq!(command.method(), Method::Subscribe);
    assert_eq!(
        command.subscribe,
        Some(SubscribeRequest {
            channel: "chat".into(),
            recover: true,
            epoch: "xyz".into(),
            offset: u64::MAX,
            join_leave: true,
            ..SubscribeRequest::default()
        })
    );
    assert_eq!(json_command(&command).as_bytes(), frame);
}

#[test]
fn raw_json_data_is_kept_byte_for_byte() {
    let frame = br#"{"id":1,"publish":{"channel":"c","data":{"text":"hi", "n": [1, 2.50, null]}}}"#;
    let command = one_command(Encoding::Json, frame);
    let publish = command.publish.clone().unwrap_or_default();
    assert_eq!(
        publish.data,
        Bytes::from_static(br#"{"text":"hi", "n": [1, 2.50, null]}"#)
    );
    assert_eq!(json_command(&command).as_bytes(), frame);

    let simple = one_command(
        Encoding::Json,
        br#"{"id":1,"publish":{"channel":"c","data":{"text":"hi"}}}"#,
    );
    assert_eq!(
        simple.publish.map(|p| p.data),
        Some(Bytes::from_static(br#"{"text":"hi"}"#))
    );
}

#[test]
fn line_breaks_in_raw_data_do_not_split_json_frames() {
    let pretty = Bytes::from_static(b"{\r\n  \"a\": [\n    1,\n    \"x\\ny\"\n  ]\n}");
    let reply = Reply::push(Push::publication(
        "c",
        Publication {
            data: pretty,
            ..Publication::default()
        },
    ));
    let mut frame = FrameBuilder::new(Encoding::Json);
    frame.push(&encode_reply(Encoding::Json, &reply).expect("encodes"));
    frame.push(&encode_reply(Encoding::Json, &Reply::ping()).expect("encodes"));
    let replies = decode_replies(Encoding::Json, &frame.finish()).expect("decodes");
    assert_eq!(replies.len(), 2);
    let data = replies[0]
        .push
        .as_ref()
        .and_then(|p| p.r#pub.as_ref())
        .map(|p| p.data.clone())
        .unwrap_or_default();
    assert_eq!(&data[..], br#"{  "a": [    1,    "x\ny"  ]}"#);
}

#[test]
fn encoding_non_json_data_in_json_mode_is_an_error() {
    for bad in [&b"not json"[..], b"{\"a\":", b"\xff\xfe", b"1 2"] {
        let reply = Reply {
            id: 1,
            rpc: Some(RpcResult {
                data: Bytes::copy_from_slice(bad),
            }),
            ..Reply::default()
        };
        assert!(matches!(
            encode_reply(Encoding::Json, &reply),
            Err(EncodeError::Json { .. })
        ));
        // Protobuf carries any bytes.
        assert!(encode_reply(Encoding::Protobuf, &reply).is_ok());
    }
}

#[test]
fn empty_reply_is_a_ping_in_both_encodings() {
    let ping = Reply::ping();
    assert!(ping.is_ping());
    assert_eq!(
        &encode_reply(Encoding::Json, &ping).expect("encodes")[..],
        b"{}"
    );
    assert_eq!(
        &encode_reply(Encoding::Protobuf, &ping).expect("encodes")[..],
        [0u8]
    );
    assert_eq!(
        decode_replies(Encoding::Json, b"{}").expect("decodes"),
        vec![Reply::default()]
    );
    assert_eq!(
        decode_replies(Encoding::Protobuf, &[0]).expect("decodes"),
        vec![Reply::default()]
    );
}

#[test]
fn empty_command_is_a_pong() {
    for (encoding, frame) in [
        (Encoding::Json, &b"{}"[..]),
        (Encoding::Protobuf, &[0u8][..]),
    ] {
        let command = one_command(encoding, frame);
        assert_eq!(command, Command::default());
        assert_eq!(command.method(), Method::Empty);
    }
}

#[test]
fn json_batch_tolerates_crlf_blank_lines_and_trailing_newline() {
    let frame = b"{\"id\":1,\"presence\":{\"channel\":\"a\"}}\r\n\n{\"id\":2,\"history\":{\"channel\":\"b\",\"limit\":10}}\n   \n{}\n";
    let commands = decode_commands(Encoding::Json, frame).expect("decodes");
    let methods: Vec<Method> = commands.iter().map(Command::method).collect();
    assert_eq!(methods, [Method::Presence, Method::History, Method::Empty]);
    assert_eq!(commands[1].history.as_ref().map(|h| h.limit), Some(10));
    assert!(
        decode_commands(Encoding::Json, b"")
            .expect("decodes")
            .is_empty()
    );
    assert!(
        decode_commands(Encoding::Json, b"\n\r\n")
            .expect("decodes")
            .is_empty()
    );
}

#[test]
fn json_error_names_the_line() {
    let frame = b"{\"id\":1}\n\n{\"id\":\"x\"}\n";
    match decode_commands(Encoding::Json, frame) {
        Err(DecodeError::Json { line, .. }) => assert_eq!(line, 3),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn json_unknown_fields_and_nulls_are_accepted() {
    let frame = br#"{"id":4,"future":{"x":1},"rpc":{"method":"m","data":{"a":1},"extra":true},"connect":null}"#;
    let command = one_command(Encoding::Json, frame);
    assert_eq!(command.method(), Method::Rpc);
    assert_eq!(command.rpc.map(|r| r.method), Some("m".to_owned()));
}

#[test]
fn invalid_utf8_in_json_frame_is_an_error() {
    let frame = b"{\"id\":1,\"publish\":{\"channel\":\"\xff\xfe\"}}";
    assert!(matches!(
        decode_commands(Encoding::Json, frame),
        Err(DecodeError::Json { line: 1, .. })
    ));
    let data = b"{\"id\":1,\"publish\":{\"channel\":\"c\",\"data\":\"\xc3\"}}";
    assert!(decode_commands(Encoding::Json, data).is_err());
}

#[test]
fn method_counts_only_the_first_request() {
    let command = one_command(
        Encoding::Json,
        br#"{"id":1,"publish":{"channel":"p"},"subscribe":{"channel":"s"}}"#,
    );
    assert_eq!(command.method(), Method::Subscribe);
    assert_eq!(command.request_count(), 2);
}

#[test]
fn protobuf_frame_carries_several_commands() {
    let commands = vec![
        Command {
            id: 1,
            connect: Some(ConnectRequest {
                token: "t".into(),
                name: "rust".into(),
                ..ConnectRequest::default()
            }),
            ..Command::default()
        },
        Command::default(),
        Command {
            id: 2,
            publish: Some(PublishRequest {
                channel: "c".into(),
                data: Bytes::from_static(&[0, 159, 146, 150]),
            }),
            ..Command::default()
        },
    ];
    let mut frame = FrameBuilder::new(Encoding::Protobuf);
    for command in &commands {
        frame.push(&encode_command(Encoding::Protobuf, command).expect("encodes"));
    }
    let bytes = frame.finish();
    assert_eq!(
        decode_commands(Encoding::Protobuf, &bytes).expect("decodes"),
        commands
    );
}

#[test]
fn truncated_protobuf_frame_is_an_error() {
    let command = Command {
        id: 7,
        subscribe: Some(SubscribeRequest {
            channel: "chat".into(),
            ..SubscribeRequest::default()
        }),
        ..Command::default()
    };
    let encoded = encode_command(Encoding::Protobuf, &command).expect("encodes");
    let mut frame = encoded.to_vec();
    frame.extend_from_slice(&encoded);
    frame.pop();
    match decode_commands(Encoding::Protobuf, &frame) {
        Err(DecodeError::Truncated {
            index,
            declared,
            available,
        }) => {
            assert_eq!(index, 1);
            assert_eq!(declared, available + 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    // A dangling varint continuation byte.
    assert!(matches!(
        decode_commands(Encoding::Protobuf, &[0x80]),
        Err(DecodeError::Protobuf { index: 0, .. })
    ));
}

#[test]
fn command_limit_is_enforced_in_both_encodings() {
    let json = b"{}\n{}\n{}";
    assert_eq!(
        decode_commands_limited(Encoding::Json, json, 3)
            .expect("decodes")
            .len(),
        3
    );
    assert!(matches!(
        decode_commands_limited(Encoding::Json, json, 2),
        Err(DecodeError::TooManyCommands { max: 2 })
    ));
    let proto = [0u8, 0, 0];
    assert!(matches!(
        decode_commands_limited(Encoding::Protobuf, &proto, 2),
        Err(DecodeError::TooManyCommands { max: 2 })
    ));
}

#[test]
fn frame_builder_joins_json_with_newlines_and_reuses_single_part() {
    let mut frame = FrameBuilder::new(Encoding::Json);
    assert!(frame.is_empty());
    let a = Bytes::from_static(b"{\"id\":1}");
    frame.push(&a);
    assert_eq!(frame.len_bytes(), a.len());
    let single = frame.finish();
    assert_eq!(single.as_ptr(), a.as_ptr(), "single part is not copied");
    assert!(frame.is_empty());

    frame.push(&a);
    frame.push(&Bytes::from_static(b"{}"));
    assert_eq!(frame.parts(), 2);
    assert_eq!(frame.len_bytes(), a.len() + 3);
    assert_eq!(&frame.finish()[..], b"{\"id\":1}\n{}");
    assert_eq!(frame.len_bytes(), 0);
}

#[test]
fn subprotocol_selects_encoding() {
    assert_eq!(Encoding::from_subprotocol(None), Encoding::Json);
    assert_eq!(
        Encoding::from_subprotocol(Some("centrifuge-protobuf")),
        Encoding::Protobuf
    );
    assert_eq!(
        Encoding::from_subprotocol(Some("centrifuge-json")),
        Encoding::Json
    );
    assert_eq!(Encoding::Protobuf.subprotocol(), Some(PROTOBUF_SUBPROTOCOL));
}

// ---- property tests ----

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        (-1.0e9f64..1.0e9).prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Valid JSON text, sometimes with insignificant inner whitespace (which raw
/// values must keep), or empty (absent).
fn json_data() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        1 => Just(Bytes::new()),
        4 => json_value().prop_map(|v| Bytes::from(serde_json::to_vec(&v).unwrap_or_default())),
        // Pretty-printed minus its line breaks: inner whitespace is kept verbatim.
        1 => json_value().prop_map(|v| {
            let pretty = serde_json::to_string_pretty(&v).unwrap_or_default();
            Bytes::from(pretty.replace('\n', ""))
        }),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z#:$]{1,8}", any::<String>()]
}

fn client_info() -> impl Strategy<Value = ClientInfo> {
    (text(), text(), json_data(), json_data()).prop_map(|(user, client, conn_info, chan_info)| {
        ClientInfo {
            user,
            client,
            conn_info,
            chan_info,
        }
    })
}

fn publication() -> impl Strategy<Value = Publication> {
    (
        json_data(),
        proptest::option::of(client_info()),
        any::<u64>(),
        prop::collection::btree_map(text(), text(), 0..3),
        any::<bool>(),
        any::<i64>(),
        text(),
    )
        .prop_map(
            |(data, info, offset, tags, delta, time, channel)| Publication {
                data,
                info,
                offset,
                tags,
                delta,
                time,
                channel,
            },
        )
}

fn filter() -> impl Strategy<Value = FilterNode> {
    let leaf = (text(), text(), text(), prop::collection::vec(text(), 0..3)).prop_map(
        |(key, cmp, val, vals)| FilterNode {
            key,
            cmp,
            val,
            vals,
            ..FilterNode::default()
        },
    );
    leaf.prop_recursive(2, 8, 3, |inner| {
        (text(), prop::collection::vec(inner, 0..3)).prop_map(|(op, nodes)| FilterNode {
            op,
            nodes,
            ..FilterNode::default()
        })
    })
}

fn subscribe_request() -> impl Strategy<Value = SubscribeRequest> {
    (
        (
            text(),
            text(),
            any::<bool>(),
            text(),
            any::<u64>(),
            json_data(),
        ),
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            text(),
            proptest::option::of(filter()),
            any::<i64>(),
        ),
    )
        .prop_map(
            |(
                (channel, token, recover, epoch, offset, data),
                (positioned, recoverable, join_leave, delta, tf, flag),
            )| SubscribeRequest {
                channel,
                token,
                recover,
                epoch,
                offset,
                data,
                positioned,
                recoverable,
                join_leave,
                delta,
                tf,
                flag,
            },
        )
}

fn subscribe_result() -> impl Strategy<Value = SubscribeResult> {
    (
        (any::<bool>(), any::<u32>(), any::<bool>(), text()),
        prop::collection::vec(publication(), 0..3),
        (any::<bool>(), any::<u64>(), any::<bool>(), json_data()),
        (any::<bool>(), any::<bool>(), any::<i64>()),
    )
        .prop_map(
            |(
                (expires, ttl, recoverable, epoch),
                publications,
                (recovered, offset, positioned, data),
                (was_recovering, delta, id),
            )| SubscribeResult {
                expires,
                ttl,
                recoverable,
                epoch,
                publications,
                recovered,
                offset,
                positioned,
                data,
                was_recovering,
                delta,
                id,
            },
        )
}

fn command() -> impl Strategy<Value = Command> {
    let connect = (
        text(),
        json_data(),
        prop::collection::btree_map(text(), subscribe_request(), 0..2),
        text(),
        prop::collection::btree_map(text(), text(), 0..2),
        any::<i64>(),
    )
        .prop_map(|(token, data, subs, name, headers, flag)| ConnectRequest {
            token,
            data,
            subs,
            name,
            version: "1.0".into(),
            headers,
            flag,
        });
    let history = (
        text(),
        any::<i32>(),
        any::<Option<(u64, String)>>(),
        any::<bool>(),
    )
        .prop_map(|(channel, limit, since, reverse)| HistoryRequest {
            channel,
            limit,
            since: since.map(|(offset, epoch)| StreamPosition { offset, epoch }),
            reverse,
        });
    let base = any::<u32>().prop_map(|id| Command {
        id,
        ..Command::default()
    });
    prop_oneof![
        base.clone(),
        (base.clone(), connect).prop_map(|(c, r)| Command {
            connect: Some(r),
            ..c
        }),
        (base.clone(), subscribe_request()).prop_map(|(c, r)| Command {
            subscribe: Some(r),
            ..c
        }),
        (base.clone(), text()).prop_map(|(c, channel)| Command {
            unsubscribe: Some(UnsubscribeRequest { channel }),
            ..c
        }),
        (base.clone(), text(), json_data()).prop_map(|(c, channel, data)| Command {
            publish: Some(PublishRequest { channel, data }),
            ..c
        }),
        (base.clone(), text()).prop_map(|(c, channel)| Command {
            presence: Some(PresenceRequest { channel }),
            presence_stats: Some(PresenceStatsRequest {
                channel: "s".into()
            }),
            ..c
        }),
        (base.clone(), history).prop_map(|(c, r)| Command {
            history: Some(r),
            ..c
        }),
        (base.clone(), json_data(), text()).prop_map(|(c, data, method)| Command {
            rpc: Some(RpcRequest { data, method }),
            send: Some(SendRequest::default()),
            ping: Some(PingRequest {}),
            ..c
        }),
        (base, text(), text()).prop_map(|(c, channel, token)| Command {
            refresh: Some(RefreshRequest {
                token: token.clone()
            }),
            sub_refresh: Some(SubRefreshRequest { channel, token }),
            ..c
        }),
    ]
}

fn push() -> impl Strategy<Value = Push> {
    let body = prop_oneof![
        publication().prop_map(|p| Push {
            r#pub: Some(p),
            ..Push::default()
        }),
        proptest::option::of(client_info()).prop_map(|info| Push {
            join: Some(Join { info }),
            ..Push::default()
        }),
        proptest::option::of(client_info()).prop_map(|info| Push {
            leave: Some(Leave { info }),
            ..Push::default()
        }),
        (any::<u32>(), text()).prop_map(|(code, reason)| Push {
            unsubscribe: Some(Unsubscribe { code, reason }),
            ..Push::default()
        }),
        json_data().prop_map(|data| Push {
            message: Some(Message { data }),
            ..Push::default()
        }),
        (any::<bool>(), text(), any::<u64>(), json_data()).prop_map(
            |(recoverable, epoch, offset, data)| Push {
                subscribe: Some(Subscribe {
                    recoverable,
                    epoch,
                    offset,
                    positioned: true,
                    data,
                }),
                ..Push::default()
            }
        ),
        (any::<u32>(), text(), any::<bool>()).prop_map(|(code, reason, reconnect)| Push {
            disconnect: Some(Disconnect {
                code,
                reason,
                reconnect,
            }),
            refresh: Some(Refresh {
                expires: true,
                ttl: 5,
            }),
            connect: Some(Connect::default()),
            ..Push::default()
        }),
    ];
    (any::<i64>(), text(), body).prop_map(|(id, channel, body)| Push {
        id,
        channel,
        ..body
    })
}

fn reply() -> impl Strategy<Value = Reply> {
    let base = any::<u32>().prop_map(|id| Reply {
        id,
        ..Reply::default()
    });
    let connect = (
        (text(), text(), any::<bool>(), any::<u32>(), json_data()),
        prop::collection::btree_map(text(), subscribe_result(), 0..2),
        (any::<u32>(), any::<bool>(), text(), text(), any::<i64>()),
    )
        .prop_map(
            |((client, version, expires, ttl, data), subs, (ping, pong, session, node, time))| {
                ConnectResult {
                    client,
                    version,
                    expires,
                    ttl,
                    data,
                    subs,
                    ping,
                    pong,
                    session,
                    node,
                    time,
                }
            },
        );
    prop_oneof![
        Just(Reply::default()),
        push().prop_map(Reply::push),
        (any::<u32>(), any::<u32>(), text(), any::<bool>()).prop_map(
            |(id, code, message, temporary)| Reply::error(
                id,
                Error {
                    code,
                    message,
                    temporary
                }
            )
        ),
        (base.clone(), connect).prop_map(|(r, c)| Reply {
            connect: Some(c),
            ..r
        }),
        (base.clone(), subscribe_result()).prop_map(|(r, s)| Reply {
            subscribe: Some(s),
            unsubscribe: Some(UnsubscribeResult {}),
            publish: Some(PublishResult {}),
            ..r
        }),
        (
            base.clone(),
            prop::collection::btree_map(text(), client_info(), 0..3)
        )
            .prop_map(|(r, presence)| Reply {
                presence: Some(PresenceResult { presence }),
                presence_stats: Some(PresenceStatsResult {
                    num_clients: 3,
                    num_users: 2
                }),
                ..r
            }),
        (
            base.clone(),
            prop::collection::vec(publication(), 0..4),
            text(),
            any::<u64>()
        )
            .prop_map(|(r, publications, epoch, offset)| Reply {
                history: Some(HistoryResult {
                    publications,
                    epoch,
                    offset
                }),
                ..r
            }),
        (base, json_data(), any::<u32>()).prop_map(|(r, data, ttl)| Reply {
            rpc: Some(RpcResult { data }),
            ping: Some(PingResult {}),
            refresh: Some(RefreshResult {
                client: "c".into(),
                version: "v".into(),
                expires: true,
                ttl
            }),
            sub_refresh: Some(SubRefreshResult { expires: true, ttl }),
            ..r
        }),
    ]
}

const ENCODINGS: [Encoding; 2] = [Encoding::Json, Encoding::Protobuf];

proptest! {
    #[test]
    fn command_round_trips_in_both_encodings(command in command()) {
        for encoding in ENCODINGS {
            let bytes = encode_command(encoding, &command).expect("encodes");
            prop_assert_eq!(decode_commands(encoding, &bytes).expect("decodes"), vec![command.clone()]);
        }
    }

    #[test]
    fn reply_round_trips_in_both_encodings(reply in reply()) {
        for encoding in ENCODINGS {
            let bytes = encode_reply(encoding, &reply).expect("encodes");
            prop_assert_eq!(decode_replies(encoding, &bytes).expect("decodes"), vec![reply.clone()]);
        }
    }

    #[test]
    fn coalesced_frame_gives_back_every_reply(replies in prop::collection::vec(reply(), 0..6)) {
        for encoding in ENCODINGS {
            let mut frame = FrameBuilder::new(encoding);
            for reply in &replies {
                frame.push(&encode_reply(encoding, reply).expect("encodes"));
            }
            prop_assert_eq!(frame.parts(), replies.len());
            let len = frame.len_bytes();
            let bytes = frame.finish();
            prop_assert_eq!(bytes.len(), len);
            prop_assert_eq!(&decode_replies(encoding, &bytes).expect("decodes"), &replies);
        }
    }

    #[test]
    fn coalesced_commands_decode_in_order(commands in prop::collection::vec(command(), 0..6)) {
        for encoding in ENCODINGS {
            let mut frame = FrameBuilder::new(encoding);
            for command in &commands {
                frame.push(&encode_command(encoding, command).expect("encodes"));
            }
            prop_assert_eq!(&decode_commands(encoding, &frame.finish()).expect("decodes"), &commands);
        }
    }

    #[test]
    fn protobuf_bytes_fields_carry_any_bytes(data in prop::collection::vec(any::<u8>(), 0..64)) {
        let command = Command {
            id: 1,
            publish: Some(PublishRequest { channel: "c".into(), data: Bytes::from(data) }),
            ..Command::default()
        };
        let bytes = encode_command(Encoding::Protobuf, &command).expect("encodes");
        prop_assert_eq!(decode_commands(Encoding::Protobuf, &bytes).expect("decodes"), vec![command]);
    }

    #[test]
    fn random_bytes_never_panic(frame in prop::collection::vec(any::<u8>(), 0..256)) {
        for encoding in ENCODINGS {
            let _ = decode_commands(encoding, &frame);
            let _ = decode_commands_limited(encoding, &frame, 4);
            let _ = decode_replies(encoding, &frame);
        }
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        command in command(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        for encoding in ENCODINGS {
            let mut frame = encode_command(encoding, &command).expect("encodes").to_vec();
            let at = flip.index(frame.len());
            frame[at] = byte;
            let _ = decode_commands(encoding, &frame);
            frame.truncate(cut.index(frame.len()));
            let _ = decode_commands(encoding, &frame);
        }
    }
}
