//! Inter-node frames and their byte format. Pure: no sockets, no tasks.
//!
//! One frame on the wire:
//!
//! ```text
//! +----------------------+-------------------------------------------+
//! | len: u32 big-endian  | body: `len` bytes of MessagePack          |
//! +----------------------+-------------------------------------------+
//!                          body = [v, frame]   (a 2-element array)
//!                          v     = PROTOCOL_VERSION (uint)
//!                          frame = {"Kind": payload} or "Kind" (rmp-serde's enum form)
//! ```
//!
//! The version is read before the frame: a body whose `v` is not
//! [`PROTOCOL_VERSION`] is skipped without being interpreted and reported as
//! [`FrameError::UnknownVersion`], so a peer from a future release is refused
//! with a clear reason instead of a confusing parse error.

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use starling_placement::NodeId;

use crate::data::{Call, CallReply, FromRoom, HandoffMsg, ToRoom};
use crate::error::FrameError;

/// The frame-format version this build speaks, carried in every frame.
///
/// Any change to the encoding of an existing frame kind, and any new frame
/// kind, bumps it: frames are positional (structs encode as arrays), so an
/// old peer cannot read a changed frame, and refusing it by version is
/// clearer than failing on a field.
pub const PROTOCOL_VERSION: u16 = 4;

/// The largest frame body accepted or produced, in bytes (16 MiB).
///
/// Bounds the buffer one length prefix can make a node allocate. Data-plane
/// frames are far smaller; bulk transfers (history, hand-off) are chunked
/// below it.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Bytes of the length prefix in front of every frame body.
pub const LEN_PREFIX: usize = 4;

/// Nesting depth the body decoder allows. Our frames nest a few levels;
/// the limit keeps a hostile body from recursing deep into the skipper.
const MAX_DEPTH: usize = 32;

/// One message between two nodes.
///
/// Kinds come with the planes that use them: the data plane adds interest,
/// forwarded publishes, publications, history and presence queries and
/// hand-off. Adding a kind bumps [`PROTOCOL_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// First frame in each direction of a link: who is speaking.
    Hello(Hello),
    /// Liveness and round-trip probe; a [`PeerLink`](crate::PeerLink)
    /// answers it with a [`Frame::Pong`] carrying the same `seq`.
    Ping {
        /// Chosen by the sender, echoed in the pong.
        seq: u64,
    },
    /// Answer to a [`Frame::Ping`].
    Pong {
        /// The `seq` of the ping this answers.
        seq: u64,
    },
    /// A Raft RPC: the first frame of a stream on a Raft connection (and the
    /// first frame of the connection, which tells the acceptor that it is
    /// one). Added in version 2.
    RaftRequest {
        /// The calling node; the acceptor checks it against the caller's
        /// certificate.
        from: NodeId,
        /// The MessagePack-encoded request (the control plane's own types).
        body: RaftBody,
    },
    /// The answer to a [`Frame::RaftRequest`], on the same stream. Added in
    /// version 2.
    RaftResponse {
        /// The MessagePack-encoded response.
        body: RaftBody,
    },
    /// A data- or control-plane request, answered by a [`Frame::Reply`]
    /// with the same id. Added in version 3.
    Call {
        /// Chosen by the caller, unique among its calls in flight.
        id: u64,
        /// The request.
        call: Call,
    },
    /// The answer to the [`Frame::Call`] with this id. Added in version 3.
    Reply {
        /// The call's id.
        id: u64,
        /// The answer.
        reply: CallReply,
    },
    /// A relay's message to the owner of `room`. Added in version 3.
    ToRoom {
        /// The room.
        room: String,
        /// The message.
        msg: ToRoom,
    },
    /// The owner of `room` to a relay node. Added in version 3.
    FromRoom {
        /// The room.
        room: String,
        /// The message.
        msg: FromRoom,
    },
    /// A shard's old owner to its new owner: room state, then the end of the shard. Added in
    /// version 4.
    Handoff(HandoffMsg),
}

/// An opaque MessagePack payload of a Raft frame, carried as one `bin`
/// value.
///
/// Raft messages are openraft's types, which this crate's frame layer does
/// not need to understand (nor compare); the control plane encodes and
/// decodes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftBody(pub Vec<u8>);

impl Serialize for RaftBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for RaftBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = RaftBody;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RaftBody, E> {
        Ok(RaftBody(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<RaftBody, E> {
        Ok(RaftBody(v))
    }
}

impl Frame {
    /// The kind's name, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello(_) => "Hello",
            Frame::Ping { .. } => "Ping",
            Frame::Pong { .. } => "Pong",
            Frame::RaftRequest { .. } => "RaftRequest",
            Frame::RaftResponse { .. } => "RaftResponse",
            Frame::Call { .. } => "Call",
            Frame::Reply { .. } => "Reply",
            Frame::ToRoom { .. } => "ToRoom",
            Frame::FromRoom { .. } => "FromRoom",
            Frame::Handoff(_) => "Handoff",
        }
    }
}

/// The greeting each side sends first on a link's frame stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's node id. The acceptor checks it against the name in the
    /// sender's client certificate.
    pub node_id: NodeId,
    /// The highest frame version the sender speaks. Today always
    /// [`PROTOCOL_VERSION`]; carried so a later release can pick the highest
    /// version both sides speak.
    pub max_version: u16,
    /// The sender's `starling` release, for operators reading logs.
    pub software: String,
}

impl Hello {
    /// The Hello this build sends for `node_id`.
    pub fn new(node_id: NodeId) -> Self {
        Hello {
            node_id,
            max_version: PROTOCOL_VERSION,
            software: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// Appends `frame`, length prefix included, to `out`.
///
/// `out` is a reusable buffer: the writer batches several frames into one
/// stream write. On error `out` is left as it was.
pub fn encode_into(frame: &Frame, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    if let Err(source) = rmp_serde::encode::write(out, &(PROTOCOL_VERSION, frame)) {
        out.truncate(start);
        return Err(FrameError::Encode { source });
    }
    let len = out.len() - start - LEN_PREFIX;
    let Some(prefix) = u32::try_from(len).ok().filter(|_| len <= MAX_FRAME_LEN) else {
        out.truncate(start);
        return Err(FrameError::TooLarge {
            len: len as u64,
            max: MAX_FRAME_LEN,
        });
    };
    out[start..start + LEN_PREFIX].copy_from_slice(&prefix.to_be_bytes());
    Ok(())
}

/// Encodes `frame` with its length prefix.
pub fn encode(frame: &Frame) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_into(frame, &mut out)?;
    Ok(out)
}

/// Reads a length prefix and checks it against [`MAX_FRAME_LEN`].
pub fn decode_len(prefix: [u8; LEN_PREFIX]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix);
    match usize::try_from(len) {
        Ok(len) if len <= MAX_FRAME_LEN => Ok(len),
        _ => Err(FrameError::TooLarge {
            len: u64::from(len),
            max: MAX_FRAME_LEN,
        }),
    }
}

/// Decodes the first frame in `buf` (length prefix included) and returns it
/// with the number of bytes it took.
pub fn decode(buf: &[u8]) -> Result<(Frame, usize), FrameError> {
    let Some((prefix, rest)) = buf.split_first_chunk::<LEN_PREFIX>() else {
        return Err(FrameError::Truncated {
            expected: LEN_PREFIX,
            got: buf.len(),
        });
    };
    let len = decode_len(*prefix)?;
    let Some(body) = rest.get(..len) else {
        return Err(FrameError::Truncated {
            expected: len,
            got: rest.len(),
        });
    };
    Ok((decode_body(body)?, LEN_PREFIX + len))
}

/// Decodes one frame body (the bytes after the length prefix), which must
/// hold exactly one envelope.
pub fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
    let mut de = rmp_serde::Deserializer::new(body);
    de.set_max_depth(MAX_DEPTH);
    let decoded = Decoded::deserialize(&mut de).map_err(|source| FrameError::Malformed {
        len: body.len(),
        source,
    })?;
    let extra = de.get_ref().len();
    if extra != 0 {
        return Err(FrameError::TrailingBytes { extra });
    }
    match decoded.frame {
        Some(frame) => Ok(frame),
        None => Err(FrameError::UnknownVersion {
            got: decoded.v,
            supported: PROTOCOL_VERSION,
        }),
    }
}

/// A decoded envelope: the version, and the frame when the version is ours.
struct Decoded {
    v: u16,
    frame: Option<Frame>,
}

impl<'de> Deserialize<'de> for Decoded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_tuple(2, EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Decoded;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a frame envelope [version, frame]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Decoded, A::Error> {
        let v: u16 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        if v != PROTOCOL_VERSION {
            // Another version may shape its envelope differently: skip
            // whatever follows, uninterpreted.
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Decoded { v, frame: None });
        }
        let frame: Frame = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        Ok(Decoded {
            v,
            frame: Some(frame),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::data::{AdminOp, WireClientInfo, WirePosition, WirePublication, WireRoomState};
    use starling_placement::ShardId;

    fn with_prefix(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    fn samples() -> Vec<Frame> {
        vec![
            Frame::Hello(Hello::new(NodeId(7))),
            Frame::Ping { seq: 0 },
            Frame::Pong { seq: u64::MAX },
            Frame::RaftRequest {
                from: NodeId(3),
                body: RaftBody(vec![0, 1, 0xff]),
            },
            Frame::RaftResponse {
                body: RaftBody(Vec::new()),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for frame in samples() {
            let bytes = encode(&frame).expect("encode");
            let (back, used) = decode(&bytes).expect("decode");
            assert_eq!(back, frame);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn frames_back_to_back_decode_one_at_a_time() {
        let mut buf = Vec::new();
        encode_into(&Frame::Ping { seq: 1 }, &mut buf).expect("encode");
        encode_into(&Frame::Pong { seq: 2 }, &mut buf).expect("encode");
        let (first, used) = decode(&buf).expect("first");
        let (second, rest) = decode(&buf[used..]).expect("second");
        assert_eq!(first, Frame::Ping { seq: 1 });
        assert_eq!(second, Frame::Pong { seq: 2 });
        assert_eq!(used + rest, buf.len());
    }

    #[test]
    fn length_prefix_is_big_endian_body_length() {
        let bytes = encode(&Frame::Ping { seq: 5 }).expect("encode");
        let len = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
        assert_eq!(len as usize, bytes.len() - LEN_PREFIX);
    }

    #[test]
    fn body_is_version_then_frame() {
        let bytes = encode(&Frame::Ping { seq: 5 }).expect("encode");
        let (v, frame): (u16, Frame) = rmp_serde::from_slice(&bytes[LEN_PREFIX..]).expect("tuple");
        assert_eq!(v, PROTOCOL_VERSION);
        assert_eq!(frame, Frame::Ping { seq: 5 });
    }

    #[test]
    fn raft_body_is_one_msgpack_bin() {
        let bytes = rmp_serde::to_vec(&RaftBody(vec![1, 2, 3])).expect("encode");
        assert_eq!(bytes, vec![0xc4, 3, 1, 2, 3]);
    }

    #[test]
    fn short_prefix_is_truncated() {
        assert!(matches!(
            decode(&[0, 0]),
            Err(FrameError::Truncated {
                expected: 4,
                got: 2
            })
        ));
    }

    #[test]
    fn short_body_is_truncated() {
        let bytes = encode(&Frame::Ping { seq: 300 }).expect("encode");
        let cut = &bytes[..bytes.len() - 1];
        assert!(matches!(
            decode(cut),
            Err(FrameError::Truncated { expected, got }) if expected == got + 1
        ));
    }

    #[test]
    fn oversize_length_is_refused_before_reading_the_body() {
        let prefix = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
        assert!(matches!(
            decode(&prefix),
            Err(FrameError::TooLarge { len, max: MAX_FRAME_LEN }) if len == MAX_FRAME_LEN as u64 + 1
        ));
        assert!(matches!(
            decode_len([0xff; 4]),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_version_is_reported_with_both_versions() {
        let body = rmp_serde::to_vec(&(99u16, "whatever a later release sends", [1, 2, 3]))
            .expect("encode");
        assert!(matches!(
            decode(&with_prefix(&body)),
            Err(FrameError::UnknownVersion {
                got: 99,
                supported: PROTOCOL_VERSION
            })
        ));
    }

    #[test]
    fn unknown_kind_is_malformed_and_named() {
        let body = rmp_serde::to_vec(&(PROTOCOL_VERSION, "Teleport")).expect("encode");
        let err = decode(&with_prefix(&body)).expect_err("unknown kind");
        assert!(matches!(err, FrameError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("Teleport"), "{err}");
    }

    #[test]
    fn garbage_is_malformed() {
        let err = decode(&with_prefix(b"\xc1\xc1 not msgpack")).expect_err("garbage");
        assert!(matches!(err, FrameError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn bytes_after_the_envelope_are_refused() {
        let mut body = rmp_serde::to_vec(&(PROTOCOL_VERSION, Frame::Ping { seq: 1 })).expect("e");
        body.push(0);
        assert!(matches!(
            decode(&with_prefix(&body)),
            Err(FrameError::TrailingBytes { extra: 1 })
        ));
    }

    #[test]
    fn envelope_with_extra_elements_is_malformed() {
        let body = rmp_serde::to_vec(&(PROTOCOL_VERSION, Frame::Ping { seq: 1 }, 0u8)).expect("e");
        assert!(matches!(
            decode(&with_prefix(&body)),
            Err(FrameError::Malformed { .. })
        ));
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed() {
        // 100 nested one-element arrays behind an unknown version.
        let mut body = vec![0x92, 0x63];
        body.extend(std::iter::repeat_n(0x91, 100));
        body.push(0x00);
        assert!(matches!(
            decode(&with_prefix(&body)),
            Err(FrameError::Malformed { .. })
        ));
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (any::<u64>(), any::<u16>(), ".{0,40}").prop_map(|(id, max_version, software)| {
                Frame::Hello(Hello {
                    node_id: NodeId(id),
                    max_version,
                    software,
                })
            }),
            any::<u64>().prop_map(|seq| Frame::Ping { seq }),
            any::<u64>().prop_map(|seq| Frame::Pong { seq }),
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(
                |(from, body)| Frame::RaftRequest {
                    from: NodeId(from),
                    body: RaftBody(body),
                }
            ),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(|body| Frame::RaftResponse {
                body: RaftBody(body)
            }),
            (any::<u64>(), ".{0,20}", arb_publication()).prop_map(|(id, room, p)| Frame::Call {
                id,
                call: Call::Publish {
                    map_version: id,
                    room,
                    data: p.data,
                    info: p.info,
                    tags: p.tags,
                    skip_history: id % 2 == 0,
                },
            }),
            (any::<u64>(), any::<u64>(), ".{0,12}").prop_map(|(id, offset, epoch)| {
                Frame::Reply {
                    id,
                    reply: CallReply::Published {
                        offset,
                        epoch,
                        time: 0,
                    },
                }
            }),
            (".{0,20}", any::<u64>(), proptest::option::of(arb_info())).prop_map(
                |(room, req, presence)| Frame::ToRoom {
                    room,
                    msg: ToRoom::Subscribe {
                        map_version: req,
                        req,
                        client: "c".into(),
                        presence,
                        recover_since: Some(WirePosition {
                            offset: req,
                            epoch: "e".into(),
                        }),
                        recovery_limit: 100,
                    },
                }
            ),
            (
                ".{0,20}",
                proptest::collection::vec(arb_publication(), 0..4),
                any::<bool>()
            )
                .prop_map(|(room, publications, recovered)| Frame::FromRoom {
                    room,
                    msg: FromRoom::Subscribed {
                        req: 1,
                        position: WirePosition {
                            offset: 9,
                            epoch: "e".into(),
                        },
                        recovered,
                        publications,
                    },
                }),
            (".{0,20}", arb_publication()).prop_map(|(room, p)| Frame::FromRoom {
                room,
                msg: FromRoom::Publication(p),
            }),
            ".{0,20}".prop_map(|room| Frame::FromRoom {
                room,
                msg: FromRoom::Closed,
            }),
            (".{0,20}", any::<u64>()).prop_map(|(room, to)| Frame::FromRoom {
                room,
                msg: FromRoom::Moved { to: NodeId(to) },
            }),
            (".{0,20}", ".{0,10}", any::<u64>()).prop_map(|(room, client, origin)| {
                Frame::ToRoom {
                    room,
                    msg: ToRoom::ForwardedUnsubscribe {
                        client,
                        origin: NodeId(origin),
                    },
                }
            }),
            (
                any::<u32>(),
                any::<u64>(),
                ".{0,20}",
                proptest::collection::vec(arb_publication(), 0..3),
                proptest::collection::vec(arb_info(), 0..3),
                proptest::collection::vec((".{0,8}", any::<u64>()), 0..3),
            )
                .prop_map(|(shard, map_version, room, history, presence, subs)| {
                    Frame::Handoff(HandoffMsg::Room {
                        shard: ShardId(shard),
                        map_version,
                        state: Box::new(WireRoomState {
                            room,
                            epoch: "e".into(),
                            offset: map_version,
                            history,
                            presence,
                            subscribers: subs.into_iter().map(|(c, n)| (c, NodeId(n))).collect(),
                        }),
                    })
                }),
            (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(shard, map_version, rooms)| {
                Frame::Handoff(HandoffMsg::Done {
                    shard: ShardId(shard),
                    map_version,
                    rooms,
                })
            }),
            (any::<u32>(), any::<u64>()).prop_map(|(shard, to)| Frame::Call {
                id: 1,
                call: Call::Admin(AdminOp::MoveShard {
                    shard: ShardId(shard),
                    to: NodeId(to),
                }),
            }),
        ]
    }

    fn arb_info() -> impl Strategy<Value = WireClientInfo> {
        (
            ".{0,10}",
            ".{0,10}",
            proptest::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(user, client, info)| WireClientInfo {
                user,
                client,
                conn_info: info.clone().into(),
                chan_info: info.into(),
            })
    }

    fn arb_publication() -> impl Strategy<Value = WirePublication> {
        (
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::option::of(arb_info()),
            proptest::collection::btree_map(".{0,5}", ".{0,5}", 0..3),
            any::<i64>(),
        )
            .prop_map(|(offset, data, info, tags, time)| WirePublication {
                offset,
                data: data.into(),
                info,
                tags,
                time,
            })
    }

    proptest! {
        #[test]
        fn any_frame_round_trips(frame in arb_frame()) {
            let bytes = encode(&frame).expect("encode");
            prop_assert_eq!(decode(&bytes).expect("decode"), (frame, bytes.len()));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let _ = decode_body(&bytes);
        }

        #[test]
        fn any_truncation_of_a_frame_is_an_error(frame in arb_frame(), cut in any::<prop::sample::Index>()) {
            let bytes = encode(&frame).expect("encode");
            let cut = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..cut]).is_err());
        }

        #[test]
        fn mutated_frames_never_panic(
            frame in arb_frame(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = encode(&frame).expect("encode");
            for (at, value) in flips {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            let _ = decode(&bytes);
        }
    }
}
