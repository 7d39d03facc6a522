//! RFC 6455 framing for the server side of a WebSocket: parsing what clients send, and the
//! headers of what the server writes.
//!
//! Written here rather than taken from a WebSocket library because of what an idle
//! connection costs: a library keeps a read buffer and a write buffer per connection for the
//! connection's life, and most realtime connections are idle almost all the time. The
//! [`Reader`] holds bytes only while a frame is incomplete, and the server's frames are
//! written straight from the (shared) payload with a header in front, so an idle connection
//! holds no buffer at all.
//!
//! No extensions are negotiated (no per-message deflate), so any RSV bit is a protocol error.

use bytes::{Buf, Bytes, BytesMut};

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opcode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A complete message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// A text message; its bytes are valid UTF-8.
    Text(Bytes),
    Binary(Bytes),
    /// A ping, whose payload the pong must echo.
    Ping(Bytes),
    Pong,
    /// The client's close frame, with its status code if it sent one.
    Close(Option<u16>),
}

/// Why the reader gave up on the connection; each maps to a close code.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// A message (or frame) longer than the limit: close 1009.
    TooBig { size: u64, max_size: usize },
    /// A text message that is not UTF-8: close 1007.
    InvalidUtf8,
    /// Anything else RFC 6455 forbids (unmasked client frame, RSV bits, unknown opcode,
    /// fragmented or long control frame, continuation out of place): close 1002.
    Protocol(&'static str),
}

impl ReadError {
    /// The WebSocket close code and reason this error ends the connection with.
    pub(crate) fn close(&self) -> (u16, &'static str) {
        match self {
            ReadError::TooBig { .. } => (CLOSE_MESSAGE_TOO_BIG, "message too big"),
            ReadError::InvalidUtf8 => (CLOSE_INVALID_PAYLOAD, "invalid UTF-8"),
            ReadError::Protocol(_) => (CLOSE_PROTOCOL_ERROR, "protocol error"),
        }
    }
}

/// RFC 6455 1002: protocol error.
pub(crate) const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// RFC 6455 1007: invalid frame payload data (here: a text message that is not UTF-8).
pub(crate) const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// RFC 6455 1009: message too big — what Centrifugo's WebSocket library sends too.
pub(crate) const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;
/// Control frames carry at most this much (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Turns the bytes read from a client into [`Inbound`] items.
#[derive(Debug)]
pub(crate) struct Reader {
    /// An incomplete frame carried over to the next read; no allocation while idle.
    pending: BytesMut,
    /// A fragmented message being assembled: whether it is text, and its bytes so far.
    message: Option<(bool, BytesMut)>,
    max_message: usize,
}

impl Reader {
    /// A reader that refuses messages over `max_message` bytes.
    pub(crate) fn new(max_message: usize) -> Reader {
        Reader {
            pending: BytesMut::new(),
            message: None,
            max_message,
        }
    }

    /// Parses `data` (what one read returned) after whatever was left from earlier reads,
    /// appending every complete item to `out`. After an error the connection must close.
    pub(crate) fn feed(&mut self, data: &[u8], out: &mut Vec<Inbound>) -> Result<(), ReadError> {
        if self.pending.is_empty() {
            // The usual case: whole frames in one read, parsed where they lie.
            let used = self.parse(data, out)?;
            if used < data.len() {
                self.pending.extend_from_slice(&data[used..]);
            }
            return Ok(());
        }
        self.pending.extend_from_slice(data);
        let mut pending = std::mem::take(&mut self.pending);
        let used = self.parse(&pending, out)?;
        pending.advance(used);
        // Keep the buffer only while it holds something: an idle connection holds none.
        self.pending = if pending.is_empty() {
            BytesMut::new()
        } else {
            pending
        };
        Ok(())
    }

    /// Parses complete frames from the front of `buf`; returns how many bytes they took.
    fn parse(&mut self, buf: &[u8], out: &mut Vec<Inbound>) -> Result<usize, ReadError> {
        let mut at = 0;
        while let Some(header) = self.header(&buf[at..])? {
            let start = at + header.len;
            let Some(end) = usize::try_from(header.payload)
                .ok()
                .and_then(|n| start.checked_add(n))
                .filter(|end| *end <= buf.len())
            else {
                break;
            };
            self.frame(&header, &buf[start..end], out)?;
            at = end;
        }
        Ok(at)
    }

    /// Reads a frame header from the front of `buf`, checking everything that can be checked
    /// before the payload arrives; `None` if the header itself is incomplete.
    fn header(&self, buf: &[u8]) -> Result<Option<Header>, ReadError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(ReadError::Protocol("reserved bits set"));
        }
        let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(ReadError::Protocol("reserved opcode"))?;
        if b1 & 0x80 == 0 {
            return Err(ReadError::Protocol("client frame not masked"));
        }
        let (payload, len_bytes) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut be = [0; 8];
                    be.copy_from_slice(b);
                    let len = u64::from_be_bytes(be);
                    if len >> 63 != 0 {
                        return Err(ReadError::Protocol("frame length over 2^63"));
                    }
                    (len, 8)
                }
                None => return Ok(None),
            },
            short => (u64::from(short), 0),
        };
        if opcode.is_control() {
            if !fin {
                return Err(ReadError::Protocol("fragmented control frame"));
            }
            if payload > MAX_CONTROL_PAYLOAD {
                return Err(ReadError::Protocol("control frame over 125 bytes"));
            }
        } else {
            match (opcode, self.message.is_some()) {
                (Opcode::Continuation, false) => {
                    return Err(ReadError::Protocol("continuation without a message"));
                }
                (Opcode::Text | Opcode::Binary, true) => {
                    return Err(ReadError::Protocol("new message inside a fragmented one"));
                }
                _ => {}
            }
            let so_far = self.message.as_ref().map_or(0, |(_, m)| m.len());
            let size = payload.saturating_add(so_far as u64);
            if size > self.max_message as u64 {
                return Err(ReadError::TooBig {
                    size,
                    max_size: self.max_message,
                });
            }
        }
        let len = 2 + len_bytes + 4;
        let Some(mask) = buf.get(len - 4..len) else {
            return Ok(None);
        };
        debug_assert!(len <= MAX_HEADER);
        Ok(Some(Header {
            fin,
            opcode,
            mask: [mask[0], mask[1], mask[2], mask[3]],
            payload,
            len,
        }))
    }

    /// Handles one complete frame whose masked payload is `masked`.
    fn frame(
        &mut self,
        header: &Header,
        masked: &[u8],
        out: &mut Vec<Inbound>,
    ) -> Result<(), ReadError> {
        match header.opcode {
            Opcode::Text | Opcode::Binary if header.fin => {
                let data = unmask(masked, header.mask, BytesMut::new()).freeze();
                out.push(message(header.opcode == Opcode::Text, data)?);
            }
            Opcode::Text | Opcode::Binary => {
                let data = unmask(masked, header.mask, BytesMut::new());
                self.message = Some((header.opcode == Opcode::Text, data));
            }
            Opcode::Continuation => {
                let Some((text, so_far)) = self.message.take() else {
                    return Err(ReadError::Protocol("continuation without a message"));
                };
                let data = unmask(masked, header.mask, so_far);
                if header.fin {
                    out.push(message(text, data.freeze())?);
                } else {
                    self.message = Some((text, data));
                }
            }
            Opcode::Ping => {
                out.push(Inbound::Ping(
                    unmask(masked, header.mask, BytesMut::new()).freeze(),
                ));
            }
            Opcode::Pong => out.push(Inbound::Pong),
            Opcode::Close => {
                let body = unmask(masked, header.mask, BytesMut::new());
                let code = match body.len() {
                    0 => None,
                    1 => return Err(ReadError::Protocol("close frame of one byte")),
                    _ => {
                        if std::str::from_utf8(&body[2..]).is_err() {
                            return Err(ReadError::InvalidUtf8);
                        }
                        Some(u16::from_be_bytes([body[0], body[1]]))
                    }
                };
                out.push(Inbound::Close(code));
            }
        }
        Ok(())
    }
}

fn message(text: bool, data: Bytes) -> Result<Inbound, ReadError> {
    if !text {
        return Ok(Inbound::Binary(data));
    }
    if std::str::from_utf8(&data).is_err() {
        return Err(ReadError::InvalidUtf8);
    }
    Ok(Inbound::Text(data))
}

/// A parsed frame header.
#[derive(Debug)]
struct Header {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    payload: u64,
    /// Bytes the header took.
    len: usize,
}

/// Appends `masked`, unmasked with `mask`, to `into`. The mask restarts with every frame, so
/// it is applied from the start of `masked`, wherever `into` ends.
fn unmask(masked: &[u8], mask: [u8; 4], mut into: BytesMut) -> BytesMut {
    let start = into.len();
    into.extend_from_slice(masked);
    let payload = &mut into[start..];
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask) {
        *byte ^= key;
    }
    into
}

/// The header of an unmasked server frame with `FIN` set: the bytes and how many are used.
pub(crate) fn server_header(opcode: Opcode, payload: usize) -> ([u8; 10], usize) {
    let mut head = [0u8; 10];
    head[0] = 0x80 | opcode as u8;
    let len = if payload < 126 {
        // Fits in seven bits.
        head[1] = payload as u8;
        2
    } else if let Ok(short) = u16::try_from(payload) {
        head[1] = 126;
        head[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(payload as u64).to_be_bytes());
        10
    };
    (head, len)
}

/// The payload of a close frame: the code, then the reason cut to fit a control frame.
pub(crate) fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD as usize - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a browser would send it.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn read_all(reader: &mut Reader, bytes: &[u8]) -> Result<Vec<Inbound>, ReadError> {
        let mut out = Vec::new();
        reader.feed(bytes, &mut out)?;
        Ok(out)
    }

    #[test]
    fn rfc_example_masked_hello() {
        // RFC 6455 §5.7: "A single-frame masked text message".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut reader = Reader::new(1024);
        let out = read_all(&mut reader, &frame).unwrap();
        assert_eq!(out, vec![Inbound::Text(Bytes::from_static(b"Hello"))]);
        assert!(reader.pending.is_empty() && reader.pending.capacity() == 0);
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_the_buffer_is_freed() {
        let payload: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let mut stream = client_frame(true, 2, &payload, MASK);
        stream.extend(client_frame(true, 1, b"{\"id\":1}", MASK));
        for split in 1..stream.len() {
            let mut reader = Reader::new(1024);
            let mut out = read_all(&mut reader, &stream[..split]).unwrap();
            out.extend(read_all(&mut reader, &stream[split..]).unwrap());
            assert_eq!(
                out,
                vec![
                    Inbound::Binary(Bytes::from(payload.clone())),
                    Inbound::Text(Bytes::from_static(b"{\"id\":1}")),
                ],
                "split at {split}"
            );
            assert_eq!(reader.pending.capacity(), 0, "split at {split}");
        }
    }

    #[test]
    fn fragments_join_with_control_frames_between() {
        let mut stream = client_frame(false, 1, "héllo ".as_bytes(), MASK);
        stream.extend(client_frame(true, 9, b"are you there", MASK));
        stream.extend(client_frame(false, 0, "wör".as_bytes(), [1, 2, 3, 4]));
        stream.extend(client_frame(true, 0, b"ld", [9, 8, 7, 6]));
        let mut reader = Reader::new(1024);
        let out = read_all(&mut reader, &stream).unwrap();
        assert_eq!(
            out,
            vec![
                Inbound::Ping(Bytes::from_static(b"are you there")),
                Inbound::Text(Bytes::from("héllo wörld")),
            ]
        );
    }

    #[test]
    fn a_character_split_over_fragments_is_valid_utf8() {
        let bytes = "é".as_bytes();
        let mut stream = client_frame(false, 1, &bytes[..1], MASK);
        stream.extend(client_frame(true, 0, &bytes[1..], MASK));
        let out = read_all(&mut Reader::new(64), &stream).unwrap();
        assert_eq!(out, vec![Inbound::Text(Bytes::from("é"))]);
    }

    #[test]
    fn lengths_of_16_and_64_bits() {
        for size in [125, 126, 65_535, 65_536, 70_000] {
            let payload = vec![b'x'; size];
            let frame = client_frame(true, 2, &payload, MASK);
            let out = read_all(&mut Reader::new(100_000), &frame).unwrap();
            assert_eq!(out, vec![Inbound::Binary(Bytes::from(payload))], "{size}");
        }
    }

    #[test]
    fn too_big_is_refused_from_the_header_alone() {
        let frame = client_frame(true, 2, &[0; 2000], MASK);
        // Only the header has arrived: the size is known, the payload is not needed.
        let err = read_all(&mut Reader::new(1000), &frame[..8]).unwrap_err();
        assert_eq!(
            err,
            ReadError::TooBig {
                size: 2000,
                max_size: 1000
            }
        );
        assert_eq!(err.close().0, 1009);
        // Fragments count together.
        let mut stream = client_frame(false, 2, &[0; 600], MASK);
        stream.extend(client_frame(true, 0, &[0; 600], MASK));
        let err = read_all(&mut Reader::new(1000), &stream).unwrap_err();
        assert!(
            matches!(err, ReadError::TooBig { size: 1200, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn invalid_utf8_text_is_1007() {
        let frame = client_frame(true, 1, &[0xff, 0xfe, b'a'], MASK);
        let err = read_all(&mut Reader::new(64), &frame).unwrap_err();
        assert_eq!(err, ReadError::InvalidUtf8);
        assert_eq!(err.close().0, 1007);
    }

    #[test]
    fn protocol_errors_are_1002() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unmasked", vec![0x81, 0x02, b'h', b'i']),
            ("rsv1", {
                let mut f = client_frame(true, 1, b"hi", MASK);
                f[0] |= 0x40;
                f
            }),
            ("opcode 3", client_frame(true, 3, b"", MASK)),
            ("opcode 0xB", client_frame(true, 0xB, b"", MASK)),
            ("fragmented ping", client_frame(false, 9, b"", MASK)),
            ("long ping", client_frame(true, 9, &[0; 126], MASK)),
            ("lone continuation", client_frame(true, 0, b"x", MASK)),
            ("message in a message", {
                let mut f = client_frame(false, 1, b"a", MASK);
                f.extend(client_frame(true, 2, b"b", MASK));
                f
            }),
            ("one-byte close", client_frame(true, 8, &[3], MASK)),
            (
                "2^63 length",
                vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
            ),
        ];
        for (name, bytes) in cases {
            let err = read_all(&mut Reader::new(1 << 20), &bytes).unwrap_err();
            assert!(matches!(err, ReadError::Protocol(_)), "{name}: {err:?}");
            assert_eq!(err.close().0, 1002, "{name}");
        }
    }

    #[test]
    fn close_frames_carry_their_code() {
        let mut payload = 1001u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"going away");
        let mut stream = client_frame(true, 8, &payload, MASK);
        stream.extend(client_frame(true, 8, b"", MASK));
        stream.extend(client_frame(true, 0xA, b"late pong", MASK));
        let out = read_all(&mut Reader::new(64), &stream).unwrap();
        assert_eq!(
            out,
            vec![
                Inbound::Close(Some(1001)),
                Inbound::Close(None),
                Inbound::Pong
            ]
        );
    }

    #[test]
    fn server_headers_use_the_shortest_length() {
        assert_eq!(
            server_header(Opcode::Text, 5),
            ([0x81, 5, 0, 0, 0, 0, 0, 0, 0, 0], 2)
        );
        let (head, len) = server_header(Opcode::Binary, 300);
        assert_eq!(&head[..len], &[0x82, 126, 0x01, 0x2c]);
        let (head, len) = server_header(Opcode::Text, 70_000);
        assert_eq!(&head[..len], &[0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
        // What a client's parser reads back: opcode, FIN, no mask.
        let (head, _) = server_header(Opcode::Close, 2);
        assert_eq!(head[0] & 0x0F, 0x8);
        assert_eq!(head[1] & 0x80, 0);
    }

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        let reason = "é".repeat(100);
        let payload = close_payload(3000, &reason);
        assert!(payload.len() <= 125);
        assert_eq!(&payload[..2], &3000u16.to_be_bytes());
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
