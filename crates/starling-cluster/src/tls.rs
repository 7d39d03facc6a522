//! Loading cluster TLS material into rustls + quinn configurations.
//!
//! The model is a private CA per cluster: a node trusts exactly the cluster
//! CA (no system roots), presents its node certificate in both directions,
//! and requires the same of every peer. TLS 1.3 only (QUIC has nothing
//! else), ring as the only crypto provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use starling_placement::NodeId;

use crate::certs::{self, CA_CERT_FILE, CA_KEY_FILE, NODE_CERT_FILE, NODE_KEY_FILE};
use crate::error::TlsError;

/// ALPN protocol id of Starling's cluster plane. A TLS peer that does not
/// offer it (a stray HTTP/3 client, another QUIC service) fails the handshake.
pub const ALPN: &[u8] = b"starling/1";

/// A node's cluster TLS: the rustls server and client configurations for
/// quinn, built from `ca.pem`, `node.pem` and `node.key`.
///
/// Cheap to clone (the configurations are shared).
#[derive(Clone)]
pub struct ClusterTls {
    server: Arc<QuicServerConfig>,
    client: Arc<QuicClientConfig>,
    node_cert: CertificateDer<'static>,
    node_cert_path: PathBuf,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("node_cert", &self.node_cert_path)
            .finish_non_exhaustive()
    }
}

/// What [`ClusterTls::generate_dev`] found or made, for the caller to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevTls {
    /// The directory already held a node certificate; nothing was written.
    Existing,
    /// A CA existed; a node certificate was issued from it.
    CreatedNodeCert,
    /// A new CA and a node certificate were created.
    CreatedCaAndNodeCert,
}

impl ClusterTls {
    /// Loads `dir/ca.pem`, `dir/node.pem` and `dir/node.key` — the files
    /// `starling certs node` writes.
    ///
    /// The server side requires a client certificate chaining to the CA; the
    /// client side presents the node certificate and trusts only the CA.
    /// Fails, naming the file, when one is missing or unreadable, or when
    /// `node.pem` is not signed by `ca.pem`.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let ca_path = dir.join(CA_CERT_FILE);
        let cert_path = dir.join(NODE_CERT_FILE);
        let key_path = dir.join(NODE_KEY_FILE);

        let ca_pem = certs::read_file(&ca_path)?;
        let roots = Arc::new(root_store(&ca_path, &ca_pem)?);
        let chain = read_certs(&cert_path)?;
        let key = read_key(&key_path)?;
        // parse_certs returns at least one certificate or an error.
        let node_cert = chain[0].clone();
        verify_chain(&node_cert, &roots).map_err(|source| TlsError::NotSignedByCa {
            cert: cert_path.clone(),
            ca: ca_path.clone(),
            source,
        })?;

        let provider = provider();
        let config_err = |source| TlsError::Config {
            path: dir.to_path_buf(),
            source,
        };

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|source| TlsError::ClientVerifier {
                    path: ca_path.clone(),
                    source,
                })?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config_err)?;
        server.alpn_protocols = vec![ALPN.to_vec()];

        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_err)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(config_err)?;
        client.alpn_protocols = vec![ALPN.to_vec()];

        let quic = |source| TlsError::Quic { source };
        Ok(ClusterTls {
            server: Arc::new(QuicServerConfig::try_from(server).map_err(quic)?),
            client: Arc::new(QuicClientConfig::try_from(client).map_err(quic)?),
            node_cert,
            node_cert_path: cert_path,
        })
    }

    /// For a development cluster: makes sure `dir` holds a CA and a node
    /// certificate for `node_id`, creating what is missing, then loads it.
    ///
    /// An existing CA in `dir` (`ca.pem` + `ca.key`) is reused: copy one CA
    /// into each local node's `dir` and every node gets its own certificate
    /// from it, so the nodes trust each other. Existing node files are never
    /// replaced. The returned [`DevTls`] says what was created, so the caller
    /// can log it.
    pub fn generate_dev(dir: &Path, node_id: NodeId) -> Result<(Self, DevTls), TlsError> {
        let has = |name: &str| dir.join(name).exists();
        let made = if has(NODE_CERT_FILE) || has(NODE_KEY_FILE) {
            DevTls::Existing
        } else if has(CA_CERT_FILE) && has(CA_KEY_FILE) {
            certs::issue_node_cert(dir, node_id, dir)?;
            DevTls::CreatedNodeCert
        } else {
            certs::init_ca(dir)?;
            certs::issue_node_cert(dir, node_id, dir)?;
            DevTls::CreatedCaAndNodeCert
        };
        let tls = ClusterTls::load(dir)?;
        tls.check_node(node_id)?;
        Ok((tls, made))
    }

    /// Checks that the node certificate names `node_id`
    /// (`node-<id>.starling.cluster`): a node started with another node's
    /// certificate would be refused by every peer, so fail at startup.
    pub fn check_node(&self, node_id: NodeId) -> Result<(), TlsError> {
        cert_names_node(&self.node_cert, node_id).map_err(|(name, source)| TlsError::WrongNode {
            path: self.node_cert_path.clone(),
            node_id,
            name,
            source,
        })
    }

    pub(crate) fn server_config(&self) -> Arc<QuicServerConfig> {
        self.server.clone()
    }

    pub(crate) fn client_config(&self) -> Arc<QuicClientConfig> {
        self.client.clone()
    }
}

/// Whether `cert` names `node_id`; on failure, the name looked for and why.
pub(crate) fn cert_names_node(
    cert: &CertificateDer<'_>,
    node_id: NodeId,
) -> Result<(), (String, rustls::Error)> {
    let name = certs::node_dns_name(node_id);
    let check = || -> Result<(), rustls::Error> {
        let parsed = ParsedCertificate::try_from(cert)?;
        let server_name = ServerName::try_from(name.as_str())
            .map_err(|_| rustls::Error::General(format!("{name} is not a DNS name")))?;
        rustls::client::verify_server_name(&parsed, &server_name)
    };
    check().map_err(|source| (name.clone(), source))
}

/// The single crypto provider of the cluster plane.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A root store holding the CA certificate(s) in `pem`, read from `path`.
pub(crate) fn root_store(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let certs = parse_certs(path, pem)?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|source| TlsError::Config {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

/// Checks that `cert` chains to one of `roots`, now.
pub(crate) fn verify_chain(
    cert: &CertificateDer<'_>,
    roots: &RootCertStore,
) -> Result<(), rustls::Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        &[],
        UnixTime::now(),
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all,
    )
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(path, &certs::read_file(path)?)
}

fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |source| TlsError::Pem {
        path: path.to_path_buf(),
        expected: "CERTIFICATE",
        source,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(pem_err(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&certs::read_file(path)?).map_err(|source| TlsError::Pem {
        path: path.to_path_buf(),
        expected: "PRIVATE KEY",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{init_ca, issue_node_cert};
    use rustls::SignatureScheme;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "starling-cluster-tls-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn provider_verifies_ecdsa_p256() {
        let schemes = provider()
            .signature_verification_algorithms
            .supported_schemes();
        assert!(schemes.contains(&SignatureScheme::ECDSA_NISTP256_SHA256));
    }

    #[test]
    fn missing_files_are_named() {
        let dir = temp_dir("empty");
        std::fs::create_dir_all(&dir).expect("dir");
        let err = ClusterTls::load(&dir).expect_err("empty dir");
        assert!(err.to_string().contains(CA_CERT_FILE), "{err}");

        init_ca(&dir).expect("ca");
        let err = ClusterTls::load(&dir).expect_err("no node cert");
        assert!(err.to_string().contains(NODE_CERT_FILE), "{err}");
    }

    #[test]
    fn a_file_that_is_not_pem_is_named() {
        let dir = temp_dir("not-pem");
        init_ca(&dir).expect("ca");
        issue_node_cert(&dir, NodeId(1), &dir).expect("node");
        std::fs::write(dir.join(NODE_CERT_FILE), "hello").expect("clobber");
        let err = ClusterTls::load(&dir).expect_err("bad pem");
        assert!(matches!(err, TlsError::Pem { .. }), "{err}");
        assert!(err.to_string().contains(NODE_CERT_FILE), "{err}");
    }

    #[test]
    fn a_node_cert_from_another_ca_is_refused_at_load() {
        let a = temp_dir("ca-a");
        let b = temp_dir("ca-b");
        init_ca(&a).expect("a");
        init_ca(&b).expect("b");
        issue_node_cert(&b, NodeId(1), &b).expect("node of b");
        std::fs::copy(a.join(CA_CERT_FILE), b.join(CA_CERT_FILE)).expect("swap ca");
        let err = ClusterTls::load(&b).expect_err("foreign cert");
        assert!(matches!(err, TlsError::NotSignedByCa { .. }), "{err}");
    }

    #[test]
    fn generate_dev_creates_once_then_reuses() {
        let dir = temp_dir("dev");
        let (_, made) = ClusterTls::generate_dev(&dir, NodeId(1)).expect("first");
        assert_eq!(made, DevTls::CreatedCaAndNodeCert);
        let cert = std::fs::read(dir.join(NODE_CERT_FILE)).expect("cert");
        let (_, made) = ClusterTls::generate_dev(&dir, NodeId(1)).expect("second");
        assert_eq!(made, DevTls::Existing);
        assert_eq!(std::fs::read(dir.join(NODE_CERT_FILE)).expect("cert"), cert);
    }

    #[test]
    fn generate_dev_reuses_an_existing_ca() {
        let dir = temp_dir("dev-ca");
        let ca = init_ca(&dir).expect("ca");
        let ca_pem = std::fs::read(&ca.cert).expect("ca pem");
        let (_, made) = ClusterTls::generate_dev(&dir, NodeId(2)).expect("dev");
        assert_eq!(made, DevTls::CreatedNodeCert);
        assert_eq!(std::fs::read(&ca.cert).expect("ca pem"), ca_pem);
    }

    #[test]
    fn generate_dev_refuses_another_nodes_certificate() {
        let dir = temp_dir("dev-other");
        ClusterTls::generate_dev(&dir, NodeId(1)).expect("node 1");
        let err = ClusterTls::generate_dev(&dir, NodeId(2)).expect_err("node 2");
        assert!(matches!(err, TlsError::WrongNode { .. }), "{err}");
        assert!(err.to_string().contains("node-2.starling.cluster"), "{err}");
    }
}
