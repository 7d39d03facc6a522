//! A plain TCP forwarder with a switchable upstream, standing in for the load balancer in front
//! of a cluster: clients dial the proxy, which copies bytes to and from whichever node it
//! currently points at.
//!
//! [`TcpProxy::cut`] closes every connection open through the proxy without a word, as the
//! crash of their node would, and closes new ones at once, as a load balancer whose only backend
//! is down does. [`TcpProxy::switch_to`] points new connections at another node (cutting those
//! still open to the old one); the clients' own reconnect logic brings them back through the
//! proxy. An upstream that refuses the connection gets the client's connection closed too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A running proxy on `127.0.0.1:0`; dropping it closes the listener and every connection.
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: watch::Sender<Option<SocketAddr>>,
    accepted: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts a proxy forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(Some(upstream));
        let accepted = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(accept_loop(listener, rx, Arc::clone(&accepted)));
        Ok(TcpProxy {
            addr,
            upstream: tx,
            accepted,
            accept,
        })
    }

    /// Where the proxy listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where new connections go; `None` while cut.
    pub fn upstream(&self) -> Option<SocketAddr> {
        *self.upstream.borrow()
    }

    /// Connections accepted so far (whether or not their upstream answered).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Sends new connections to `upstream` and closes every connection open through the proxy.
    pub fn switch_to(&self, upstream: SocketAddr) {
        self.upstream.send_replace(Some(upstream));
    }

    /// Closes every connection open through the proxy and, until the next
    /// [`switch_to`](Self::switch_to), every new one as soon as it is accepted.
    pub fn cut(&self) {
        self.upstream.send_replace(None);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks' JoinSet: aborting it aborts them all.
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: watch::Receiver<Option<SocketAddr>>,
    accepted: Arc<AtomicU64>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        while connections.try_join_next().is_some() {}
        connections.spawn(forward(inbound, upstream.clone()));
    }
}

/// Copies bytes both ways between `inbound` and the current upstream until either side closes
/// or the upstream is switched or cut (or the proxy dropped); then both sockets are dropped.
async fn forward(mut inbound: TcpStream, mut upstream: watch::Receiver<Option<SocketAddr>>) {
    let Some(target) = *upstream.borrow_and_update() else {
        return;
    };
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        // A new upstream, or the proxy is gone: either way this connection ends.
        _ = upstream.changed() => {}
    }
}
