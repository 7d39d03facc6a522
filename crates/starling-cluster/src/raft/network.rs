//! The Raft network over the cluster's QUIC endpoint.
//!
//! Raft gets its own QUIC connections (mutual TLS like every cluster
//! connection), separate from the data plane's [`PeerLink`](crate::PeerLink)s:
//! each node's [`RaftPeer`] dials the target once and then sends **one RPC
//! per bidirectional stream** — a [`Frame::RaftRequest`], the stream
//! finished, answered by one [`Frame::RaftResponse`].
//!
//! Why streams per RPC rather than frames with request ids on the link:
//! - a slow install-snapshot never queues heartbeats behind it (QUIC
//!   streams do not block each other), and no request-id table or
//!   response routing is needed — the stream is the correlation;
//! - the data plane owns its links and their frame stream; Raft traffic
//!   never passes through its queues, so a data-plane burst cannot delay an
//!   election, and the data plane's link handling need not know Raft.
//!
//! The acceptor tells a Raft connection from a data link by its first
//! frame: `Hello` starts a link, `RaftRequest` a Raft connection, whose
//! `from` must be the node its client certificate names. Every later stream
//! on it is one more request from that node.
//!
//! Payloads are openraft's request and response types, rmp-serde encoded
//! inside the frame's opaque body; a transport failure becomes openraft's
//! `Unreachable` (it then backs off), an error raised by the remote Raft a
//! `RemoteError`.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use quinn::Connection;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use starling_placement::NodeId;
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::codec::{FrameReader, FrameWriter};
use crate::endpoint::{Dialer, HANDSHAKE_TIMEOUT};
use crate::error::LinkError;
use crate::frame::{Frame, RaftBody};
use crate::link::{CloseCode, close};
use crate::raft::types::{NodeInfo, StarlingRaft, TypeConfig};

/// Where the accept side finds the local Raft: empty while no
/// [`ClusterNode`](crate::ClusterNode) runs on the endpoint.
#[derive(Clone, Default)]
pub(crate) struct RaftSlot(Arc<RwLock<Option<StarlingRaft>>>);

impl std::fmt::Debug for RaftSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RaftSlot")
    }
}

/// The Raft running on `slot` now, if any.
fn current(slot: &RaftSlot) -> Option<StarlingRaft> {
    // The slot holds a whole handle or nothing; a panic elsewhere cannot
    // leave it half-written.
    slot.0
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Sets (or clears) the Raft that answers on `slot`.
pub(crate) fn set_current(slot: &RaftSlot, raft: Option<StarlingRaft>) {
    *slot.0.write().unwrap_or_else(PoisonError::into_inner) = raft;
}

/// A Raft RPC, as carried in a [`Frame::RaftRequest`] body.
#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
enum RpcRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The answer, as carried in a [`Frame::RaftResponse`] body.
#[derive(Debug, Serialize, Deserialize)]
enum RpcResponse {
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// No Raft runs on the endpoint (not started yet, or shut down).
    Unavailable,
}

/// Why one RPC got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RpcError {
    /// Dialling, opening the stream, writing or reading failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The RPC did not complete in time.
    #[error("no answer from node {target} within {after:?}")]
    Timeout { target: u64, after: Duration },
    /// A body could not be encoded or decoded.
    #[error("cannot {op} a raft message: {message}")]
    Codec { op: &'static str, message: String },
    /// The peer answered with something other than a Raft response.
    #[error("node {target} answered with {got}")]
    Unexpected { target: u64, got: &'static str },
    /// The peer runs no Raft.
    #[error("node {target} runs no raft")]
    Unavailable { target: u64 },
}

fn encode<T: Serialize>(value: &T) -> Result<RaftBody, RpcError> {
    rmp_serde::to_vec(value)
        .map(RaftBody)
        .map_err(|e| RpcError::Codec {
            op: "encode",
            message: e.to_string(),
        })
}

fn decode<T: DeserializeOwned>(body: &RaftBody) -> Result<T, RpcError> {
    rmp_serde::from_slice(&body.0).map_err(|e| RpcError::Codec {
        op: "decode",
        message: e.to_string(),
    })
}

/// Makes a [`RaftPeer`] per target for openraft.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    dialer: Dialer,
}

impl NetworkFactory {
    pub(crate) fn new(dialer: Dialer) -> Self {
        NetworkFactory { dialer }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> RaftPeer {
        RaftPeer {
            dialer: self.dialer.clone(),
            target,
            addr: node.cluster_addr,
            conn: None,
        }
    }
}

/// openraft's client for one target node: a Raft connection, dialled on
/// first use and again after it fails.
#[derive(Debug)]
pub struct RaftPeer {
    dialer: Dialer,
    target: u64,
    addr: SocketAddr,
    conn: Option<Connection>,
}

impl RaftPeer {
    async fn call(&mut self, request: RpcRequest, ttl: Duration) -> Result<RpcResponse, RpcError> {
        let body = encode(&request)?;
        let target = self.target;
        let result = match timeout(ttl, self.exchange(body)).await {
            Ok(result) => result,
            Err(_) => Err(RpcError::Timeout { target, after: ttl }),
        };
        if result.is_err() {
            // Whatever broke, the next call starts from a fresh connection.
            self.conn = None;
        }
        match result? {
            RpcResponse::Unavailable => Err(RpcError::Unavailable { target }),
            response => Ok(response),
        }
    }

    async fn exchange(&mut self, body: RaftBody) -> Result<RpcResponse, RpcError> {
        let conn = match self.conn.take() {
            Some(conn) if conn.close_reason().is_none() => conn,
            _ => self.dialer.dial(self.addr, NodeId(self.target)).await?,
        };
        self.conn = Some(conn.clone());
        let addr = conn.remote_address();
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|source| crate::codec::connection_error(addr, source))?;
        let mut writer = FrameWriter::new(send, addr);
        let mut reader = FrameReader::new(recv, addr);
        writer
            .send(&Frame::RaftRequest {
                from: self.dialer.node_id(),
                body,
            })
            .await?;
        writer.finish();
        match reader.next().await? {
            Some(Frame::RaftResponse { body }) => decode(&body),
            Some(other) => Err(RpcError::Unexpected {
                target: self.target,
                got: other.kind(),
            }),
            None => Err(RpcError::Unexpected {
                target: self.target,
                got: "end of stream",
            }),
        }
    }

    fn unexpected<E: std::error::Error>(&self, got: &RpcResponse) -> RPCError<u64, NodeInfo, E> {
        let got = match got {
            RpcResponse::AppendEntries(_) => "an append-entries response",
            RpcResponse::Vote(_) => "a vote response",
            RpcResponse::InstallSnapshot(_) => "an install-snapshot response",
            RpcResponse::Unavailable => "unavailable",
        };
        RPCError::Network(NetworkError::new(&RpcError::Unexpected {
            target: self.target,
            got,
        }))
    }
}

fn unreachable<E: std::error::Error>(error: &RpcError) -> RPCError<u64, NodeInfo, E> {
    RPCError::Unreachable(Unreachable::new(error))
}

impl RaftNetwork<TypeConfig> for RaftPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        match self
            .call(RpcRequest::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(RpcResponse::AppendEntries(Ok(response))) => Ok(response),
            Ok(RpcResponse::AppendEntries(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(self.unexpected(&other)),
            Err(e) => Err(unreachable(&e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, NodeInfo, RaftError<u64, InstallSnapshotError>>,
    > {
        match self
            .call(RpcRequest::InstallSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(RpcResponse::InstallSnapshot(Ok(response))) => Ok(response),
            Ok(RpcResponse::InstallSnapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(self.unexpected(&other)),
            Err(e) => Err(unreachable(&e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        match self.call(RpcRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(RpcResponse::Vote(Ok(response))) => Ok(response),
            Ok(RpcResponse::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(self.unexpected(&other)),
            Err(e) => Err(unreachable(&e)),
        }
    }
}

/// Serves an accepted Raft connection from `peer` (certificate-checked):
/// answers `first` (the connection's first request, already read) and then
/// every stream the peer opens, until the connection closes.
///
/// Spawned by the accept side and ended by the connection: closing the
/// endpoint closes every connection.
pub(crate) async fn serve_connection(
    slot: RaftSlot,
    conn: Connection,
    peer: NodeId,
    writer: FrameWriter,
    first: RaftBody,
) {
    tracing::debug!(%peer, addr = %conn.remote_address(), "raft connection accepted");
    let mut streams = JoinSet::new();
    streams.spawn(answer(slot.clone(), conn.clone(), peer, writer, first));
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => {
                let Ok((send, recv)) = accepted else { break };
                streams.spawn(serve_stream(slot.clone(), conn.clone(), peer, send, recv));
            }
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
    tracing::debug!(%peer, "raft connection ended");
}

async fn serve_stream(
    slot: RaftSlot,
    conn: Connection,
    peer: NodeId,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let addr = conn.remote_address();
    let mut reader = FrameReader::new(recv, addr);
    let request = match timeout(HANDSHAKE_TIMEOUT, reader.next()).await {
        Ok(Ok(Some(Frame::RaftRequest { from, body }))) if from == peer => body,
        Ok(Ok(Some(Frame::RaftRequest { from, .. }))) => {
            tracing::warn!(%peer, %from, %addr, "closing raft connection: request names another node");
            close(&conn, CloseCode::IdentityMismatch);
            return;
        }
        Ok(Ok(Some(other))) => {
            tracing::warn!(%peer, %addr, got = other.kind(), "closing raft connection: not a raft request");
            close(&conn, CloseCode::ProtocolViolation);
            return;
        }
        Ok(Err(error)) => {
            if let Some(code) = CloseCode::for_error(&error) {
                tracing::warn!(%peer, %addr, %error, "closing raft connection: bad frame");
                close(&conn, code);
            }
            return;
        }
        // A stream opened and abandoned (the caller timed out): nothing to
        // answer.
        Ok(Ok(None)) | Err(_) => return,
    };
    answer(slot, conn, peer, FrameWriter::new(send, addr), request).await;
}

async fn answer(
    slot: RaftSlot,
    conn: Connection,
    peer: NodeId,
    mut writer: FrameWriter,
    body: RaftBody,
) {
    let request: RpcRequest = match decode(&body) {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%peer, addr = %conn.remote_address(), %error, "closing raft connection: undecodable request");
            close(&conn, CloseCode::ProtocolViolation);
            return;
        }
    };
    let response = match current(&slot) {
        None => RpcResponse::Unavailable,
        Some(raft) => match request {
            RpcRequest::AppendEntries(rpc) => {
                RpcResponse::AppendEntries(raft.append_entries(rpc).await)
            }
            RpcRequest::Vote(rpc) => RpcResponse::Vote(raft.vote(rpc).await),
            RpcRequest::InstallSnapshot(rpc) => {
                RpcResponse::InstallSnapshot(raft.install_snapshot(rpc).await)
            }
        },
    };
    let body = match encode(&response) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%peer, %error, "cannot encode raft response");
            return;
        }
    };
    if let Err(error) = writer.send(&Frame::RaftResponse { body }).await {
        tracing::debug!(%peer, %error, "raft response not delivered");
    }
    writer.finish();
}
