//! The run's report: built from the workers' results and the server samples,
//! printed as a table or JSON; and medians over several JSON reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::hist::{Histogram, Quantiles};
use crate::procfs::{MachineTicks, TICKS_PER_SEC};
use crate::worker::{Ready, WorkerResult};

/// One run, everything measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Report {
    /// When the run ended, seconds since the Unix epoch.
    pub(crate) unix_time: u64,
    /// Scenario name.
    pub(crate) scenario: String,
    /// The server: `starling`, `nats` or `socketio` (reports written
    /// before peers existed are Starling's).
    #[serde(default = "starling")]
    pub(crate) target: String,
    /// `json` or `protobuf` (Starling), `nats-text`, `socket.io-json`.
    pub(crate) encoding: String,
    /// Worker processes (0 = in-process).
    pub(crate) workers: u32,
    /// Runtime threads per worker.
    pub(crate) threads: usize,
    /// Planned connections (churn: concurrent loops).
    pub(crate) connections: u64,
    /// Rooms in use.
    pub(crate) rooms: u64,
    /// Publishing connections.
    pub(crate) publishers: u64,
    /// Payload size, bytes.
    pub(crate) payload_bytes: usize,
    /// Publications per second per publisher; 0 = as fast as acks allow.
    pub(crate) rate_per_publisher: f64,
    /// Length of the measurement window, seconds.
    pub(crate) window_secs: f64,
    /// The connect phase.
    pub(crate) connect: ConnectReport,
    /// Publishing in the window.
    pub(crate) publish: PublishReport,
    /// Deliveries in the window.
    pub(crate) delivery: DeliveryReport,
    /// Churn loops, for the churn scenario.
    pub(crate) churn: Option<ChurnReport>,
    /// The server process, when `--server-pid` was given; with several
    /// pids (a cluster's nodes), their sum: CPU per delivery is the CPU of
    /// every node over the deliveries, RSS figures are summed.
    pub(crate) server: Option<ServerReport>,
    /// Each node, when several `--server-pid`s were given, in their order;
    /// a node's CPU per delivery is its share of the sum.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) server_nodes: Vec<ServerReport>,
    /// The server URLs, when there were several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) urls: Vec<String>,
    /// The generator's own CPU use.
    pub(crate) generator: GeneratorReport,
    /// The whole machine during the window: how noisy the run was.
    pub(crate) machine: Option<MachineReport>,
    /// The first distinct errors the workers saw.
    pub(crate) errors: Vec<String>,
}

/// The connect phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ConnectReport {
    /// Connections opened (and subscribed).
    pub(crate) opened: u64,
    /// Connections that failed.
    pub(crate) failed: u64,
    /// Wall time of the phase (the slowest worker), seconds.
    pub(crate) secs: f64,
    /// `opened / secs`.
    pub(crate) per_sec: f64,
    /// Dial + handshake + connect + subscribe, ms.
    pub(crate) latency_ms: Quantiles,
}

/// Publishing in the window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PublishReport {
    /// `publishers × rate`; 0 when unpaced.
    pub(crate) offered_per_sec: f64,
    /// Publications sent in the window.
    pub(crate) sent: u64,
    /// `sent / window`.
    pub(crate) per_sec: f64,
    /// Publish replies with an error.
    pub(crate) errors: u64,
    /// Publish → reply, µs.
    pub(crate) ack_latency_us: Quantiles,
}

/// Deliveries in the window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct DeliveryReport {
    /// Publications received in the window.
    pub(crate) delivered: u64,
    /// `delivered / window`.
    pub(crate) per_sec: f64,
    /// Deliveries the window's publications should cause.
    pub(crate) expected: u64,
    /// Of those, the fraction received before the drain ended.
    pub(crate) ratio: f64,
    /// Publications missing by offset.
    pub(crate) gaps: u64,
    /// Connections lost after the connect phase.
    pub(crate) disconnects: u64,
    /// Close codes the server sent, with counts.
    pub(crate) close_codes: BTreeMap<String, u64>,
    /// Send → receive, µs.
    pub(crate) latency_us: Quantiles,
}

/// Churn loops.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ChurnReport {
    /// Connect + subscribe completed in the window.
    pub(crate) ops: u64,
    /// `ops / window`.
    pub(crate) per_sec: f64,
    /// Attempts that failed.
    pub(crate) failed: u64,
    /// Dial + handshake + connect + subscribe, ms.
    pub(crate) latency_ms: Quantiles,
}

/// The server process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ServerReport {
    /// Its pid.
    pub(crate) pid: u32,
    /// utime + stime in the window, seconds.
    pub(crate) cpu_secs: f64,
    /// `cpu_secs / window`: cores kept busy.
    pub(crate) cores: f64,
    /// CPU per delivered publication, µs; absent without deliveries.
    pub(crate) cpu_per_delivery_us: Option<f64>,
    /// VmRSS before any connection, KiB.
    pub(crate) rss_baseline_kib: u64,
    /// VmRSS with every connection open, KiB.
    pub(crate) rss_connected_kib: u64,
    /// VmRSS after the window, KiB.
    pub(crate) rss_after_kib: u64,
    /// `(connected - baseline) / opened`, bytes; absent for churn.
    pub(crate) rss_per_connection_bytes: Option<f64>,
}

/// The generator's own CPU.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct GeneratorReport {
    /// utime + stime of every worker in the window, seconds.
    pub(crate) cpu_secs: f64,
    /// `cpu_secs / window`.
    pub(crate) cores: f64,
    /// `cores / cpus`, percent.
    pub(crate) machine_share_pct: f64,
    /// CPUs of the machine.
    pub(crate) cpus: usize,
}

/// The whole machine during the window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct MachineReport {
    /// Cores busy (all processes), from /proc/stat.
    pub(crate) busy_cores: f64,
    /// Busy cores not explained by the server and the generator: other
    /// processes (and the kernel's unattributed work). Near 0 = a quiet run.
    pub(crate) other_cores: f64,
    /// Cores stolen by the hypervisor.
    pub(crate) steal_cores: f64,
}

/// The machine's /proc/stat samples at the window's edges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MachineSamples {
    /// At the window's start.
    pub(crate) start: MachineTicks,
    /// At the window's end.
    pub(crate) end: MachineTicks,
}

/// The server's /proc samples around the window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerSamples {
    /// Its pid.
    pub(crate) pid: u32,
    /// VmRSS before connecting, KiB.
    pub(crate) rss_baseline_kib: u64,
    /// VmRSS connected, KiB.
    pub(crate) rss_connected_kib: u64,
    /// VmRSS after the window, KiB.
    pub(crate) rss_after_kib: u64,
    /// CPU ticks at the window's start.
    pub(crate) cpu_start: u64,
    /// CPU ticks at the window's end.
    pub(crate) cpu_end: u64,
}

impl ServerSamples {
    /// Several processes' samples as one: times and sizes added up, the
    /// first pid. `None` without samples.
    pub(crate) fn sum(samples: &[ServerSamples]) -> Option<ServerSamples> {
        let first = samples.first()?;
        Some(samples.iter().skip(1).fold(*first, |sum, s| ServerSamples {
            pid: sum.pid,
            rss_baseline_kib: sum.rss_baseline_kib + s.rss_baseline_kib,
            rss_connected_kib: sum.rss_connected_kib + s.rss_connected_kib,
            rss_after_kib: sum.rss_after_kib + s.rss_after_kib,
            cpu_start: sum.cpu_start + s.cpu_start,
            cpu_end: sum.cpu_end + s.cpu_end,
        }))
    }

    /// The report of these samples over a `window` of seconds with
    /// `delivered` deliveries and `connections` connections opened to it
    /// (`None`: no per-connection memory, as for churn).
    fn report(&self, window: f64, delivered: u64, connections: Option<u64>) -> ServerReport {
        let cpu_secs = self.cpu_end.saturating_sub(self.cpu_start) as f64 / TICKS_PER_SEC;
        let grown = self.rss_connected_kib.saturating_sub(self.rss_baseline_kib) as f64 * 1024.0;
        ServerReport {
            pid: self.pid,
            cpu_secs,
            cores: ratio(cpu_secs, window),
            cpu_per_delivery_us: (delivered > 0).then(|| cpu_secs / delivered as f64 * 1e6),
            rss_baseline_kib: self.rss_baseline_kib,
            rss_connected_kib: self.rss_connected_kib,
            rss_after_kib: self.rss_after_kib,
            rss_per_connection_bytes: connections.filter(|&n| n > 0).map(|n| grown / n as f64),
        }
    }
}

/// The run's fixed parameters, as they go into the report.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    /// Scenario name.
    pub(crate) scenario: String,
    /// The server.
    pub(crate) target: String,
    /// The wire encoding.
    pub(crate) encoding: String,
    /// Worker processes.
    pub(crate) workers: u32,
    /// Threads per worker.
    pub(crate) threads: usize,
    /// Planned connections.
    pub(crate) connections: u64,
    /// Rooms.
    pub(crate) rooms: u64,
    /// Publishers.
    pub(crate) publishers: u64,
    /// Deliveries per publication.
    pub(crate) receivers: u64,
    /// Payload bytes.
    pub(crate) payload_bytes: usize,
    /// Rate per publisher.
    pub(crate) rate: f64,
    /// Window, seconds.
    pub(crate) window_secs: f64,
    /// Whether this is a churn run.
    pub(crate) churn: bool,
}

fn starling() -> String {
    "starling".to_owned()
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator > 0.0 {
        numerator / denominator
    } else {
        0.0
    }
}

impl Report {
    /// Aggregates the workers' outcomes.
    pub(crate) fn build(
        header: Header,
        readies: &[Ready],
        results: &[WorkerResult],
        server: Option<ServerSamples>,
        machine: Option<MachineSamples>,
        unix_time: u64,
    ) -> Report {
        let window = header.window_secs;
        let mut connect_latency = Histogram::default();
        let mut connect = ConnectReport::default();
        for ready in readies {
            connect.opened += ready.opened;
            connect.failed += ready.failed;
            connect.secs = connect.secs.max(ready.secs);
            connect_latency.merge(&ready.latency);
        }
        connect.per_sec = ratio(connect.opened as f64, connect.secs);
        connect.latency_ms = connect_latency.quantiles(1e6);

        let mut ack = Histogram::default();
        let mut latency = Histogram::default();
        let mut churn_latency = Histogram::default();
        let mut publish = PublishReport {
            offered_per_sec: header.publishers as f64 * header.rate,
            ..PublishReport::default()
        };
        let mut delivery = DeliveryReport::default();
        let mut churn = ChurnReport::default();
        let mut cpu_ticks = 0;
        let mut errors: Vec<String> = readies.iter().flat_map(|r| r.errors.clone()).collect();
        for result in results {
            publish.sent += result.published;
            publish.errors += result.publish_errors;
            ack.merge(&result.ack_latency);
            delivery.delivered += result.delivered;
            delivery.gaps += result.gaps;
            delivery.disconnects += result.disconnects;
            for (code, count) in &result.close_codes {
                *delivery.close_codes.entry(code.to_string()).or_default() += count;
            }
            latency.merge(&result.latency);
            churn.ops += result.churn_ops;
            churn.failed += result.churn_failed;
            churn_latency.merge(&result.churn_latency);
            cpu_ticks += result.cpu_ticks;
            errors.extend(result.errors.iter().cloned());
        }
        errors.dedup();
        errors.truncate(16);
        publish.per_sec = ratio(publish.sent as f64, window);
        publish.ack_latency_us = ack.quantiles(1e3);
        delivery.per_sec = ratio(delivery.delivered as f64, window);
        delivery.expected = publish.sent * header.receivers;
        delivery.ratio = ratio(latency.count() as f64, delivery.expected as f64);
        delivery.latency_us = latency.quantiles(1e3);
        churn.per_sec = ratio(churn.ops as f64, window);
        churn.latency_ms = churn_latency.quantiles(1e6);

        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let generator_secs = cpu_ticks as f64 / TICKS_PER_SEC;
        let generator = GeneratorReport {
            cpu_secs: generator_secs,
            cores: ratio(generator_secs, window),
            machine_share_pct: ratio(generator_secs, window) / cpus as f64 * 100.0,
            cpus,
        };
        let server = server.map(|s| {
            s.report(
                window,
                delivery.delivered,
                (!header.churn).then_some(connect.opened),
            )
        });
        let machine = machine.map(|m| {
            let busy = m.end.busy.saturating_sub(m.start.busy) as f64 / TICKS_PER_SEC;
            let steal = m.end.steal.saturating_sub(m.start.steal) as f64 / TICKS_PER_SEC;
            let server_cores = server.as_ref().map_or(0.0, |s| s.cores);
            MachineReport {
                busy_cores: ratio(busy, window),
                other_cores: (ratio(busy, window) - server_cores - generator.cores).max(0.0),
                steal_cores: ratio(steal, window),
            }
        });
        Report {
            unix_time,
            scenario: header.scenario,
            target: header.target,
            encoding: header.encoding,
            workers: header.workers,
            threads: header.threads,
            connections: header.connections,
            rooms: header.rooms,
            publishers: header.publishers,
            payload_bytes: header.payload_bytes,
            rate_per_publisher: header.rate,
            window_secs: window,
            connect,
            publish,
            delivery,
            churn: header.churn.then_some(churn),
            server,
            server_nodes: Vec::new(),
            urls: Vec::new(),
            generator,
            machine,
            errors,
        }
    }

    /// Adds one server section per node (`nodes`, in `--server-pid`
    /// order); `planned[i]` is the connections the plan sent to node `i`.
    /// A node's memory per connection divides its growth by its planned
    /// connections scaled by the share that opened.
    pub(crate) fn add_server_nodes(&mut self, nodes: &[ServerSamples], planned: &[u64]) {
        let planned_total: u64 = planned.iter().sum();
        let opened_share = ratio(self.connect.opened as f64, planned_total as f64);
        let churn = self.churn.is_some();
        self.server_nodes = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let planned = planned.get(i).copied().unwrap_or(0);
                let opened = (planned as f64 * opened_share).round() as u64;
                node.report(
                    self.window_secs,
                    self.delivery.delivered,
                    (!churn).then_some(opened),
                )
            })
            .collect();
    }

    /// The numbers of the table, in order.
    pub(crate) fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut row = |label: &str, value: f64, unit: &'static str| {
            rows.push(Row {
                label: label.to_owned(),
                value,
                unit,
            });
        };
        let c = &self.connect;
        if self.churn.is_none() {
            row("connections opened", c.opened as f64, "");
            row("connections failed", c.failed as f64, "");
            row("connects/s (connect phase)", c.per_sec, "/s");
            row("connect+subscribe p50", c.latency_ms.p50, "ms");
            row("connect+subscribe p99", c.latency_ms.p99, "ms");
        }
        if let Some(churn) = &self.churn {
            row("churn connect+subscribe/s", churn.per_sec, "/s");
            row("churn failed", churn.failed as f64, "");
            row("churn connect+subscribe p50", churn.latency_ms.p50, "ms");
            row("churn connect+subscribe p99", churn.latency_ms.p99, "ms");
        }
        if self.publishers > 0 {
            let p = &self.publish;
            row("offered publications/s", p.offered_per_sec, "/s");
            row("publications/s", p.per_sec, "/s");
            row("publish errors", p.errors as f64, "");
            row("publish ack p50", p.ack_latency_us.p50, "µs");
            row("publish ack p99", p.ack_latency_us.p99, "µs");
            row("publish ack p999", p.ack_latency_us.p999, "µs");
            let d = &self.delivery;
            row("delivered messages/s", d.per_sec, "/s");
            row("delivery ratio", d.ratio * 100.0, "%");
            row("end-to-end p50", d.latency_us.p50, "µs");
            row("end-to-end p99", d.latency_us.p99, "µs");
            row("end-to-end p999", d.latency_us.p999, "µs");
            row("end-to-end max", d.latency_us.max, "µs");
            // Only Starling numbers publications; peers would show a constant 0.
            if self.target == "starling" {
                row("offset gaps", d.gaps as f64, "");
            }
        }
        row("disconnects", self.delivery.disconnects as f64, "");
        if let Some(s) = &self.server {
            row("server CPU", s.cores * 100.0, "% of a core");
            if let Some(per_delivery) = s.cpu_per_delivery_us {
                row("server CPU per delivery", per_delivery, "µs");
            }
            row(
                "server RSS baseline",
                s.rss_baseline_kib as f64 / 1024.0,
                "MiB",
            );
            row(
                "server RSS connected",
                s.rss_connected_kib as f64 / 1024.0,
                "MiB",
            );
            row("server RSS after", s.rss_after_kib as f64 / 1024.0, "MiB");
            if let Some(per_connection) = s.rss_per_connection_bytes {
                row("server RSS per connection", per_connection / 1024.0, "KiB");
            }
        }
        for (i, s) in self.server_nodes.iter().enumerate() {
            let node = i + 1;
            row(&format!("node {node} CPU"), s.cores * 100.0, "% of a core");
            if let Some(per_delivery) = s.cpu_per_delivery_us {
                row(&format!("node {node} CPU per delivery"), per_delivery, "µs");
            }
            row(
                &format!("node {node} RSS connected"),
                s.rss_connected_kib as f64 / 1024.0,
                "MiB",
            );
            if let Some(per_connection) = s.rss_per_connection_bytes {
                row(
                    &format!("node {node} RSS per connection"),
                    per_connection / 1024.0,
                    "KiB",
                );
            }
        }
        let g = &self.generator;
        row("generator CPU", g.cores * 100.0, "% of a core");
        row("generator share of machine", g.machine_share_pct, "%");
        if let Some(m) = &self.machine {
            row(
                "other load on the machine",
                m.other_cores * 100.0,
                "% of a core",
            );
            row(
                "CPU stolen by the hypervisor",
                m.steal_cores * 100.0,
                "% of a core",
            );
        }
        rows
    }

    /// The human-readable table.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} · {} · {} · {} connections · {} rooms · {} publishers × {} · {} B payload · {:.1} s window · {} workers × {} threads",
            self.scenario,
            self.target,
            self.encoding,
            self.connections,
            self.rooms,
            self.publishers,
            if self.publishers == 0 {
                "none".to_owned()
            } else if self.rate_per_publisher > 0.0 {
                format!("{}/s", self.rate_per_publisher)
            } else {
                "unpaced".to_owned()
            },
            self.payload_bytes,
            self.window_secs,
            self.workers,
            self.threads,
        );
        if !self.urls.is_empty() {
            let _ = writeln!(out, "  servers: {}", self.urls.join(" "));
        }
        let rows = self.rows();
        let width = rows
            .iter()
            .map(|r| r.label.chars().count())
            .max()
            .unwrap_or(0);
        for row in &rows {
            let _ = writeln!(
                out,
                "  {:<width$}  {:>12} {}",
                row.label,
                format_value(row.value),
                row.unit
            );
        }
        if !self.delivery.close_codes.is_empty() {
            let _ = writeln!(out, "  close codes: {:?}", self.delivery.close_codes);
        }
        for error in &self.errors {
            let _ = writeln!(out, "  error: {error}");
        }
        out
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// What it is.
    pub(crate) label: String,
    /// The number.
    pub(crate) value: f64,
    /// Its unit.
    pub(crate) unit: &'static str,
}

/// A number as the tables print it.
pub(crate) fn format_value(value: f64) -> String {
    if value == value.trunc() && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Median, minimum and maximum of one metric over several runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Summary {
    /// What it is.
    pub(crate) metric: String,
    /// Its unit.
    pub(crate) unit: &'static str,
    /// The median (the upper one for an even count, so it is a measured value).
    pub(crate) median: f64,
    /// The smallest value.
    pub(crate) min: f64,
    /// The largest value.
    pub(crate) max: f64,
    /// Every value, in run order.
    pub(crate) runs: Vec<f64>,
}

/// Medians of every table row over `reports`, in the first report's order.
pub(crate) fn summarize(reports: &[Report]) -> Vec<Summary> {
    let tables: Vec<Vec<Row>> = reports.iter().map(Report::rows).collect();
    let Some(first) = tables.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|row| {
            let runs: Vec<f64> = tables
                .iter()
                .filter_map(|table| table.iter().find(|r| r.label == row.label))
                .map(|r| r.value)
                .collect();
            let mut sorted = runs.clone();
            sorted.sort_by(f64::total_cmp);
            Summary {
                metric: row.label.clone(),
                unit: row.unit,
                median: sorted[sorted.len() / 2],
                min: sorted[0],
                max: sorted[sorted.len() - 1],
                runs,
            }
        })
        .collect()
}

/// Reads `loadgen --json` reports.
pub(crate) fn read_reports(files: &[PathBuf]) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let report: Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a loadgen --json report", file.display()))?;
        reports.push(report);
    }
    Ok(reports)
}

/// `loadgen median`: reads JSON reports and prints medians.
pub(crate) fn median(files: &[PathBuf], json: bool) -> anyhow::Result<String> {
    let reports = read_reports(files)?;
    let summaries = summarize(&reports);
    if json {
        return Ok(serde_json::to_string_pretty(&summaries)?);
    }
    let mut out = String::new();
    if let Some(first) = reports.first() {
        let _ = writeln!(
            out,
            "medians of {} runs · scenario {} · {} · {} · {} connections",
            reports.len(),
            first.scenario,
            first.target,
            first.encoding,
            first.connections
        );
    }
    let width = summaries
        .iter()
        .map(|s| s.metric.chars().count())
        .max()
        .unwrap_or(0);
    for s in &summaries {
        let _ = writeln!(
            out,
            "  {:<width$}  {:>12} {:<12} (min {}, max {})",
            s.metric,
            format_value(s.median),
            s.unit,
            format_value(s.min),
            format_value(s.max)
        );
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hist::AtomicHistogram;

    /// A report of `scenario` against `target` with `delivered` deliveries
    /// in a 2 s window.
    pub(crate) fn report_with(scenario: &str, target: &str, delivered: u64) -> Report {
        let mut header = header();
        header.scenario = scenario.to_owned();
        header.target = target.to_owned();
        Report::build(header, &[], &[result(1, delivered, 0)], None, None, 0)
    }

    fn header() -> Header {
        Header {
            scenario: "fanout".to_owned(),
            target: "starling".to_owned(),
            encoding: "json".to_owned(),
            workers: 2,
            threads: 1,
            connections: 4,
            rooms: 1,
            publishers: 1,
            receivers: 3,
            payload_bytes: 100,
            rate: 10.0,
            window_secs: 2.0,
            churn: false,
        }
    }

    fn result(published: u64, delivered: u64, ticks: u64) -> WorkerResult {
        let latency = AtomicHistogram::new();
        for _ in 0..delivered {
            latency.record(100_000);
        }
        WorkerResult {
            published,
            delivered,
            latency: latency.snapshot(),
            cpu_ticks: ticks,
            ..WorkerResult::default()
        }
    }

    #[test]
    fn workers_are_aggregated_into_rates_and_per_delivery_costs() {
        let ready = Ready {
            opened: 2,
            secs: 0.5,
            ..Ready::default()
        };
        let server = ServerSamples {
            pid: 7,
            rss_baseline_kib: 1000,
            rss_connected_kib: 1016,
            rss_after_kib: 1020,
            cpu_start: 100,
            cpu_end: 130,
        };
        let report = Report::build(
            header(),
            &[ready.clone(), ready],
            &[result(20, 30, 50), result(0, 30, 10)],
            Some(server),
            None,
            0,
        );
        assert_eq!(report.connect.opened, 4);
        assert_eq!(report.connect.per_sec, 8.0);
        assert_eq!(report.publish.per_sec, 10.0);
        assert_eq!(report.delivery.per_sec, 30.0);
        assert_eq!(report.delivery.expected, 60);
        assert_eq!(report.delivery.ratio, 1.0);
        let server = report.server.expect("server section");
        assert!((server.cpu_secs - 0.3).abs() < 1e-9);
        assert!((server.cpu_per_delivery_us.expect("deliveries") - 5_000.0).abs() < 1e-6);
        assert_eq!(server.rss_per_connection_bytes, Some(4096.0));
        assert!((report.generator.cpu_secs - 0.6).abs() < 1e-9);
        assert!((report.generator.cores - 0.3).abs() < 1e-9);
    }

    #[test]
    fn several_servers_are_summed_and_listed_per_node() {
        let node = |pid, cpu_start, cpu_end, rss_connected_kib| ServerSamples {
            pid,
            rss_baseline_kib: 1000,
            rss_connected_kib,
            rss_after_kib: rss_connected_kib,
            cpu_start,
            cpu_end,
        };
        let nodes = [
            node(1, 100, 130, 1008),
            node(2, 500, 510, 1004),
            node(3, 0, 20, 1004),
        ];
        let sum = ServerSamples::sum(&nodes).expect("samples");
        assert_eq!((sum.pid, sum.cpu_end - sum.cpu_start), (1, 60));
        assert_eq!((sum.rss_baseline_kib, sum.rss_connected_kib), (3000, 3016));
        assert!(ServerSamples::sum(&[]).is_none());
        let ready = Ready {
            opened: 4,
            secs: 0.5,
            ..Ready::default()
        };
        let mut report =
            Report::build(header(), &[ready], &[result(20, 60, 0)], Some(sum), None, 0);
        report.add_server_nodes(&nodes, &[2, 1, 1]);
        let server = report.server.clone().expect("sum");
        // 0.6 s of CPU over 60 deliveries; 16 KiB grown over 4 connections.
        assert!((server.cpu_per_delivery_us.expect("deliveries") - 10_000.0).abs() < 1e-6);
        assert_eq!(server.rss_per_connection_bytes, Some(4096.0));
        let per_node: Vec<f64> = report
            .server_nodes
            .iter()
            .map(|s| s.cpu_per_delivery_us.expect("deliveries"))
            .collect();
        assert_eq!(per_node.len(), 3);
        assert!((per_node.iter().sum::<f64>() - 10_000.0).abs() < 1e-6);
        assert!((per_node[0] - 5_000.0).abs() < 1e-6);
        assert_eq!(
            report.server_nodes[0].rss_per_connection_bytes,
            Some(4096.0)
        );
        assert_eq!(report.server_nodes[2].pid, 3);
        let rows = report.rows();
        assert!(rows.iter().any(|r| r.label == "node 3 CPU per delivery"));
        let json = serde_json::to_string(&report).expect("serialise");
        let back: Report = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back.rows(), rows);
        assert_eq!(back.server_nodes.len(), 3);
    }

    #[test]
    fn a_single_server_report_has_no_node_rows() {
        let report = report_with("fanout", "starling", 3);
        let json = serde_json::to_string(&report).expect("serialise");
        assert!(!json.contains("server_nodes") && !json.contains("urls"));
        assert!(!report.rows().iter().any(|r| r.label.starts_with("node ")));
    }

    #[test]
    fn medians_are_measured_values_per_row() {
        let reports: Vec<Report> = [10, 30, 20]
            .into_iter()
            .map(|delivered| {
                Report::build(header(), &[], &[result(1, delivered, 0)], None, None, 0)
            })
            .collect();
        let summaries = summarize(&reports);
        let delivered = summaries
            .iter()
            .find(|s| s.metric == "delivered messages/s")
            .expect("row");
        assert_eq!(delivered.median, 10.0);
        assert_eq!(delivered.min, 5.0);
        assert_eq!(delivered.max, 15.0);
        assert_eq!(delivered.runs, vec![5.0, 15.0, 10.0]);
    }

    #[test]
    fn report_survives_json() {
        let machine = MachineSamples {
            start: MachineTicks { busy: 0, steal: 0 },
            end: MachineTicks {
                busy: 300,
                steal: 10,
            },
        };
        let report = Report::build(header(), &[], &[result(1, 3, 40)], None, Some(machine), 1);
        let m = report.machine.clone().expect("machine section");
        assert!((m.busy_cores - 1.5).abs() < 1e-9);
        assert!(
            (m.other_cores - 1.3).abs() < 1e-9,
            "generator used 0.2 of it"
        );
        assert!((m.steal_cores - 0.05).abs() < 1e-9);
        let json = serde_json::to_string(&report).expect("serialise");
        let back: Report = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back.rows(), report.rows());
        assert!(report.table().contains("delivered messages/s"));
    }
}
