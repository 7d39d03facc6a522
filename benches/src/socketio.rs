//! Socket.IO v5 over Engine.IO v4, WebSocket transport only, as far as the
//! generator speaks it.
//!
//! Every WebSocket text frame is one Engine.IO packet: a type digit (`0`
//! open, `1` close, `2` ping, `3` pong, `4` message, `6` noop) and its data.
//! A message carries one Socket.IO packet: a type digit (`0` connect, `1`
//! disconnect, `2` event, `3` ack, `4` connect error), an optional
//! namespace (`/chat,`; the generator uses the default `/`), an optional
//! acknowledgement id, then JSON. So `42["msg",{…}]` is an event, `421[…]`
//! an event that asks for ack 1, and `431[]` that ack.
//! See <https://socket.io/docs/v4/socket-io-protocol/> and
//! <https://github.com/socketio/engine.io-protocol>.

/// The URL path and query of the WebSocket transport, without polling first.
pub(crate) const PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// One packet received from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packet<'a> {
    /// Engine.IO `0{…}`: the session is open.
    Open,
    /// Engine.IO `1`: the server closes the session.
    Close,
    /// Engine.IO `2`: the server's heartbeat; answer [`PONG`].
    Ping,
    /// Engine.IO `3`.
    Pong,
    /// Engine.IO `6`.
    Noop,
    /// Socket.IO `40{…}`: the namespace accepted the connection.
    Connect,
    /// Socket.IO `41`: the namespace dropped the connection.
    Disconnect,
    /// Socket.IO `42[name, args…]`.
    Event {
        /// The ack id the sender asks for.
        ack: Option<u32>,
        /// The JSON array: event name, then arguments.
        data: &'a str,
    },
    /// Socket.IO `43<id>[args…]`: the answer to an event sent with ack `id`.
    Ack {
        /// The ack id.
        id: u32,
        /// The JSON array of the ack's arguments.
        data: &'a str,
    },
    /// Socket.IO `44{…}`: the namespace refused the connection.
    ConnectError(&'a str),
}

/// Not a packet of the protocol version the generator speaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected Socket.IO packet {0:?}")]
pub(crate) struct ParseError(pub(crate) String);

/// The packet in one text frame.
pub(crate) fn parse(frame: &str) -> Result<Packet<'_>, ParseError> {
    let bad = || ParseError(frame.chars().take(48).collect());
    let mut chars = frame.char_indices();
    let engine = chars.next().ok_or_else(bad)?.1;
    match engine {
        '0' => return Ok(Packet::Open),
        '1' => return Ok(Packet::Close),
        '2' => return Ok(Packet::Ping),
        '3' => return Ok(Packet::Pong),
        '6' => return Ok(Packet::Noop),
        '4' => {}
        _ => return Err(bad()),
    }
    let kind = chars.next().ok_or_else(bad)?.1;
    let mut rest = &frame[2..];
    if rest.starts_with('/') {
        // A namespace other than "/" is never used here; skip it anyway so
        // a server that names "/" explicitly still parses.
        let comma = rest.find(',').ok_or_else(bad)?;
        rest = &rest[comma + 1..];
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits == 0 {
        None
    } else {
        Some(rest[..digits].parse::<u32>().map_err(|_| bad())?)
    };
    let data = &rest[digits..];
    match kind {
        '0' => Ok(Packet::Connect),
        '1' => Ok(Packet::Disconnect),
        '2' => Ok(Packet::Event { ack: id, data }),
        '3' => Ok(Packet::Ack {
            id: id.ok_or_else(bad)?,
            data,
        }),
        '4' => Ok(Packet::ConnectError(data)),
        _ => Err(bad()),
    }
}

/// Engine.IO pong, the answer to the server's ping.
pub(crate) const PONG: &str = "3";

/// Socket.IO connect to the default namespace.
pub(crate) const CONNECT: &str = "40";

/// `42<ack>["subscribe","<room>"]`: join a room, acknowledged.
pub(crate) fn subscribe(room: &str, ack: u32) -> String {
    // serde_json escapes the room name; bench rooms never need it, but a
    // frame that is not JSON would make the server drop the connection.
    let room = serde_json::Value::from(room);
    format!("42{ack}[\"subscribe\",{room}]")
}

/// `42<ack>["publish","<room>",<payload>]`: broadcast into a room,
/// acknowledged. `payload` must be JSON (the stamped payloads are); it is
/// sent as the event's argument, so the server parses it and re-encodes it
/// once per broadcast, as a Socket.IO application would.
pub(crate) fn publish(room: &str, payload: &str, ack: u32) -> String {
    let room = serde_json::Value::from(room);
    let mut out = String::with_capacity(payload.len() + room.to_string().len() + 24);
    out.push_str("42");
    out.push_str(&ack.to_string());
    out.push_str("[\"publish\",");
    out.push_str(&room.to_string());
    out.push(',');
    out.push_str(payload);
    out.push(']');
    out
}

/// The stamped payload inside an event's data (`["msg",{"t":…}]`), if any.
pub(crate) fn payload_of(data: &str) -> Option<&str> {
    data.find("{\"t\":").map(|start| &data[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{read_stamp, stamped};

    #[test]
    fn engine_io_packets_parse() {
        let open = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(parse(open), Ok(Packet::Open));
        assert_eq!(parse("1"), Ok(Packet::Close));
        assert_eq!(parse("2"), Ok(Packet::Ping));
        assert_eq!(parse("3"), Ok(Packet::Pong));
        assert_eq!(parse("6"), Ok(Packet::Noop));
    }

    #[test]
    fn socket_io_packets_parse() {
        assert_eq!(
            parse(r#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#),
            Ok(Packet::Connect)
        );
        assert_eq!(parse("41"), Ok(Packet::Disconnect));
        assert_eq!(
            parse(r#"42["msg",{"t":1}]"#),
            Ok(Packet::Event {
                ack: None,
                data: r#"["msg",{"t":1}]"#
            })
        );
        assert_eq!(
            parse(r#"4213["hello"]"#),
            Ok(Packet::Event {
                ack: Some(13),
                data: r#"["hello"]"#
            })
        );
        assert_eq!(parse("437[]"), Ok(Packet::Ack { id: 7, data: "[]" }));
        assert_eq!(
            parse(r#"43/,12["ok"]"#),
            Ok(Packet::Ack {
                id: 12,
                data: r#"["ok"]"#
            })
        );
        assert_eq!(
            parse(r#"44{"message":"Not authorized"}"#),
            Ok(Packet::ConnectError(r#"{"message":"Not authorized"}"#))
        );
    }

    #[test]
    fn malformed_packets_are_rejected() {
        for frame in ["", "9", "4", "47[]", "43[]", "42/chat[]", "4299999999999[]"] {
            assert!(parse(frame).is_err(), "{frame:?} parsed");
        }
    }

    #[test]
    fn client_packets_have_socket_io_framing() {
        assert_eq!(subscribe("bench-4", 1), r#"421["subscribe","bench-4"]"#);
        let payload = stamped(1_763_900_000_123_456_789, 100);
        let payload = std::str::from_utf8(&payload).expect("stamped payloads are JSON");
        let frame = publish("bench-0", payload, 42);
        let Ok(Packet::Event { ack, data }) = parse(&frame) else {
            panic!("{frame} is not an event");
        };
        assert_eq!(ack, Some(42));
        let args: serde_json::Value = serde_json::from_str(data).expect("JSON array");
        assert_eq!(args[0], "publish");
        assert_eq!(args[1], "bench-0");
        assert_eq!(
            args[2]["t"],
            serde_json::json!(1_763_900_000_123_456_789u64)
        );
    }

    #[test]
    fn the_stamp_is_found_in_a_broadcast_event() {
        let sent = 1_763_900_000_000_000_001;
        let payload = stamped(sent, 64);
        let frame = format!(
            "42[\"msg\",{}]",
            std::str::from_utf8(&payload).expect("JSON")
        );
        let Ok(Packet::Event { data, .. }) = parse(&frame) else {
            panic!("not an event");
        };
        let inner = payload_of(data).expect("payload");
        assert_eq!(read_stamp(inner.as_bytes()), Some(sent));
        assert_eq!(payload_of(r#"["msg","hello"]"#), None);
    }
}
