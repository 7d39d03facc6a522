//! `starling cluster status|remove|drain` and `starling shards move|split|rebalance`: thin
//! clients of a node's `GET /api/cluster`, `POST /api/cluster/{remove,drain}` and
//! `POST /api/shards/{move,split,rebalance}`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::cli::{ApiTarget, ClusterCommand, ShardsCommand};
use crate::http;

/// Bound on a status call: the node answers from memory.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a removal: the leader first moves the member's shards away, which waits for the
/// new owners to take them over.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on a shard command or a drain: the node's own bound, and a little more.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(starling_node::ADMIN_TIMEOUT.as_secs() + 30);

/// Runs one `starling cluster` subcommand.
pub(crate) fn run(command: ClusterCommand) -> anyhow::Result<()> {
    // One call per run: a current-thread runtime is all it needs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match command {
        ClusterCommand::Status(args) => runtime.block_on(async {
            let body = call(&args.target, "GET", "/api/cluster", None, STATUS_TIMEOUT).await?;
            if args.json {
                // Exactly what the API returned, so scripts see the API's keys.
                let text = String::from_utf8_lossy(&body);
                println!("{}", text.trim_end());
            } else {
                let status: ClusterStatus = serde_json::from_slice(&body)
                    .context("the node's answer is not a cluster status")?;
                print!("{}", render(&status));
            }
            Ok(())
        }),
        ClusterCommand::Remove(args) => runtime.block_on(async {
            let body = serde_json::json!({ "node_id": args.node_id }).to_string();
            let started = Instant::now();
            call(
                &args.target,
                "POST",
                "/api/cluster/remove",
                Some(body.as_bytes()),
                REMOVE_TIMEOUT,
            )
            .await?;
            println!(
                "removed node {} from the cluster in {:.2}s (its shards were moved to the \
                 other members first); stop its process now",
                args.node_id,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }),
        ClusterCommand::Drain(args) => runtime.block_on(admin(
            &args.target,
            "/api/cluster/drain",
            &serde_json::json!({ "node_id": args.node_id }),
            &format!(
                "drained node {} (it now advises its clients to reconnect elsewhere; remove \
                 it with `starling cluster remove`)",
                args.node_id
            ),
        )),
    }
}

/// Runs one `starling shards` subcommand.
pub(crate) fn run_shards(command: ShardsCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (target, path, body, what) = match command {
        ShardsCommand::Move(args) => (
            args.target,
            "/api/shards/move",
            serde_json::json!({ "shard": args.shard, "to": args.to }),
            format!("moved shard {} to node {}", args.shard, args.to),
        ),
        ShardsCommand::Split(args) => (
            args.target,
            "/api/shards/split",
            serde_json::json!({}),
            "split the shards".to_owned(),
        ),
        ShardsCommand::Rebalance(args) => (
            args.target,
            "/api/shards/rebalance",
            serde_json::json!({}),
            "rebalanced".to_owned(),
        ),
    };
    runtime.block_on(admin(&target, path, &body, &what))
}

/// Calls an admin endpoint and prints its report.
async fn admin(
    target: &ApiTarget,
    path: &str,
    body: &serde_json::Value,
    what: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let body = body.to_string();
    let answer = call(target, "POST", path, Some(body.as_bytes()), ADMIN_TIMEOUT).await?;
    let report: AdminAnswer =
        serde_json::from_slice(&answer).context("the node's answer is not an admin report")?;
    print!(
        "{}",
        render_admin(what, &report, started.elapsed().as_secs_f64())
    );
    Ok(())
}

/// What the CLI reads of an admin endpoint's answer.
#[derive(Debug, Deserialize)]
struct AdminAnswer {
    moves: Vec<MoveAnswer>,
    shard_map_version: u64,
    shard_count: u32,
    rooms: u64,
    handoff_ms: u64,
    incomplete: u32,
}

#[derive(Debug, Deserialize)]
struct MoveAnswer {
    shard: u32,
    from: u64,
    to: u64,
}

fn render_admin(what: &str, report: &AdminAnswer, seconds: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{what} in {seconds:.2}s: {} shard move(s), {} room(s) handed over in {} ms; shard map \
         version {}, {} shards",
        report.moves.len(),
        report.rooms,
        report.handoff_ms,
        report.shard_map_version,
        report.shard_count
    );
    for mv in &report.moves {
        let _ = writeln!(
            out,
            "  shard {}: node {} -> node {}",
            mv.shard, mv.from, mv.to
        );
    }
    if report.incomplete > 0 {
        let _ = writeln!(
            out,
            "warning: {} hand-off(s) ended without every room (the old owner went silent); \
             those rooms restarted with a new epoch",
            report.incomplete
        );
    }
    out
}

/// Calls the API and returns the body of a 2xx answer; anything else is an error that says
/// what the node answered.
async fn call(
    target: &ApiTarget,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    let response = http::request(
        &target.http_addr,
        method,
        path,
        &target.api_key,
        body,
        timeout,
    )
    .await?;
    if response.is_success() {
        return Ok(response.body);
    }
    let what = match response.status {
        401 => "the API key is wrong or missing (--api-key, the node's http_api.key)".to_owned(),
        _ => error_reason(&response.body),
    };
    bail!(
        "{method} {path} on {}: HTTP {}: {what}",
        target.http_addr,
        response.status
    )
}

/// The `reason` (else the `message`) of an API error body, or the body itself.
fn error_reason(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Reply {
        error: ErrorBody,
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        message: Option<String>,
        reason: Option<String>,
    }
    match serde_json::from_slice::<Reply>(body) {
        Ok(Reply { error }) => error
            .reason
            .or(error.message)
            .unwrap_or_else(|| "no reason given".to_owned()),
        Err(_) if body.is_empty() => "empty answer".to_owned(),
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    }
}

/// What the CLI reads of `GET /api/cluster` (`starling_node::ClusterStatus`; unknown keys are
/// ignored so a newer node's additions do not break an older CLI).
#[derive(Debug, Deserialize)]
struct ClusterStatus {
    node_id: u64,
    leader: Option<u64>,
    term: u64,
    members: Vec<MemberStatus>,
    shard_map_version: u64,
    shard_count: u32,
    #[serde(default)]
    handoffs: Vec<HandoffRow>,
    #[serde(default)]
    recent_handoffs: Vec<HandoffRow>,
    #[serde(default)]
    unreplicated_shards: u32,
    #[serde(default)]
    unreplicated_rooms: u64,
}

/// A shard move in progress or finished.
#[derive(Debug, Deserialize)]
struct HandoffRow {
    shard: u32,
    from: u64,
    to: u64,
    version: u64,
    #[serde(default)]
    rooms: Option<u32>,
    #[serde(default)]
    millis: Option<u64>,
    #[serde(default)]
    complete: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct MemberStatus {
    node_id: u64,
    role: String,
    alive: bool,
    shards: u32,
    #[serde(default)]
    cluster_addr: String,
    #[serde(default)]
    http_addr: String,
    #[serde(default)]
    draining: bool,
    #[serde(default)]
    replicas: u32,
}

/// The status as a readable report: a summary, then one table row per member.
fn render(status: &ClusterStatus) -> String {
    let mut out = String::new();
    let leader = status
        .leader
        .map_or_else(|| "none known (election?)".to_owned(), |id| id.to_string());
    let _ = writeln!(
        out,
        "cluster as seen by node {}: leader {leader}, term {}",
        status.node_id, status.term
    );
    let owned: u64 = status.members.iter().map(|m| u64::from(m.shards)).sum();
    let _ = write!(
        out,
        "shard map: version {}, {} shards",
        status.shard_map_version, status.shard_count
    );
    if owned < u64::from(status.shard_count) {
        let _ = write!(
            out,
            ", {} without an owner among the members",
            u64::from(status.shard_count) - owned
        );
    }
    if status.unreplicated_shards > 0 && status.shard_count > 0 {
        let _ = write!(out, ", {} without a replica", status.unreplicated_shards);
    }
    if status.unreplicated_rooms > 0 {
        let _ = write!(
            out,
            "\nnode {}: {} rooms whose replica lacks their state (publishes to them fail)",
            status.node_id, status.unreplicated_rooms
        );
    }
    out.push_str("\n\n");

    let header = [
        "NODE",
        "ROLE",
        "ALIVE",
        "SHARDS",
        "REPLICAS",
        "CLUSTER ADDR",
        "HTTP ADDR",
    ];
    let rows: Vec<[String; 7]> = status
        .members
        .iter()
        .map(|m| {
            let leader_mark = if status.leader == Some(m.node_id) {
                " *"
            } else {
                ""
            };
            [
                format!("{}{leader_mark}", m.node_id),
                m.role.clone(),
                if m.alive { "yes" } else { "NO" }.to_owned(),
                if m.draining {
                    format!("{} (draining)", m.shards)
                } else {
                    m.shards.to_string()
                },
                m.replicas.to_string(),
                m.cluster_addr.clone(),
                m.http_addr.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    if status.members.is_empty() {
        out.push_str("(no members yet)\n");
    } else if status.leader.is_some() {
        out.push_str("\n* leader\n");
    }
    if !status.handoffs.is_empty() {
        let _ = writeln!(out, "\nshard moves in progress:");
        for h in &status.handoffs {
            let _ = writeln!(
                out,
                "  shard {}: node {} -> node {} (map version {})",
                h.shard, h.from, h.to, h.version
            );
        }
    }
    if let Some(last) = status.recent_handoffs.last() {
        let _ = writeln!(
            out,
            "\nlast shard move: shard {}: node {} -> node {}, {} room(s) in {} ms{}",
            last.shard,
            last.from,
            last.to,
            last.rooms.unwrap_or(0),
            last.millis.unwrap_or(0),
            if last.complete == Some(false) {
                " (incomplete: the rooms restarted)"
            } else {
                ""
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ClusterStatus {
        serde_json::from_value(serde_json::json!({
            "node_id": 2,
            "leader": 1,
            "term": 7,
            "members": [
                {"node_id": 1, "role": "voter", "alive": true, "shards": 128,
                 "cluster_addr": "127.0.0.1:7001", "http_addr": "127.0.0.1:8001"},
                {"node_id": 2, "role": "voter", "alive": true, "shards": 100,
                 "cluster_addr": "127.0.0.1:7002", "http_addr": "127.0.0.1:8002"},
                {"node_id": 13, "role": "learner", "alive": false, "shards": 0,
                 "cluster_addr": "127.0.0.1:7013", "http_addr": "127.0.0.1:8013"}
            ],
            "shard_map_version": 5,
            "shard_count": 256,
            "some_future_key": true
        }))
        .expect("sample status")
    }

    #[test]
    fn report_shows_summary_members_and_leader() {
        let text = render(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "cluster as seen by node 2: leader 1, term 7",
            "{text}"
        );
        assert_eq!(
            lines[1],
            "shard map: version 5, 256 shards, 28 without an owner among the members"
        );
        assert_eq!(
            lines[3],
            "NODE  ROLE     ALIVE  SHARDS  REPLICAS  CLUSTER ADDR    HTTP ADDR"
        );
        assert_eq!(
            lines[4],
            "1 *   voter    yes    128     0         127.0.0.1:7001  127.0.0.1:8001"
        );
        assert_eq!(
            lines[6],
            "13    learner  NO     0       0         127.0.0.1:7013  127.0.0.1:8013"
        );
        assert_eq!(lines.last().copied(), Some("* leader"));
    }

    #[test]
    fn report_without_leader_or_members_says_so() {
        let mut status = sample();
        status.leader = None;
        status.members.clear();
        let text = render(&status);
        assert!(text.contains("leader none known"), "{text}");
        assert!(text.contains("(no members yet)"), "{text}");
        assert!(!text.contains("* leader"), "{text}");
    }

    #[test]
    fn error_reason_prefers_the_reason_field() {
        let body = br#"{"error":{"code":104,"message":"not found","reason":"node 9 is not a member of the cluster"}}"#;
        assert_eq!(error_reason(body), "node 9 is not a member of the cluster");
        assert_eq!(
            error_reason(br#"{"error":{"code":104,"message":"not found"}}"#),
            "not found"
        );
        assert_eq!(error_reason(b"gateway timeout\n"), "gateway timeout");
        assert_eq!(error_reason(b""), "empty answer");
    }
}
