//! The loss checker for shard moves: steady load on a live cluster, every acknowledgement and
//! every delivery recorded, and a verdict per room.
//!
//! Publishers on every node publish sequence-numbered messages round-robin into many rooms
//! through the node's server API, whose answer (offset and epoch) is the acknowledgement.
//! Subscribers on every node (real WebSocket clients, JSON and Protobuf) are subscribed to
//! every room and record each publication's offset. The verdict: for every subscriber that
//! stayed subscribed, every acknowledged offset arrived exactly once, offsets strictly
//! increased by one (no gap, no reorder), nobody was told to resubscribe, and no room changed
//! epoch.
//!
//! A subscriber told to resubscribe (2500, as after an owner's death) does what the SDKs do:
//! it subscribes again with recovery from the last offset it saw, and records the recovered
//! publications in order before any later push. The verdict counts those resubscriptions and
//! any that came back `recovered: false`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use starling_protocol::Encoding;

use crate::cluster::TestCluster;
use crate::{SECRET, eventually, hs256_token, sub, until_ok};

/// An acknowledgement: the publication's offset and the room's epoch.
pub type Ack = (u64, String);

/// Publishes `data` into `room` through one node; `None` when it was not acknowledged.
pub type PublishFn =
    Arc<dyn Fn(String, Bytes) -> Pin<Box<dyn Future<Output = Option<Ack>> + Send>> + Send + Sync>;

/// One node the load runs against: its subscriber connects to `ws_url` (with an HS256 token
/// signed with [`SECRET`]), and its publishers publish with `publish`.
pub struct Target {
    /// The node's id.
    pub node: u64,
    /// Its client WebSocket endpoint.
    pub ws_url: String,
    /// How a publisher publishes through it.
    pub publish: PublishFn,
}

/// Publishers per node.
pub const PUBLISHERS_PER_NODE: u64 = 2;

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Seen {
    /// Room → offsets, in arrival order.
    offsets: HashMap<String, Vec<u64>>,
    /// Unsubscribe pushes (a resubscribe request would be code 2500).
    unsubscribes: Vec<(String, u32)>,
    /// Resubscriptions with recovery that did not recover (`recovered: false`, another
    /// epoch, or no answer).
    unrecovered: u64,
    /// Publications that came back in resubscriptions' recovery.
    recovered: u64,
    /// The close code, if the connection was closed.
    closed: Option<u16>,
}

struct Subscriber {
    node: u64,
    /// Room → the offset the subscription started at.
    start: HashMap<String, u64>,
    seen: Arc<Mutex<Seen>>,
    client: Arc<starling_client::Client>,
    reader: tokio::task::JoinHandle<()>,
}

/// What one publisher did.
#[derive(Debug, Default)]
struct Published {
    attempted: u64,
    /// Room → acknowledged offsets.
    acked: HashMap<String, Vec<u64>>,
    /// Room → epochs seen in acknowledgements.
    epochs: HashMap<String, Vec<String>>,
    failed: u64,
}

/// Load running against a cluster.
pub struct Load {
    rooms: Vec<String>,
    stop: Arc<AtomicBool>,
    /// Acknowledgements so far, over every publisher.
    acked: Arc<std::sync::atomic::AtomicU64>,
    publishers: Vec<tokio::task::JoinHandle<Published>>,
    subscribers: Vec<Subscriber>,
}

/// The checker's counts, summed over rooms and subscribers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Publish attempts.
    pub published: u64,
    /// Publishes acknowledged with an offset.
    pub acknowledged: u64,
    /// Publishes that failed (an error answer; not acknowledged).
    pub failed: u64,
    /// Publications delivered, over every subscriber.
    pub delivered: u64,
    /// Acknowledged offsets a subscriber that stayed subscribed never got.
    pub lost: u64,
    /// Offsets a subscriber got more than once.
    pub duplicated: u64,
    /// Deliveries whose offset was not the previous one plus one.
    pub out_of_order: u64,
    /// Unsubscribe pushes subscribers got (a hand-off must cause none).
    pub unsubscribed: u64,
    /// Publications recovered by resubscribing after an unsubscribe push.
    pub recovered: u64,
    /// Resubscriptions that did not recover the stream (`recovered: false`).
    pub unrecovered: u64,
    /// Rooms whose epoch changed during the run.
    pub epoch_changes: u64,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "published {}, acknowledged {}, failed {}, delivered {}, lost {}, duplicated {}, \
             out of order {}, told to resubscribe {}, recovered {}, not recovered {}, \
             epoch changes {}",
            self.published,
            self.acknowledged,
            self.failed,
            self.delivered,
            self.lost,
            self.duplicated,
            self.out_of_order,
            self.unsubscribed,
            self.recovered,
            self.unrecovered,
            self.epoch_changes
        )
    }
}

impl Load {
    /// [`start_on`](Self::start_on) every running member of an in-process cluster, publishing
    /// through each member's server API.
    pub async fn start(
        cluster: &TestCluster,
        rooms: Vec<String>,
        interval: Duration,
    ) -> anyhow::Result<Load> {
        let targets = cluster
            .running()
            .map(|member| {
                let node = member.node.node.clone();
                let publish: PublishFn = Arc::new(move |room: String, data: Bytes| {
                    let node = node.clone();
                    Box::pin(async move {
                        match node
                            .publish_from_api(&room, data, BTreeMap::new(), false)
                            .await
                        {
                            Ok(Some(position)) => Some((position.offset, position.epoch)),
                            Ok(None) | Err(_) => None,
                        }
                    })
                });
                Target {
                    node: member.id,
                    ws_url: member.node.ws_url(),
                    publish,
                }
            })
            .collect();
        Load::start_on(targets, rooms, interval).await
    }

    /// Subscribes one client per target to every room, then starts [`PUBLISHERS_PER_NODE`]
    /// publishers per target, each publishing every `interval` to the next room in turn (and
    /// waiting for each acknowledgement).
    pub async fn start_on(
        targets: Vec<Target>,
        rooms: Vec<String>,
        interval: Duration,
    ) -> anyhow::Result<Load> {
        let mut subscribers = Vec::new();
        for target in &targets {
            let encoding = if target.node % 2 == 0 {
                Encoding::Protobuf
            } else {
                Encoding::Json
            };
            let (client, _) = starling_client::Client::builder(target.ws_url.clone())
                .encoding(encoding)
                .token(hs256_token(SECRET, "checker", None))
                .connect()
                .await?;
            let mut start = HashMap::new();
            let mut epochs = HashMap::new();
            for room in &rooms {
                let subscribed = client.subscribe(sub(room)).await?;
                start.insert(room.clone(), subscribed.offset);
                epochs.insert(room.clone(), subscribed.epoch);
            }
            let client = Arc::new(client);
            let seen = Arc::new(Mutex::new(Seen::default()));
            let reader = tokio::spawn(read_pushes(
                Arc::clone(&client),
                Arc::clone(&seen),
                start.clone(),
                epochs,
            ));
            subscribers.push(Subscriber {
                node: target.node,
                start,
                seen,
                client,
                reader,
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut publishers = Vec::new();
        for (target, k) in targets
            .iter()
            .flat_map(|t| (0..PUBLISHERS_PER_NODE).map(move |k| (t, k)))
        {
            let publish = Arc::clone(&target.publish);
            let rooms = rooms.clone();
            let stop = Arc::clone(&stop);
            let acked = Arc::clone(&acked);
            let id = target.node * 100 + k;
            publishers.push(tokio::spawn(async move {
                let mut log = Published::default();
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n = k * 7;
                while !stop.load(Ordering::Relaxed) {
                    ticker.tick().await;
                    let room = &rooms[usize::try_from(n).unwrap_or(0) % rooms.len()];
                    let data = Bytes::from(serde_json::json!({"p": id, "n": n}).to_string());
                    n += 1;
                    log.attempted += 1;
                    match publish(room.clone(), data).await {
                        Some((offset, epoch)) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                            log.acked.entry(room.clone()).or_default().push(offset);
                            let epochs = log.epochs.entry(room.clone()).or_default();
                            if epochs.last() != Some(&epoch) {
                                epochs.push(epoch);
                            }
                        }
                        None => log.failed += 1,
                    }
                }
                log
            }));
        }
        Ok(Load {
            rooms,
            stop,
            acked,
            publishers,
            subscribers,
        })
    }

    /// Stops the publishers, waits (bounded) until every subscriber still connected has every
    /// acknowledged offset, and judges. Subscribers on `gone` nodes (drained: told to
    /// reconnect elsewhere) are held to order and uniqueness only.
    pub async fn finish(self, gone: &[u64]) -> anyhow::Result<Verdict> {
        self.stop.store(true, Ordering::Relaxed);
        let mut published = Vec::new();
        for publisher in self.publishers {
            published.push(publisher.await?);
        }
        let mut top: HashMap<&str, u64> = HashMap::new();
        for log in &published {
            for (room, offsets) in &log.acked {
                let max = offsets.iter().copied().max().unwrap_or(0);
                let entry = top.entry(room.as_str()).or_default();
                *entry = (*entry).max(max);
            }
        }
        let caught_up = eventually(Duration::from_secs(20), || async {
            self.subscribers
                .iter()
                .filter(|s| !gone.contains(&s.node))
                .all(|s| {
                    let seen = s.seen.lock().unwrap_or_else(|p| p.into_inner());
                    top.iter().all(|(room, max)| {
                        seen.offsets
                            .get(*room)
                            .is_some_and(|o| o.last().copied().unwrap_or(0) >= *max)
                    })
                })
        })
        .await;

        let mut verdict = Verdict::default();
        for log in &published {
            verdict.published += log.attempted;
            verdict.failed += log.failed;
            verdict.acknowledged += log.acked.values().map(|o| o.len() as u64).sum::<u64>();
        }
        // One epoch per room across every publisher.
        for room in &self.rooms {
            let mut epochs: Vec<&String> = published
                .iter()
                .filter_map(|log| log.epochs.get(room))
                .flatten()
                .collect();
            epochs.sort();
            epochs.dedup();
            verdict.epoch_changes += epochs.len().saturating_sub(1) as u64;
        }
        for subscriber in &self.subscribers {
            let seen = subscriber.seen.lock().unwrap_or_else(|p| p.into_inner());
            verdict.unsubscribed += seen.unsubscribes.len() as u64;
            verdict.recovered += seen.recovered;
            verdict.unrecovered += seen.unrecovered;
            for room in &self.rooms {
                let offsets = seen.offsets.get(room).map(Vec::as_slice).unwrap_or(&[]);
                verdict.delivered += offsets.len() as u64;
                let mut previous = subscriber.start.get(room).copied().unwrap_or(0);
                let mut unique = std::collections::HashSet::new();
                for &offset in offsets {
                    if !unique.insert(offset) {
                        verdict.duplicated += 1;
                    }
                    if offset != previous + 1 {
                        verdict.out_of_order += 1;
                    }
                    previous = offset;
                }
                if gone.contains(&subscriber.node) {
                    continue;
                }
                let start = subscriber.start.get(room).copied().unwrap_or(0);
                let mut lost = 0;
                for log in &published {
                    for offset in log.acked.get(room).map(Vec::as_slice).unwrap_or(&[]) {
                        if *offset > start && !unique.contains(offset) {
                            lost += 1;
                        }
                    }
                }
                if lost > 0 {
                    eprintln!(
                        "checker: the subscriber on node {} lost {lost} in {room} (last seen {:?})",
                        subscriber.node,
                        offsets.last()
                    );
                }
                verdict.lost += lost;
            }
            if !gone.contains(&subscriber.node) && seen.closed.is_some() {
                anyhow::bail!(
                    "the subscriber on node {} was disconnected ({:?})",
                    subscriber.node,
                    seen.closed
                );
            }
        }
        if !caught_up {
            eprintln!("checker: subscribers did not catch up within 20 s");
        }
        for subscriber in self.subscribers {
            subscriber.reader.abort();
            drop(subscriber.client);
        }
        Ok(verdict)
    }

    /// Publishes acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until `more` publishes beyond those acknowledged now are acknowledged:
    /// the load is really running between two operator commands.
    pub async fn progress(&self, more: u64) -> bool {
        let target = self.acknowledged() + more;
        eventually(Duration::from_secs(10), || async {
            self.acknowledged() >= target
        })
        .await
    }

    /// What the subscriber on `node` was closed with, if it was.
    pub fn closed_on(&self, node: u64) -> Option<u16> {
        self.subscribers
            .iter()
            .find(|s| s.node == node)
            .and_then(|s| s.seen.lock().unwrap_or_else(|p| p.into_inner()).closed)
    }
}

/// Records every push; resubscribes with recovery when told to (2500), as the SDKs do.
async fn read_pushes(
    client: Arc<starling_client::Client>,
    seen: Arc<Mutex<Seen>>,
    start: HashMap<String, u64>,
    epochs: HashMap<String, String>,
) {
    while let Some(push) = client.next_push().await {
        let resubscribe = {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(publication) = push.r#pub {
                seen.offsets
                    .entry(push.channel.clone())
                    .or_default()
                    .push(publication.offset);
                false
            } else if let Some(unsubscribe) = push.unsubscribe {
                seen.unsubscribes
                    .push((push.channel.clone(), unsubscribe.code));
                unsubscribe.code == 2500
            } else {
                false
            }
        };
        if resubscribe {
            let room = push.channel;
            let last = {
                let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                seen.offsets.get(&room).and_then(|o| o.last().copied())
            }
            .or_else(|| start.get(&room).copied())
            .unwrap_or(0);
            let epoch = epochs.get(&room).cloned().unwrap_or_default();
            let recovered = resubscribe_with_recovery(&client, &room, last, &epoch).await;
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            match recovered {
                Some(result) if result.recovered && result.epoch == epoch => {
                    seen.recovered += result.publications.len() as u64;
                    seen.offsets
                        .entry(room)
                        .or_default()
                        .extend(result.publications.iter().map(|p| p.offset));
                }
                other => {
                    eprintln!("checker: {room} not recovered from {last}: {other:?}");
                    seen.unrecovered += 1;
                }
            }
        }
    }
    let reason = client.closed().await;
    seen.lock().unwrap_or_else(|p| p.into_inner()).closed = Some(reason.code);
}

/// Subscribes to `room` again, recovering from `offset` in `epoch`; retried (bounded) while
/// the cluster still looks for the room's new owner.
async fn resubscribe_with_recovery(
    client: &starling_client::Client,
    room: &str,
    offset: u64,
    epoch: &str,
) -> Option<starling_protocol::SubscribeResult> {
    let request = starling_protocol::SubscribeRequest {
        recover: true,
        offset,
        epoch: epoch.to_owned(),
        ..sub(room)
    };
    match until_ok(Duration::from_secs(30), || {
        client.subscribe(request.clone())
    })
    .await
    {
        Ok(result) => Some(result),
        Err(error) => {
            eprintln!("checker: resubscribe to {room} gave up: {error}");
            None
        }
    }
}
