//! Starling's configuration: one struct tree with its defaults, read from an embedded
//! default file, a TOML file and `STARLING_*` environment variables, then validated.
//!
//! The `client`, `websocket`, `http_api`, `http_server.tls` and `channel` sections use
//! Centrifugo v6 key names so existing Centrifugo configs carry over; `node`, `log` and
//! `cluster` are Starling's own. Unknown keys stop start-up. See `docs/configuration.md` for
//! every key.
//!
//! ```
//! use starling_config::Config;
//!
//! let config = Config::load(None, [("STARLING_CLIENT_CHANNEL_LIMIT".to_owned(), "16".to_owned())])?;
//! config.validate()?;
//! assert_eq!(config.client.channel_limit, 16);
//! let chat = config.resolve_channel("news");
//! assert!(chat.is_ok());
//! # Ok::<(), starling_config::ConfigError>(())
//! ```
//!
//! Layout:
//! - `config`: the struct tree and its defaults (the one place defaults live).
//! - `duration`: [`GoDuration`], Go-style duration strings.
//! - `load`: layering of defaults, TOML file and environment; [`default_toml`].
//! - `validate`: [`Config::validate`].
//! - `channel`: channel name rules: namespaces, user-limited and personal channels.
//! - `error`: [`ConfigError`] (stops start-up) and [`ChannelError`] (fails one request).

mod channel;
mod config;
mod duration;
mod error;
mod load;
mod validate;

pub use channel::{ChannelRules, ResolvedChannel};
pub use config::{
    ChannelConfig, ChannelNamespace, ChannelOptions, ClientConfig, ClusterConfig, Config,
    DEFAULT_CHANNEL_SYMBOLS, HttpApiConfig, HttpServerConfig, HttpServerTlsConfig, LogConfig,
    LogFormat, NodeConfig, PersonalChannelConfig, SubscriptionTokenConfig, TokenConfig,
    WebSocketConfig,
};
pub use duration::GoDuration;
pub use error::{ChannelError, ConfigError};
pub use load::{ENV_PREFIX, RESERVED_ENV_VARS, default_toml, env_var_name, leaf_keys, process_env};
