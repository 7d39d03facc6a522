//! [`ClusterEndpoint`]: a node's QUIC endpoint on the cluster plane — the
//! accept loop, dialling peers, and the Hello exchange that turns a QUIC
//! connection into a [`PeerLink`].

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, EndpointConfig, IdleTimeout, TransportConfig, VarInt};
use rustls::pki_types::CertificateDer;
use starling_placement::NodeId;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use crate::certs::{CLUSTER_DNS_NAME, node_dns_name};
use crate::codec::{FrameReader, FrameWriter, connection_error};
use crate::error::LinkError;
use crate::frame::{Frame, Hello, RaftBody};
use crate::link::{CloseCode, PeerLink, close};
use crate::raft::network::{RaftSlot, serve_connection};
use crate::tls::{ClusterTls, cert_names_node};

/// A connection with no packet from the peer for this long is dead (10 s).
///
/// This is how a node notices a vanished peer (no FIN on UDP). Ten seconds
/// tolerates a few lost keep-alives and short stalls; failover of shards is
/// driven by Raft, not by this timer.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Each side sends a keep-alive after this much silence (2 s), so an idle but
/// healthy link never reaches [`IDLE_TIMEOUT`]: five keep-alives fit in one.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// Limit for each handshake phase — TLS, then the Hello exchange (5 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshakes the accept loop runs at once; more are refused, so a flood of
/// connection attempts cannot pile up tasks.
pub const MAX_PENDING_HANDSHAKES: usize = 64;

/// Established links waiting for [`IncomingLinks::next`].
const ACCEPTED_QUEUE: usize = 16;

/// How long [`ClusterEndpoint::shutdown`] waits for peers to acknowledge
/// the close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A node's endpoint on the cluster plane: one UDP socket, one QUIC
/// endpoint that both accepts and dials.
///
/// Owns the accept loop task. [`shutdown`](Self::shutdown) stops it and
/// closes every connection; dropping the endpoint does the same without
/// waiting.
#[derive(Debug)]
pub struct ClusterEndpoint {
    endpoint: quinn::Endpoint,
    node_id: NodeId,
    local_addr: SocketAddr,
    client_config: quinn::ClientConfig,
    raft: RaftSlot,
    stop: Option<oneshot::Sender<()>>,
    accept_task: Option<JoinHandle<()>>,
}

/// The links peers opened to this node, after their Hello was accepted.
#[derive(Debug)]
pub struct IncomingLinks {
    rx: mpsc::Receiver<PeerLink>,
}

impl IncomingLinks {
    /// The next accepted link; `None` once the endpoint has shut down.
    pub async fn next(&mut self) -> Option<PeerLink> {
        self.rx.recv().await
    }
}

impl ClusterEndpoint {
    /// Binds a UDP socket on `addr` (port 0 for any) and starts the endpoint;
    /// see [`from_socket`](Self::from_socket).
    pub fn bind(
        addr: SocketAddr,
        tls: ClusterTls,
        node_id: NodeId,
    ) -> Result<(Self, IncomingLinks), LinkError> {
        let socket = UdpSocket::bind(addr).map_err(|source| LinkError::Bind { addr, source })?;
        Self::from_socket(socket, tls, node_id)
    }

    /// Starts the endpoint on an already-bound socket, with `tls` for both
    /// directions, as node `node_id`. Must run inside a Tokio runtime.
    ///
    /// Fails when the node certificate does not name `node_id`. Returns the
    /// endpoint and the stream of links peers open to it.
    pub fn from_socket(
        socket: UdpSocket,
        tls: ClusterTls,
        node_id: NodeId,
    ) -> Result<(Self, IncomingLinks), LinkError> {
        tls.check_node(node_id)?;
        let local_addr = socket.local_addr().map_err(|source| LinkError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let bind_err = |source| LinkError::Bind {
            addr: local_addr,
            source,
        };
        let transport = Arc::new(transport_config());
        let mut server_config = quinn::ServerConfig::with_crypto(tls.server_config());
        server_config.transport_config(transport.clone());
        let mut client_config = quinn::ClientConfig::new(tls.client_config());
        client_config.transport_config(transport);

        let endpoint = quinn::Endpoint::new(
            EndpointConfig::default(),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_err)?;
        let local_addr = endpoint.local_addr().map_err(bind_err)?;

        let (links_tx, links_rx) = mpsc::channel(ACCEPTED_QUEUE);
        let (stop_tx, stop_rx) = oneshot::channel();
        let raft = RaftSlot::default();
        let accept_task = tokio::spawn(accept_loop(
            endpoint.clone(),
            node_id,
            links_tx,
            raft.clone(),
            stop_rx,
        ));
        tracing::info!(%node_id, addr = %local_addr, "cluster endpoint listening");
        Ok((
            ClusterEndpoint {
                endpoint,
                node_id,
                local_addr,
                client_config,
                raft,
                stop: Some(stop_tx),
                accept_task: Some(accept_task),
            },
            IncomingLinks { rx: links_rx },
        ))
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// What the Raft network dials with.
    pub(crate) fn dialer(&self) -> Dialer {
        Dialer {
            endpoint: self.endpoint.clone(),
            client_config: self.client_config.clone(),
            node_id: self.node_id,
        }
    }

    /// Where accepted Raft connections find the local Raft.
    pub(crate) fn raft_slot(&self) -> RaftSlot {
        self.raft.clone()
    }

    /// Dials node `peer` at `addr`: QUIC + mutual TLS (the peer's
    /// certificate must name `node-<peer>.starling.cluster`), then the Hello
    /// exchange on a new stream, which becomes the link's frame stream.
    pub async fn connect(&self, addr: SocketAddr, peer: NodeId) -> Result<PeerLink, LinkError> {
        if peer == self.node_id {
            return Err(LinkError::SelfConnection {
                addr,
                node_id: peer,
            });
        }
        self.dial(addr, &node_dns_name(peer), Some(peer)).await
    }

    /// Dials whichever member answers at `addr` (a `--join` seed, whose node
    /// id is not known yet). Its certificate must come from the cluster CA;
    /// the node id it claims in its Hello must be one its certificate names.
    pub async fn connect_seed(&self, addr: SocketAddr) -> Result<PeerLink, LinkError> {
        self.dial(addr, CLUSTER_DNS_NAME, None).await
    }

    async fn dial(
        &self,
        addr: SocketAddr,
        server_name: &str,
        expected: Option<NodeId>,
    ) -> Result<PeerLink, LinkError> {
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), addr, server_name)
            .map_err(|source| LinkError::Connect { addr, source })?;
        let conn = match timeout(HANDSHAKE_TIMEOUT, connecting).await {
            Ok(conn) => conn.map_err(|source| connection_error(addr, source))?,
            Err(_) => {
                return Err(LinkError::HelloTimeout {
                    addr,
                    after: HANDSHAKE_TIMEOUT,
                });
            }
        };
        let local = self.node_id;
        let greeted = with_timeout(addr, async {
            let (send, recv) = conn
                .open_bi()
                .await
                .map_err(|source| connection_error(addr, source))?;
            let mut writer = FrameWriter::new(send, addr);
            let mut reader = FrameReader::new(recv, addr);
            writer.send(&Frame::Hello(Hello::new(local))).await?;
            let hello = read_hello(&mut reader, addr).await?;
            match expected {
                Some(peer) if hello.node_id != peer => {
                    return Err(LinkError::WrongPeer {
                        addr,
                        expected: peer,
                        got: hello.node_id,
                    });
                }
                Some(_) => {}
                None => check_identity(&conn, addr, local, hello.node_id)?,
            }
            Ok((reader, writer, hello.node_id))
        })
        .await;
        match greeted {
            Ok((reader, writer, peer)) => {
                tracing::debug!(%peer, %addr, "connected to cluster peer");
                Ok(PeerLink::start(peer, conn, reader, writer))
            }
            Err(error) => {
                if let Some(code) = CloseCode::for_error(&error) {
                    tracing::warn!(%addr, %error, "refused cluster peer");
                    close(&conn, code);
                }
                Err(error)
            }
        }
    }

    /// Closes every connection and stops accepting, without waiting for
    /// peers (for owners that share the endpoint and cannot give it up).
    pub fn close(&self) {
        self.endpoint.close(
            VarInt::from_u32(CloseCode::Normal.code()),
            b"node shutting down",
        );
    }

    /// Stops accepting, closes every connection and waits (briefly) for
    /// peers to acknowledge. Links already handed out see their streams end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // The loop may have ended already; then there is nobody to tell.
            let _ = stop.send(());
        }
        if let Some(task) = self.accept_task.take()
            && let Err(error) = task.await
        {
            tracing::error!(%error, "cluster accept loop failed");
        }
        self.endpoint.close(
            VarInt::from_u32(CloseCode::Normal.code()),
            b"node shutting down",
        );
        if timeout(SHUTDOWN_GRACE, self.endpoint.wait_idle())
            .await
            .is_err()
        {
            tracing::debug!("cluster endpoint closed without every peer's acknowledgement");
        }
    }
}

impl Drop for ClusterEndpoint {
    fn drop(&mut self) {
        if let Some(task) = self.accept_task.take() {
            task.abort();
        }
        self.endpoint.close(
            VarInt::from_u32(CloseCode::Normal.code()),
            b"node shutting down",
        );
    }
}

/// Dials bare QUIC connections (mutual TLS, no Hello) for the Raft network.
#[derive(Debug, Clone)]
pub(crate) struct Dialer {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    node_id: NodeId,
}

impl Dialer {
    /// This node's id.
    pub(crate) fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Connects to node `peer` at `addr`; the peer's certificate must name
    /// it, as for [`ClusterEndpoint::connect`].
    pub(crate) async fn dial(
        &self,
        addr: SocketAddr,
        peer: NodeId,
    ) -> Result<Connection, LinkError> {
        if peer == self.node_id {
            return Err(LinkError::SelfConnection {
                addr,
                node_id: peer,
            });
        }
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), addr, &node_dns_name(peer))
            .map_err(|source| LinkError::Connect { addr, source })?;
        match timeout(HANDSHAKE_TIMEOUT, connecting).await {
            Ok(conn) => conn.map_err(|source| connection_error(addr, source)),
            Err(_) => Err(LinkError::HelloTimeout {
                addr,
                after: HANDSHAKE_TIMEOUT,
            }),
        }
    }
}

/// Transport settings of every cluster connection.
fn transport_config() -> TransportConfig {
    let mut transport = TransportConfig::default();
    // 10 s fits a VarInt of milliseconds by a wide margin.
    transport.max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(
        IDLE_TIMEOUT.as_millis() as u32,
    ))));
    transport.keep_alive_interval(Some(KEEP_ALIVE_INTERVAL));
    transport
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    local: NodeId,
    links: mpsc::Sender<PeerLink>,
    raft: RaftSlot,
    mut stop: oneshot::Receiver<()>,
) {
    // Handshake tasks belong to the loop: when it ends they are aborted.
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                if handshakes.len() >= MAX_PENDING_HANDSHAKES {
                    tracing::warn!(addr = %incoming.remote_address(), "refused cluster peer: too many handshakes in progress");
                    incoming.refuse();
                    continue;
                }
                handshakes.spawn(accept_one(incoming, local, links.clone(), raft.clone()));
            }
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
        }
    }
    tracing::debug!("cluster accept loop stopped");
}

async fn accept_one(
    incoming: quinn::Incoming,
    local: NodeId,
    links: mpsc::Sender<PeerLink>,
    raft: RaftSlot,
) {
    let addr = incoming.remote_address();
    match handshake(incoming, addr, local).await {
        Ok(Accepted::Raft {
            conn,
            peer,
            writer,
            first,
        }) => {
            // Not awaited here: the handshake slot is free again, and the
            // connection's end (peer gone, endpoint closed) ends the task.
            tokio::spawn(serve_connection(raft, conn, peer, writer, first));
        }
        Ok(Accepted::Link(link)) => {
            tracing::info!(peer = %link.peer(), %addr, "cluster peer connected");
            // Fails only when nobody takes links any more; the link is then
            // dropped, which closes it.
            let _ = links.send(link).await;
        }
        Err(error) => tracing::warn!(%addr, %error, "refused cluster peer"),
    }
}

/// What an accepted connection turned out to be.
enum Accepted {
    /// A data-plane link, after the Hello exchange.
    Link(PeerLink),
    /// A Raft connection: its first request, read from its first stream.
    Raft {
        conn: Connection,
        peer: NodeId,
        writer: FrameWriter,
        first: RaftBody,
    },
}

/// What the first frame on a connection's first stream was.
enum Opening {
    Hello(Hello, FrameReader, FrameWriter),
    Raft(NodeId, FrameWriter, RaftBody),
}

/// The accepting side: TLS (the verifier already demanded a client
/// certificate from the cluster CA), then the first frame. A Hello, checked
/// against the peer's certificate and answered with ours, makes a link; a
/// Raft request, whose sender the certificate must name, makes a Raft
/// connection.
async fn handshake(
    incoming: quinn::Incoming,
    addr: SocketAddr,
    local: NodeId,
) -> Result<Accepted, LinkError> {
    let conn = match timeout(HANDSHAKE_TIMEOUT, incoming).await {
        Ok(conn) => conn.map_err(|source| connection_error(addr, source))?,
        Err(_) => {
            return Err(LinkError::HelloTimeout {
                addr,
                after: HANDSHAKE_TIMEOUT,
            });
        }
    };
    let greeted = with_timeout(addr, async {
        let (send, recv) = conn
            .accept_bi()
            .await
            .map_err(|source| connection_error(addr, source))?;
        let mut reader = FrameReader::new(recv, addr);
        let mut writer = FrameWriter::new(send, addr);
        let hello = match reader.next().await? {
            Some(Frame::Hello(hello)) => hello,
            Some(Frame::RaftRequest { from, body }) => {
                if from == local {
                    return Err(LinkError::SelfConnection {
                        addr,
                        node_id: local,
                    });
                }
                if !peer_cert_names(&conn, from) {
                    return Err(LinkError::PeerIdentity {
                        addr,
                        claimed: from,
                    });
                }
                return Ok(Opening::Raft(from, writer, body));
            }
            Some(other) => {
                return Err(LinkError::ExpectedHello {
                    addr,
                    got: other.kind(),
                });
            }
            None => return Err(LinkError::StreamEnded { addr }),
        };
        check_identity(&conn, addr, local, hello.node_id)?;
        writer.send(&Frame::Hello(Hello::new(local))).await?;
        Ok(Opening::Hello(hello, reader, writer))
    })
    .await;
    match greeted {
        Ok(Opening::Hello(hello, reader, writer)) => {
            tracing::debug!(peer = %hello.node_id, software = %hello.software, "peer said Hello");
            Ok(Accepted::Link(PeerLink::start(
                hello.node_id,
                conn,
                reader,
                writer,
            )))
        }
        Ok(Opening::Raft(peer, writer, first)) => Ok(Accepted::Raft {
            conn,
            peer,
            writer,
            first,
        }),
        Err(error) => {
            if let Some(code) = CloseCode::for_error(&error) {
                close(&conn, code);
            }
            Err(error)
        }
    }
}

async fn with_timeout<T>(
    addr: SocketAddr,
    step: impl Future<Output = Result<T, LinkError>>,
) -> Result<T, LinkError> {
    timeout(HANDSHAKE_TIMEOUT, step)
        .await
        .unwrap_or(Err(LinkError::HelloTimeout {
            addr,
            after: HANDSHAKE_TIMEOUT,
        }))
}

async fn read_hello(reader: &mut FrameReader, addr: SocketAddr) -> Result<Hello, LinkError> {
    match reader.next().await? {
        Some(Frame::Hello(hello)) => Ok(hello),
        Some(other) => Err(LinkError::ExpectedHello {
            addr,
            got: other.kind(),
        }),
        None => Err(LinkError::StreamEnded { addr }),
    }
}

/// Checks a peer's claimed node id: not this node, and named by its TLS certificate.
fn check_identity(
    conn: &Connection,
    addr: SocketAddr,
    local: NodeId,
    claimed: NodeId,
) -> Result<(), LinkError> {
    if claimed == local {
        return Err(LinkError::SelfConnection {
            addr,
            node_id: local,
        });
    }
    if !peer_cert_names(conn, claimed) {
        return Err(LinkError::PeerIdentity { addr, claimed });
    }
    Ok(())
}

/// Whether the peer's TLS certificate names `node_id`.
fn peer_cert_names(conn: &Connection, node_id: NodeId) -> bool {
    let Some(identity) = conn.peer_identity() else {
        return false;
    };
    let Ok(chain) = identity.downcast::<Vec<CertificateDer<'static>>>() else {
        return false;
    };
    chain
        .first()
        .is_some_and(|cert| cert_names_node(cert, node_id).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_fits_several_times_in_the_idle_timeout() {
        assert!(KEEP_ALIVE_INTERVAL * 3 <= IDLE_TIMEOUT);
    }
}
