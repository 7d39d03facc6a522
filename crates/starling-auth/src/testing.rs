//! Token minting and fixture keys for tests (feature `testing`).
//!
//! Integration and interop tests need real tokens: configure the node with
//! [`test_keys`] and mint with [`mint_hs256`], [`mint_rs256`] or
//! [`mint_es256`]. The fixture keys are published in this repository and are
//! only fit for tests.
//!
//! ```
//! use serde_json::json;
//! use starling_auth::TokenVerifier;
//! use starling_auth::testing::{HMAC_SECRET, mint_hs256, test_keys};
//!
//! let verifier = TokenVerifier::new(&test_keys())?;
//! let token = mint_hs256(HMAC_SECRET, &json!({"sub": "42", "exp": 1_700_000_060}))?;
//! assert_eq!(verifier.verify_connect(&token, 1_700_000_000)?.sub, "42");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;

use crate::algorithm::{Algorithm, Family};
use crate::keys::TokenKeys;

/// HMAC secret used by [`test_keys`].
pub const HMAC_SECRET: &str = "starling-test-hmac-secret";
/// RSA 2048 private key (PKCS#8 PEM) for minting RS256/384/512 tokens.
pub const RSA_PRIVATE_KEY_PEM: &str = include_str!("../tests/fixtures/rsa_private.pem");
/// Public half of [`RSA_PRIVATE_KEY_PEM`].
pub const RSA_PUBLIC_KEY_PEM: &str = include_str!("../tests/fixtures/rsa_public.pem");
/// ECDSA P-256 private key (PKCS#8 PEM) for minting ES256 tokens.
pub const EC_PRIVATE_KEY_PEM: &str = include_str!("../tests/fixtures/ec_private.pem");
/// Public half of [`EC_PRIVATE_KEY_PEM`].
pub const EC_PUBLIC_KEY_PEM: &str = include_str!("../tests/fixtures/ec_public.pem");

/// Keys that verify everything minted with the constants above; no audience
/// or issuer check.
pub fn test_keys() -> TokenKeys {
    TokenKeys {
        hmac_secret_key: HMAC_SECRET.to_owned(),
        rsa_public_key: RSA_PUBLIC_KEY_PEM.to_owned(),
        ecdsa_public_key: EC_PUBLIC_KEY_PEM.to_owned(),
        audience: String::new(),
        issuer: String::new(),
    }
}

/// Key material to sign a test token with.
#[derive(Debug, Clone, Copy)]
pub enum SigningKey<'a> {
    /// HMAC secret, used as raw bytes.
    Hmac(&'a str),
    /// RSA private key, PEM (PKCS#1 or PKCS#8).
    RsaPem(&'a str),
    /// ECDSA private key, PKCS#8 PEM.
    EcPem(&'a str),
}

/// Why a test token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The algorithm needs a different kind of key.
    #[error("{alg} cannot be signed with this kind of key")]
    KeyMismatch {
        /// The requested algorithm.
        alg: Algorithm,
    },
    /// The private key PEM could not be read or used.
    #[error("unusable signing key: {reason}")]
    InvalidKey {
        /// What the key parser or signer reported.
        reason: String,
    },
}

/// Signs `claims` as an HS256 token with `secret`.
pub fn mint_hs256(secret: &str, claims: &serde_json::Value) -> Result<String, MintError> {
    mint(Algorithm::Hs256, SigningKey::Hmac(secret), claims)
}

/// Signs `claims` as an RS256 token with an RSA private key PEM.
pub fn mint_rs256(private_key_pem: &str, claims: &serde_json::Value) -> Result<String, MintError> {
    mint(
        Algorithm::Rs256,
        SigningKey::RsaPem(private_key_pem),
        claims,
    )
}

/// Signs `claims` as an ES256 token with a P-256 PKCS#8 private key PEM.
pub fn mint_es256(private_key_pem: &str, claims: &serde_json::Value) -> Result<String, MintError> {
    mint(Algorithm::Es256, SigningKey::EcPem(private_key_pem), claims)
}

/// Signs `claims` with any supported algorithm; the header is `{"alg": .., "typ": "JWT"}`.
pub fn mint(
    alg: Algorithm,
    key: SigningKey<'_>,
    claims: &serde_json::Value,
) -> Result<String, MintError> {
    let header = serde_json::json!({ "alg": alg.as_str(), "typ": "JWT" });
    mint_raw(
        alg,
        key,
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
    )
}

/// Signs arbitrary header and claims bytes with `alg`, whatever the header
/// says. For tests that need hostile tokens: a lying `alg`, invalid JSON,
/// wrongly typed claims — all correctly signed.
pub fn mint_raw(
    alg: Algorithm,
    key: SigningKey<'_>,
    header: &[u8],
    claims: &[u8],
) -> Result<String, MintError> {
    let encoding_key = encoding_key(alg, key)?;
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), &encoding_key, alg.to_jwt())
        .map_err(|err| MintError::InvalidKey {
            reason: err.to_string(),
        })?;
    Ok(format!("{signed}.{signature}"))
}

fn encoding_key(alg: Algorithm, key: SigningKey<'_>) -> Result<EncodingKey, MintError> {
    let invalid = |err: jsonwebtoken::errors::Error| MintError::InvalidKey {
        reason: err.to_string(),
    };
    match (alg.family(), key) {
        (Family::Hmac, SigningKey::Hmac(secret)) => Ok(EncodingKey::from_secret(secret.as_bytes())),
        (Family::Rsa, SigningKey::RsaPem(pem)) => {
            EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(invalid)
        }
        (Family::Ecdsa, SigningKey::EcPem(pem)) => {
            EncodingKey::from_ec_pem(pem.as_bytes()).map_err(invalid)
        }
        _ => Err(MintError::KeyMismatch { alg }),
    }
}
