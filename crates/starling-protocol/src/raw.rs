//! Serde helpers that give the shared prost types the JSON shape Centrifugo
//! uses: `bytes` fields as embedded raw JSON, and every default value omitted.

/// Whether `value` equals its type's default, i.e. whether Go's `omitempty`
/// would leave the field out of the JSON object.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// `#[serde(with = "crate::raw::json")]` for `bytes::Bytes` fields.
///
/// In the JSON protocol a `bytes` field carries an embedded JSON value
/// (`"data":{"text":"hi"}`), not base64. Decoding keeps the exact text of the
/// value; encoding writes the bytes back verbatim after checking they are one
/// valid JSON value, so a bad payload becomes an error instead of a corrupt
/// frame.
pub(crate) mod json {
    use bytes::Bytes;
    use serde::de::{Deserialize, Deserializer};
    use serde::ser::{Error as _, Serialize, Serializer};
    use serde_json::value::RawValue;

    pub(crate) fn serialize<S: Serializer>(
        bytes: &Bytes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(bytes)
            .map_err(|err| S::Error::custom(format_args!("payload is not UTF-8 JSON: {err}")))?;
        let raw: &RawValue = serde_json::from_str(text)
            .map_err(|err| S::Error::custom(format_args!("payload is not valid JSON: {err}")))?;
        if !text.contains(['\n', '\r']) {
            return raw.serialize(serializer);
        }
        let single_line: String = raw
            .get()
            .chars()
            .filter(|c| !matches!(c, '\n' | '\r'))
            .collect();
        let raw: &RawValue = serde_json::from_str(&single_line)
            .map_err(|err| S::Error::custom(format_args!("payload is not valid JSON: {err}")))?;
        raw.serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Bytes, D::Error> {
        // Boxed rather than borrowed: a borrowed RawValue cannot be produced
        // for every input shape, the boxed one always can, and turning the box
        // into `Bytes` reuses its allocation.
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text: Box<str> = raw.into();
        Ok(Bytes::from(String::from(text)))
    }
}
