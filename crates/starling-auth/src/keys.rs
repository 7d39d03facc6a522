//! The key material a [`crate::TokenVerifier`] is built from.

use std::fmt;

/// Token verification settings as plain data; the node fills it from config.
///
/// An empty string means "not configured" for every field: an unset key
/// disables its algorithms, an unset audience or issuer is not checked.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TokenKeys {
    /// Shared secret for HS256/384/512 tokens, used as raw bytes (not base64).
    pub hmac_secret_key: String,
    /// PEM public key (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`) for RS256/384/512.
    pub rsa_public_key: String,
    /// PEM public key (`BEGIN PUBLIC KEY`) for ES256/384.
    pub ecdsa_public_key: String,
    /// Required `aud` value; tokens whose `aud` does not contain it are rejected.
    pub audience: String,
    /// Required `iss` value.
    pub issuer: String,
}

// Hand-written so the HMAC secret never reaches logs through `{:?}`.
impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = if self.hmac_secret_key.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("TokenKeys")
            .field("hmac_secret_key", &secret)
            .field("rsa_public_key", &self.rsa_public_key)
            .field("ecdsa_public_key", &self.ecdsa_public_key)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_hmac_secret() {
        let keys = TokenKeys {
            hmac_secret_key: "hunter2".into(),
            ..TokenKeys::default()
        };
        let shown = format!("{keys:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
