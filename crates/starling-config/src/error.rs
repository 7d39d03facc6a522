//! Errors of loading and validating the configuration, and of resolving channel names.

use std::path::PathBuf;

/// Why a configuration could not be loaded or is not valid. Any of these stops start-up.
///
/// Every variant names the key (a dotted path such as `channel.namespaces[0].history_size`)
/// or the environment variable at fault, and the offending value where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    ReadFile {
        /// The file that was asked for.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The configuration file is not valid TOML.
    #[error("{origin} is not valid TOML: {message}")]
    Syntax {
        /// Where the text came from (a file path or `<string>`).
        origin: String,
        /// The parser's message, which includes line and column.
        message: String,
    },

    /// A key is unknown, or its value has the wrong type or form.
    #[error("configuration key `{key}`: {message}")]
    Key {
        /// Dotted path of the key, e.g. `channel.namespaces[0].histroy_size`.
        key: String,
        /// What is wrong, naming the value where there is one.
        message: String,
    },

    /// A `STARLING_*` environment variable matches no configuration key.
    #[error(
        "environment variable {name} matches no configuration key (check the spelling; \
         keys map to STARLING_<SECTION>_<KEY>, see docs/configuration.md)"
    )]
    UnknownEnvVar {
        /// The variable's name.
        name: String,
    },

    /// A `STARLING_*` environment variable has a value that cannot be read as its key's type.
    #[error("environment variable {name}={value:?} (key `{key}`): expected {expected}")]
    EnvValue {
        /// The variable's name.
        name: String,
        /// The key it sets.
        key: String,
        /// The value it holds.
        value: String,
        /// What the key takes.
        expected: &'static str,
    },

    /// A string is not a valid Go-style duration.
    #[error("invalid duration {value:?}: {reason}")]
    InvalidDuration {
        /// The text that was given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A key holds a value that parses but is not allowed.
    #[error("configuration key `{key}` = {value}: {reason}")]
    InvalidValue {
        /// Dotted path of the key.
        key: String,
        /// The offending value, as it would be written in TOML.
        value: String,
        /// Why it is not allowed.
        reason: &'static str,
    },

    /// Two namespaces share a name.
    #[error("configuration key `{key}`: namespace {name:?} is defined more than once")]
    DuplicateNamespace {
        /// Dotted path of the second definition's `name`.
        key: String,
        /// The repeated name.
        name: String,
    },

    /// A key is set to a value Starling accepts from Centrifugo configs but does not implement.
    #[error("configuration key `{key}` = {value}: not supported yet")]
    NotSupported {
        /// Dotted path of the key.
        key: String,
        /// The value that asks for the missing feature.
        value: String,
    },
}

/// Why a channel name cannot be used. These fail one request, never the node.
///
/// The gateway maps them to protocol error codes (an unknown namespace is Centrifugo's
/// 102 "unknown channel").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The channel name is empty.
    #[error("channel name is empty")]
    Empty,

    /// The channel name is longer than `channel.max_length`.
    #[error("channel name is {len} bytes long, more than the maximum of {max}")]
    TooLong {
        /// Length of the name in bytes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },

    /// The channel name holds a character outside ASCII letters, digits and
    /// `channel.allowed_symbols`.
    #[error("channel name has {character:?} at byte {position}, which is not allowed")]
    InvalidCharacter {
        /// The offending character.
        character: char,
        /// Its byte offset in the name.
        position: usize,
    },

    /// The channel names a namespace that is not configured.
    #[error("channel namespace {namespace:?} is not configured")]
    UnknownNamespace {
        /// The namespace part of the channel name.
        namespace: String,
    },
}
