//! The coordinator: starts the workers (a thread, or child processes of this
//! same binary), waits for their connect phases, opens the window, samples
//! the server's /proc around it, and aggregates the results.
//!
//! Children talk to the coordinator in JSON lines: a child prints
//! [`FromWorker::Ready`], reads one [`Go`] line from stdin, and prints
//! [`FromWorker::Done`]. Logs and errors go to stderr.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use starling_protocol::Encoding;
use tokio::sync::oneshot;

use crate::conn::{Protocol, Target};
use crate::payload::{MIN_SIZE, now_ns};
use crate::plan::{Plan, Scenario};
use crate::procfs::{self, Proc};
use crate::report::{Header, MachineSamples, Report, ServerSamples};
use crate::worker::{Go, Ready, Settings, Worker, WorkerResult};
use crate::{EncodingArg, RunArgs, TargetArg};

/// Connections one source address serves at most: well below the ~28,000
/// ports of Linux's default ephemeral range.
const CONNECTIONS_PER_SOURCE_IP: u64 = 10_000;

/// Source addresses used at least. bind() picks a port before connect()
/// knows the destination, so every port of the address that is still in
/// TIME_WAIT from an earlier run is a collision; measured here, a few
/// thousand connections from one address slowed handshakes to ~1 s (SYN
/// retries) by the third run. Spread over 64 addresses there was no stall.
const DEFAULT_SOURCE_IPS: u64 = 64;

/// A message from a worker to the coordinator.
#[derive(Debug, Serialize, Deserialize)]
enum FromWorker {
    /// The connect phase is over.
    Ready(Ready),
    /// The window is over.
    Done(WorkerResult),
}

/// The scenario plan the flags describe.
fn plan(args: &RunArgs) -> Plan {
    match args.scenario {
        Scenario::Fanout => Plan::fanout(args.subscribers.unwrap_or(5000), args.publishers),
        Scenario::ManyRooms => Plan::many_rooms(args.rooms.unwrap_or(1000), args.room_size),
        Scenario::Idle => Plan::idle(
            args.connections.unwrap_or(15_000),
            args.rooms.unwrap_or(1000),
        ),
        Scenario::Churn => Plan::churn(args.concurrency, args.rooms.unwrap_or(100)),
    }
}

fn rate(args: &RunArgs) -> f64 {
    args.rate.unwrap_or(match args.scenario {
        Scenario::Fanout => 10.0,
        _ => 1.0,
    })
}

fn threads(args: &RunArgs) -> usize {
    if args.threads > 0 {
        return args.threads;
    }
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    (cpus / args.workers.max(1) as usize).max(1)
}

fn protocol(args: &RunArgs) -> Protocol {
    match (args.target, args.encoding) {
        (TargetArg::Starling, EncodingArg::Json) => Protocol::Centrifugo(Encoding::Json),
        (TargetArg::Starling, EncodingArg::Protobuf) => Protocol::Centrifugo(Encoding::Protobuf),
        (TargetArg::Nats, _) => Protocol::Nats,
        (TargetArg::Socketio, _) => Protocol::SocketIo,
    }
}

/// The URL flags, or the target's default.
fn urls(args: &RunArgs) -> Vec<String> {
    if args.url.is_empty() {
        vec![args.target.default_url()]
    } else {
        args.url.clone()
    }
}

/// How the wire encoding appears in reports.
fn encoding_name(args: &RunArgs) -> &'static str {
    match (args.target, args.encoding) {
        (TargetArg::Starling, EncodingArg::Json) => "json",
        (TargetArg::Starling, EncodingArg::Protobuf) => "protobuf",
        (TargetArg::Nats, _) => "nats-text",
        (TargetArg::Socketio, _) => "socket.io-json",
    }
}

/// The settings of worker `index` of `workers`.
fn settings(args: &RunArgs, index: u32, workers: u32) -> anyhow::Result<Settings> {
    let targets = urls(args)
        .iter()
        .map(|url| Target::new(url, protocol(args), &args.secret))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let plan = plan(args);
    let source_ips = match args.source_ips {
        _ if !targets.iter().all(|t| t.addr().ip().is_loopback()) => 0,
        Some(n) => n.min(254),
        None => plan
            .connections
            .div_ceil(CONNECTIONS_PER_SOURCE_IP)
            .clamp(DEFAULT_SOURCE_IPS, 254) as u32,
    };
    Ok(Settings {
        targets,
        slice: plan.slice(index, workers),
        plan,
        payload: args.payload.max(MIN_SIZE),
        rate: rate(args).max(0.0),
        inflight: args.inflight.max(1),
        connect_concurrency: args.connect_concurrency,
        source_ips,
    })
}

fn runtime(args: &RunArgs) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads(args))
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::ZERO)
}

/// Runs as child worker `index`: the JSON-lines side of the protocol.
pub(crate) fn child(args: &RunArgs, index: u32) -> anyhow::Result<()> {
    let settings = settings(args, index, args.workers)?;
    let runtime = runtime(args)?;
    runtime.block_on(async {
        let worker = Worker::new(settings);
        let ready = worker.connect().await;
        emit(&FromWorker::Ready(ready))?;
        let line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await??;
        if line.trim().is_empty() {
            // The coordinator gave up (its stdin end closed): nothing to measure.
            return Ok(());
        }
        let go: Go = serde_json::from_str(&line).context("bad Go line from the coordinator")?;
        let result = worker.run(go).await;
        emit(&FromWorker::Done(result))
    })?;
    // Dropping 10,000 sockets one by one is slow and measures nothing.
    runtime.shutdown_background();
    Ok(())
}

fn emit(message: &FromWorker) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, message)?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

/// How the coordinator reaches one worker.
enum Link {
    /// A thread in this process.
    Local {
        go: Option<oneshot::Sender<Go>>,
        thread: thread::JoinHandle<()>,
    },
    /// A child process.
    Child {
        stdin: Option<ChildStdin>,
        child: Child,
    },
}

impl Link {
    fn go(&mut self, go: Go) -> anyhow::Result<()> {
        match self {
            Link::Local { go: sender, .. } => sender
                .take()
                .and_then(|sender| sender.send(go).ok())
                .ok_or_else(|| anyhow!("worker thread is gone")),
            Link::Child { stdin, .. } => {
                let stdin = stdin
                    .as_mut()
                    .ok_or_else(|| anyhow!("worker stdin closed"))?;
                serde_json::to_writer(&mut *stdin, &go)?;
                stdin.write_all(b"\n")?;
                stdin.flush()?;
                Ok(())
            }
        }
    }

    /// Ends the worker: children are killed if still running.
    fn finish(self, abort: bool) {
        match self {
            Link::Local { go, thread } => {
                drop(go);
                if !abort {
                    let _ = thread.join();
                }
            }
            Link::Child { stdin, mut child } => {
                drop(stdin);
                if abort {
                    let _ = child.kill();
                }
                let _ = child.wait();
            }
        }
    }
}

type Inbox = mpsc::Receiver<(usize, Result<FromWorker, String>)>;

/// Starts the workers the flags ask for.
fn start(args: &RunArgs) -> anyhow::Result<(Vec<Link>, Inbox)> {
    let (tx, rx) = mpsc::channel();
    let mut links = Vec::new();
    if args.workers == 0 {
        let settings = settings(args, 0, 1)?;
        let runtime = runtime(args)?;
        let (go_tx, go_rx) = oneshot::channel::<Go>();
        let thread = thread::spawn(move || {
            runtime.block_on(async {
                let worker = Worker::new(settings);
                let ready = worker.connect().await;
                if tx.send((0, Ok(FromWorker::Ready(ready)))).is_err() {
                    return;
                }
                if let Ok(go) = go_rx.await {
                    let result = worker.run(go).await;
                    let _ = tx.send((0, Ok(FromWorker::Done(result))));
                }
            });
            runtime.shutdown_background();
        });
        links.push(Link::Local {
            go: Some(go_tx),
            thread,
        });
        return Ok((links, rx));
    }
    // Validate the flags once here rather than N times in the children.
    settings(args, 0, args.workers)?;
    let exe = std::env::current_exe().context("locating the loadgen binary")?;
    let forwarded: Vec<_> = std::env::args_os().skip(1).collect();
    for index in 0..args.workers {
        let mut child = Command::new(&exe)
            .args(&forwarded)
            .arg("--worker-index")
            .arg(index.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting worker {index}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("worker {index} has no stdout"))?;
        let tx = tx.clone();
        let slot = index as usize;
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let message = line
                    .map_err(|e| e.to_string())
                    .and_then(|l| serde_json::from_str(&l).map_err(|e| e.to_string()));
                if tx.send((slot, message)).is_err() {
                    return;
                }
            }
            let _ = tx.send((slot, Err(format!("worker {slot} exited"))));
        });
        links.push(Link::Child {
            stdin: child.stdin.take(),
            child,
        });
    }
    Ok((links, rx))
}

/// Waits until every worker sent the message `pick` accepts.
fn gather<T>(
    inbox: &Inbox,
    workers: usize,
    timeout: Option<Duration>,
    pick: impl Fn(FromWorker) -> Option<T>,
) -> anyhow::Result<Vec<T>> {
    let mut slots: Vec<Option<T>> = (0..workers).map(|_| None).collect();
    while slots.iter().any(Option::is_none) {
        let (slot, message) = match timeout {
            Some(timeout) => inbox
                .recv_timeout(timeout)
                .map_err(|_| anyhow!("workers did not report within {timeout:?}"))?,
            None => inbox.recv().map_err(|_| anyhow!("every worker is gone"))?,
        };
        if slots.get(slot).is_some_and(Option::is_some) {
            // A worker that already reported may exit (its end-of-output
            // arrives here) while others are still at work.
            continue;
        }
        let message = message.map_err(|e| anyhow!("worker {slot}: {e}"))?;
        match (slots.get_mut(slot), pick(message)) {
            (Some(entry), Some(value)) => *entry = Some(value),
            _ => bail!("worker {slot} sent an unexpected message"),
        }
    }
    Ok(slots.into_iter().flatten().collect())
}

fn sleep_until_ns(deadline: u64) {
    let now = now_ns();
    if deadline > now {
        thread::sleep(Duration::from_nanos(deadline - now));
    }
}

/// Runs the scenario the flags describe and returns its report.
pub(crate) fn run(args: &RunArgs) -> anyhow::Result<Report> {
    let servers: Vec<Proc> = args.server_pid.iter().copied().map(Proc::Pid).collect();
    let rss_baseline =
        sample_all(&servers, Proc::rss_kib).context("reading the server's /proc/PID/status")?;
    let (links, inbox) = start(args)?;
    let workers = links.len();
    let outcome = measure(args, &servers, rss_baseline, links, &inbox, workers);
    outcome.map(|(report, links)| {
        for link in links {
            link.finish(false);
        }
        report
    })
}

/// One /proc reading of every server process, in `--server-pid` order.
fn sample_all(
    servers: &[Proc],
    what: fn(Proc) -> std::io::Result<u64>,
) -> anyhow::Result<Vec<u64>> {
    servers
        .iter()
        .map(|&server| {
            what(server).with_context(|| format!("reading the server's /proc ({server:?})"))
        })
        .collect()
}

fn measure(
    args: &RunArgs,
    servers: &[Proc],
    rss_baseline: Vec<u64>,
    mut links: Vec<Link>,
    inbox: &Inbox,
    workers: usize,
) -> anyhow::Result<(Report, Vec<Link>)> {
    let abort = |links: Vec<Link>, error: anyhow::Error| {
        for link in links {
            link.finish(true);
        }
        Err(error)
    };
    let readies = match gather(inbox, workers, None, |m| match m {
        FromWorker::Ready(ready) => Some(ready),
        FromWorker::Done(_) => None,
    }) {
        Ok(readies) => readies,
        Err(error) => return abort(links, error.context("connect phase")),
    };
    thread::sleep(secs(args.settle));
    let sample = |what: fn(Proc) -> std::io::Result<u64>| sample_all(servers, what);
    let rss_connected = match sample(Proc::rss_kib) {
        Ok(value) => value,
        Err(error) => return abort(links, error),
    };
    let start_ns = now_ns() + secs(args.warmup).as_nanos() as u64;
    let end_ns = start_ns + secs(args.duration).as_nanos() as u64;
    let go = Go {
        start_ns,
        end_ns,
        drain_ms: secs(args.drain).as_millis() as u64,
    };
    for link in &mut links {
        if let Err(error) = link.go(go) {
            return abort(links, error);
        }
    }
    sleep_until_ns(start_ns);
    let cpu_start = sample(Proc::cpu_ticks);
    let machine_start = procfs::machine_ticks();
    sleep_until_ns(end_ns);
    let cpu_end = sample(Proc::cpu_ticks);
    let machine_end = procfs::machine_ticks();
    // Without /proc/stat the report only lacks its noise figure.
    let machine = match (machine_start, machine_end) {
        (Ok(start), Ok(end)) => Some(MachineSamples { start, end }),
        _ => None,
    };
    let rss_after = sample(Proc::rss_kib);
    let (cpu_start, cpu_end, rss_after) = match (cpu_start, cpu_end, rss_after) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
            return abort(links, error);
        }
    };
    let results = match gather(
        inbox,
        workers,
        Some(secs(args.drain + 120.0)),
        |m| match m {
            FromWorker::Done(result) => Some(result),
            FromWorker::Ready(_) => None,
        },
    ) {
        Ok(results) => results,
        Err(error) => return abort(links, error.context("measurement window")),
    };
    let server_samples: Vec<ServerSamples> = args
        .server_pid
        .iter()
        .enumerate()
        .map(|(i, &pid)| ServerSamples {
            pid,
            rss_baseline_kib: rss_baseline[i],
            rss_connected_kib: rss_connected[i],
            rss_after_kib: rss_after[i],
            cpu_start: cpu_start[i],
            cpu_end: cpu_end[i],
        })
        .collect();
    let plan = plan(args);
    let header = Header {
        scenario: plan.scenario.name().to_owned(),
        target: args.target.name().to_owned(),
        encoding: encoding_name(args).to_owned(),
        workers: args.workers,
        threads: threads(args),
        connections: plan.connections,
        rooms: plan.rooms,
        publishers: plan.publishers(),
        receivers: plan.receivers_per_publication(),
        payload_bytes: args.payload.max(MIN_SIZE),
        rate: rate(args),
        window_secs: secs(args.duration).as_secs_f64(),
        churn: plan.scenario == Scenario::Churn,
    };
    // With one server (or none) the report is what it always was; with
    // several, `server` is their sum and `server_nodes` has each of them.
    let connections_per_node = connections_per_node(&plan, server_samples.len());
    let mut report = Report::build(
        header,
        &readies,
        &results,
        ServerSamples::sum(&server_samples),
        machine,
        now_ns() / 1_000_000_000,
    );
    if server_samples.len() > 1 {
        report.add_server_nodes(&server_samples, &connections_per_node);
    }
    let urls = urls(args);
    if urls.len() > 1 {
        report.urls = urls;
    }
    Ok((report, links))
}

/// Planned connections on each of `nodes` nodes (the plan's round-robin).
fn connections_per_node(plan: &Plan, nodes: usize) -> Vec<u64> {
    let mut counts = vec![0; nodes];
    if nodes > 1 {
        for index in 0..plan.connections {
            counts[plan.node(index, nodes)] += 1;
        }
    } else if let Some(count) = counts.first_mut() {
        *count = plan.connections;
    }
    counts
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::Cli;

    fn args(line: &[&str]) -> RunArgs {
        let mut argv = vec!["loadgen"];
        argv.extend_from_slice(line);
        Cli::try_parse_from(argv).expect("flags").run
    }

    #[test]
    fn one_url_or_none_keeps_a_single_target() {
        assert_eq!(
            urls(&args(&[])),
            ["ws://127.0.0.1:8000/connection/websocket"]
        );
        let one = args(&["--url", "ws://127.0.0.1:9/x", "--server-pid", "7"]);
        assert_eq!(urls(&one), ["ws://127.0.0.1:9/x"]);
        assert_eq!(one.server_pid, [7]);
        assert_eq!(settings(&one, 0, 1).expect("settings").targets.len(), 1);
    }

    #[test]
    fn urls_and_pids_repeat_or_come_as_lists() {
        let repeated = args(&[
            "--url",
            "ws://127.0.0.1:1/a",
            "--url",
            "ws://127.0.0.1:2/a",
            "--url",
            "ws://127.0.0.1:3/a",
            "--server-pid",
            "10",
            "--server-pid",
            "11",
            "--server-pid",
            "12",
        ]);
        let listed = args(&[
            "--urls",
            "ws://127.0.0.1:1/a,ws://127.0.0.1:2/a,ws://127.0.0.1:3/a",
            "--server-pid",
            "10,11,12",
        ]);
        for run in [repeated, listed] {
            assert_eq!(urls(&run).len(), 3);
            assert_eq!(run.server_pid, [10, 11, 12]);
            let settings = settings(&run, 0, 1).expect("settings");
            let ports: Vec<u16> = settings.targets.iter().map(|t| t.addr().port()).collect();
            assert_eq!(ports, [1, 2, 3]);
            assert_eq!(
                settings.source_ips, 64,
                "loopback nodes keep the source spread"
            );
        }
    }

    #[test]
    fn planned_connections_per_node_follow_the_plan() {
        let plan = Plan::fanout(5000, 1);
        assert_eq!(connections_per_node(&plan, 3), [1668, 1667, 1666]);
        assert_eq!(connections_per_node(&plan, 1), [5001]);
        assert!(connections_per_node(&plan, 0).is_empty());
    }
}
