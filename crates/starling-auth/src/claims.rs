//! Verified token claims, and the wire shapes they are parsed from.
//!
//! Wire shapes are strict about types (`"channels": 5` is an error, as it is
//! in Centrifugo) and reject duplicate keys, so two parsers can never read
//! different values out of one token. Unknown claims (`iat`, `jti`, ...) are
//! ignored.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::error::TokenError;

/// Claims of a verified connection token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectClaims {
    /// User id from `sub`; empty for an anonymous user (also when `sub` is absent).
    pub sub: String,
    /// Token expiry from `exp`, Unix seconds; `None` when absent or 0 (never expires).
    pub exp: Option<i64>,
    /// Centrifugo's `expire_at`: when present it, not `exp`, sets the
    /// connection's expiry (0 or less = never). Use [`ConnectClaims::expires_at`].
    pub expire_at: Option<i64>,
    /// Connection info: the raw JSON text of `info`, or the decoded bytes of
    /// `b64info` when that is present (it wins, as in Centrifugo).
    pub info: Option<Bytes>,
    /// Channels the server subscribes the connection to (`channels`).
    pub channels: Vec<String>,
    /// Raw JSON text of `meta`; kept server-side, never sent to clients.
    pub meta: Option<Bytes>,
}

impl ConnectClaims {
    /// When the connection must be refreshed, Unix seconds, or `None` if never.
    pub fn expires_at(&self) -> Option<i64> {
        effective_expiry(self.expire_at, self.exp)
    }
}

/// Claims of a verified subscription token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeClaims {
    /// User id from `sub`; must equal the connection's user, which the caller checks.
    pub sub: String,
    /// The channel this token grants (`channel`); never empty. The caller
    /// checks it equals the channel being subscribed to.
    pub channel: String,
    /// Token expiry from `exp`, Unix seconds; `None` when absent or 0.
    pub exp: Option<i64>,
    /// Centrifugo's `expire_at` for the subscription; see [`SubscribeClaims::expires_at`].
    pub expire_at: Option<i64>,
    /// Channel info: raw JSON text of `info`, or decoded `b64info` (which wins).
    pub info: Option<Bytes>,
}

impl SubscribeClaims {
    /// When the subscription must be refreshed, Unix seconds, or `None` if never.
    pub fn expires_at(&self) -> Option<i64> {
        effective_expiry(self.expire_at, self.exp)
    }
}

/// Centrifugo's rule: an explicit `expire_at` overrides `exp` for the session's
/// lifetime, and a non-positive `expire_at` means the session never expires
/// (the token's own `exp` was still checked at verification).
fn effective_expiry(expire_at: Option<i64>, exp: Option<i64>) -> Option<i64> {
    match expire_at {
        Some(at) if at > 0 => Some(at),
        Some(_) => None,
        None => exp,
    }
}

/// The registered claims every token kind shares, checked by the verifier.
pub(crate) struct Registered<'a> {
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) aud: Option<&'a Audience>,
    pub(crate) iss: Option<&'a str>,
}

/// A wire shape of token claims and how it becomes public claims.
pub(crate) trait WireClaims: DeserializeOwned {
    /// The verified claims handed to callers.
    type Claims;
    fn registered(&self) -> Registered<'_>;
    fn into_claims(self) -> Result<Self::Claims, TokenError>;
}

/// `aud` may be one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(crate) fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(aud) => aud == wanted,
            Audience::Many(auds) => auds.iter().any(|aud| aud == wanted),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireConnect {
    sub: Option<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<i64>,
    aud: Option<Audience>,
    iss: Option<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    expire_at: Option<i64>,
    info: Option<Box<RawValue>>,
    b64info: Option<String>,
    channels: Option<Vec<String>>,
    meta: Option<Box<RawValue>>,
}

impl WireClaims for WireConnect {
    type Claims = ConnectClaims;

    fn registered(&self) -> Registered<'_> {
        Registered {
            exp: self.exp,
            nbf: self.nbf,
            aud: self.aud.as_ref(),
            iss: self.iss.as_deref(),
        }
    }

    fn into_claims(self) -> Result<ConnectClaims, TokenError> {
        Ok(ConnectClaims {
            sub: self.sub.unwrap_or_default(),
            exp: self.exp.filter(|&exp| exp != 0),
            expire_at: self.expire_at,
            info: info_bytes(self.info, self.b64info)?,
            channels: self.channels.unwrap_or_default(),
            meta: self.meta.as_deref().map(raw_json_bytes),
        })
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireSubscribe {
    sub: Option<String>,
    channel: Option<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<i64>,
    aud: Option<Audience>,
    iss: Option<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    expire_at: Option<i64>,
    info: Option<Box<RawValue>>,
    b64info: Option<String>,
}

impl WireClaims for WireSubscribe {
    type Claims = SubscribeClaims;

    fn registered(&self) -> Registered<'_> {
        Registered {
            exp: self.exp,
            nbf: self.nbf,
            aud: self.aud.as_ref(),
            iss: self.iss.as_deref(),
        }
    }

    fn into_claims(self) -> Result<SubscribeClaims, TokenError> {
        let channel = self
            .channel
            .filter(|channel| !channel.is_empty())
            .ok_or(TokenError::MissingClaim { name: "channel" })?;
        Ok(SubscribeClaims {
            sub: self.sub.unwrap_or_default(),
            channel,
            exp: self.exp.filter(|&exp| exp != 0),
            expire_at: self.expire_at,
            info: info_bytes(self.info, self.b64info)?,
        })
    }
}

fn raw_json_bytes(raw: &RawValue) -> Bytes {
    Bytes::copy_from_slice(raw.get().as_bytes())
}

/// `b64info` (standard base64, padded, as Centrifugo decodes it) wins over
/// `info` when non-empty, so Protobuf users can carry arbitrary bytes.
fn info_bytes(
    info: Option<Box<RawValue>>,
    b64info: Option<String>,
) -> Result<Option<Bytes>, TokenError> {
    match b64info.filter(|encoded| !encoded.is_empty()) {
        Some(encoded) => STANDARD
            .decode(encoded.as_bytes())
            .map(|decoded| Some(Bytes::from(decoded)))
            .map_err(|err| TokenError::malformed(format_args!("b64info: {err}"))),
        None => Ok(info.as_deref().map(raw_json_bytes)),
    }
}

/// Reads a JWT NumericDate: integer or fractional seconds (fractions are
/// floored), saturating at the `i64` range rather than failing on huge values.
fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(seconds) = number.as_i64() {
        return Ok(Some(seconds));
    }
    if number.as_u64().is_some() {
        return Ok(Some(i64::MAX));
    }
    match number.as_f64() {
        // `as` saturates for out-of-range floats, which is the intent here.
        Some(seconds) if seconds.is_finite() => Ok(Some(seconds.floor() as i64)),
        _ => Err(D::Error::custom("a NumericDate must be a finite number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(json: &str) -> Result<ConnectClaims, TokenError> {
        serde_json::from_str::<WireConnect>(json)
            .map_err(TokenError::malformed)?
            .into_claims()
    }

    fn subscribe(json: &str) -> Result<SubscribeClaims, TokenError> {
        serde_json::from_str::<WireSubscribe>(json)
            .map_err(TokenError::malformed)?
            .into_claims()
    }

    #[test]
    fn empty_connect_claims_mean_anonymous_and_never_expiring() {
        let claims = connect("{}").expect("parses");
        assert_eq!(claims, ConnectClaims::default());
        assert_eq!(claims.expires_at(), None);
    }

    #[test]
    fn info_keeps_its_raw_json_text() {
        let claims = connect(r#"{"info": {"b": 1,  "a": [true, null]}}"#).expect("parses");
        assert_eq!(
            claims.info.as_deref(),
            Some(&br#"{"b": 1,  "a": [true, null]}"#[..])
        );
    }

    #[test]
    fn b64info_wins_over_info() {
        let claims = connect(r#"{"info": {"a": 1}, "b64info": "AAEC/w=="}"#).expect("parses");
        assert_eq!(claims.info.as_deref(), Some(&[0u8, 1, 2, 255][..]));
    }

    #[test]
    fn bad_b64info_is_malformed() {
        assert!(matches!(
            connect(r#"{"b64info": "!!!"}"#),
            Err(TokenError::Malformed { .. })
        ));
    }

    #[test]
    fn meta_keeps_its_raw_json_text() {
        let claims = connect(r#"{"meta": {"role":"admin"}}"#).expect("parses");
        assert_eq!(claims.meta.as_deref(), Some(&br#"{"role":"admin"}"#[..]));
    }

    #[test]
    fn null_claims_read_as_absent() {
        let claims = connect(r#"{"sub": null, "exp": null, "info": null, "channels": null}"#)
            .expect("parses");
        assert_eq!(claims, ConnectClaims::default());
    }

    #[test]
    fn wrongly_typed_claims_are_malformed() {
        for json in [
            r#"{"channels": 5}"#,
            r#"{"channels": [1]}"#,
            r#"{"sub": 42}"#,
            r#"{"exp": "soon"}"#,
            r#"{"aud": 7}"#,
            r#"{"iss": ["a"]}"#,
            r#"{"b64info": {}}"#,
            r#"[]"#,
            r#""text""#,
        ] {
            assert!(
                matches!(connect(json), Err(TokenError::Malformed { .. })),
                "{json}"
            );
        }
    }

    #[test]
    fn duplicate_claims_are_malformed() {
        assert!(matches!(
            connect(r#"{"sub": "a", "sub": "b"}"#),
            Err(TokenError::Malformed { .. })
        ));
    }

    #[test]
    fn numeric_dates_accept_fractions_and_saturate() {
        let claims = connect(r#"{"exp": 1700000000.9}"#).expect("parses");
        assert_eq!(claims.exp, Some(1_700_000_000));
        let claims = connect(r#"{"exp": 18446744073709551615}"#).expect("parses");
        assert_eq!(claims.exp, Some(i64::MAX));
        let claims = connect(r#"{"exp": 1e300}"#).expect("parses");
        assert_eq!(claims.exp, Some(i64::MAX));
    }

    #[test]
    fn zero_exp_means_never() {
        assert_eq!(connect(r#"{"exp": 0}"#).expect("parses").exp, None);
    }

    #[test]
    fn expire_at_overrides_exp_for_session_lifetime() {
        let claims = connect(r#"{"exp": 100, "expire_at": 200}"#).expect("parses");
        assert_eq!(claims.expires_at(), Some(200));
        let claims = connect(r#"{"exp": 100, "expire_at": 0}"#).expect("parses");
        assert_eq!(claims.expires_at(), None);
        let claims = connect(r#"{"exp": 100}"#).expect("parses");
        assert_eq!(claims.expires_at(), Some(100));
    }

    #[test]
    fn subscribe_requires_a_channel() {
        for json in [r#"{"sub": "1"}"#, r#"{"sub": "1", "channel": ""}"#] {
            assert_eq!(
                subscribe(json),
                Err(TokenError::MissingClaim { name: "channel" }),
                "{json}"
            );
        }
        let claims = subscribe(r#"{"channel": "news"}"#).expect("parses");
        assert_eq!(claims.channel, "news");
        assert_eq!(claims.sub, "");
    }

    #[test]
    fn audience_may_be_a_string_or_an_array() {
        let one: Audience = serde_json::from_str(r#""a""#).expect("parses");
        assert!(one.contains("a") && !one.contains("b"));
        let many: Audience = serde_json::from_str(r#"["a", "b"]"#).expect("parses");
        assert!(many.contains("b") && !many.contains("c"));
    }
}
