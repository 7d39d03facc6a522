//! The JWS algorithms Starling accepts.

use std::fmt;

/// A JWS signing algorithm accepted in a token's `alg` header.
///
/// The set matches what Centrifugo verifies with static keys, minus ES512,
/// which the underlying crypto provider does not offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256, keyed by the HMAC secret.
    Hs256,
    /// HMAC with SHA-384, keyed by the HMAC secret.
    Hs384,
    /// HMAC with SHA-512, keyed by the HMAC secret.
    Hs512,
    /// RSASSA-PKCS1-v1_5 with SHA-256, checked with the RSA public key.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384, checked with the RSA public key.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512, checked with the RSA public key.
    Rs512,
    /// ECDSA P-256 with SHA-256, checked with the ECDSA public key.
    Es256,
    /// ECDSA P-384 with SHA-384, checked with the ECDSA public key.
    Es384,
}

/// Which configured key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Hmac,
    Rsa,
    Ecdsa,
}

impl Algorithm {
    /// Every accepted algorithm, in a stable order.
    pub const ALL: [Algorithm; 8] = [
        Algorithm::Hs256,
        Algorithm::Hs384,
        Algorithm::Hs512,
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Es256,
        Algorithm::Es384,
    ];

    /// Looks up an algorithm by its JWS `alg` name (case-sensitive, as RFC 7518
    /// defines it). Returns `None` for `none` and anything unsupported.
    pub fn from_jws_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == name)
    }

    /// The JWS `alg` name, e.g. `"HS256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
        }
    }

    pub(crate) fn family(self) -> Family {
        match self {
            Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512 => Family::Hmac,
            Algorithm::Rs256 | Algorithm::Rs384 | Algorithm::Rs512 => Family::Rsa,
            Algorithm::Es256 | Algorithm::Es384 => Family::Ecdsa,
        }
    }

    pub(crate) fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::Hs256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::Hs384 => jsonwebtoken::Algorithm::HS384,
            Algorithm::Hs512 => jsonwebtoken::Algorithm::HS512,
            Algorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::Rs384 => jsonwebtoken::Algorithm::RS384,
            Algorithm::Rs512 => jsonwebtoken::Algorithm::RS512,
            Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::Es384 => jsonwebtoken::Algorithm::ES384,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jws_names_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_jws_name(alg.as_str()), Some(alg));
        }
    }

    #[test]
    fn none_and_unsupported_names_are_not_algorithms() {
        for name in ["none", "None", "hs256", "PS256", "EdDSA", "ES512", ""] {
            assert_eq!(Algorithm::from_jws_name(name), None, "{name}");
        }
    }
}
