//! Verification of the JWTs that Centrifugo clients present: the connection
//! token sent with `connect` and the subscription token sent with `subscribe`.
//!
//! The crate takes plain key material ([`TokenKeys`], filled by the node from
//! its config), parses it once into a [`TokenVerifier`], and turns a token
//! string into typed claims ([`ConnectClaims`], [`SubscribeClaims`]) or a
//! [`TokenError`]. It has no clock of its own: callers pass the current Unix
//! time, so tests decide what "now" is. Tokens are attacker input; every
//! malformed token becomes an error, never a panic.
//!
//! Supported algorithms follow Centrifugo: HS256/384/512 with the HMAC secret,
//! RS256/384/512 with the RSA public key, ES256/384 with the ECDSA public key.
//! The token header's `alg` picks the key, so an RSA public key can never be
//! used as an HMAC secret.
//!
//! Layout:
//! - `algorithm` — [`Algorithm`], the JWS algorithms accepted.
//! - `keys` — [`TokenKeys`], the configured key material.
//! - `claims` — [`ConnectClaims`] and [`SubscribeClaims`], and the wire shapes they are parsed from.
//! - `verifier` — [`TokenVerifier`]: structure, signature and time checks.
//! - `error` — [`KeyError`] (bad configuration, the node must not start) and
//!   [`TokenError`] (this one token is rejected).
//! - `testing` (feature `testing`) — mint tokens and fixture keys for other crates' tests.

mod algorithm;
mod claims;
mod error;
mod keys;
mod verifier;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use algorithm::Algorithm;
pub use claims::{ConnectClaims, SubscribeClaims};
pub use error::{KeyError, KeyKind, TokenError};
pub use keys::TokenKeys;
pub use verifier::{MAX_TOKEN_LEN, TokenVerifier};
