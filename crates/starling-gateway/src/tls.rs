//! TLS on the client plane: the certificate chain and key of `[http_server.tls]`, loaded into a
//! rustls server configuration on the ring provider.
//!
//! PEM values follow Centrifugo v6: a value containing `-----BEGIN` is the PEM text itself,
//! anything else is the path of a PEM file. Every failure names the configuration key, so a
//! node with a broken certificate stops at start-up with a message an operator can act on.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use starling_config::HttpServerTlsConfig;
use tokio_rustls::TlsAcceptor;

const CERT_KEY: &str = "http_server.tls.cert_pem";
const KEY_KEY: &str = "http_server.tls.key_pem";

/// Why the client plane's TLS material cannot be used. Any of these stops start-up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM file named by `key` cannot be read.
    #[error("{key}: cannot read {}: {source}", path.display())]
    ReadFile {
        /// The configuration key that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The PEM under `key` holds no certificate.
    #[error("{key}: no CERTIFICATE block found")]
    NoCertificate {
        /// The configuration key.
        key: &'static str,
    },
    /// The PEM under `key` holds no private key.
    #[error("{key}: no PRIVATE KEY block (PKCS#8, PKCS#1 or SEC1) found")]
    NoPrivateKey {
        /// The configuration key.
        key: &'static str,
    },
    /// The PEM under `key` is malformed.
    #[error("{key}: malformed PEM: {reason}")]
    BadPem {
        /// The configuration key.
        key: &'static str,
        /// What the PEM parser reported.
        reason: String,
    },
    /// rustls refused the pair, e.g. the key does not belong to the certificate.
    #[error("http_server.tls: unusable certificate and key: {reason}")]
    Unusable {
        /// What rustls reported.
        reason: String,
    },
}

/// The client plane's server-side TLS: what [`crate::serve_tls`] needs. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("alpn", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads `[http_server.tls]`: reads `cert_pem` and `key_pem` (file paths or PEM text).
    ///
    /// Does not look at `enabled`; the caller decides whether to serve TLS at all.
    pub fn from_config(tls: &HttpServerTlsConfig) -> Result<ServerTls, TlsError> {
        let cert_chain = pem_value(CERT_KEY, &tls.cert_pem)?;
        let key = pem_value(KEY_KEY, &tls.key_pem)?;
        ServerTls::from_pem(&cert_chain, &key)
    }

    /// Builds the configuration from PEM text: a certificate chain (leaf first) and the leaf's
    /// private key (PKCS#8, PKCS#1 or SEC1).
    ///
    /// TLS 1.3 and 1.2 with rustls' safe defaults, ring as the crypto provider, ALPN
    /// `http/1.1` (the client plane speaks HTTP/1.1 only, which WebSocket upgrades need).
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<ServerTls, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| pem_error(CERT_KEY, &error))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate { key: CERT_KEY });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| match error {
            pem::Error::NoItemsFound => TlsError::NoPrivateKey { key: KEY_KEY },
            other => pem_error(KEY_KEY, &other),
        })?;
        let unusable = |error: rustls::Error| TlsError::Unusable {
            reason: error.to_string(),
        };
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(unusable)?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(unusable)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    /// The rustls configuration, e.g. to serve it on another listener.
    pub fn rustls_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }
}

/// The PEM bytes of a Centrifugo-style PEM value: the text itself, or the file it names.
fn pem_value(key: &'static str, value: &str) -> Result<Vec<u8>, TlsError> {
    if value.contains("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    let path = PathBuf::from(value.trim());
    std::fs::read(&path).map_err(|source| TlsError::ReadFile { key, path, source })
}

fn pem_error(key: &'static str, error: &pem::Error) -> TlsError {
    TlsError::BadPem {
        key,
        reason: error.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn self_signed() -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    fn config(cert_pem: &str, key_pem: &str) -> HttpServerTlsConfig {
        HttpServerTlsConfig {
            enabled: true,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        }
    }

    #[test]
    fn inline_pem_text_is_accepted() {
        let (cert, key) = self_signed();
        let tls = ServerTls::from_config(&config(&cert, &key)).unwrap();
        assert_eq!(
            tls.rustls_config().alpn_protocols,
            vec![b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn pem_files_are_read() {
        let (cert, key) = self_signed();
        let dir = std::env::temp_dir().join(format!("starling-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        let result = ServerTls::from_config(&config(
            cert_path.to_str().unwrap(),
            key_path.to_str().unwrap(),
        ));
        std::fs::remove_dir_all(&dir).unwrap();
        result.unwrap();
    }

    #[test]
    fn missing_file_error_names_key_and_path() {
        let (_, key) = self_signed();
        let error = ServerTls::from_config(&config("/nonexistent/tls.crt", &key)).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(CERT_KEY), "{message}");
        assert!(message.contains("/nonexistent/tls.crt"), "{message}");
    }

    #[test]
    fn key_in_place_of_certificate_is_refused() {
        let (_, key) = self_signed();
        let error = ServerTls::from_pem(key.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");
    }

    #[test]
    fn certificate_in_place_of_key_is_refused() {
        let (cert, _) = self_signed();
        let error = ServerTls::from_pem(cert.as_bytes(), cert.as_bytes()).unwrap_err();
        assert!(matches!(error, TlsError::NoPrivateKey { .. }), "{error}");
    }

    #[test]
    fn key_of_another_certificate_is_refused() {
        let (cert, _) = self_signed();
        let (_, other_key) = self_signed();
        let error = ServerTls::from_pem(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(matches!(error, TlsError::Unusable { .. }), "{error}");
    }
}
