//! TLS on the client plane: `wss://` with the Rust client (JSON and Protobuf), `https://` for
//! `/healthz` and `/api/info`, and what a node serving TLS does with clients that do not speak
//! it properly (untrusted certificate, plain HTTP, a TCP connection that never starts the
//! handshake).
//!
//! Every test makes its own self-signed certificate with rcgen (names `localhost` and
//! `127.0.0.1`), writes it to files and loads them through `[http_server.tls]`, as an operator
//! would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;
use starling_client::Client;
use starling_config::Config;
use starling_gateway::ServerTls;
use starling_node::Node;
use starling_protocol::Encoding;
use starling_tests::{BASE_CONFIG, SECRET, WAIT, hs256_token, next_pub, sub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

const API_KEY: &str = "tls-test-key";

/// A self-signed certificate and key, written to files.
struct TestCert {
    dir: PathBuf,
    cert_der: CertificateDer<'static>,
}

impl TestCert {
    fn generate() -> anyhow::Result<TestCert> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("starling-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])?;
        std::fs::write(dir.join("tls.crt"), certified.cert.pem())?;
        std::fs::write(dir.join("tls.key"), certified.signing_key.serialize_pem())?;
        Ok(TestCert {
            dir,
            cert_der: certified.cert.der().clone(),
        })
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A client configuration that trusts exactly this certificate.
    fn client_config(&self) -> anyhow::Result<Arc<ClientConfig>> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert_der.clone())?;
        Ok(Arc::new(
            client_builder()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ))
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn client_builder() -> anyhow::Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>> {
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?,
    )
}

/// A node serving its client plane over TLS only.
struct TlsNode {
    node: Node,
    addr: SocketAddr,
    cert: TestCert,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TlsNode {
    async fn start() -> anyhow::Result<TlsNode> {
        let cert = TestCert::generate()?;
        let toml = format!(
            "{BASE_CONFIG}\n[http_api]\nkey = \"{API_KEY}\"\n\n\
             [http_server]\nread_header_timeout = \"1s\"\n\n\
             [http_server.tls]\nenabled = true\ncert_pem = \"{}\"\nkey_pem = \"{}\"\n",
            cert.path("tls.crt"),
            cert.path("tls.key"),
        );
        let mut config = Config::from_toml_str(&toml)?;
        config.node.http_addr = "127.0.0.1:0".to_owned();
        config.node.data_dir = cert.dir.join("data");
        config.validate()?;
        let tls = ServerTls::from_config(&config.http_server.tls)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let node = Node::new(config)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(starling_gateway::serve_tls(
            listener,
            node.clone(),
            tls,
            async {
                let _ = stopped.await;
            },
        ));
        Ok(TlsNode {
            node,
            addr,
            cert,
            stop: Some(stop),
            server: Some(server),
        })
    }

    fn wss_url(&self) -> String {
        format!("wss://127.0.0.1:{}/connection/websocket", self.addr.port())
    }

    async fn connect(&self, user: &str, encoding: Encoding) -> anyhow::Result<Client> {
        let (client, _) = Client::builder(self.wss_url())
            .encoding(encoding)
            .token(hs256_token(SECRET, user, None))
            .tls_config(self.cert.client_config()?)
            .connect()
            .await?;
        Ok(client)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.node.shutdown(Duration::from_secs(5)).await;
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }
}

/// One HTTP/1.1 request over TLS (`Connection: close`); returns status and body.
async fn https(
    node: &TlsNode,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let tcp = TcpStream::connect(node.addr).await?;
    let connector = TlsConnector::from(node.cert.client_config()?);
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1")?, tcp)
        .await
        .context("TLS handshake")?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes()).await?;
    tls.write_all(body).await?;
    let mut response = Vec::new();
    // A peer closing without close_notify is an error to rustls; the bytes read so far stand.
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut response)).await;
    parse_response(&response)
}

fn parse_response(response: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no complete response head")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    Ok((status, response[split + 4..].to_vec()))
}

#[tokio::test]
async fn wss_clients_chat_in_json_and_protobuf() -> anyhow::Result<()> {
    let node = TlsNode::start().await?;
    let alice = node.connect("alice", Encoding::Json).await?;
    let bob = node.connect("bob", Encoding::Protobuf).await?;
    alice.subscribe(sub("news")).await?;
    bob.subscribe(sub("news")).await?;

    alice
        .publish("news", Bytes::from_static(br#"{"text":"over tls"}"#))
        .await?;
    for client in [&alice, &bob] {
        let publication = next_pub(client, "news").await?;
        let data: Value = serde_json::from_slice(&publication.data)?;
        ensure!(data["text"] == "over tls", "{data}");
    }
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn https_serves_health_and_the_server_api() -> anyhow::Result<()> {
    let node = TlsNode::start().await?;
    let (status, body) = https(&node, "GET", "/healthz", &[], b"").await?;
    ensure!(status == 200 && body == b"ok\n", "{status} {body:?}");

    let (status, body) = https(
        &node,
        "POST",
        "/api/info",
        &[("X-API-Key", API_KEY), ("Content-Type", "application/json")],
        b"{}",
    )
    .await?;
    ensure!(status == 200, "{status} {}", String::from_utf8_lossy(&body));
    let info: Value = serde_json::from_slice(&body)?;
    ensure!(info["result"]["nodes"].is_array(), "{info}");

    let (status, _) = https(&node, "POST", "/api/info", &[], b"{}").await?;
    ensure!(status == 401, "missing key over TLS: {status}");
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn client_that_does_not_trust_the_certificate_is_refused() -> anyhow::Result<()> {
    let node = TlsNode::start().await?;
    let other = TestCert::generate()?;
    let result = Client::builder(node.wss_url())
        .token(hs256_token(SECRET, "mallory", None))
        .tls_config(other.client_config()?)
        .connect()
        .await;
    ensure!(result.is_err(), "a client trusting another CA connected");

    // The node is unaffected: a trusting client still connects.
    let alice = node.connect("alice", Encoding::Json).await?;
    alice.ping().await?;
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn plain_http_and_silent_connections_are_closed() -> anyhow::Result<()> {
    let node = TlsNode::start().await?;

    // Plain HTTP on the TLS port: the handshake fails and the connection closes without an
    // HTTP answer.
    let mut plain = TcpStream::connect(node.addr).await?;
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, plain.read_to_end(&mut buf)).await;
    ensure!(read.is_ok(), "plain HTTP connection left open");
    ensure!(!buf.starts_with(b"HTTP/"), "plain HTTP got an HTTP answer");

    // A connection that never starts the handshake is dropped after read_header_timeout (1s).
    let mut silent = TcpStream::connect(node.addr).await?;
    let started = tokio::time::Instant::now();
    let read = tokio::time::timeout(WAIT, silent.read(&mut [0u8; 16])).await;
    ensure!(read.is_ok(), "silent connection still open after {WAIT:?}");
    ensure!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the timeout: {:?}",
        started.elapsed()
    );

    let (status, _) = https(&node, "GET", "/healthz", &[], b"").await?;
    ensure!(status == 200, "{status}");
    node.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_certificate_files_name_the_key() -> anyhow::Result<()> {
    let cert = TestCert::generate()?;
    let mut config = Config::default();
    config.http_server.tls.enabled = true;
    config.http_server.tls.cert_pem = cert.path("missing.crt");
    config.http_server.tls.key_pem = cert.path("tls.key");
    let error = ServerTls::from_config(&config.http_server.tls).unwrap_err();
    ensure!(
        error.to_string().contains("http_server.tls.cert_pem"),
        "{error}"
    );

    // The key file in place of the certificate: found, but holds no certificate.
    config.http_server.tls.cert_pem = cert.path("tls.key");
    let error = ServerTls::from_config(&config.http_server.tls).unwrap_err();
    ensure!(error.to_string().contains("no CERTIFICATE"), "{error}");
    Ok(())
}
