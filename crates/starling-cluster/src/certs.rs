//! Making cluster certificates: a CA, and node certificates it signs.
//!
//! Every key is ECDSA P-256 (PKCS#8 PEM), every certificate PEM. Key files
//! are created with mode 0600 and never overwritten: replacing a CA key by
//! accident would cut a node off its cluster.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use starling_placement::NodeId;

use crate::error::TlsError;
use crate::tls;

/// File name of the cluster CA certificate (in the CA and node directories).
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the cluster CA private key (only in the CA directory).
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of a node's certificate.
pub const NODE_CERT_FILE: &str = "node.pem";
/// File name of a node's private key.
pub const NODE_KEY_FILE: &str = "node.key";

/// DNS name every node certificate carries besides its own: what a node dials
/// when it knows a peer's address but not its id (joining a cluster).
pub const CLUSTER_DNS_NAME: &str = "starling.cluster";

/// How long new certificates are valid: ten years. Rotation is by issuing new
/// ones from the same CA (see docs/operations.md), not by expiry pressure.
const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Back-dating of `not_before`, so clocks a little behind the issuer's accept
/// a fresh certificate.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Common name of the cluster CA. Node certificates name their issuer by it,
/// and `certs node` rebuilds the issuer from it (see [`ca_params`]).
const CA_COMMON_NAME: &str = "Starling cluster CA";
const ORGANIZATION: &str = "Starling";

/// The DNS name in the certificate of node `node_id`:
/// `node-<id>.starling.cluster`. A node dialling a peer by id checks the
/// peer's certificate for it; the acceptor checks a dialler's Hello against it.
pub fn node_dns_name(node_id: NodeId) -> String {
    format!("node-{node_id}.{CLUSTER_DNS_NAME}")
}

/// The files [`init_ca`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// The CA certificate (`ca.pem`): give it to every node.
    pub cert: PathBuf,
    /// The CA key (`ca.key`, mode 0600): keep it off the nodes if you can.
    pub key: PathBuf,
}

/// The files [`issue_node_cert`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFiles {
    /// A copy of the CA certificate (`ca.pem`).
    pub ca_cert: PathBuf,
    /// The node certificate (`node.pem`).
    pub cert: PathBuf,
    /// The node key (`node.key`, mode 0600).
    pub key: PathBuf,
}

/// Creates a cluster CA in `out`: `ca.pem` (self-signed, ECDSA P-256) and
/// `ca.key`. Creates `out` if needed; refuses to overwrite either file.
pub fn init_ca(out: &Path) -> Result<CaFiles, TlsError> {
    let files = CaFiles {
        cert: out.join(CA_CERT_FILE),
        key: out.join(CA_KEY_FILE),
    };
    refuse_existing(&[&files.cert, &files.key])?;
    create_dir(out)?;
    let key = generate_key("CA key")?;
    let cert = ca_params()
        .self_signed(&key)
        .map_err(|source| TlsError::Generate {
            what: "CA certificate",
            source,
        })?;
    write_file(&files.key, key.serialize_pem().as_bytes(), Mode::Secret)?;
    write_file(&files.cert, cert.pem().as_bytes(), Mode::Public)?;
    Ok(files)
}

/// Issues a certificate for `node_id` from the CA in `ca_dir` (`ca.pem` +
/// `ca.key`, as written by [`init_ca`]) and writes `ca.pem`, `node.pem` and
/// `node.key` to `out` — the directory `starling serve --cluster-tls` reads.
///
/// The certificate names `node-<id>.starling.cluster` and
/// `starling.cluster`, and serves both as server and client certificate.
/// `out` may be `ca_dir`. Refuses to overwrite `node.pem` or `node.key`.
pub fn issue_node_cert(ca_dir: &Path, node_id: NodeId, out: &Path) -> Result<NodeFiles, TlsError> {
    let ca_cert_path = ca_dir.join(CA_CERT_FILE);
    let ca_key_path = ca_dir.join(CA_KEY_FILE);
    let files = NodeFiles {
        ca_cert: out.join(CA_CERT_FILE),
        cert: out.join(NODE_CERT_FILE),
        key: out.join(NODE_KEY_FILE),
    };
    refuse_existing(&[&files.cert, &files.key])?;

    let ca_pem = read_file(&ca_cert_path)?;
    let ca_key_pem = read_string(&ca_key_path)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|source| TlsError::CaKey {
        path: ca_key_path.clone(),
        source,
    })?;
    // The issuer is rebuilt from the same template `init_ca` used rather than
    // parsed from ca.pem (which would need an X.509 parser); the check below
    // catches a CA made some other way.
    let issuer = Issuer::new(ca_params(), ca_key);

    let key = generate_key("node key")?;
    let cert = node_params(node_id)?
        .signed_by(&key, &issuer)
        .map_err(|source| TlsError::Generate {
            what: "node certificate",
            source,
        })?;

    let roots = tls::root_store(&ca_cert_path, &ca_pem)?;
    tls::verify_chain(cert.der(), &roots).map_err(|source| TlsError::NotSignedByCa {
        cert: files.cert.clone(),
        ca: ca_cert_path.clone(),
        source,
    })?;

    create_dir(out)?;
    if ca_cert_path != files.ca_cert {
        write_file(&files.ca_cert, &ca_pem, Mode::Public)?;
    }
    write_file(&files.key, key.serialize_pem().as_bytes(), Mode::Secret)?;
    write_file(&files.cert, cert.pem().as_bytes(), Mode::Public)?;
    Ok(files)
}

/// The CA's parameters. Deterministic apart from the validity window, so
/// [`issue_node_cert`] can rebuild the issuer name from them.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params
        .distinguished_name
        .push(DnType::OrganizationName, ORGANIZATION);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    params
}

fn node_params(node_id: NodeId) -> Result<CertificateParams, TlsError> {
    let names = vec![node_dns_name(node_id), CLUSTER_DNS_NAME.to_string()];
    let mut params = CertificateParams::new(names).map_err(|source| TlsError::Generate {
        what: "node certificate names",
        source,
    })?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("starling node {node_id}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, ORGANIZATION);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // One certificate for both directions of a link: nodes dial and accept.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams) {
    let now = SystemTime::now();
    // rcgen's times are `time::OffsetDateTime`, which converts from
    // SystemTime (time's `std` feature, which rcgen's yasna enables).
    params.not_before = now.checked_sub(BACKDATE).unwrap_or(now).into();
    params.not_after = now.checked_add(VALIDITY).unwrap_or(now).into();
}

fn generate_key(what: &'static str) -> Result<KeyPair, TlsError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| TlsError::Generate { what, source })
}

fn refuse_existing(paths: &[&PathBuf]) -> Result<(), TlsError> {
    for path in paths {
        if path.exists() {
            return Err(TlsError::AlreadyExists {
                path: (*path).clone(),
            });
        }
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_string(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Clone, Copy)]
enum Mode {
    Public,
    Secret,
}

/// Writes a new file; secret files get mode 0600 from the moment they exist.
fn write_file(path: &Path, contents: &[u8], mode: Mode) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    match mode {
        Mode::Secret => {
            options.create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        Mode::Public => {
            options.create(true).truncate(true);
        }
    }
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "starling-cluster-certs-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn node_names_follow_the_node_id() {
        assert_eq!(node_dns_name(NodeId(42)), "node-42.starling.cluster");
    }

    #[test]
    fn init_ca_writes_cert_and_private_key() {
        let dir = temp_dir("init");
        let files = init_ca(&dir).expect("init");
        let cert = std::fs::read_to_string(&files.cert).expect("cert");
        let key = std::fs::read_to_string(&files.key).expect("key");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&files.key)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn init_ca_refuses_to_overwrite_a_ca() {
        let dir = temp_dir("twice");
        init_ca(&dir).expect("first");
        let err = init_ca(&dir).expect_err("second");
        assert!(matches!(err, TlsError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains(CA_CERT_FILE), "{err}");
    }

    #[test]
    fn node_cert_chains_to_its_ca_and_names_the_node() {
        let ca = temp_dir("node-ca");
        let out = temp_dir("node-out");
        init_ca(&ca).expect("ca");
        let files = issue_node_cert(&ca, NodeId(3), &out).expect("node");
        assert_eq!(
            std::fs::read(&files.ca_cert).expect("copy"),
            std::fs::read(ca.join(CA_CERT_FILE)).expect("ca")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&files.key)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let tls = crate::ClusterTls::load(&out).expect("load");
        tls.check_node(NodeId(3)).expect("names node 3");
        assert!(tls.check_node(NodeId(4)).is_err());
    }

    #[test]
    fn node_cert_can_be_written_into_the_ca_directory() {
        let dir = temp_dir("same-dir");
        init_ca(&dir).expect("ca");
        issue_node_cert(&dir, NodeId(1), &dir).expect("node");
        crate::ClusterTls::load(&dir).expect("load");
    }

    #[test]
    fn missing_ca_key_is_named_in_the_error() {
        let ca = temp_dir("no-key");
        init_ca(&ca).expect("ca");
        std::fs::remove_file(ca.join(CA_KEY_FILE)).expect("rm");
        let err = issue_node_cert(&ca, NodeId(1), &temp_dir("no-key-out")).expect_err("no key");
        assert!(err.to_string().contains(CA_KEY_FILE), "{err}");
    }

    #[test]
    fn a_key_that_does_not_match_the_ca_cert_is_caught() {
        let ca = temp_dir("mismatch-a");
        let other = temp_dir("mismatch-b");
        init_ca(&ca).expect("ca");
        init_ca(&other).expect("other");
        std::fs::copy(other.join(CA_KEY_FILE), ca.join(CA_KEY_FILE)).expect("swap key");
        let out = temp_dir("mismatch-out");
        let err = issue_node_cert(&ca, NodeId(1), &out).expect_err("mismatch");
        assert!(matches!(err, TlsError::NotSignedByCa { .. }), "{err}");
        assert!(!out.join(NODE_KEY_FILE).exists());
    }
}
