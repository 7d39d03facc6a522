//! [`TokenVerifier`]: from a token string to verified claims.
//!
//! Order of checks, cheapest and least trusting first: length, structure,
//! header `alg`, key choice, signature; only then are the claims decoded and
//! their times, audience and issuer checked. Claims JSON is never parsed
//! before the signature holds, so unauthenticated input only reaches the
//! base64 and header decoders.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use crate::algorithm::{Algorithm, Family};
use crate::claims::{
    ConnectClaims, Registered, SubscribeClaims, WireClaims, WireConnect, WireSubscribe,
};
use crate::error::{KeyError, KeyKind, TokenError, truncate};
use crate::keys::TokenKeys;

/// Longest token accepted, in bytes. Longer tokens are rejected before any
/// decoding so a client cannot make the node base64-decode megabytes.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Longest `alg` value quoted back in [`TokenError::UnsupportedAlgorithm`].
const MAX_ALG_CHARS: usize = 32;

/// Verifies connection and subscription tokens against configured keys.
///
/// Keys are parsed once in [`TokenVerifier::new`]. The verifier is immutable,
/// `Send + Sync` and cheap to clone; share one per node (e.g. in an `Arc`).
#[derive(Clone)]
pub struct TokenVerifier {
    hmac: Option<DecodingKey>,
    rsa: Option<DecodingKey>,
    ecdsa: Option<DecodingKey>,
    audience: Option<String>,
    issuer: Option<String>,
}

/// The part of the JOSE header we read. Other parameters (`typ`, `kid`, ...)
/// are ignored, as Centrifugo does with static keys.
#[derive(Deserialize)]
struct Header {
    alg: String,
}

impl TokenVerifier {
    /// Parses the configured keys. Empty fields stay unconfigured.
    ///
    /// Fails with a [`KeyError`] naming the key whose PEM is not a public key
    /// of the right kind. A verifier with no key at all is valid: it rejects
    /// every token with [`TokenError::KeyNotConfigured`], see
    /// [`TokenVerifier::is_configured`].
    pub fn new(keys: &TokenKeys) -> Result<Self, KeyError> {
        let hmac = non_empty(&keys.hmac_secret_key)
            .map(|secret| DecodingKey::from_secret(secret.as_bytes()));
        let rsa = non_empty(&keys.rsa_public_key)
            .map(|pem| public_pem(pem, KeyKind::RsaPublicKey, DecodingKey::from_rsa_pem))
            .transpose()?;
        let ecdsa = non_empty(&keys.ecdsa_public_key)
            .map(|pem| public_pem(pem, KeyKind::EcdsaPublicKey, DecodingKey::from_ec_pem))
            .transpose()?;
        Ok(TokenVerifier {
            hmac,
            rsa,
            ecdsa,
            audience: non_empty(&keys.audience).map(str::to_owned),
            issuer: non_empty(&keys.issuer).map(str::to_owned),
        })
    }

    /// Whether any key is configured, i.e. whether any token can ever verify.
    pub fn is_configured(&self) -> bool {
        self.hmac.is_some() || self.rsa.is_some() || self.ecdsa.is_some()
    }

    /// Verifies a connection token at time `now_unix` (Unix seconds).
    pub fn verify_connect(&self, token: &str, now_unix: i64) -> Result<ConnectClaims, TokenError> {
        self.verify::<WireConnect>(token, now_unix)
    }

    /// Verifies a subscription token at time `now_unix` (Unix seconds).
    ///
    /// The caller still has to check that `sub` matches the connection's user
    /// and `channel` the channel being subscribed to.
    pub fn verify_subscribe(
        &self,
        token: &str,
        now_unix: i64,
    ) -> Result<SubscribeClaims, TokenError> {
        self.verify::<WireSubscribe>(token, now_unix)
    }

    fn verify<W: WireClaims>(&self, token: &str, now: i64) -> Result<W::Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let (signed, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| TokenError::malformed("expected three dot-separated parts"))?;
        let (header, payload) = signed
            .split_once('.')
            .filter(|(_, payload)| !payload.contains('.'))
            .ok_or_else(|| TokenError::malformed("expected three dot-separated parts"))?;

        let header: Header = decode_json_part("header", header)?;
        let alg = Algorithm::from_jws_name(&header.alg).ok_or_else(|| {
            TokenError::UnsupportedAlgorithm {
                alg: truncate(&header.alg, MAX_ALG_CHARS),
            }
        })?;
        let key = self
            .key_for(alg.family())
            .ok_or(TokenError::KeyNotConfigured { alg })?;
        // Only the signature's base64 can fail here: the key's family always
        // matches the algorithm, so the crypto provider has nothing else to reject.
        let valid = jsonwebtoken::crypto::verify(signature, signed.as_bytes(), key, alg.to_jwt())
            .map_err(|err| TokenError::malformed(format_args!("signature: {err}")))?;
        if !valid {
            return Err(TokenError::BadSignature);
        }

        let wire: W = decode_json_part("claims", payload)?;
        self.check_registered(&wire.registered(), now)?;
        wire.into_claims()
    }

    fn key_for(&self, family: Family) -> Option<&DecodingKey> {
        match family {
            Family::Hmac => self.hmac.as_ref(),
            Family::Rsa => self.rsa.as_ref(),
            Family::Ecdsa => self.ecdsa.as_ref(),
        }
    }

    /// Time first, then audience and issuer, as Centrifugo orders them: an
    /// expired token gets "refresh" as its answer even if it is also wrong otherwise.
    fn check_registered(&self, claims: &Registered<'_>, now: i64) -> Result<(), TokenError> {
        if let Some(exp) = claims.exp.filter(|&exp| exp != 0)
            && exp <= now
        {
            return Err(TokenError::Expired { exp, now });
        }
        if let Some(nbf) = claims.nbf
            && nbf > now
        {
            return Err(TokenError::NotYetValid { nbf, now });
        }
        if let Some(wanted) = &self.audience
            && !claims.aud.is_some_and(|aud| aud.contains(wanted))
        {
            return Err(TokenError::WrongAudience);
        }
        if let Some(wanted) = &self.issuer
            && claims.iss != Some(wanted.as_str())
        {
            return Err(TokenError::WrongIssuer);
        }
        Ok(())
    }
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hmac", &self.hmac.is_some())
            .field("rsa", &self.rsa.is_some())
            .field("ecdsa", &self.ecdsa.is_some())
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

fn non_empty(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

fn public_pem(
    pem: &str,
    key: KeyKind,
    parse: fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>,
) -> Result<DecodingKey, KeyError> {
    // The PEM decoder would accept an RSA private key as "an RSA key" and
    // every token would then fail; refuse it up front with a clear message.
    if pem.contains("PRIVATE KEY-----") {
        return Err(KeyError::PrivateKeyGiven { key });
    }
    parse(pem.as_bytes()).map_err(|err| KeyError::InvalidPem {
        key,
        reason: err.to_string(),
    })
}

/// Decodes one base64url (unpadded) JWS part and parses it as JSON.
fn decode_json_part<T: for<'de> Deserialize<'de>>(
    part_name: &str,
    encoded: &str,
) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded.as_bytes())
        .map_err(|err| TokenError::malformed(format_args!("{part_name}: {err}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|err| TokenError::malformed(format_args!("{part_name}: {err}")))
}

#[cfg(test)]
mod tests;
