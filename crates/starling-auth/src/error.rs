//! Errors: [`KeyError`] for configuration that cannot be used at all, and
//! [`TokenError`] for one rejected token.
//!
//! They are kept apart because they call for different reactions: a
//! `KeyError` stops the node at startup, a `TokenError` fails one request and
//! is mapped to a protocol error code by the gateway.

use std::fmt;

use crate::algorithm::Algorithm;

/// Which configured key a [`KeyError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The RSA public key (`rsa_public_key`).
    RsaPublicKey,
    /// The ECDSA public key (`ecdsa_public_key`).
    EcdsaPublicKey,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::RsaPublicKey => "RSA public key",
            KeyKind::EcdsaPublicKey => "ECDSA public key",
        })
    }
}

/// Configured key material that cannot be used to verify tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The PEM text does not hold a public key of the expected kind.
    #[error("{key} is not a usable PEM public key: {reason}")]
    InvalidPem {
        /// Which key is broken.
        key: KeyKind,
        /// What the PEM decoder reported.
        reason: String,
    },
    /// A private key was configured where the public key belongs. Refused so
    /// the mistake is noticed instead of every token failing to verify, and
    /// because the private key does not belong on the broker.
    #[error("{key} holds a private key; configure only the public key")]
    PrivateKeyGiven {
        /// Which key holds private material.
        key: KeyKind,
    },
}

/// Why one token was rejected.
///
/// Only [`TokenError::Expired`] (and, by Centrifugo's behaviour,
/// [`TokenError::NotYetValid`]) means "get a fresh token"; the gateway maps
/// those to error 109 "token expired" and everything else to "invalid token".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The `exp` claim is at or before the current time.
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`, Unix seconds.
        exp: i64,
        /// The time the token was checked at, Unix seconds.
        now: i64,
    },
    /// The `nbf` claim is after the current time.
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid {
        /// The token's `nbf`, Unix seconds.
        nbf: i64,
        /// The time the token was checked at, Unix seconds.
        now: i64,
    },
    /// The token is longer than [`crate::MAX_TOKEN_LEN`]; it is not parsed.
    #[error("token is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// Length of the presented token in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token is not a well-formed JWS compact serialization with JSON
    /// header and claims of the expected types.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What is wrong, for logs. Bounded in length; may quote token bytes.
        reason: String,
    },
    /// The signature does not match the header and claims under the configured key.
    #[error("token signature does not verify")]
    BadSignature,
    /// The header's `alg` is `none` or an algorithm Starling does not accept.
    #[error("unsupported token algorithm {alg:?}")]
    UnsupportedAlgorithm {
        /// The `alg` value from the header, truncated.
        alg: String,
    },
    /// The algorithm is supported but no key for it is configured.
    #[error("no key configured for token algorithm {alg}")]
    KeyNotConfigured {
        /// The algorithm the token asked for.
        alg: Algorithm,
    },
    /// An audience is configured and the token's `aud` is missing or does not contain it.
    #[error("token audience does not match")]
    WrongAudience,
    /// An issuer is configured and the token's `iss` is missing or different.
    #[error("token issuer does not match")]
    WrongIssuer,
    /// A claim this kind of token must carry is absent or empty.
    #[error("token lacks required claim {name:?}")]
    MissingClaim {
        /// The claim's name.
        name: &'static str,
    },
}

/// Longest `reason` kept in [`TokenError::Malformed`]; decoder messages can
/// quote attacker-chosen strings and end up in logs.
const MAX_REASON_CHARS: usize = 160;

impl TokenError {
    pub(crate) fn malformed(reason: impl fmt::Display) -> Self {
        TokenError::Malformed {
            reason: truncate(&reason.to_string(), MAX_REASON_CHARS),
        }
    }
}

/// Cuts `text` to at most `max_chars` characters, marking the cut.
pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_reason_is_bounded() {
        let err = TokenError::malformed("x".repeat(10_000));
        let TokenError::Malformed { reason } = err else {
            panic!("expected Malformed");
        };
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS + 1);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("ab", 2), "ab");
    }

    #[test]
    fn key_error_names_the_key() {
        let err = KeyError::PrivateKeyGiven {
            key: KeyKind::EcdsaPublicKey,
        };
        assert!(err.to_string().contains("ECDSA public key"));
    }
}
