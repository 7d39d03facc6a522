//! The accept loop behind [`crate::serve`] and [`crate::serve_tls`]: one task per TCP
//! connection, an optional TLS handshake, then HTTP/1.1 (with upgrades, for WebSocket) served by
//! hyper directly.
//!
//! This replaces `axum::serve`, which offers no way to set hyper's header read timeout: there,
//! a client that sends its request head a byte at a time (slowloris) or never sends anything
//! holds its connection, task and buffers forever. Here every connection must finish its TLS
//! handshake and each request head within `http_server.read_header_timeout`, and that timeout
//! also closes idle keep-alive connections. Request heads over hyper's buffer limit (about
//! 400 KiB) are answered `431` and the connection closed.
//!
//! Shutdown works as it did with `axum::serve`: stop accepting, ask every connection to finish
//! its current request (`graceful_shutdown`), and return once all have ended. WebSocket
//! connections leave hyper when they upgrade; the node closes them.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tracing::{debug, warn};

/// Pause after an accept error that is not about one connection (e.g. out of file
/// descriptors), so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// What every connection task needs.
#[derive(Clone)]
pub(crate) struct ConnectionSettings {
    /// The routes, with the node as state.
    pub(crate) app: Router,
    /// TLS handshake and request-head deadline (`http_server.read_header_timeout`).
    pub(crate) read_header_timeout: Duration,
    /// `Some` for `serve_tls`.
    pub(crate) tls: Option<TlsAcceptor>,
}

/// Accepts on `listener` until `shutdown` completes, then drains the open connections.
pub(crate) async fn run<F>(
    listener: TcpListener,
    settings: ConnectionSettings,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone of `alive_tx`; `recv` returns `None` once all are
    // dropped, which is how the loop learns that the last connection ended.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    warn!(%error, "accept failed; retrying in 1s");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        // Realtime traffic: replies and pushes are already coalesced into one write per batch,
        // so Nagle's algorithm would only add latency (Go, and so Centrifugo, disables it too).
        if let Err(error) = tcp.set_nodelay(true) {
            debug!(%remote, %error, "cannot set TCP_NODELAY");
        }
        let settings = settings.clone();
        let stop = stop_rx.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            connection(tcp, remote, settings, stop).await;
            drop(alive);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
    Ok(())
}

/// Serves one TCP connection to the end.
async fn connection(
    tcp: TcpStream,
    remote: SocketAddr,
    settings: ConnectionSettings,
    stop: watch::Receiver<bool>,
) {
    let ConnectionSettings {
        app,
        read_header_timeout,
        tls,
    } = settings;
    match tls {
        None => serve_http(tcp, remote, app, read_header_timeout, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(read_header_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => serve_http(stream, remote, app, read_header_timeout, stop).await,
                Ok(Err(error)) => debug!(%remote, %error, "TLS handshake failed"),
                Err(_) => debug!(%remote, "TLS handshake timed out"),
            }
        }
    }
}

/// HTTP/1.1 on an established (plain or TLS) stream, until the client or `stop` ends it.
async fn serve_http<S>(
    stream: S,
    remote: SocketAddr,
    app: Router,
    read_header_timeout: Duration,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Handlers read the peer address through axum's `ConnectInfo` extractor, which takes it
    // from the request extensions; `axum::serve` put it there too.
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        app.clone().oneshot(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(read_header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    // The guard `wait_for` returns is not `Send`; drop it before the drain below awaits.
    let stopped = async move {
        let mut stop = stop;
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // Timeouts, malformed requests and peers that vanish end up here; hyper has already
        // answered what deserved an answer (400, 431).
        debug!(%remote, %error, "HTTP connection ended with an error");
    }
}

/// Errors that concern one connection, not the listener: try the next one at once.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
