//! `loadgen`: Starling's load generator.
//!
//! Opens many WebSocket connections speaking Centrifugo's client protocol
//! (JSON or Protobuf) to Starling — or, to compare, NATS's text protocol to
//! nats-server or Socket.IO to a socket.io server — subscribes them to
//! rooms as a scenario says,
//! publishes payloads stamped with their send time, and reports delivered
//! messages/s, end-to-end and publish-ack latency, connects/s, and — given
//! the server's pid — its CPU time per delivery and memory per connection.
//! `--workers N` spreads the connections over N child processes (and
//! 127.0.0.x source addresses) to get past per-process file limits;
//! several `--url`s spread them over the nodes of a cluster.
//! See benches/README.md.
//!
//! # Layout
//! - `plan` — scenarios as pure plans: the role of every connection index.
//! - `conn` — one lean connection: TCP from a source address, handshake,
//!   connect / subscribe / publish in the target's protocol, received frames
//!   as events.
//! - `nats` — NATS's text protocol: client messages and a stream parser.
//! - `socketio` — Engine.IO v4 / Socket.IO v5 packets.
//! - `worker` — a slice of connections in one process: connect phase,
//!   publishing, counting.
//! - `coord` — the coordinator: in-process or child workers, the window,
//!   the server's /proc samples.
//! - `report` — aggregation, the table, JSON, medians over runs.
//! - `compare` — medians per server side by side, with Starling / peer ratios.
//! - `hist` — the log-linear latency histogram.
//! - `payload` — time-stamped payloads.
//! - `procfs` — CPU ticks and RSS from /proc.

mod compare;
mod conn;
mod coord;
#[cfg(test)]
mod fake;
mod hist;
mod nats;
mod payload;
mod plan;
mod procfs;
mod report;
mod socketio;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::plan::Scenario;

/// Load generator for Starling (Centrifugo client protocol v2 over WebSocket),
/// nats-server and socket.io.
#[derive(Debug, Parser)]
#[command(name = "loadgen", about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Print medians (with min and max) of several `loadgen --json` reports.
    Median {
        /// Report files written by `loadgen --json`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Medians of `loadgen --json` reports grouped by scenario and server,
    /// side by side, with the ratio Starling / peer for every number.
    Compare {
        /// Report files of every scenario and server (grouped by the
        /// `scenario` and `target` fields inside them).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// The server the generator talks to, and so the protocol it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetArg {
    /// Starling: Centrifugo's client protocol v2 (see --encoding).
    Starling,
    /// nats-server's WebSocket listener: NATS's text protocol.
    Nats,
    /// A socket.io server (benches/peers/socketio): Engine.IO v4 / Socket.IO v5.
    Socketio,
}

impl TargetArg {
    /// The name in reports.
    fn name(self) -> &'static str {
        match self {
            TargetArg::Starling => "starling",
            TargetArg::Nats => "nats",
            TargetArg::Socketio => "socketio",
        }
    }

    /// Where the server listens by default.
    fn default_url(self) -> String {
        match self {
            TargetArg::Starling => "ws://127.0.0.1:8000/connection/websocket".to_owned(),
            TargetArg::Nats => "ws://127.0.0.1:8080/".to_owned(),
            TargetArg::Socketio => format!("ws://127.0.0.1:3000{}", socketio::PATH),
        }
    }
}

/// Wire encoding of the generator's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EncodingArg {
    /// JSON text frames.
    Json,
    /// Protobuf binary frames (subprotocol `centrifuge-protobuf`).
    Protobuf,
}

/// Flags of a run. Sizes left unset take the scenario's defaults.
#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// The server and its protocol.
    #[arg(long, value_enum, default_value_t = TargetArg::Starling)]
    target: TargetArg,
    /// WebSocket endpoint of the server [default: starling
    /// ws://127.0.0.1:8000/connection/websocket, nats ws://127.0.0.1:8080/,
    /// socketio ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket].
    /// Repeat it (or give a comma-separated list) for the nodes of a
    /// cluster: connections go round-robin over the URLs, and in fanout
    /// the subscribers go round-robin while every publisher uses the first.
    #[arg(long, alias = "urls", value_delimiter = ',')]
    url: Vec<String>,
    /// Wire encoding (Starling only).
    #[arg(long, value_enum, default_value_t = EncodingArg::Json)]
    encoding: EncodingArg,
    /// HMAC secret the server checks connection tokens with (HS256).
    #[arg(long, default_value = "bench-secret")]
    secret: String,
    /// The load shape.
    #[arg(long, value_enum, default_value_t = Scenario::Fanout)]
    scenario: Scenario,
    /// fanout: subscribers of the room [default: 5000].
    #[arg(long)]
    subscribers: Option<u64>,
    /// fanout: publishing connections.
    #[arg(long, default_value_t = 1)]
    publishers: u64,
    /// many-rooms / idle / churn: rooms [default: 1000, 1000, 100].
    #[arg(long)]
    rooms: Option<u64>,
    /// many-rooms: members per room, one of whom publishes.
    #[arg(long, default_value_t = 10)]
    room_size: u64,
    /// idle: connections [default: 15000].
    #[arg(long)]
    connections: Option<u64>,
    /// churn: concurrent connect + subscribe + close loops.
    #[arg(long, default_value_t = 50)]
    concurrency: u64,
    /// Publications per second per publisher; 0 = as fast as acks allow
    /// [default: fanout 10, many-rooms 1].
    #[arg(long)]
    rate: Option<f64>,
    /// Unacknowledged publications per publisher with --rate 0.
    #[arg(long, default_value_t = 32)]
    inflight: usize,
    /// Payload size in bytes (at least the time stamp's 32).
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Publishing before the window opens, seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Reading after the window closes (late deliveries), seconds.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// Pause between the connect phase and the memory sample, seconds.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Handshakes in flight at once per worker during the connect phase.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// Child worker processes, each with a slice of the connections; 0 = in-process.
    #[arg(long, default_value_t = 0)]
    workers: u32,
    /// Runtime threads per worker; 0 = CPUs / max(workers, 1).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Bind client sockets to 127.0.0.1 ..= 127.0.0.N, round-robin (loopback
    /// servers only); 0 = no bind [default: 64, or one per 10,000 connections].
    #[arg(long)]
    source_ips: Option<u32>,
    /// Pid of the server, for CPU per delivery and memory per connection.
    /// Repeat it (or give a comma-separated list) for a cluster's nodes: the
    /// report sums them and lists each node too.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Internal: run as child worker INDEX of --workers.
    #[arg(long, hide = true)]
    worker_index: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match (cli.command, cli.run.worker_index) {
        (Some(Sub::Median { files, json }), _) => report::median(&files, json).map(|out| {
            println!("{out}");
        }),
        (Some(Sub::Compare { files, json }), _) => compare::compare(&files, json).map(|out| {
            println!("{out}");
        }),
        (None, Some(index)) => coord::child(&cli.run, index),
        (None, None) => coord::run(&cli.run).and_then(|report| {
            if cli.run.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}
