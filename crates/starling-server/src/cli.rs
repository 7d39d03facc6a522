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
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
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
