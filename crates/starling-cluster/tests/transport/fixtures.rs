//! Certificates in temporary directories, endpoints on 127.0.0.1:0, raw quinn
//! clients that misbehave on purpose, and a log capture to wait on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use starling_cluster::{
    ALPN, CA_CERT_FILE, ClusterEndpoint, ClusterTls, IncomingLinks, NODE_CERT_FILE, NODE_KEY_FILE,
    NodeId, PeerLink, init_ca, issue_node_cert,
};
use tokio::sync::Notify;
use tracing_subscriber::fmt::MakeWriter;

/// Bound on every wait in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test after [`WAIT`].
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A cluster CA in a fresh temporary directory.
pub(crate) struct Ca {
    pub(crate) dir: PathBuf,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("starling-cluster-it-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        init_ca(&dir.join("ca")).expect("init ca");
        Ca { dir }
    }

    pub(crate) fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }

    /// The `--cluster-tls` directory of node `id`, issued on first use.
    pub(crate) fn node_dir(&self, id: u64) -> PathBuf {
        let dir = self.dir.join(format!("node-{id}"));
        if !dir.join(NODE_CERT_FILE).exists() {
            issue_node_cert(&self.ca_dir(), NodeId(id), &dir).expect("issue node cert");
        }
        dir
    }

    pub(crate) fn node_tls(&self, id: u64) -> ClusterTls {
        ClusterTls::load(&self.node_dir(id)).expect("load node tls")
    }

    /// Node `id`'s endpoint on 127.0.0.1, any port.
    pub(crate) fn endpoint(&self, id: u64) -> (ClusterEndpoint, IncomingLinks) {
        ClusterEndpoint::bind(localhost(), self.node_tls(id), NodeId(id)).expect("bind")
    }
}

pub(crate) fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Dials `to` from `from` and takes the matching incoming link.
pub(crate) async fn link(
    from: &ClusterEndpoint,
    to: &ClusterEndpoint,
    to_incoming: &mut IncomingLinks,
) -> (PeerLink, PeerLink) {
    let dialled = within("connect", from.connect(to.local_addr(), to.node_id()))
        .await
        .expect("connect");
    let accepted = within("incoming link", to_incoming.next())
        .await
        .expect("incoming link");
    (dialled, accepted)
}

/// A bare quinn client: trusts `ca`, presents `client` (cert, key files)
/// when given. Speaks no Hello of its own — the tests write raw bytes.
pub(crate) fn raw_client(ca: &Path, client: Option<(&Path, &Path)>) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca.join(CA_CERT_FILE)).expect("ca pem") {
        roots.add(cert.expect("ca cert")).expect("add root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .expect("cert pem")
                .collect::<Result<Vec<_>, _>>()
                .expect("cert");
            let key = PrivateKeyDer::from_pem_file(key).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    let mut endpoint = quinn::Endpoint::client(localhost()).expect("client endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(config).expect("quic client config"),
    )));
    endpoint
}

/// A raw client presenting node `id`'s certificate from `node_dir`.
pub(crate) fn raw_node_client(node_dir: &Path) -> quinn::Endpoint {
    raw_client(
        node_dir,
        Some((
            &node_dir.join(NODE_CERT_FILE),
            &node_dir.join(NODE_KEY_FILE),
        )),
    )
}

/// Connects `client` to node `server_id` at `addr`, opens a stream, writes
/// `bytes`, and returns how the connection ended.
pub(crate) async fn send_raw(
    client: &quinn::Endpoint,
    addr: SocketAddr,
    server_id: u64,
    bytes: &[u8],
) -> quinn::ConnectionError {
    let name = starling_cluster::node_dns_name(NodeId(server_id));
    let connecting = client.connect(addr, &name).expect("start connect");
    within("raw connection to end", async {
        let conn = match connecting.await {
            Ok(conn) => conn,
            Err(error) => return error,
        };
        if let Ok((mut send, _recv)) = conn.open_bi().await {
            let _ = send.write_all(bytes).await;
            conn.closed().await
        } else {
            conn.closed().await
        }
    })
    .await
}

/// The application close code in `error`, if the peer closed with one.
pub(crate) fn app_code(error: &quinn::ConnectionError) -> Option<u64> {
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => Some(close.error_code.into_inner()),
        _ => None,
    }
}

/// Captures this thread's `starling_cluster` log lines. The tests run on a
/// current-thread runtime, so every task's lines land here.
#[derive(Clone, Default)]
pub(crate) struct Logs {
    text: Arc<Mutex<String>>,
    changed: Arc<Notify>,
}

impl Logs {
    pub(crate) fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_env_filter("starling_cluster=debug")
            .with_ansi(false)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (logs, guard)
    }

    pub(crate) fn text(&self) -> String {
        self.text.lock().expect("log lock").clone()
    }

    /// Waits until a captured line contains every one of `needles`.
    pub(crate) async fn wait_for(&self, needles: &[&str]) {
        let found = || {
            self.text()
                .lines()
                .any(|line| needles.iter().all(|n| line.contains(n)))
        };
        let wait = async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if found() {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(WAIT, wait).await.is_err() {
            panic!("no log line with {needles:?}; log:\n{}", self.text());
        }
    }
}

pub(crate) struct LogWriter(Logs);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .text
            .lock()
            .expect("log lock")
            .push_str(&String::from_utf8_lossy(buf));
        self.0.changed.notify_waiters();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.clone())
    }
}
