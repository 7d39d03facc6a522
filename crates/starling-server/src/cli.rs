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
    /// Run a node. With no flags and no config: a one-node cluster, clients on
    /// 127.0.0.1:8000, cluster plane on UDP 127.0.0.1:7000.
    #[command(after_help = SERVE_EXAMPLES)]
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
    /// Cluster status and membership, through any member's server API (`http_api.key`).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Move, split and rebalance shards on a live cluster, through any member's server API.
    /// Moves hand the rooms over with nothing lost; each command waits until they are done.
    Shards {
        #[command(subcommand)]
        command: ShardsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ShardsCommand {
    /// Move one shard to a member.
    Move(ShardsMoveArgs),
    /// Double the shard count: shard i becomes i and i + count on the same owner (no room
    /// changes owner until a rebalance moves shards).
    Split(ApiTargetArgs),
    /// Move shards to their rendezvous owners among the members that are not draining, a few
    /// hand-offs at a time.
    Rebalance(ApiTargetArgs),
}

/// Flags of `starling shards move`.
#[derive(Debug, Args)]
pub(crate) struct ShardsMoveArgs {
    /// The shard (0 .. shard count - 1).
    #[arg(long, value_name = "S")]
    pub(crate) shard: u32,
    /// The member that takes it.
    #[arg(long, value_name = "N")]
    pub(crate) to: u64,
    #[command(flatten)]
    pub(crate) target: ApiTarget,
}

/// Flags of the commands that take only the API target.
#[derive(Debug, Args)]
pub(crate) struct ApiTargetArgs {
    #[command(flatten)]
    pub(crate) target: ApiTarget,
}

const SERVE_EXAMPLES: &str = "\
Examples:
  starling serve
      a one-node cluster with development TLS material in ./starling-data/cluster-tls
  starling serve --node-id 1 --cluster-addr 10.0.0.1:7000 --cluster-tls tls-node-1
      the first node of a cluster: initializes it
  starling serve --node-id 2 --cluster-addr 10.0.0.2:7000 --cluster-tls tls-node-2 \\
                 --join 10.0.0.1:7000
      a further node: joins through any existing member (repeat --join for several)";

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Print the members (role, liveness, shards, addresses), the leader, the term and the
    /// shard map, as the node at --http-addr sees them.
    Status(ClusterStatusArgs),
    /// Remove a member: move its shards to the other members, then take it out of the cluster.
    Remove(ClusterRemoveArgs),
    /// Drain a member: move every shard off it with hand-offs (nothing lost) and mark it
    /// draining; it then advises its clients to reconnect elsewhere, spread over
    /// cluster.drain_reconnect_spread. Remove it afterwards.
    Drain(ClusterRemoveArgs),
}

/// Which node's server API the `cluster` commands call.
#[derive(Debug, Args)]
pub(crate) struct ApiTarget {
    /// Client-plane address (node.http_addr) of any member. Plain HTTP only.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8000")]
    pub(crate) http_addr: String,
    /// The server API key (http_api.key).
    #[arg(
        long,
        value_name = "KEY",
        env = "STARLING_HTTP_API_KEY",
        hide_env_values = true
    )]
    pub(crate) api_key: String,
}

/// Flags of `starling cluster status`.
#[derive(Debug, Args)]
pub(crate) struct ClusterStatusArgs {
    #[command(flatten)]
    pub(crate) target: ApiTarget,
    /// Print the JSON of `GET /api/cluster` as the node returns it (keys `leader`, `members`
    /// with `node_id`, `role`, `alive`, `shards`, and `shard_map_version`).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Flags of `starling cluster remove` and `starling cluster drain`.
#[derive(Debug, Args)]
pub(crate) struct ClusterRemoveArgs {
    /// The member.
    #[arg(long, value_name = "N")]
    pub(crate) node_id: u64,
    #[command(flatten)]
    pub(crate) target: ApiTarget,
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
    /// This node's id in the cluster: > 0, unique, stable across restarts. Key:
    /// cluster.node_id.
    #[arg(long, value_name = "N")]
    pub(crate) node_id: Option<u64>,
    /// UDP address of the cluster plane (QUIC), e.g. 10.0.0.1:7000; port 0 picks a free
    /// port. Key: cluster.addr.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) cluster_addr: Option<String>,
    /// Cluster address of an existing member to join through; repeat for several. Without
    /// it a new node initializes a one-node cluster. Key: cluster.join.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) join: Vec<String>,
    /// Directory with ca.pem, node.pem and node.key (from `starling certs node`). Without
    /// it development material is generated in DATA_DIR/cluster-tls. Key: cluster.tls_dir.
    #[arg(long, value_name = "DIR")]
    pub(crate) cluster_tls: Option<PathBuf>,
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
