//! The configuration tree and its defaults.
//!
//! The `Default` impls in this file are the one place defaults are defined; `default.toml`
//! is tested to parse to exactly `Config::default()`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::duration::GoDuration;

/// The whole Starling configuration.
///
/// Load it with [`Config::load`] or [`Config::from_toml_str`], then call
/// [`Config::validate`]. Fields are public so the binary can apply command-line flags on top.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[node]`: this node's own settings (Starling's own section).
    pub node: NodeConfig,
    /// `[log]`: logging (Starling's own section).
    pub log: LogConfig,
    /// `[client]`: client connections (Centrifugo v6 key names).
    pub client: ClientConfig,
    /// `[websocket]`: the WebSocket transport (Centrifugo v6 key names).
    pub websocket: WebSocketConfig,
    /// `[http_api]`: the server HTTP API under `/api` (Centrifugo v6 key names).
    pub http_api: HttpApiConfig,
    /// `[http_server]`: the client plane's HTTP server: TLS (Centrifugo v6 key names) and
    /// the header read timeout (Starling's own).
    pub http_server: HttpServerConfig,
    /// `[channel]`: channel names and per-namespace options (Centrifugo v6 key names).
    pub channel: ChannelConfig,
    /// `[cluster]`: this node's place in a cluster: its id, its QUIC address, the members it
    /// joins through, cluster TLS, voters, shards and failover (Starling's own section).
    pub cluster: ClusterConfig,
}

/// `[node]`: where this node keeps data, listens and how it names itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Directory for the node's persistent data.
    pub data_dir: PathBuf,
    /// Address of the client plane (WebSocket, server HTTP API; later metrics), `host:port`.
    ///
    /// Kept as text so [`Config::validate`] can name the key and value when it does not parse;
    /// use [`NodeConfig::http_socket_addr`] to get the address.
    pub http_addr: String,
    /// Node name reported to clients in `ConnectResult.node`; empty lets the binary choose.
    pub name: String,
    /// On SIGTERM/SIGINT: how long clients get, after being told to reconnect elsewhere
    /// (3001), before the process exits anyway.
    pub shutdown_grace: GoDuration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("./starling-data"),
            http_addr: "127.0.0.1:8000".to_owned(),
            name: String::new(),
            shutdown_grace: GoDuration::from_secs(10),
        }
    }
}

/// `[cluster]`: how this node takes part in a cluster.
///
/// Every node runs the cluster runtime; a node started without `join` initializes a one-node
/// cluster, so a node with all defaults is a complete one-node Starling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id: unique in the cluster, stable across restarts, greater than zero. A
    /// certificate from `starling certs node` names it.
    pub node_id: u64,
    /// The UDP address the cluster plane (QUIC) binds, `host:port`; port 0 picks a free port.
    ///
    /// Kept as text (a host name is allowed) and resolved by the binary at start-up.
    pub addr: String,
    /// The cluster address other members dial, `host:port`; empty advertises the bound
    /// address. Set it when `addr` binds `0.0.0.0` or sits behind NAT.
    pub advertise_addr: String,
    /// Cluster addresses (`host:port`) of existing members to join through; any one member
    /// is enough. Empty initializes a new one-node cluster, or, on a data directory that
    /// already holds cluster state, rejoins that cluster.
    pub join: Vec<String>,
    /// Directory holding `ca.pem`, `node.pem` and `node.key` (what `starling certs node`
    /// writes). Empty generates development material in `<data_dir>/cluster-tls`.
    pub tls_dir: PathBuf,
    /// Voters the cluster grows to; later members stay learners (they serve clients and own
    /// shards but do not vote).
    pub max_voters: usize,
    /// Shards a new cluster's map starts with: a power of two, at most 65,536. Rooms hash to
    /// shards; shards are what nodes own.
    pub shard_count: u32,
    /// A member silent this long is declared dead and its shards get new owners.
    pub failover_timeout: GoDuration,
    /// Once drained (`starling cluster drain`), the node closes its client connections with a
    /// reconnect advice spread evenly over this long.
    pub drain_reconnect_spread: GoDuration,
    /// Copies of each shard: 2 keeps a replica on another member, 1 none.
    pub replication_factor: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: 1,
            addr: "127.0.0.1:7000".to_owned(),
            advertise_addr: String::new(),
            join: Vec::new(),
            tls_dir: PathBuf::new(),
            max_voters: 3,
            shard_count: 256,
            failover_timeout: GoDuration::from_secs(3),
            drain_reconnect_spread: GoDuration::from_secs(10),
            replication_factor: 2,
        }
    }
}

/// `[log]`: log filter and output format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` `EnvFilter` directive, e.g. `"info"` or `"starling_node=debug,info"`.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info,openraft=warn".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[client]`: limits and behaviour of client connections (Centrifugo v6 `client` keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Origins allowed to open browser connections; `*` matches any, patterns like
    /// `https://*.example.com` match subdomains. Empty allows only same-origin requests.
    pub allowed_origins: Vec<String>,
    /// Let clients connect without a token; they become anonymous users (`user = ""`).
    pub allow_anonymous_connect_without_token: bool,
    /// How often the server pings each client.
    pub ping_interval: GoDuration,
    /// How long the server waits for a pong after a ping before closing the connection.
    pub pong_timeout: GoDuration,
    /// Delay before closing a connection whose token expired and was not refreshed.
    pub expired_close_delay: GoDuration,
    /// Bytes queued for one connection before it is disconnected as slow.
    pub queue_max_size: usize,
    /// Subscriptions one connection may hold.
    pub channel_limit: usize,
    /// Client connections this node accepts; 0 = unlimited.
    pub connection_limit: usize,
    /// Client connections this node accepts from one IP address; 0 = unlimited. Starling's own.
    pub connection_limit_per_ip: usize,
    /// New client connections this node accepts per second (token bucket, bursts up to one
    /// second's worth); 0 = unlimited. Starling's own.
    pub connection_rate_limit: u32,
    /// How long a new connection past `connection_rate_limit` may wait in the admission queue
    /// (admitted at the rate, in arrival order) before it is refused with 3013; 0 refuses at
    /// once. Absorbs reconnection storms when a node dies. Starling's own.
    pub connection_queue_timeout: GoDuration,
    /// Commands one connection may send per second (token bucket); 0 = unlimited. Starling's
    /// own. Pongs do not count.
    pub command_rate_limit: u32,
    /// Commands one connection may send in a burst above `command_rate_limit`. Starling's own.
    pub command_rate_burst: u32,
    /// Most publications a client may ask for in one history call.
    pub history_max_publication_limit: usize,
    /// Most publications sent back when a subscription recovers.
    pub recovery_max_publication_limit: usize,
    /// Include the server time in the connect reply.
    pub connect_include_server_time: bool,
    /// `[client.token]`: keys that check connection tokens.
    pub token: TokenConfig,
    /// `[client.subscription_token]`: separate keys for subscription tokens.
    pub subscription_token: SubscriptionTokenConfig,
    /// `[client.subscribe_to_user_personal_channel]`: automatic personal channel.
    pub subscribe_to_user_personal_channel: PersonalChannelConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            allowed_origins: Vec::new(),
            allow_anonymous_connect_without_token: false,
            ping_interval: GoDuration::from_secs(25),
            pong_timeout: GoDuration::from_secs(8),
            expired_close_delay: GoDuration::from_secs(25),
            queue_max_size: 1_048_576,
            channel_limit: 128,
            connection_limit: 0,
            connection_limit_per_ip: 0,
            connection_rate_limit: 0,
            connection_queue_timeout: GoDuration::from_secs(2),
            command_rate_limit: 0,
            command_rate_burst: 50,
            history_max_publication_limit: 300,
            recovery_max_publication_limit: 300,
            connect_include_server_time: false,
            token: TokenConfig::default(),
            subscription_token: SubscriptionTokenConfig::default(),
            subscribe_to_user_personal_channel: PersonalChannelConfig::default(),
        }
    }
}

/// `[client.token]`: keys and claims that JWTs are checked against. Empty = not used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Shared secret for HMAC (HS256/384/512) tokens.
    pub hmac_secret_key: String,
    /// PEM public key for RSA (RS256/384/512) tokens.
    pub rsa_public_key: String,
    /// PEM public key for ECDSA (ES256/384/512) tokens.
    pub ecdsa_public_key: String,
    /// Required `aud` claim; empty = not checked.
    pub audience: String,
    /// Required `iss` claim; empty = not checked.
    pub issuer: String,
}

impl TokenConfig {
    /// Whether no verification key is configured.
    pub fn has_no_keys(&self) -> bool {
        self.hmac_secret_key.is_empty()
            && self.rsa_public_key.is_empty()
            && self.ecdsa_public_key.is_empty()
    }
}

/// `[client.subscription_token]`: keys for subscription tokens, when they differ from
/// connection tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SubscriptionTokenRepr")]
pub struct SubscriptionTokenConfig {
    /// Use `token` below for subscription tokens; when false, `client.token` checks them.
    pub enabled: bool,
    /// Keys and claims for subscription tokens (written flat beside `enabled`).
    #[serde(flatten)]
    pub token: TokenConfig,
}

impl SubscriptionTokenConfig {
    /// The keys that check subscription tokens: these when enabled, else `client_token`.
    pub fn effective<'a>(&'a self, client_token: &'a TokenConfig) -> &'a TokenConfig {
        if self.enabled {
            &self.token
        } else {
            client_token
        }
    }
}

/// Flat wire form of [`SubscriptionTokenConfig`]: serde's `flatten` cannot be combined with
/// `deny_unknown_fields`, so reading goes through this and converts.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SubscriptionTokenRepr {
    enabled: bool,
    hmac_secret_key: String,
    rsa_public_key: String,
    ecdsa_public_key: String,
    audience: String,
    issuer: String,
}

impl From<SubscriptionTokenRepr> for SubscriptionTokenConfig {
    fn from(r: SubscriptionTokenRepr) -> Self {
        let SubscriptionTokenRepr {
            enabled,
            hmac_secret_key,
            rsa_public_key,
            ecdsa_public_key,
            audience,
            issuer,
        } = r;
        SubscriptionTokenConfig {
            enabled,
            token: TokenConfig {
                hmac_secret_key,
                rsa_public_key,
                ecdsa_public_key,
                audience,
                issuer,
            },
        }
    }
}

/// `[client.subscribe_to_user_personal_channel]`: subscribe every authenticated connection
/// to its user's personal channel on the server side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersonalChannelConfig {
    /// Turn the automatic subscription on.
    pub enabled: bool,
    /// Namespace of personal channels; empty puts them outside any namespace (`#user`).
    pub personal_channel_namespace: String,
    /// Keep one connection per user by disconnecting older ones. Not implemented yet:
    /// [`Config::validate`] rejects `true`.
    pub single_connection: bool,
}

/// `[websocket]`: the WebSocket transport (Centrifugo v6 `websocket` keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Largest incoming message in bytes.
    pub message_size_limit: usize,
    /// Bytes read from a socket at once; 0 = the transport's default (16 KiB). The buffer
    /// belongs to the worker thread, not to each connection.
    pub read_buffer_size: usize,
    /// Accepted for Centrifugo compatibility; no effect. Starling keeps no per-connection
    /// write buffer: a batch is written straight from the shared frame.
    pub write_buffer_size: usize,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            message_size_limit: 65_536,
            read_buffer_size: 0,
            write_buffer_size: 0,
        }
    }
}

/// `[http_api]`: the server HTTP API that backends call (`POST /api/<method>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpApiConfig {
    /// The key a request must carry in `X-API-Key` or `Authorization: apikey <key>`
    /// (Centrifugo v6 `http_api.key`). Empty disables the API: every request gets 401.
    pub key: String,
    /// Largest request body in bytes; a larger one is refused with HTTP 413 (Starling's own).
    pub max_request_body_size: usize,
}

impl Default for HttpApiConfig {
    fn default() -> Self {
        HttpApiConfig {
            key: String::new(),
            max_request_body_size: 1_048_576,
        }
    }
}

/// `[http_server]`: how the client plane's HTTP server treats connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Time a connection gets to send a complete request head (and to finish the TLS
    /// handshake); also how long an idle keep-alive connection stays open. A client that is
    /// slower is disconnected (Starling's own key; Go's `ReadHeaderTimeout`).
    pub read_header_timeout: GoDuration,
    /// `[http_server.tls]`: TLS on the client plane (Centrifugo v6 `http_server.tls`).
    pub tls: HttpServerTlsConfig,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            read_header_timeout: GoDuration::from_secs(10),
            tls: HttpServerTlsConfig::default(),
        }
    }
}

/// `[http_server.tls]`: serve `wss://` and `https://` instead of `ws://` and `http://`.
///
/// `cert_pem` and `key_pem` take, like Centrifugo v6's PEM values, either a path to a PEM
/// file or the PEM text itself (anything containing `-----BEGIN`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServerTlsConfig {
    /// Serve the client plane over TLS.
    pub enabled: bool,
    /// Certificate chain, leaf first: a PEM file path or PEM text.
    pub cert_pem: String,
    /// Private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate: a PEM file path or PEM
    /// text.
    pub key_pem: String,
}

/// `[channel]`: channel name rules and per-namespace options (Centrifugo v6 `channel` keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelConfig {
    /// Longest channel name in bytes.
    pub max_length: usize,
    /// Prefix of private channels, which need a subscription token.
    pub private_prefix: String,
    /// Separates the namespace from the rest of a channel name (`chat:index`).
    pub namespace_boundary: String,
    /// Starts the list of users allowed in a user-limited channel (`dialog#42,43`).
    pub user_boundary: String,
    /// Separates user ids in a user-limited channel.
    pub user_separator: String,
    /// Characters a channel name may hold besides ASCII letters and digits. Whitespace,
    /// control characters and non-ASCII are never allowed. Starling's own.
    pub allowed_symbols: String,
    /// `[channel.without_namespace]`: options of channels with no namespace.
    pub without_namespace: ChannelOptions,
    /// `[[channel.namespaces]]`: named namespaces and their options.
    pub namespaces: Vec<ChannelNamespace>,
}

/// The punctuation allowed in channel names by default: all printable ASCII punctuation except
/// quotes, backslash, backtick and angle brackets, which tend to break logs, shells and HTML.
pub const DEFAULT_CHANNEL_SYMBOLS: &str = "!#$%&()*+,-./:;=?@[]^_{|}~";

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            max_length: 255,
            private_prefix: "$".to_owned(),
            namespace_boundary: ":".to_owned(),
            user_boundary: "#".to_owned(),
            user_separator: ",".to_owned(),
            allowed_symbols: DEFAULT_CHANNEL_SYMBOLS.to_owned(),
            without_namespace: ChannelOptions::default(),
            namespaces: Vec::new(),
        }
    }
}

/// One `[[channel.namespaces]]` entry: a name and its options, written flat in TOML.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "NamespaceRepr")]
pub struct ChannelNamespace {
    /// Namespace name: non-empty, only `A-Z a-z 0-9 _ -`.
    pub name: String,
    /// Options of every channel in the namespace.
    #[serde(flatten)]
    pub options: ChannelOptions,
}

/// Declares [`ChannelOptions`] and the flat namespace form from one field list, so that
/// `[[channel.namespaces]]` can reject unknown keys (serde's `flatten` cannot) and the two
/// can never drift apart.
macro_rules! channel_options {
    ($( $(#[doc = $doc:literal])* $field:ident : $ty:ty, )*) => {
        /// Options of a channel namespace (Centrifugo v6 names; all off / zero by default).
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct ChannelOptions {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        /// Flat wire form of [`ChannelNamespace`].
        #[derive(Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct NamespaceRepr {
            name: String,
            $( $field: $ty, )*
        }

        impl From<NamespaceRepr> for ChannelNamespace {
            fn from(r: NamespaceRepr) -> Self {
                ChannelNamespace {
                    name: r.name,
                    options: ChannelOptions { $( $field: r.$field, )* },
                }
            }
        }
    };
}

channel_options! {
    /// Keep presence (who is subscribed) for channels.
    presence: bool,
    /// Send join and leave messages to subscribers that ask for them.
    join_leave: bool,
    /// Send join and leave messages to every subscriber.
    force_push_join_leave: bool,
    /// Publications kept in each channel's history; 0 = no history.
    history_size: usize,
    /// How long history is kept after the last publication; 0 = no history.
    history_ttl: GoDuration,
    /// Track stream position for every subscription.
    force_positioning: bool,
    /// Let clients ask for stream position tracking.
    allow_positioning: bool,
    /// Recover missed publications for every subscription.
    force_recovery: bool,
    /// Let clients ask for recovery.
    allow_recovery: bool,
    /// Let any authenticated client subscribe without a subscription token.
    allow_subscribe_for_client: bool,
    /// Let anonymous clients subscribe without a subscription token.
    allow_subscribe_for_anonymous: bool,
    /// Let subscribers publish.
    allow_publish_for_subscriber: bool,
    /// Let any authenticated client publish.
    allow_publish_for_client: bool,
    /// Let anonymous clients publish.
    allow_publish_for_anonymous: bool,
    /// Let subscribers call history.
    allow_history_for_subscriber: bool,
    /// Let any authenticated client call history.
    allow_history_for_client: bool,
    /// Let anonymous clients call history.
    allow_history_for_anonymous: bool,
    /// Let subscribers call presence and presence stats.
    allow_presence_for_subscriber: bool,
    /// Let any authenticated client call presence and presence stats.
    allow_presence_for_client: bool,
    /// Let anonymous clients call presence and presence stats.
    allow_presence_for_anonymous: bool,
    /// Treat the part after `channel.user_boundary` as the list of users allowed in.
    allow_user_limited_channels: bool,
}

impl ChannelOptions {
    /// Whether channels keep history (both a size and a TTL are set).
    pub fn history_enabled(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }
}

impl NodeConfig {
    /// The client plane address, parsed.
    pub fn http_socket_addr(&self) -> Result<std::net::SocketAddr, crate::ConfigError> {
        self.http_addr
            .parse()
            .map_err(|_| crate::ConfigError::InvalidValue {
                key: "node.http_addr".to_owned(),
                value: format!("{:?}", self.http_addr),
                reason: "expected an IP address and port such as \"127.0.0.1:8000\"",
            })
    }
}
