//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Starling: a clustered realtime broker speaking Centrifugo's client protocol.
#[derive(Debug, Parser)]
#[command(name = "starling", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a node. With no flags and no config: a one-node cluster on 127.0.0.1:8000.
    Serve(ServeArgs),
    /// Print an HS256 connection token for a user (development and testing).
    Gentoken(TokenArgs),
    /// Print an HS256 subscription token for a user and channel.
    Gensubtoken(SubTokenArgs),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Cluster certificates: a CA, and node certificates for `serve --cluster-tls`.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// Create a cluster CA: DIR/ca.pem and DIR/ca.key.
    Init(CertsInitArgs),
    /// Create a node certificate signed by the cluster CA: DIR/ca.pem, DIR/node.pem, DIR/node.key.
    Node(CertsNodeArgs),
}

/// Flags of `starling certs init`.
#[derive(Debug, Args)]
pub(crate) struct CertsInitArgs {
    /// Directory to write ca.pem and ca.key to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
}

/// Flags of `starling certs node`.
#[derive(Debug, Args)]
pub(crate) struct CertsNodeArgs {
    /// Directory holding the CA (ca.pem and ca.key from `starling certs init`).
    #[arg(long, value_name = "DIR")]
    pub(crate) ca: PathBuf,
    /// The node's id, as given to `starling serve --node-id`.
    #[arg(long, value_name = "N")]
    pub(crate) node_id: u64,
    /// Directory to write ca.pem, node.pem and node.key to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the embedded default configuration (every key, with comments).
    Default,
}

/// Flags of `starling serve`. They override the config file and `STARLING_*` variables.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE", env = "STARLING_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Client-plane address (WebSocket, health), e.g. 127.0.0.1:8000. Key: node.http_addr.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) http_addr: Option<String>,
    /// Data directory. Key: node.data_dir.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}

/// Flags of `starling gentoken`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// The user id (`sub` claim).
    #[arg(short, long)]
    pub(crate) user: String,
    /// Seconds until the token expires; 0 for a token without `exp`.
    #[arg(long, default_value_t = 3600)]
    pub(crate) ttl: u64,
    #[command(flatten)]
    pub(crate) source: SecretSource,
}

/// Flags of `starling gensubtoken`.
#[derive(Debug, Args)]
pub(crate) struct SubTokenArgs {
    /// The user id (`sub` claim); must match the connection's user.
    #[arg(short, long)]
    pub(crate) user: String,
    /// The channel (`channel` claim).
    #[arg(short = 's', long)]
    pub(crate) channel: String,
    /// Seconds until the token expires; 0 for a token without `exp`.
    #[arg(long, default_value_t = 3600)]
    pub(crate) ttl: u64,
    #[command(flatten)]
    pub(crate) source: SecretSource,
}

/// Where the token commands find the HMAC secret: the configuration, else the development
/// secret `starling serve` generated in the data directory.
#[derive(Debug, Args)]
pub(crate) struct SecretSource {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE", env = "STARLING_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Data directory holding the development secret. Key: node.data_dir.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}
