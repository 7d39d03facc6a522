//! The cluster plane: QUIC links between Starling nodes over mutual TLS,
//! carrying versioned MessagePack frames, and the control plane — openraft
//! over those QUIC endpoints, persisting in the node's data directory.
//!
//! Every node runs one [`ClusterEndpoint`] (quinn, one UDP socket, default
//! port 7000) that both accepts and dials. A connection becomes a
//! [`PeerLink`] after a Hello exchange; the link is what the data plane
//! talks through. Raft dials connections of its own on the same endpoint
//! (see "Control plane").
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
//! # Control plane
//! A [`ClusterNode`] runs openraft (pinned `=0.9.25`, storage v2) with
//! [`TypeConfig`]: `u64` node ids, [`NodeInfo`] (cluster and HTTP
//! addresses) as the node type, [`ClusterCommand`]s in the log.
//!
//! **State machine.** [`ClusterState`] holds the members (voters and
//! learners, taken from Raft's own membership entries so the two never
//! disagree), the [`ShardMap`](starling_placement::ShardMap) and the
//! cluster-wide settings. Applying is a pure function
//! ([`ClusterState::apply`]). [`ClusterCommand::ApplyPlan`] is fenced by
//! `base_version`: a plan made from an older map, a move whose `from` is not
//! the owner, or a target that is not a member rejects the whole command
//! ([`CommandRejected`]); nothing is half-applied. The first node commits
//! `assign(shard_count, [itself])` right after it initializes.
//!
//! **Files** in `<data_dir>/raft/` ([`RAFT_DIR`]):
//! - `log` ([`LOG_FILE`]) — append-only: the header `STRLOG1\n`, then
//!   records `[len: u32 BE][crc32: u32 BE][rmp-serde body]`, each an entry,
//!   a truncation ("delete from index i"), a purge ("up to log id l") or the
//!   committed log id. Appends are fsynced before openraft hears they are
//!   durable. Reopening replays the records; the first record cut short or
//!   failing its checksum is where a crash tore the tail, so the file is
//!   truncated there (with a warning). The file is rewritten (temp, fsync,
//!   rename) when dead records outnumber live ones.
//! - `vote` ([`VOTE_FILE`]) — the vote alone, replaced atomically (temp,
//!   fsync, rename, directory fsync).
//! - `snapshot` ([`SNAPSHOT_FILE`]) — the current snapshot, `{meta, data}`
//!   with `data` the rmp-serde [`ClusterState`], replaced atomically. On
//!   restart the state is this snapshot plus the committed entries after it,
//!   which openraft applies again.
//!
//! The stores pass openraft's own storage test suite
//! (`openraft::testing::Suite`).
//!
//! **RPCs.** Raft uses its own QUIC connections on the same endpoint, one
//! bidirectional stream per RPC: a [`Frame::RaftRequest`] (`from` + an
//! rmp-serde `AppendEntries`, `Vote` or `InstallSnapshot` request in a
//! [`RaftBody`]), answered by one [`Frame::RaftResponse`] on the same stream.
//! Snapshots travel as openraft's chunked install-snapshot requests. The
//! acceptor tells a Raft connection from a data link by its first frame
//! (`RaftRequest` vs `Hello`) and checks `from` against the client
//! certificate. Streams per RPC keep heartbeats from queueing behind a
//! snapshot or behind data-plane traffic, and need no request-id table.
//! Frame version 2 added the two Raft kinds.
//!
//! **Voters and learners.** A node joins as a learner
//! ([`ClusterNode::add_member`], on the leader) and is promoted once it has
//! caught up, while the cluster has fewer than `max_voters` voters (default
//! [`DEFAULT_MAX_VOTERS`] = 3). Later nodes stay learners: they replicate the
//! state, serve clients and own shards but do not count for quorum.
//! [`ClusterNode::remove`] removes a voter or a learner and promotes a
//! learner into a freed voter seat.
//!
//! # Layout
//! - `frame` — [`Frame`], [`Hello`], [`encode`], [`decode`], the limits.
//! - `codec` — [`FrameReader`], [`FrameWriter`]: frames over quinn streams.
//! - `certs` — [`init_ca`], [`issue_node_cert`], the file names.
//! - `tls` — [`ClusterTls`], [`DevTls`], [`ALPN`].
//! - `endpoint` — [`ClusterEndpoint`], [`IncomingLinks`], timeouts.
//! - `link` — [`PeerLink`], [`PeerSender`], [`CloseCode`].
//! - `error` — [`FrameError`], [`TlsError`], [`LinkError`].
//! - `raft` — the control plane: `types` ([`TypeConfig`], [`NodeInfo`],
//!   [`ClusterCommand`]), `state` ([`ClusterState`]), `log_store`
//!   ([`LogStore`]), `state_machine` ([`StateMachineStore`]), `network`
//!   ([`NetworkFactory`], [`RaftPeer`]), `node` ([`ClusterNode`]), `error`
//!   ([`StoreError`], [`ClusterNodeError`]).

mod certs;
mod codec;
mod data;
mod endpoint;
mod error;
mod frame;
mod link;
mod raft;
mod tls;

pub use certs::{
    CA_CERT_FILE, CA_KEY_FILE, CLUSTER_DNS_NAME, CaFiles, NODE_CERT_FILE, NODE_KEY_FILE, NodeFiles,
    init_ca, issue_node_cert, node_dns_name,
};
pub use codec::{FrameReader, FrameWriter};
pub use data::{
    AdminOp, AdminReport, Call, CallReply, FromRoom, HandoffMsg, Refusal, ToRoom, WireClientInfo,
    WireNodeInfo, WirePosition, WirePublication, WireRoomState, WireTarget, WireUserOp,
};
pub use endpoint::{
    ClusterEndpoint, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, IncomingLinks, KEEP_ALIVE_INTERVAL,
    MAX_PENDING_HANDSHAKES,
};
pub use error::{FrameError, LinkError, TlsError};
pub use frame::{
    Frame, Hello, LEN_PREFIX, MAX_FRAME_LEN, PROTOCOL_VERSION, RaftBody, decode, decode_body,
    decode_len, encode, encode_into,
};
pub use link::{CloseCode, PeerLink, PeerSender, RECV_QUEUE, SEND_QUEUE};
pub use openraft;
pub use raft::error::{ClusterNodeError, StoreError};
pub use raft::log_store::{LOG_FILE, LogStore, VOTE_FILE};
pub use raft::network::{NetworkFactory, RaftPeer};
pub use raft::node::{
    ClusterMetrics, ClusterNode, ClusterNodeConfig, DEFAULT_MAX_VOTERS, MemberRole, RAFT_DIR,
};
pub use raft::state::{ClusterState, Member, RECENT_HANDOFFS};
pub use raft::state_machine::{SNAPSHOT_FILE, SnapshotBuilder, StateMachineStore};
pub use raft::types::{
    ClusterCommand, ClusterResponse, CommandRejected, Handoff, HandoffRecord, NodeInfo,
    StarlingRaft, TypeConfig,
};
pub use starling_placement::NodeId;
pub use tls::{ALPN, ClusterTls, DevTls};
