//! Connection and subscription JWTs (`TokenVerifier::verify_connect` / `verify_subscribe`)
//! against fixed keys (HMAC, RSA and ECDSA: `starling_auth::testing::test_keys`).
//!
//! The first byte picks the mode. Raw tokens only reach the structure, base64 and header
//! decoders, since claims are parsed only after the signature holds; so half the inputs are
//! signed with the fixture HMAC secret first, which takes fuzzed claims (and headers) through
//! the claims parser and the time, audience and issuer checks.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use starling_auth::testing::{HMAC_SECRET, SigningKey, mint_raw, test_keys};
use starling_auth::{Algorithm, TokenKeys, TokenVerifier};

/// A fixed "now", so runs replay exactly.
const NOW: i64 = 1_700_000_000;

fn verifiers() -> &'static [TokenVerifier; 2] {
    static VERIFIERS: OnceLock<[TokenVerifier; 2]> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        let strict = TokenKeys {
            audience: "starling".to_owned(),
            issuer: "https://issuer.example".to_owned(),
            ..test_keys()
        };
        [
            TokenVerifier::new(&test_keys()).expect("fixture keys parse"),
            TokenVerifier::new(&strict).expect("fixture keys parse"),
        ]
    })
}

fn verify(token: &str) {
    for verifier in verifiers() {
        let _ = verifier.verify_connect(token, NOW);
        let _ = verifier.verify_subscribe(token, NOW);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(token) = std::str::from_utf8(rest) {
            verify(token);
        }
        return;
    }
    let (header, claims): (&[u8], &[u8]) = if mode & 2 == 0 {
        (br#"{"alg":"HS256","typ":"JWT"}"#, rest)
    } else {
        rest.split_at(usize::from(mode >> 2).min(rest.len()))
    };
    if let Ok(token) = mint_raw(
        Algorithm::Hs256,
        SigningKey::Hmac(HMAC_SECRET),
        header,
        claims,
    ) {
        verify(&token);
    }
});
