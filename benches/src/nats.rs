//! NATS's text protocol, as far as the generator speaks it: the client's
//! `CONNECT`, `SUB`, `PUB` and `PING`/`PONG`, and a parser for what
//! nats-server sends (`INFO`, `MSG`, `PING`, `PONG`, `+OK`, `-ERR`).
//!
//! Over WebSocket nats-server sends binary frames that do not line up with
//! protocol messages (a frame may end inside a `MSG`, or hold dozens), so
//! [`next_op`] works on a byte stream: it returns `None` until a whole
//! message is there, and the caller keeps the rest for the next frame.
//! See <https://docs.nats.io/reference/protocols/client>.

use bytes::{BufMut, Bytes, BytesMut};

/// Longest control line accepted before a `\r\n` must have appeared. nats-server's
/// own limit for control lines is 4 KiB; an `INFO` with many `connect_urls` can
/// be longer, so this is generous. Past it the stream is not NATS.
const MAX_CONTROL_LINE: usize = 64 * 1024;

/// One message from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op<'a> {
    /// `INFO {json}`: the server's greeting.
    Info,
    /// `MSG <subject> <sid> [reply-to] <#bytes>\r\n<payload>\r\n`.
    Msg {
        /// The subject the message was published to.
        subject: &'a [u8],
        /// The payload.
        payload: &'a [u8],
    },
    /// `PING`: the server checks that the client is alive; answer `PONG`.
    Ping,
    /// `PONG`: the answer to one of the client's `PING`s, in order.
    Pong,
    /// `+OK`: sent only in verbose mode, which the generator turns off.
    Ok,
    /// `-ERR '<message>'`.
    Err(&'a [u8]),
}

/// The bytes cannot be NATS's protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// A control line longer than [`MAX_CONTROL_LINE`] without its end.
    #[error("NATS control line longer than {MAX_CONTROL_LINE} bytes")]
    LineTooLong,
    /// An operation this parser does not know (e.g. `HMSG`, never requested).
    #[error("unexpected NATS operation {0:?}")]
    Unknown(String),
    /// A `MSG` line with missing or non-numeric fields.
    #[error("malformed NATS MSG line {0:?}")]
    BadMsg(String),
    /// A payload not followed by `\r\n`.
    #[error("NATS payload not terminated by CRLF")]
    Unterminated,
}

/// The first complete message in `buf` and the bytes it spans; `Ok(None)`
/// when `buf` ends before the message does.
pub(crate) fn next_op(buf: &[u8]) -> Result<Option<(Op<'_>, usize)>, ParseError> {
    let Some(line_end) = find_crlf(buf) else {
        return if buf.len() > MAX_CONTROL_LINE {
            Err(ParseError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    let line = &buf[..line_end];
    let after_line = line_end + 2;
    let (verb, rest) = split_verb(line);
    let op = if verb.eq_ignore_ascii_case(b"MSG") {
        return msg(buf, rest, after_line);
    } else if verb.eq_ignore_ascii_case(b"PING") {
        Op::Ping
    } else if verb.eq_ignore_ascii_case(b"PONG") {
        Op::Pong
    } else if verb.eq_ignore_ascii_case(b"INFO") {
        Op::Info
    } else if verb.eq_ignore_ascii_case(b"+OK") {
        Op::Ok
    } else if verb.eq_ignore_ascii_case(b"-ERR") {
        Op::Err(trim(rest))
    } else {
        return Err(ParseError::Unknown(
            String::from_utf8_lossy(&line[..line.len().min(32)]).into_owned(),
        ));
    };
    Ok(Some((op, after_line)))
}

/// The rest of a `MSG` whose control line ends at `after_line`.
fn msg<'a>(
    buf: &'a [u8],
    fields: &'a [u8],
    after_line: usize,
) -> Result<Option<(Op<'a>, usize)>, ParseError> {
    let bad = || ParseError::BadMsg(String::from_utf8_lossy(fields).into_owned());
    let mut parts = fields
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|part| !part.is_empty());
    let subject = parts.next().ok_or_else(bad)?;
    let _sid = parts.next().ok_or_else(bad)?;
    let (first, second) = (parts.next().ok_or_else(bad)?, parts.next());
    if parts.next().is_some() {
        return Err(bad());
    }
    // With a reply subject the byte count is the fourth field.
    let size = parse_usize(second.unwrap_or(first)).ok_or_else(bad)?;
    let end = after_line + size;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ParseError::Unterminated);
    }
    let payload = &buf[after_line..end];
    Ok(Some((Op::Msg { subject, payload }, end + 2)))
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|pair| pair == b"\r\n")
}

fn split_verb(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(space) => (&line[..space], &line[space + 1..]),
        None => (line, &[]),
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn parse_usize(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, digit| {
        digit
            .is_ascii_digit()
            .then(|| acc * 10 + usize::from(digit - b'0'))
    })
}

/// `CONNECT` (not verbose, not pedantic, echo on) followed by `PING`: the
/// `PONG` tells the client the server accepted the connection.
pub(crate) fn connect_ping(name: &str) -> Bytes {
    // Echo stays on so that a publisher that also subscribes receives its
    // own messages, as in Starling's many-rooms scenario.
    let options = serde_json::json!({
        "verbose": false,
        "pedantic": false,
        "tls_required": false,
        "name": name,
        "lang": "rust",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": 1,
        "echo": true,
        "headers": false,
        "no_responders": false,
    });
    Bytes::from(format!("CONNECT {options}\r\nPING\r\n"))
}

/// `SUB <subject> <sid>` followed by `PING`: the `PONG` confirms the
/// subscription is in place.
pub(crate) fn sub_ping(subject: &str, sid: u64) -> Bytes {
    Bytes::from(format!("SUB {subject} {sid}\r\nPING\r\n"))
}

/// `PUB <subject> <#bytes>\r\n<payload>\r\n` followed by `PING`. NATS has
/// no per-publication acknowledgement; the `PONG` comes back once the
/// server has processed the `PUB` (it handles a connection's input in
/// order), which is the closest equivalent of Starling's publish reply.
pub(crate) fn pub_ping(subject: &str, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(subject.len() + payload.len() + 32);
    out.put_slice(b"PUB ");
    out.put_slice(subject.as_bytes());
    out.put_u8(b' ');
    out.put_slice(payload.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    out.put_slice(payload);
    out.put_slice(b"\r\nPING\r\n");
    out.freeze()
}

/// The answer to a server `PING`.
pub(crate) const PONG: &[u8] = b"PONG\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message in `stream`, fed in pieces of `chunk` bytes the way
    /// WebSocket frames may cut it.
    fn parse_in_chunks(stream: &[u8], chunk: usize) -> Vec<String> {
        let mut pending = Vec::new();
        let mut seen = Vec::new();
        for piece in stream.chunks(chunk) {
            pending.extend_from_slice(piece);
            let mut used = 0;
            while let Some((op, len)) = next_op(&pending[used..]).expect("valid stream") {
                seen.push(match op {
                    Op::Msg { subject, payload } => format!(
                        "MSG {} {}",
                        String::from_utf8_lossy(subject),
                        String::from_utf8_lossy(payload)
                    ),
                    Op::Err(text) => format!("ERR {}", String::from_utf8_lossy(text)),
                    other => format!("{other:?}"),
                });
                used += len;
            }
            pending.drain(..used);
        }
        assert!(pending.is_empty(), "left over: {pending:?}");
        seen
    }

    const STREAM: &[u8] = b"INFO {\"server_id\":\"X\",\"max_payload\":1048576}\r\n\
        PONG\r\n\
        MSG bench-0 1 5\r\nhello\r\n\
        MSG bench-0 1 _INBOX.reply 12\r\nhello\r\nagain\r\n\
        MSG bench-0 1 0\r\n\r\n\
        ping\r\n\
        +OK\r\n\
        -ERR 'Slow Consumer'\r\n";

    fn expected() -> Vec<String> {
        vec![
            "Info".to_owned(),
            "Pong".to_owned(),
            "MSG bench-0 hello".to_owned(),
            "MSG bench-0 hello\r\nagain".to_owned(),
            "MSG bench-0 ".to_owned(),
            "Ping".to_owned(),
            "Ok".to_owned(),
            "ERR 'Slow Consumer'".to_owned(),
        ]
    }

    #[test]
    fn a_whole_stream_parses_into_its_messages() {
        assert_eq!(parse_in_chunks(STREAM, STREAM.len()), expected());
    }

    #[test]
    fn messages_cut_anywhere_by_frames_parse_the_same() {
        for chunk in 1..40 {
            assert_eq!(parse_in_chunks(STREAM, chunk), expected(), "chunk {chunk}");
        }
    }

    #[test]
    fn an_incomplete_payload_waits_for_more_bytes() {
        assert_eq!(next_op(b"MSG a 1 10\r\n12345"), Ok(None));
        assert_eq!(
            next_op(b"MSG a 1 5\r\n12345"),
            Ok(None),
            "needs the CRLF too"
        );
        assert_eq!(next_op(b"PIN"), Ok(None));
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            next_op(b"HMSG a 1 10 20\r\n"),
            Err(ParseError::Unknown(_))
        ));
        assert!(matches!(next_op(b"MSG a\r\n"), Err(ParseError::BadMsg(_))));
        assert!(matches!(
            next_op(b"MSG a 1 x\r\n"),
            Err(ParseError::BadMsg(_))
        ));
        assert_eq!(
            next_op(b"MSG a 1 2\r\nabcd\r\n"),
            Err(ParseError::Unterminated)
        );
        assert_eq!(
            next_op(&vec![b'x'; MAX_CONTROL_LINE + 1]),
            Err(ParseError::LineTooLong)
        );
    }

    #[test]
    fn client_messages_are_framed_with_a_ping() {
        assert_eq!(&sub_ping("bench-3", 1)[..], b"SUB bench-3 1\r\nPING\r\n");
        assert_eq!(
            &pub_ping("bench-0", b"{\"t\":1}")[..],
            b"PUB bench-0 7\r\n{\"t\":1}\r\nPING\r\n"
        );
        let connect = connect_ping("loadgen");
        let text = std::str::from_utf8(&connect).expect("UTF-8");
        let json = text
            .strip_prefix("CONNECT ")
            .and_then(|rest| rest.strip_suffix("\r\nPING\r\n"))
            .expect("CONNECT … PING");
        let options: serde_json::Value = serde_json::from_str(json).expect("JSON options");
        assert_eq!(options["verbose"], false);
        assert_eq!(options["pedantic"], false);
        assert_eq!(options["echo"], true);
    }

    #[test]
    fn what_the_client_sends_parses_as_nats_framing() {
        // The generator's own PUB has the MSG shape minus the sid, so a MSG
        // built from it must carry the same payload back.
        let publish = pub_ping("bench-0", b"payload");
        let body = &publish[b"PUB bench-0 7\r\n".len()..];
        let delivered = [b"MSG bench-0 9 7\r\n".as_slice(), body].concat();
        let (op, len) = next_op(&delivered).expect("valid").expect("complete");
        assert_eq!(
            op,
            Op::Msg {
                subject: b"bench-0",
                payload: b"payload"
            }
        );
        assert_eq!(next_op(&delivered[len..]), Ok(Some((Op::Ping, 6))));
    }
}
