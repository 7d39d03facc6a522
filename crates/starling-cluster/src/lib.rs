//! The cluster plane's transport: QUIC links between Starling nodes over
//! mutual TLS, carrying versioned MessagePack frames.
//!
//! Every node runs one [`ClusterEndpoint`] (quinn, one UDP socket, default
//! port 7000) that both accepts and dials. A connection becomes a
//! [`PeerLink`] after a Hello exchange; the link is what the data plane (and
//! later the Raft network) talks through.
//!
//! # Links
//! The dialling node opens a bidirectional stream and sends
//! [`Frame::Hello`] (its node id, the highest frame version it speaks, its
//! release); the acceptor checks it and answers with its own Hello. That
//! first stream stays open for the link's lifetime as its frame stream, in
//! both directions. Other planes open their own streams on
//! [`PeerLink::connection`].
//!
//! A [`PeerLink`] owns two tasks: a writer draining a bounded send queue
//! ([`SEND_QUEUE`] frames; queued frames leave in one stream write) and a
//! reader passing decoded frames to [`PeerLink::recv`] (bounded by
//! [`RECV_QUEUE`], beyond which QUIC flow control slows the peer). The
//! reader answers [`Frame::Ping`] itself. Dropping the link closes it.
//!
//! # Frame format
//! `u32` big-endian body length, then the body: the MessagePack array
//! `[v, frame]` (rmp-serde; structs as arrays, enum kinds by name). Bodies
//! over [`MAX_FRAME_LEN`] are refused from the length alone, before any
//! allocation. Decoding is total: truncated, oversized, malformed or
//! trailing bytes, unknown kinds and unknown versions are [`FrameError`]s,
//! never panics (property-tested).
//!
//! # Versioning
//! Every frame carries [`PROTOCOL_VERSION`]. A body with another version is
//! skipped uninterpreted and reported as [`FrameError::UnknownVersion`]; the
//! receiver logs it and closes the connection with
//! [`CloseCode::UnsupportedVersion`]. Garbage closes it with
//! [`CloseCode::ProtocolViolation`]. Either way only that link is lost: the
//! endpoint goes on accepting. Any change to the wire bumps the version;
//! Hello's `max_version` is there so a later release can negotiate down.
//!
//! # TLS model
//! One private CA per cluster ([`init_ca`], `starling certs init`). Each node
//! has a certificate from it ([`issue_node_cert`], `starling certs node`)
//! naming `node-<id>.starling.cluster` and `starling.cluster`, usable as
//! server and as client certificate. [`ClusterTls::load`] reads `ca.pem`,
//! `node.pem`, `node.key` and builds:
//! - a server configuration that **requires** a client certificate chaining
//!   to the cluster CA (a peer without one, or with one from another CA,
//!   fails the TLS handshake);
//! - a client configuration that presents the node certificate and trusts
//!   only the cluster CA, and checks that the dialled peer's certificate
//!   names the node id it dialled.
//!
//! The acceptor also checks the dialler's Hello against its certificate, so
//! a node cannot claim another node's id ([`CloseCode::IdentityMismatch`]).
//! TLS 1.3 only, ALPN [`ALPN`], ring as the single crypto provider.
//! [`ClusterTls::generate_dev`] creates a CA and a node certificate in a
//! data directory for development.
//!
//! # Timeouts
//! - [`IDLE_TIMEOUT`] (10 s): a peer silent that long is gone (UDP has no
//!   FIN).
//! - [`KEEP_ALIVE_INTERVAL`] (2 s): keep-alives on idle links, so only a dead
//!   or partitioned peer reaches the idle timeout.
//! - [`HANDSHAKE_TIMEOUT`] (5 s): each of TLS and Hello; a peer slower than
//!   that is refused ([`CloseCode::HelloTimeout`]).
//! - At most [`MAX_PENDING_HANDSHAKES`] handshakes at once; further attempts
//!   are refused.
//!
//! # Layout
//! - `frame` — [`Frame`], [`Hello`], [`encode`], [`decode`], the limits.
//! - `codec` — [`FrameReader`], [`FrameWriter`]: frames over quinn streams.
//! - `certs` — [`init_ca`], [`issue_node_cert`], the file names.
//! - `tls` — [`ClusterTls`], [`DevTls`], [`ALPN`].
//! - `endpoint` — [`ClusterEndpoint`], [`IncomingLinks`], timeouts.
//! - `link` — [`PeerLink`], [`PeerSender`], [`CloseCode`].
//! - `error` — [`FrameError`], [`TlsError`], [`LinkError`].

mod certs;
mod codec;
mod endpoint;
mod error;
mod frame;
mod link;
mod tls;

pub use certs::{
    CA_CERT_FILE, CA_KEY_FILE, CLUSTER_DNS_NAME, CaFiles, NODE_CERT_FILE, NODE_KEY_FILE, NodeFiles,
    init_ca, issue_node_cert, node_dns_name,
};
pub use codec::{FrameReader, FrameWriter};
pub use endpoint::{
    ClusterEndpoint, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, IncomingLinks, KEEP_ALIVE_INTERVAL,
    MAX_PENDING_HANDSHAKES,
};
pub use error::{FrameError, LinkError, TlsError};
pub use frame::{
    Frame, Hello, LEN_PREFIX, MAX_FRAME_LEN, PROTOCOL_VERSION, decode, decode_body, decode_len,
    encode, encode_into,
};
pub use link::{CloseCode, PeerLink, PeerSender, RECV_QUEUE, SEND_QUEUE};
pub use starling_placement::NodeId;
pub use tls::{ALPN, ClusterTls, DevTls};
