//! The `starling` binary: a Starling node.
//!
//! `starling serve` runs a node (a one-node cluster with embedded defaults when given no
//! flags); `starling gentoken` / `gensubtoken` mint development tokens; `starling config
//! default` prints the default configuration file; `starling certs` makes cluster certificates;
//! `starling cluster status|remove|drain` reads and changes membership through a node's API;
//! `starling shards move|split|rebalance` changes the shard map.
//!
//! Layout:
//! - `cli` — the clap definitions of every command and flag.
//! - `serve` — `starling serve`: configuration, logging, start-up and shutdown order.
//! - `cluster_setup` — `[cluster]` configuration to the cluster runtime's settings.
//! - `cluster_cli` — `starling cluster status` and `remove`.
//! - `http` — the minimal HTTP/1.1 client `cluster_cli` uses.
//! - `certs`, `token`, `dev_secret` — `starling certs`, the token commands, the development
//!   HMAC secret.

mod certs;
mod cli;
mod cluster_cli;
mod cluster_setup;
mod dev_secret;
mod http;
mod serve;
mod token;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ConfigCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Gentoken(args) => token::gentoken(&args),
        Command::Gensubtoken(args) => token::gensubtoken(&args),
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", starling_config::default_toml());
            Ok(())
        }
        Command::Certs { command } => certs::run(command),
        Command::Cluster { command } => cluster_cli::run(command),
        Command::Shards { command } => cluster_cli::run_shards(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("starling: {error:#}");
            ExitCode::FAILURE
        }
    }
}
