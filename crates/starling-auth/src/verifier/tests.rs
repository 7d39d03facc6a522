use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::testing::{
    EC_PRIVATE_KEY_PEM, EC_PUBLIC_KEY_PEM, HMAC_SECRET, RSA_PRIVATE_KEY_PEM, RSA_PUBLIC_KEY_PEM,
    SigningKey, mint, mint_es256, mint_hs256, mint_raw, mint_rs256, test_keys,
};

const NOW: i64 = 1_700_000_000;
const EC384_PRIVATE_KEY_PEM: &str = include_str!("../../tests/fixtures/ec384_private.pem");
const EC384_PUBLIC_KEY_PEM: &str = include_str!("../../tests/fixtures/ec384_public.pem");
const EC_OTHER_PRIVATE_KEY_PEM: &str = include_str!("../../tests/fixtures/ec_other_private.pem");

fn verifier(keys: TokenKeys) -> TokenVerifier {
    TokenVerifier::new(&keys).expect("fixture keys parse")
}

fn all_keys() -> TokenVerifier {
    verifier(test_keys())
}

fn only(configure: impl FnOnce(&mut TokenKeys)) -> TokenVerifier {
    let mut keys = TokenKeys::default();
    configure(&mut keys);
    verifier(keys)
}

fn hs(claims: serde_json::Value) -> String {
    mint_hs256(HMAC_SECRET, &claims).expect("mint")
}

fn hs_raw(header: &str, claims: &str) -> String {
    mint_raw(
        Algorithm::Hs256,
        SigningKey::Hmac(HMAC_SECRET),
        header.as_bytes(),
        claims.as_bytes(),
    )
    .expect("mint")
}

const HS256_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

#[test]
fn hmac_tokens_verify_with_every_hmac_algorithm() {
    let verifier = all_keys();
    for alg in [Algorithm::Hs256, Algorithm::Hs384, Algorithm::Hs512] {
        let token = mint(alg, SigningKey::Hmac(HMAC_SECRET), &json!({"sub": "42"})).expect("mint");
        let claims = verifier.verify_connect(&token, NOW).expect("verifies");
        assert_eq!(claims.sub, "42", "{alg}");
    }
}

#[test]
fn rsa_tokens_verify_with_every_rsa_algorithm() {
    let verifier = only(|keys| keys.rsa_public_key = RSA_PUBLIC_KEY_PEM.into());
    let token = mint_rs256(RSA_PRIVATE_KEY_PEM, &json!({"sub": "7"})).expect("mint");
    assert_eq!(
        verifier.verify_connect(&token, NOW).expect("verifies").sub,
        "7"
    );
    for alg in [Algorithm::Rs384, Algorithm::Rs512] {
        let token = mint(
            alg,
            SigningKey::RsaPem(RSA_PRIVATE_KEY_PEM),
            &json!({"sub": "7"}),
        )
        .expect("mint");
        assert!(verifier.verify_connect(&token, NOW).is_ok(), "{alg}");
    }
}

#[test]
fn es256_token_verifies() {
    let verifier = only(|keys| keys.ecdsa_public_key = EC_PUBLIC_KEY_PEM.into());
    let token = mint_es256(EC_PRIVATE_KEY_PEM, &json!({"sub": "9"})).expect("mint");
    assert_eq!(
        verifier.verify_connect(&token, NOW).expect("verifies").sub,
        "9"
    );
}

#[test]
fn es384_token_verifies_with_a_p384_key() {
    let verifier = only(|keys| keys.ecdsa_public_key = EC384_PUBLIC_KEY_PEM.into());
    let token = mint(
        Algorithm::Es384,
        SigningKey::EcPem(EC384_PRIVATE_KEY_PEM),
        &json!({"sub": "9"}),
    )
    .expect("mint");
    assert!(verifier.verify_connect(&token, NOW).is_ok());
}

#[test]
fn token_expires_at_its_exp_second() {
    let verifier = all_keys();
    let token = hs(json!({"sub": "1", "exp": NOW}));
    assert_eq!(
        verifier.verify_connect(&token, NOW),
        Err(TokenError::Expired { exp: NOW, now: NOW })
    );
    let claims = verifier
        .verify_connect(&token, NOW - 1)
        .expect("still valid");
    assert_eq!(claims.exp, Some(NOW));
}

#[test]
fn zero_exp_never_expires() {
    let token = hs(json!({"sub": "1", "exp": 0}));
    let claims = all_keys().verify_connect(&token, NOW).expect("verifies");
    assert_eq!(claims.exp, None);
}

#[test]
fn token_is_rejected_before_its_nbf() {
    let verifier = all_keys();
    let token = hs(json!({"nbf": NOW + 10}));
    assert_eq!(
        verifier.verify_connect(&token, NOW),
        Err(TokenError::NotYetValid {
            nbf: NOW + 10,
            now: NOW
        })
    );
    assert!(verifier.verify_connect(&token, NOW + 10).is_ok());
}

#[test]
fn tampered_claims_fail_the_signature() {
    let token = hs(json!({"sub": "1"}));
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#);
    parts[1] = &forged;
    assert_eq!(
        all_keys().verify_connect(&parts.join("."), NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn token_signed_with_another_secret_fails() {
    let token = mint_hs256("another-secret", &json!({"sub": "1"})).expect("mint");
    assert_eq!(
        all_keys().verify_connect(&token, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn token_signed_with_an_unknown_ecdsa_key_fails() {
    let token = mint_es256(EC_OTHER_PRIVATE_KEY_PEM, &json!({"sub": "1"})).expect("mint");
    assert_eq!(
        all_keys().verify_connect(&token, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn es384_token_against_a_p256_key_fails() {
    let token = mint(
        Algorithm::Es384,
        SigningKey::EcPem(EC384_PRIVATE_KEY_PEM),
        &json!({}),
    )
    .expect("mint");
    assert_eq!(
        all_keys().verify_connect(&token, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn algorithm_without_a_configured_key_is_rejected() {
    let rsa_only = only(|keys| keys.rsa_public_key = RSA_PUBLIC_KEY_PEM.into());
    assert_eq!(
        rsa_only.verify_connect(&hs(json!({})), NOW),
        Err(TokenError::KeyNotConfigured {
            alg: Algorithm::Hs256
        })
    );
    let hmac_only = only(|keys| keys.hmac_secret_key = HMAC_SECRET.into());
    let token = mint_es256(EC_PRIVATE_KEY_PEM, &json!({})).expect("mint");
    assert_eq!(
        hmac_only.verify_connect(&token, NOW),
        Err(TokenError::KeyNotConfigured {
            alg: Algorithm::Es256
        })
    );
}

#[test]
fn rsa_public_key_used_as_hmac_secret_is_not_accepted() {
    // The classic algorithm-confusion forgery: HS256 keyed by the public PEM.
    let token = mint_hs256(RSA_PUBLIC_KEY_PEM, &json!({"sub": "admin"})).expect("mint");
    let rsa_only = only(|keys| keys.rsa_public_key = RSA_PUBLIC_KEY_PEM.into());
    assert!(matches!(
        rsa_only.verify_connect(&token, NOW),
        Err(TokenError::KeyNotConfigured { .. })
    ));
    assert_eq!(
        all_keys().verify_connect(&token, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn header_alg_decides_the_check_not_the_signer() {
    // Signed with RS256 but claims HS256: checked as HMAC, so it fails.
    let token = mint_raw(
        Algorithm::Rs256,
        SigningKey::RsaPem(RSA_PRIVATE_KEY_PEM),
        HS256_HEADER.as_bytes(),
        b"{}",
    )
    .expect("mint");
    assert_eq!(
        all_keys().verify_connect(&token, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn none_and_unknown_algorithms_are_unsupported() {
    let verifier = all_keys();
    for alg in ["none", "PS256", "EdDSA", "hs256"] {
        let header = format!(r#"{{"alg":"{alg}"}}"#);
        let token = hs_raw(&header, "{}");
        assert_eq!(
            verifier.verify_connect(&token, NOW),
            Err(TokenError::UnsupportedAlgorithm { alg: alg.into() })
        );
    }
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#)
    );
    assert!(matches!(
        verifier.verify_connect(&unsigned, NOW),
        Err(TokenError::UnsupportedAlgorithm { .. })
    ));
}

#[test]
fn unsupported_alg_is_quoted_truncated() {
    let header = format!(r#"{{"alg":"{}"}}"#, "X".repeat(1000));
    let Err(TokenError::UnsupportedAlgorithm { alg }) =
        all_keys().verify_connect(&hs_raw(&header, "{}"), NOW)
    else {
        panic!("expected UnsupportedAlgorithm");
    };
    assert!(alg.chars().count() <= MAX_ALG_CHARS + 1);
}

#[test]
fn unconfigured_verifier_rejects_everything() {
    let verifier = verifier(TokenKeys::default());
    assert!(!verifier.is_configured());
    assert!(matches!(
        verifier.verify_connect(&hs(json!({})), NOW),
        Err(TokenError::KeyNotConfigured { .. })
    ));
    assert!(all_keys().is_configured());
}

#[test]
fn audience_is_checked_only_when_configured() {
    let with_aud = only(|keys| {
        keys.hmac_secret_key = HMAC_SECRET.into();
        keys.audience = "starling".into();
    });
    for aud in [json!("starling"), json!(["other", "starling"])] {
        let token = hs(json!({"aud": aud}));
        assert!(with_aud.verify_connect(&token, NOW).is_ok(), "{aud}");
    }
    for claims in [json!({}), json!({"aud": "other"}), json!({"aud": []})] {
        assert_eq!(
            with_aud.verify_connect(&hs(claims.clone()), NOW),
            Err(TokenError::WrongAudience),
            "{claims}"
        );
    }
    assert!(
        all_keys()
            .verify_connect(&hs(json!({"aud": "any"})), NOW)
            .is_ok()
    );
}

#[test]
fn issuer_is_checked_only_when_configured() {
    let with_iss = only(|keys| {
        keys.hmac_secret_key = HMAC_SECRET.into();
        keys.issuer = "my-app".into();
    });
    assert!(
        with_iss
            .verify_connect(&hs(json!({"iss": "my-app"})), NOW)
            .is_ok()
    );
    for claims in [json!({}), json!({"iss": "evil"})] {
        assert_eq!(
            with_iss.verify_connect(&hs(claims.clone()), NOW),
            Err(TokenError::WrongIssuer),
            "{claims}"
        );
    }
    assert!(
        all_keys()
            .verify_connect(&hs(json!({"iss": "any"})), NOW)
            .is_ok()
    );
}

#[test]
fn expiry_is_reported_before_audience() {
    let with_aud = only(|keys| {
        keys.hmac_secret_key = HMAC_SECRET.into();
        keys.audience = "starling".into();
    });
    let token = hs(json!({"aud": "other", "exp": NOW - 1}));
    assert!(matches!(
        with_aud.verify_connect(&token, NOW),
        Err(TokenError::Expired { .. })
    ));
}

#[test]
fn connect_claims_carry_info_channels_and_meta() {
    let token = hs_raw(
        HS256_HEADER,
        r#"{"sub":"42","exp":1700000100,"info":{"name": "Ann", "n":[1, 2]},"channels":["news","chat:1"],"meta":{"plan":"pro"},"iat":1,"jti":"x"}"#,
    );
    let claims = all_keys().verify_connect(&token, NOW).expect("verifies");
    assert_eq!(
        claims,
        ConnectClaims {
            sub: "42".into(),
            exp: Some(1_700_000_100),
            expire_at: None,
            info: Some(bytes::Bytes::from_static(br#"{"name": "Ann", "n":[1, 2]}"#)),
            channels: vec!["news".into(), "chat:1".into()],
            meta: Some(bytes::Bytes::from_static(br#"{"plan":"pro"}"#)),
        }
    );
}

#[test]
fn b64info_becomes_raw_bytes() {
    let token = hs(json!({"b64info": "3q2+7w=="}));
    let claims = all_keys().verify_connect(&token, NOW).expect("verifies");
    assert_eq!(claims.info.as_deref(), Some(&[0xde, 0xad, 0xbe, 0xef][..]));
}

#[test]
fn subscribe_token_yields_channel_and_info() {
    let token = hs(json!({"sub": "42", "channel": "$private", "info": {"x": 1}, "exp": NOW + 60}));
    let claims = all_keys().verify_subscribe(&token, NOW).expect("verifies");
    assert_eq!(claims.sub, "42");
    assert_eq!(claims.channel, "$private");
    assert_eq!(claims.exp, Some(NOW + 60));
    assert_eq!(claims.info.as_deref(), Some(&br#"{"x":1}"#[..]));
}

#[test]
fn subscribe_token_without_channel_is_rejected() {
    assert_eq!(
        all_keys().verify_subscribe(&hs(json!({"sub": "42"})), NOW),
        Err(TokenError::MissingClaim { name: "channel" })
    );
}

#[test]
fn expired_subscribe_token_is_expired() {
    let token = hs(json!({"channel": "c", "exp": NOW - 5}));
    assert_eq!(
        all_keys().verify_subscribe(&token, NOW),
        Err(TokenError::Expired {
            exp: NOW - 5,
            now: NOW
        })
    );
}

#[test]
fn wrongly_typed_signed_claims_are_malformed() {
    let verifier = all_keys();
    for claims in [
        r#"{"channels": 5}"#,
        r#"{"sub": 1}"#,
        r#"{"exp": "tomorrow"}"#,
        r#"not json"#,
        r#"{"sub": "a""#,
    ] {
        assert!(
            matches!(
                verifier.verify_connect(&hs_raw(HS256_HEADER, claims), NOW),
                Err(TokenError::Malformed { .. })
            ),
            "{claims}"
        );
    }
}

#[test]
fn structurally_broken_tokens_are_malformed() {
    let verifier = all_keys();
    let valid = hs(json!({}));
    let with_extra_part = format!("{valid}.x");
    let padded = {
        let (signed, sig) = valid.rsplit_once('.').expect("three parts");
        format!("{signed}.{sig}==")
    };
    for token in [
        "",
        ".",
        "..",
        "a.b",
        "abc",
        "!!!.@@@.###",
        "e30.e30.e30",
        with_extra_part.as_str(),
        "eyJhbGciOiJIUzI1NiJ9",
    ] {
        assert!(
            matches!(
                verifier.verify_connect(token, NOW),
                Err(TokenError::Malformed { .. })
            ),
            "{token:?}"
        );
    }
    // A padded HMAC signature is simply a different signature.
    assert!(verifier.verify_connect(&padded, NOW).is_err());
}

#[test]
fn oversized_token_is_rejected_unparsed() {
    let token = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(
        all_keys().verify_connect(&token, NOW),
        Err(TokenError::TooLong {
            len: MAX_TOKEN_LEN + 1,
            max: MAX_TOKEN_LEN
        })
    );
}

#[test]
fn bad_pem_names_the_key() {
    let err = TokenVerifier::new(&TokenKeys {
        rsa_public_key: "not a pem".into(),
        ..TokenKeys::default()
    })
    .expect_err("bad PEM");
    assert!(matches!(
        err,
        KeyError::InvalidPem {
            key: KeyKind::RsaPublicKey,
            ..
        }
    ));

    // An RSA key where the ECDSA key belongs.
    let err = TokenVerifier::new(&TokenKeys {
        ecdsa_public_key: RSA_PUBLIC_KEY_PEM.into(),
        ..TokenKeys::default()
    })
    .expect_err("wrong key type");
    assert!(matches!(
        err,
        KeyError::InvalidPem {
            key: KeyKind::EcdsaPublicKey,
            ..
        }
    ));
}

#[test]
fn private_key_in_public_slot_is_refused() {
    let err = TokenVerifier::new(&TokenKeys {
        rsa_public_key: RSA_PRIVATE_KEY_PEM.into(),
        ..TokenKeys::default()
    })
    .expect_err("private key");
    assert_eq!(
        err,
        KeyError::PrivateKeyGiven {
            key: KeyKind::RsaPublicKey
        }
    );
}

#[test]
fn verifier_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<TokenVerifier>();
}

#[test]
fn debug_output_shows_no_key_material() {
    let shown = format!("{:?}", all_keys());
    assert!(!shown.contains(HMAC_SECRET), "{shown}");
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(token in ".{0,512}") {
        let verifier = all_keys();
        let _ = verifier.verify_connect(&token, NOW);
        let _ = verifier.verify_subscribe(&token, NOW);
    }

    #[test]
    fn arbitrary_jws_shaped_strings_never_panic(
        header in "[A-Za-z0-9_-]{0,64}",
        payload in "[A-Za-z0-9_-]{0,128}",
        signature in "[A-Za-z0-9_=+/-]{0,400}",
    ) {
        let token = format!("{header}.{payload}.{signature}");
        let _ = all_keys().verify_connect(&token, NOW);
    }

    #[test]
    fn arbitrary_signed_claims_never_panic(claims in proptest::collection::vec(any::<u8>(), 0..256)) {
        let token = mint_raw(
            Algorithm::Hs256,
            SigningKey::Hmac(HMAC_SECRET),
            HS256_HEADER.as_bytes(),
            &claims,
        ).expect("mint");
        let verifier = all_keys();
        let _ = verifier.verify_connect(&token, NOW);
        let _ = verifier.verify_subscribe(&token, NOW);
    }

    #[test]
    fn arbitrary_signed_json_claims_never_panic(
        sub in proptest::option::of(prop_oneof![
            Just(json!(null)), any::<i64>().prop_map(|n| json!(n)), ".{0,16}".prop_map(|s| json!(s)),
        ]),
        exp in proptest::option::of(prop_oneof![
            any::<i64>().prop_map(|n| json!(n)), any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)), Just(json!("x")), Just(json!([1])),
        ]),
        channels in proptest::option::of(prop_oneof![
            Just(json!(5)), proptest::collection::vec(".{0,8}", 0..4).prop_map(|v| json!(v)),
        ]),
        b64info in proptest::option::of(".{0,16}"),
        now in any::<i64>(),
    ) {
        let mut claims = serde_json::Map::new();
        let fields = [("sub", sub), ("exp", exp.clone()), ("nbf", exp), ("channels", channels)];
        for (name, value) in fields {
            if let Some(value) = value {
                claims.insert(name.into(), value);
            }
        }
        if let Some(b64info) = b64info {
            claims.insert("b64info".into(), json!(b64info));
        }
        let token = hs(serde_json::Value::Object(claims));
        let _ = all_keys().verify_connect(&token, now);
    }
}
