//! The development token secret.
//!
//! A node with no connection-token key and anonymous connect off would accept nobody, which is
//! a poor first run. So `starling serve` then generates a random HMAC secret once, keeps it in
//! the data directory, and uses it; `starling gentoken` signs with the same file. Configuring
//! any `client.token` key turns this off.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rand::RngCore as _;
use starling_config::Config;

/// File name of the development secret inside `node.data_dir`.
const FILE_NAME: &str = "dev-hmac-secret";

/// Path of the development secret for `data_dir`.
pub(crate) fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Whether `config` needs the development secret: no connection-token key at all, and
/// anonymous connections are not allowed.
pub(crate) fn needed(config: &Config) -> bool {
    config.client.token.has_no_keys() && !config.client.allow_anonymous_connect_without_token
}

/// Reads the development secret of `data_dir`, creating it first if it does not exist.
pub(crate) fn load_or_create(data_dir: &Path) -> anyhow::Result<String> {
    let path = path(data_dir);
    if let Some(secret) = read(&path)? {
        return Ok(secret);
    }
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(secret)
}

/// Reads the development secret at `path`, if there is one.
pub(crate) fn read(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}
