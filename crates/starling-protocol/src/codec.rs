//! Framing of commands and replies into transport messages.
//!
//! One WebSocket message may carry several commands or replies. JSON frames
//! separate them with `\n`; Protobuf frames are a sequence of
//! varint-length-delimited messages.

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{Command, Reply};

/// WebSocket subprotocol that selects the Protobuf encoding.
pub const PROTOBUF_SUBPROTOCOL: &str = "centrifuge-protobuf";

/// Wire encoding of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// JSON text frames, messages separated by `\n`.
    #[default]
    Json,
    /// Protobuf binary frames, messages length-delimited.
    Protobuf,
}

impl Encoding {
    /// The encoding a WebSocket subprotocol asks for: [`PROTOBUF_SUBPROTOCOL`]
    /// means Protobuf, anything else (or none) means JSON.
    pub fn from_subprotocol(protocol: Option<&str>) -> Encoding {
        match protocol {
            Some(p) if p.trim().eq_ignore_ascii_case(PROTOBUF_SUBPROTOCOL) => Encoding::Protobuf,
            _ => Encoding::Json,
        }
    }

    /// The subprotocol a client requests for this encoding.
    pub fn subprotocol(self) -> Option<&'static str> {
        match self {
            Encoding::Json => None,
            Encoding::Protobuf => Some(PROTOBUF_SUBPROTOCOL),
        }
    }

    /// Whether frames are binary (Protobuf) rather than text (JSON).
    pub fn is_binary(self) -> bool {
        self == Encoding::Protobuf
    }
}

/// A transport message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A line of a JSON frame is not a valid message (this includes invalid UTF-8).
    #[error("invalid JSON message on line {line}: {source}")]
    Json {
        /// 1-based line number within the frame.
        line: usize,
        /// What serde_json rejected.
        #[source]
        source: serde_json::Error,
    },
    /// A message of a Protobuf frame (or its length prefix) is malformed.
    #[error("invalid protobuf message at index {index}: {source}")]
    Protobuf {
        /// 0-based index of the message within the frame.
        index: usize,
        /// What prost rejected.
        #[source]
        source: prost::DecodeError,
    },
    /// A Protobuf length prefix promises more bytes than the frame holds.
    #[error(
        "protobuf message at index {index} declares {declared} bytes but only {available} remain"
    )]
    Truncated {
        /// 0-based index of the message within the frame.
        index: usize,
        /// Length from the prefix.
        declared: usize,
        /// Bytes left in the frame after the prefix.
        available: usize,
    },
    /// The frame carries more messages than the caller allows.
    #[error("frame carries more than {max} commands")]
    TooManyCommands {
        /// The limit that was exceeded.
        max: usize,
    },
}

/// A message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// JSON encoding failed, e.g. a `bytes` payload is not valid JSON.
    #[error("cannot encode message as JSON: {source}")]
    Json {
        /// What serde_json rejected.
        #[source]
        source: serde_json::Error,
    },
}

/// Decodes every command in one transport message (one WebSocket frame).
///
/// JSON: commands separated by `\n`; `\r\n`, a trailing newline and empty
/// lines are tolerated. Protobuf: a sequence of length-delimited commands.
pub fn decode_commands(encoding: Encoding, frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    decode_all(encoding, frame, usize::MAX)
}

/// Like [`decode_commands`], but fails with [`DecodeError::TooManyCommands`]
/// once the frame holds more than `max_commands` commands, before decoding
/// the excess ones.
pub fn decode_commands_limited(
    encoding: Encoding,
    frame: &[u8],
    max_commands: usize,
) -> Result<Vec<Command>, DecodeError> {
    decode_all(encoding, frame, max_commands)
}

/// Decodes every reply in one transport message (client side).
pub fn decode_replies(encoding: Encoding, frame: &[u8]) -> Result<Vec<Reply>, DecodeError> {
    decode_all(encoding, frame, usize::MAX)
}

/// Encodes one reply ready to be placed in a transport message:
/// length-delimited for Protobuf, JSON without a trailing newline.
pub fn encode_reply(encoding: Encoding, reply: &Reply) -> Result<Bytes, EncodeError> {
    encode_one(encoding, reply)
}

/// Encodes one command ready to be placed in a transport message (client side).
pub fn encode_command(encoding: Encoding, command: &Command) -> Result<Bytes, EncodeError> {
    encode_one(encoding, command)
}

fn encode_one<M: prost::Message + Serialize>(
    encoding: Encoding,
    message: &M,
) -> Result<Bytes, EncodeError> {
    match encoding {
        Encoding::Json => serde_json::to_vec(message)
            .map(Bytes::from)
            .map_err(|source| EncodeError::Json { source }),
        Encoding::Protobuf => Ok(Bytes::from(message.encode_length_delimited_to_vec())),
    }
}

fn decode_all<M: prost::Message + Default + DeserializeOwned>(
    encoding: Encoding,
    frame: &[u8],
    max: usize,
) -> Result<Vec<M>, DecodeError> {
    match encoding {
        Encoding::Json => decode_json(frame, max),
        Encoding::Protobuf => decode_protobuf(frame, max),
    }
}

fn decode_json<M: DeserializeOwned>(frame: &[u8], max: usize) -> Result<Vec<M>, DecodeError> {
    let mut messages = Vec::new();
    for (index, line) in frame.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if messages.len() == max {
            return Err(DecodeError::TooManyCommands { max });
        }
        // serde_json validates UTF-8 itself and ignores surrounding
        // whitespace, which covers the '\r' of "\r\n".
        let message = serde_json::from_slice(line).map_err(|source| DecodeError::Json {
            line: index + 1,
            source,
        })?;
        messages.push(message);
    }
    Ok(messages)
}

fn decode_protobuf<M: prost::Message + Default>(
    frame: &[u8],
    max: usize,
) -> Result<Vec<M>, DecodeError> {
    let mut messages = Vec::new();
    let mut rest = frame;
    while !rest.is_empty() {
        let index = messages.len();
        if index == max {
            return Err(DecodeError::TooManyCommands { max });
        }
        let declared = prost::decode_length_delimiter(&mut rest)
            .map_err(|source| DecodeError::Protobuf { index, source })?;
        if declared > rest.len() {
            return Err(DecodeError::Truncated {
                index,
                declared,
                available: rest.len(),
            });
        }
        let (body, tail) = rest.split_at(declared);
        let message = M::decode(body).map_err(|source| DecodeError::Protobuf { index, source })?;
        messages.push(message);
        rest = tail;
    }
    Ok(messages)
}

/// Joins already-encoded messages into one transport message, for coalesced
/// writes: `\n` between JSON parts, plain concatenation for Protobuf.
///
/// A frame of a single part is that part's `Bytes`, uncopied, which keeps the
/// common one-publication write free of copies.
#[derive(Debug)]
pub struct FrameBuilder {
    encoding: Encoding,
    /// The only part so far; moved into `buf` when a second one arrives.
    single: Option<Bytes>,
    buf: BytesMut,
    parts: usize,
}

impl FrameBuilder {
    /// An empty builder for `encoding`.
    pub fn new(encoding: Encoding) -> FrameBuilder {
        FrameBuilder {
            encoding,
            single: None,
            buf: BytesMut::new(),
            parts: 0,
        }
    }

    /// The encoding frames are built for.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Appends one encoded message (from [`encode_reply`] or [`encode_command`]).
    pub fn push(&mut self, part: &Bytes) {
        if self.parts == 0 {
            self.single = Some(part.clone());
        } else {
            if let Some(first) = self.single.take() {
                self.buf.extend_from_slice(&first);
            }
            if self.encoding == Encoding::Json {
                self.buf.extend_from_slice(b"\n");
            }
            self.buf.extend_from_slice(part);
        }
        self.parts += 1;
    }

    /// Length in bytes of the frame built so far.
    pub fn len_bytes(&self) -> usize {
        match &self.single {
            Some(first) => first.len(),
            None => self.buf.len(),
        }
    }

    /// Number of parts pushed so far.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// Whether nothing was pushed since creation or the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.parts == 0
    }

    /// Takes the frame built so far and leaves the builder empty for reuse.
    pub fn finish(&mut self) -> Bytes {
        self.parts = 0;
        match self.single.take() {
            Some(first) => first,
            None => self.buf.split().freeze(),
        }
    }
}

#[cfg(test)]
mod tests;
