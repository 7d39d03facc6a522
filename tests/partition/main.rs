//! A network partition with real, separate network stacks: three `starling serve` processes,
//! each in its own network namespace (see `lab`), form a cluster over QUIC with mutual TLS, and
//! the leader is cut off from the other two. The test proves the partition promise of the
//! cluster issue:
//!
//! 1. the majority elects a new leader, gives the cut-off node's shards to live members (each
//!    to its replica, which continues the shard's rooms with the same epoch and offsets), and
//!    keeps acknowledging publishes through both of its nodes, in every room's one stream;
//! 2. the isolated node stops acknowledging publishes, for every room, within the failover
//!    timeout (it loses its lease after half of it), and keeps refusing while cut off;
//! 3. once the cut heals, the cluster converges (one leader, one shard map on every node, every
//!    node alive and owning shards) and the old leader acknowledges publishes again;
//! 4. throughout, the loss checker (`starling_tests::checker`) runs publishers and a
//!    subscriber on every node: every acknowledged publication reaches every subscriber exactly
//!    once and in order — subscribers told to resubscribe recover it — and no room changes
//!    epoch.
//!
//! It needs root and `ip` (iproute2), and fails — never skips — without them. Everything the
//! test does is printed with the time since it started, straight to stderr so that it shows in
//! CI logs even when the test passes; on failure the node logs are printed too.
//!
//! Layout: `lab` builds the namespaces and runs the processes; `http` is the server API client.

mod http;
mod lab;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::time::Instant;

use http::{Api, Published};
use lab::{Lab, NODES, say};
use starling_tests::checker::{Load, PublishFn, Target};

/// The server API key every node is configured with.
const API_KEY: &str = "partition-test-key";
/// `cluster.failover_timeout`: short, so the test is quick; the lease is half of it.
const FAILOVER: Duration = Duration::from_secs(2);
/// `cluster.shard_count`: fewer than the default 256 keeps the plans small; any power of two
/// works.
const SHARDS: u64 = 64;
/// Rooms the test publishes into. With 64 shards over three nodes the leader owns about a
/// third of them, so 32 rooms include some of its rooms and some of the others' (the chance
/// that they do not is below 10⁻⁵).
const ROOMS: usize = 32;
/// How often conditions are polled, and how often the isolated node is probed.
const POLL: Duration = Duration::from_millis(100);
/// Bound on the processes starting and forming the cluster.
const FORM_WITHIN: Duration = Duration::from_secs(60);
/// Bound on the majority electing a leader and taking over the isolated node's shards:
/// the failover timeout plus a generous margin for the election and one Raft commit.
const FAILOVER_WITHIN: Duration = Duration::from_secs(20);
/// Bound on the cluster converging after the cut heals.
const HEAL_WITHIN: Duration = Duration::from_secs(60);
/// Bound on a publish that is expected to succeed (retried while the maps settle).
const PUBLISH_WITHIN: Duration = Duration::from_secs(15);
/// Rooms the loss checker publishes into, besides the test's own.
const CHECKED_ROOMS: usize = 24;
/// How often each checker publisher publishes (each waits for its acknowledgement).
const CHECKER_EVERY: Duration = Duration::from_millis(25);
/// Acknowledgements the checker waits for before and after the partition.
const CHECKER_PROGRESS: u64 = 60;

/// The loss checker's view of node `id`: its WebSocket endpoint and its server API.
fn checker_target(lab: &Lab, id: u64) -> Target {
    let api = Api::new(lab.http_addr(id), API_KEY);
    let publish: PublishFn = Arc::new(move |room: String, data: bytes::Bytes| {
        let api = api.clone();
        Box::pin(async move {
            let data: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
            match api.publish(&room, &data).await {
                Published::Ack { offset, epoch } => Some((offset, epoch)),
                Published::Refused(_) => None,
            }
        })
    });
    Target {
        node: id,
        ws_url: format!("ws://{}/connection/websocket", lab.http_addr(id)),
        publish,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_off_leader_stops_acknowledging_while_the_majority_fails_over_and_heal_converges()
-> anyhow::Result<()> {
    lab::preflight()?;
    lab::sweep_stale()?;
    let binary = lab::starling_binary()?;
    say(&format!("partition: nodes run {}", binary.display()));
    let mut lab = Lab::new(binary, &config())?;
    let outcome = scenario(&mut lab).await;
    if outcome.is_ok() {
        lab.passed();
    }
    outcome
}

/// The configuration all three nodes share; node id, addresses, TLS and data directory come
/// as `serve` flags. Rooms keep history, so each has an epoch and offsets to continue; shards
/// have replicas (the default replication factor 2), so even the isolated node's rooms
/// continue on the majority.
fn config() -> String {
    format!(
        r#"[node]
http_addr = "0.0.0.0:8000"

[http_api]
key = "{API_KEY}"

[client.token]
hmac_secret_key = "{secret}"

[cluster]
failover_timeout = "{failover}s"
shard_count = {SHARDS}

[channel.without_namespace]
history_size = 1000
history_ttl = "300s"
allow_subscribe_for_client = true
force_recovery = true
"#,
        failover = FAILOVER.as_secs(),
        secret = starling_tests::SECRET,
    )
}

/// The test's steps, each printed with its time.
async fn scenario(lab: &mut Lab) -> anyhow::Result<()> {
    let clock = Clock::new();
    let apis: BTreeMap<u64, Api> = NODES
        .into_iter()
        .map(|id| (id, Api::new(lab.http_addr(id), API_KEY)))
        .collect();
    let rooms: Vec<String> = (0..ROOMS).map(|k| format!("partition-{k}")).collect();

    // 1. Node 1 initializes the cluster; nodes 2 and 3 join through it.
    clock.say("phase 1: starting node 1, which initializes the cluster");
    lab.start(1)?;
    wait_for(
        lab,
        &clock,
        "node 1 leads a one-node cluster",
        FORM_WITHIN,
        || async {
            let view = views(&apis, &[1]).await?.remove(0);
            if view.leader == Some(1) && view.members.len() == 1 && view.version > 0 {
                Ok(())
            } else {
                Err(view.to_string())
            }
        },
    )
    .await?;
    clock.say("phase 1: starting nodes 2 and 3 with --join 10.78.0.1:7000");
    lab.start(2)?;
    lab.start(3)?;
    let formed = wait_for(lab, &clock, "three members settle", FORM_WITHIN, || async {
        let views = views(&apis, &NODES).await?;
        converged(&views, &NODES).map(|()| views)
    })
    .await?;
    let leader = formed[0]
        .leader
        .context("a converged cluster has a leader")?;
    let majority: Vec<u64> = NODES.into_iter().filter(|&id| id != leader).collect();
    clock.say(&format!("phase 2: cluster formed, leader is node {leader}"));
    for view in &formed {
        clock.say(&format!("  {view}"));
    }

    // Every room gets one publication before the cut, through all three nodes in turn, so
    // forwarding to owners is exercised and each room has a position to compare with later.
    let mut before = BTreeMap::new();
    for (k, room) in rooms.iter().enumerate() {
        let via = NODES[k % NODES.len()];
        let data = json!({ "phase": "before", "room": k });
        let (position, _) = publish_until_ack(&apis[&via], room, &data, PUBLISH_WITHIN)
            .await
            .with_context(|| format!("publish into {room} through node {via} before the cut"))?;
        before.insert(room.clone(), position);
    }
    clock.say(&format!(
        "phase 2: one publication acknowledged in each of {ROOMS} rooms"
    ));
    // The loss checker runs through the whole partition in rooms of its own: a subscriber on
    // every node, publishers on every node.
    let load = Load::start_on(
        NODES
            .into_iter()
            .map(|id| checker_target(lab, id))
            .collect(),
        (0..CHECKED_ROOMS).map(|k| format!("checked-{k}")).collect(),
        CHECKER_EVERY,
    )
    .await
    .context("start the loss checker")?;
    ensure!(
        load.progress(CHECKER_PROGRESS).await,
        "the checker's load does not run"
    );
    clock.say(&format!(
        "phase 2: checker running: {CHECKED_ROOMS} rooms, a subscriber and {} publishers on \
         every node",
        starling_tests::checker::PUBLISHERS_PER_NODE
    ));

    // 3. Cut the leader's cluster links. Its client plane stays reachable.
    let cut_at = Instant::now();
    lab.cut(leader)?;
    clock.say(&format!(
        "phase 3: node {leader} (the leader) cut off from nodes {majority:?}"
    ));
    let probes = IsolatedProbes::start(&apis[&leader], &rooms, cut_at);

    // 4a. The majority elects a leader and gives the isolated node's shards to live members.
    let failed_over = wait_for(
        lab,
        &clock,
        "the majority fails over",
        FAILOVER_WITHIN,
        || async {
            let views = views(&apis, &majority).await?;
            failed_over(&views, leader, &majority).map(|()| views)
        },
    )
    .await?;
    let failover_took = cut_at.elapsed();
    clock.say(&format!(
        "phase 4: majority failed over {:.2}s after the cut: new leader node {}, node {leader} \
         alive=false shards=0",
        failover_took.as_secs_f64(),
        failed_over[0].leader.unwrap_or(0)
    ));
    for view in &failed_over {
        clock.say(&format!("  {view}"));
    }
    ensure!(
        failed_over[0].term > formed[0].term,
        "the majority's leader {:?} was not elected in a new term (term {} before the cut, {} \
         after)",
        failed_over[0].leader,
        formed[0].term,
        failed_over[0].term
    );

    // 4b. Both majority nodes acknowledge publishes into every room, and every room continues
    // its stream: those the majority owned all along, and the isolated node's, whose replicas
    // took them over with every acknowledged publication.
    for room in &rooms {
        let (first, retries_a) = publish_until_ack(
            &apis[&majority[0]],
            room,
            &json!({ "phase": "cut", "via": majority[0] }),
            PUBLISH_WITHIN,
        )
        .await
        .with_context(|| format!("publish into {room} through node {}", majority[0]))?;
        let (second, retries_b) = publish_until_ack(
            &apis[&majority[1]],
            room,
            &json!({ "phase": "cut", "via": majority[1] }),
            PUBLISH_WITHIN,
        )
        .await
        .with_context(|| format!("publish into {room} through node {}", majority[1]))?;
        if retries_a + retries_b > 0 {
            clock.say(&format!(
                "  {room}: acknowledged after {} refused attempt(s)",
                retries_a + retries_b
            ));
        }
        ensure!(
            second.epoch == first.epoch && second.offset == first.offset + 1,
            "{room}: the two majority nodes disagree on its stream: {first} then {second}"
        );
        let old = &before[room];
        ensure!(
            first.epoch == old.epoch && first.offset == old.offset + 1,
            "{room} went from {old} before the cut to {first} on the majority: an acknowledged \
             publication was lost or duplicated, or the room restarted"
        );
    }
    clock.say(&format!(
        "phase 4: both majority nodes acknowledged publishes into all {ROOMS} rooms, each \
         continuing its stream (node {leader}'s rooms on their replicas)"
    ));

    // 4c. The isolated node refused every room after the failover timeout, and acknowledged
    // nothing after it.
    wait_for(
        lab,
        &clock,
        "the isolated node refuses a publish into every room",
        FAILOVER_WITHIN,
        || async {
            match probes.rooms_without_late_refusal() {
                0 => Ok(()),
                n => Err(format!("{n} rooms not refused yet")),
            }
        },
    )
    .await?;
    if let Ok(view) = views(&apis, &[leader]).await {
        clock.say(&format!("  isolated node's own view: {}", view[0]));
    }
    let report = probes.stop().await?;
    clock.say(&format!("phase 4: {report}"));
    report.check()?;

    // 5. Heal the cut; the cluster converges and the old leader serves again.
    let heal_at = Instant::now();
    lab.heal(leader)?;
    clock.say(&format!("phase 5: node {leader} reconnected"));
    let healed = wait_for(
        lab,
        &clock,
        "the cluster converges",
        HEAL_WITHIN,
        || async {
            let views = views(&apis, &NODES).await?;
            converged(&views, &NODES).map(|()| views)
        },
    )
    .await?;
    let heal_took = heal_at.elapsed();
    clock.say(&format!(
        "phase 5: converged {:.2}s after the heal",
        heal_took.as_secs_f64()
    ));
    for view in &healed {
        clock.say(&format!("  {view}"));
    }
    // Through the old leader first, then the other two: every room has one owner again, so the
    // three acknowledgements are consecutive offsets of one epoch.
    let order = [leader, majority[0], majority[1]];
    for room in &rooms {
        let mut last: Option<Position> = None;
        for via in order {
            let data = json!({ "phase": "healed", "via": via });
            let (position, _) = publish_until_ack(&apis[&via], room, &data, PUBLISH_WITHIN)
                .await
                .with_context(|| format!("publish into {room} through node {via} after heal"))?;
            if let Some(last) = &last {
                ensure!(
                    position.epoch == last.epoch && position.offset == last.offset + 1,
                    "{room} after the heal: node {via} acknowledged {position} after {last}: \
                     two owners?"
                );
            }
            last = Some(position);
        }
    }
    clock.say(&format!(
        "phase 5: all {ROOMS} rooms acknowledged through node {leader} and then nodes \
         {majority:?}, one stream each"
    ));
    ensure!(
        load.progress(CHECKER_PROGRESS).await,
        "the checker's load does not run after the heal"
    );
    let verdict = load.finish(&[]).await?;
    clock.say(&format!("phase 5: checker: {verdict}"));
    ensure!(
        verdict.acknowledged > 0 && verdict.delivered > 0,
        "checker: {verdict}"
    );
    ensure!(
        verdict.lost == 0
            && verdict.duplicated == 0
            && verdict.out_of_order == 0
            && verdict.unrecovered == 0
            && verdict.epoch_changes == 0,
        "checker: an acknowledged publication was lost, duplicated or reordered: {verdict}"
    );
    clock.say(&format!(
        "partition: done: failover {:.2}s, isolated node's last acknowledgement {}, converged \
         {:.2}s after the heal",
        failover_took.as_secs_f64(),
        report
            .last_ack
            .map_or("none after the cut".to_string(), |t| format!(
                "{:.2}s after the cut",
                t.as_secs_f64()
            )),
        heal_took.as_secs_f64()
    ));
    Ok(())
}

/// Time since the scenario started, for the log.
struct Clock(Instant);

impl Clock {
    fn new() -> Clock {
        Clock(Instant::now())
    }

    fn say(&self, line: &str) {
        say(&format!("[{:7.3}s] {line}", self.0.elapsed().as_secs_f64()));
    }
}

/// Polls `probe` every [`POLL`] until it returns `Ok` or `within` passes; `Err` carries what
/// the probe saw, for the failure message. Fails at once when a node process exits.
async fn wait_for<T, F, Fut>(
    lab: &mut Lab,
    clock: &Clock,
    what: &str,
    within: Duration,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        lab.check_running()?;
        match probe().await {
            Ok(value) => return Ok(value),
            Err(seen) if Instant::now() >= deadline => {
                clock.say(&format!("FAILED waiting for: {what}"));
                bail!("{what}: not within {within:?}; last seen:\n{seen}");
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// One member as a node reports it.
#[derive(Debug, Clone, Copy)]
struct MemberView {
    alive: bool,
    shards: u64,
}

/// One node's `GET /api/cluster`.
#[derive(Debug, Clone)]
struct View {
    node: u64,
    leader: Option<u64>,
    term: u64,
    version: u64,
    shard_count: u64,
    members: BTreeMap<u64, MemberView>,
}

impl View {
    /// Reads the keys `starling cluster status --json` documents.
    fn parse(value: &Value) -> anyhow::Result<View> {
        let number = |v: &Value, key: &str| {
            v[key]
                .as_u64()
                .with_context(|| format!("no {key} in {value}"))
        };
        let mut members = BTreeMap::new();
        for member in value["members"].as_array().context("no members")? {
            let alive = member["alive"].as_bool().context("member without alive")?;
            members.insert(
                number(member, "node_id")?,
                MemberView {
                    alive,
                    shards: number(member, "shards")?,
                },
            );
        }
        Ok(View {
            node: number(value, "node_id")?,
            leader: value["leader"].as_u64(),
            term: number(value, "term")?,
            version: number(value, "shard_map_version")?,
            shard_count: number(value, "shard_count")?,
            members,
        })
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {} sees: leader {:?}, term {}, map v{} ({} shards):",
            self.node, self.leader, self.term, self.version, self.shard_count
        )?;
        for (id, member) in &self.members {
            let state = if member.alive { "alive" } else { "DEAD" };
            write!(f, " [{id} {state} {} shards]", member.shards)?;
        }
        Ok(())
    }
}

/// The views of `ids`, asked concurrently; `Err` says which node did not answer.
async fn views(apis: &BTreeMap<u64, Api>, ids: &[u64]) -> Result<Vec<View>, String> {
    let answers = join_all(ids.iter().map(|id| apis[id].cluster())).await;
    ids.iter()
        .zip(answers)
        .map(|(id, answer)| {
            answer
                .and_then(|value| View::parse(&value))
                .map_err(|error| format!("node {id}: {error:#}"))
        })
        .collect()
}

fn describe(views: &[View]) -> String {
    views
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every view agrees on one leader among `members` and on the shard map version, lists exactly
/// `members`, each alive and owning shards, and places every shard.
fn converged(views: &[View], members: &[u64]) -> Result<(), String> {
    let first = &views[0];
    let ok = first.leader.is_some_and(|l| members.contains(&l))
        && views.iter().all(|view| {
            view.leader == first.leader
                && view.version == first.version
                && view.members.keys().copied().eq(members.iter().copied())
                && view.members.values().all(|m| m.alive && m.shards > 0)
                && view.members.values().map(|m| m.shards).sum::<u64>() == view.shard_count
        });
    if ok { Ok(()) } else { Err(describe(views)) }
}

/// The majority's views agree on a leader among themselves and on the map version, see the
/// isolated node dead with no shards, and see every shard on a live majority node.
fn failed_over(views: &[View], isolated: u64, majority: &[u64]) -> Result<(), String> {
    let first = &views[0];
    let ok = first.leader.is_some_and(|l| majority.contains(&l))
        && views.iter().all(|view| {
            let gone = view
                .members
                .get(&isolated)
                .is_some_and(|m| !m.alive && m.shards == 0);
            let serving = majority.iter().all(|id| {
                view.members
                    .get(id)
                    .is_some_and(|m| m.alive && m.shards > 0)
            });
            let placed = view.members.values().map(|m| m.shards).sum::<u64>() == view.shard_count;
            view.leader == first.leader
                && view.version == first.version
                && gone
                && serving
                && placed
        });
    if ok { Ok(()) } else { Err(describe(views)) }
}

/// A publication's place in its room's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    offset: u64,
    epoch: String,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offset {} epoch {}", self.offset, self.epoch)
    }
}

/// Publishes until acknowledged or `within` passes; returns the position and how many
/// attempts were refused first (a publish racing a shard map change may be refused once).
async fn publish_until_ack(
    api: &Api,
    room: &str,
    data: &Value,
    within: Duration,
) -> anyhow::Result<(Position, u32)> {
    let deadline = Instant::now() + within;
    let mut refused = 0;
    loop {
        match api.publish(room, data).await {
            Published::Ack { offset, epoch } => return Ok((Position { offset, epoch }, refused)),
            Published::Refused(why) if Instant::now() >= deadline => {
                bail!("refused for {within:?} ({refused} attempts), last: {why}")
            }
            Published::Refused(_) => {
                refused += 1;
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// One publish attempt through the isolated node, timed from the cut.
#[derive(Debug)]
struct Probe {
    room: usize,
    started: Duration,
    answered: Duration,
    outcome: Published,
}

/// A prober per room publishes through the isolated node over and over while the cut lasts.
/// One task per room, because a publish into a room the isolated node does not own waits for
/// the cluster call to time out; one slow room must not hide another room's answer.
struct IsolatedProbes {
    stop: Arc<AtomicBool>,
    /// Per room: a publish started after the failover timeout was refused.
    refused_late: Arc<Vec<AtomicBool>>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Probe>>>,
}

impl IsolatedProbes {
    fn start(api: &Api, rooms: &[String], cut_at: Instant) -> IsolatedProbes {
        let stop = Arc::new(AtomicBool::new(false));
        let refused_late: Arc<Vec<AtomicBool>> =
            Arc::new(rooms.iter().map(|_| AtomicBool::new(false)).collect());
        let tasks = rooms
            .iter()
            .enumerate()
            .map(|(k, room)| {
                let (api, room) = (api.clone(), room.clone());
                let (stop, refused_late) = (Arc::clone(&stop), Arc::clone(&refused_late));
                tokio::spawn(async move {
                    let mut probes = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = cut_at.elapsed();
                        let outcome = api.publish(&room, &json!({ "phase": "isolated" })).await;
                        let answered = cut_at.elapsed();
                        if started >= FAILOVER && matches!(outcome, Published::Refused(_)) {
                            refused_late[k].store(true, Ordering::Relaxed);
                        }
                        probes.push(Probe {
                            room: k,
                            started,
                            answered,
                            outcome,
                        });
                        tokio::time::sleep(POLL).await;
                    }
                    probes
                })
            })
            .collect();
        IsolatedProbes {
            stop,
            refused_late,
            tasks,
        }
    }

    fn rooms_without_late_refusal(&self) -> usize {
        self.refused_late
            .iter()
            .filter(|flag| !flag.load(Ordering::Relaxed))
            .count()
    }

    /// Stops the probers and gathers what they saw.
    async fn stop(self) -> anyhow::Result<ProbeReport> {
        self.stop.store(true, Ordering::Relaxed);
        let mut probes = Vec::new();
        for task in self.tasks {
            probes.extend(task.await.context("a prober panicked")?);
        }
        Ok(ProbeReport::new(probes))
    }
}

/// What the isolated node answered while cut off.
struct ProbeReport {
    probes: Vec<Probe>,
    /// When the last acknowledgement arrived, since the cut.
    last_ack: Option<Duration>,
}

impl ProbeReport {
    fn new(probes: Vec<Probe>) -> ProbeReport {
        let last_ack = probes
            .iter()
            .filter(|p| matches!(p.outcome, Published::Ack { .. }))
            .map(|p| p.answered)
            .max();
        ProbeReport { probes, last_ack }
    }

    /// No acknowledgement arrived later than the failover timeout after the cut: by then the
    /// majority may have given the node's rooms to others, so a later one would be a second
    /// owner sequencing the same room. (The lease is half the timeout; the other half is the
    /// margin the runtime keeps, so this is the bound that matters.)
    fn check(&self) -> anyhow::Result<()> {
        let late: Vec<&Probe> = self
            .probes
            .iter()
            .filter(|p| matches!(p.outcome, Published::Ack { .. }) && p.answered > FAILOVER)
            .collect();
        ensure!(
            late.is_empty(),
            "the isolated node acknowledged {} publish(es) more than {FAILOVER:?} after the \
             cut (it should have lost its lease): {late:#?}",
            late.len()
        );
        Ok(())
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let acks = self
            .probes
            .iter()
            .filter(|p| matches!(p.outcome, Published::Ack { .. }))
            .count();
        write!(
            f,
            "isolated node: {} publishes tried while cut off, {acks} acknowledged (last {}), {} \
             refused",
            self.probes.len(),
            self.last_ack.map_or("none".to_string(), |t| format!(
                "{:.2}s after the cut",
                t.as_secs_f64()
            )),
            self.probes.len() - acks
        )?;
        let example = self
            .probes
            .iter()
            .filter(|p| p.started >= FAILOVER)
            .find_map(|p| match &p.outcome {
                Published::Refused(why) => Some((p.room, why)),
                Published::Ack { .. } => None,
            });
        if let Some((room, why)) = example {
            write!(f, "; e.g. partition-{room}: {why}")?;
        }
        Ok(())
    }
}
