//! The crate's errors, one enum per concern:
//! - [`FrameError`] — bytes that are not a frame we can read (a request failed:
//!   the link that carried them is closed, the node goes on);
//! - [`TlsError`] — certificate files and TLS configuration (at startup: the
//!   node cannot join a cluster without them);
//! - [`LinkError`] — binding, connecting, the Hello exchange and sending on a
//!   link (one link failed; the endpoint goes on).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use starling_placement::NodeId;

/// Why bytes could not be read or written as a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the length prefix (or the prefix itself) announced.
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated {
        /// Bytes needed.
        expected: usize,
        /// Bytes there were.
        got: usize,
    },
    /// A frame longer than [`MAX_FRAME_LEN`](crate::MAX_FRAME_LEN).
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The announced or produced body length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The peer speaks another frame version.
    #[error("frame version {got} is not supported (this node speaks {supported})")]
    UnknownVersion {
        /// The version in the frame.
        got: u16,
        /// The version this node speaks.
        supported: u16,
    },
    /// The body is not a valid envelope of this version: not MessagePack,
    /// wrong shape, or an unknown frame kind (the message names it).
    #[error("malformed frame body ({len} bytes): {source}")]
    Malformed {
        /// Body length.
        len: usize,
        /// What the decoder found.
        source: rmp_serde::decode::Error,
    },
    /// Bytes left in the body after the envelope.
    #[error("{extra} unexpected bytes after the frame")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The frame could not be serialized.
    #[error("cannot encode frame: {source}")]
    Encode {
        /// The encoder's error.
        source: rmp_serde::encode::Error,
    },
}

/// Why certificates could not be created or loaded, or TLS configured.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Refused to overwrite key material.
    #[error("{} already exists; remove it first to replace it", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A PEM file holds no block of the expected kind, or is not PEM.
    #[error("{} holds no usable {expected}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What it should hold, e.g. "CERTIFICATE".
        expected: &'static str,
        /// The PEM parser's error.
        source: rustls::pki_types::pem::Error,
    },
    /// The CA key cannot sign (not a PKCS#8 ECDSA/Ed25519 key made by `starling certs init`).
    #[error("cannot use {} as the CA key: {source}", path.display())]
    CaKey {
        /// The key file.
        path: PathBuf,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// rcgen could not build a certificate or a key.
    #[error("cannot generate the {what}: {source}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A certificate does not chain to the cluster CA (or the CA key does not
    /// match the CA certificate).
    #[error("{} is not signed by the cluster CA in {}: {source}", cert.display(), ca.display())]
    NotSignedByCa {
        /// The certificate.
        cert: PathBuf,
        /// The CA certificate.
        ca: PathBuf,
        /// The verifier's reason.
        source: rustls::Error,
    },
    /// The node certificate does not name the node id it is used for.
    #[error("{} is not a certificate for node {node_id} (wants name {name}): {source}", path.display())]
    WrongNode {
        /// The certificate file.
        path: PathBuf,
        /// The node id it was meant for.
        node_id: NodeId,
        /// The DNS name it lacks.
        name: String,
        /// The verifier's reason.
        source: rustls::Error,
    },
    /// rustls refused the certificate, key or settings.
    #[error("invalid TLS configuration from {}: {source}", path.display())]
    Config {
        /// The directory the material came from.
        path: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built from the CA.
    #[error("cannot verify clients against {}: {source}", path.display())]
    ClientVerifier {
        /// The CA certificate.
        path: PathBuf,
        /// rustls' reason.
        source: rustls::server::VerifierBuilderError,
    },
    /// The rustls configuration lacks what QUIC requires (TLS 1.3, AES-128-GCM).
    #[error("TLS configuration unusable for QUIC: {source}")]
    Quic {
        /// quinn's reason.
        source: quinn::crypto::rustls::NoInitialCipherSuite,
    },
}

/// Why a link could not be set up, or a frame not sent.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The UDP socket could not be bound or the QUIC endpoint not started.
    #[error("cannot bind the cluster endpoint on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The endpoint's certificates are not for this node.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// quinn refused to start a connection (endpoint closing, bad address).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The peer's address.
        addr: SocketAddr,
        /// quinn's reason.
        source: quinn::ConnectError,
    },
    /// The QUIC connection failed or was closed (TLS refused, timeout, reset).
    #[error("connection with {addr} failed: {source}")]
    Connection {
        /// The peer's address.
        addr: SocketAddr,
        /// quinn's reason.
        source: quinn::ConnectionError,
    },
    /// The peer closed the connection with one of our close codes.
    #[error("peer {addr} closed the link with code {code} ({reason})")]
    Refused {
        /// The peer's address.
        addr: SocketAddr,
        /// The application close code ([`CloseCode`](crate::CloseCode)).
        code: u64,
        /// The reason text the peer sent.
        reason: String,
    },
    /// Reading the frame stream failed.
    #[error("reading from {addr} failed: {source}")]
    Read {
        /// The peer's address.
        addr: SocketAddr,
        /// quinn's reason.
        source: quinn::ReadError,
    },
    /// Writing the frame stream failed.
    #[error("writing to {addr} failed: {source}")]
    Write {
        /// The peer's address.
        addr: SocketAddr,
        /// quinn's reason.
        source: quinn::WriteError,
    },
    /// The peer sent bytes that are not a frame.
    #[error("bad frame from {addr}: {source}")]
    Frame {
        /// The peer's address.
        addr: SocketAddr,
        /// Why the bytes were refused.
        source: FrameError,
    },
    /// The peer ended the frame stream where a frame was expected.
    #[error("{addr} ended the stream before saying Hello")]
    StreamEnded {
        /// The peer's address.
        addr: SocketAddr,
    },
    /// The first frame was not a Hello.
    #[error("{addr} sent {got} where Hello was expected")]
    ExpectedHello {
        /// The peer's address.
        addr: SocketAddr,
        /// The kind it sent.
        got: &'static str,
    },
    /// TLS plus Hello took longer than allowed.
    #[error("no Hello from {addr} within {after:?}")]
    HelloTimeout {
        /// The peer's address.
        addr: SocketAddr,
        /// The limit.
        after: Duration,
    },
    /// The peer's certificate does not name the node id its Hello claims.
    #[error("{addr} says it is node {claimed} but its certificate does not name that node")]
    PeerIdentity {
        /// The peer's address.
        addr: SocketAddr,
        /// The id from its Hello.
        claimed: NodeId,
    },
    /// We dialled one node and another answered.
    #[error("{addr} is node {got}, not node {expected}")]
    WrongPeer {
        /// The peer's address.
        addr: SocketAddr,
        /// The node we dialled.
        expected: NodeId,
        /// The node that answered.
        got: NodeId,
    },
    /// The peer has our own node id.
    #[error("{addr} has this node's own id {node_id}")]
    SelfConnection {
        /// The peer's address.
        addr: SocketAddr,
        /// The shared id.
        node_id: NodeId,
    },
    /// The link is down; nothing more can be sent on it.
    #[error("link to node {peer} is closed")]
    Closed {
        /// The peer.
        peer: NodeId,
    },
    /// The link's send queue is full (the peer reads too slowly).
    #[error("send queue to node {peer} is full")]
    QueueFull {
        /// The peer.
        peer: NodeId,
    },
}
