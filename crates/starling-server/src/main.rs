//! The `starling` binary: a Starling node.
//!
//! `starling serve` runs a node (a one-node cluster with embedded defaults when given no
//! flags); `starling gentoken` / `gensubtoken` mint development tokens; `starling config
//! default` prints the default configuration file; `starling certs` makes cluster certificates.

mod certs;
mod cli;
mod dev_secret;
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("starling: {error:#}");
            ExitCode::FAILURE
        }
    }
}
