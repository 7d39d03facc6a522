//! A worker: owns a slice of the plan's connections in one process.
//!
//! It opens its connections (the connect phase), reports [`Ready`], waits
//! for [`Go`], publishes and counts deliveries during the window, then
//! reports a [`WorkerResult`]. Every connection is one task that owns its
//! socket; all of them record into one [`Shared`] set of atomic counters.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until};

use crate::conn::{Closed, Event, Session, Target};
use crate::hist::{AtomicHistogram, Histogram};
use crate::payload::{now_ns, stamped};
use crate::plan::{Plan, Role, Scenario, channel};
use crate::procfs::Proc;

/// Distinct error messages kept per worker; the first ones explain a failed run.
const MAX_ERRORS: usize = 8;

/// What a worker needs to know; the same in every worker but `slice`.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Servers (one per URL: the nodes of a cluster, or just one), with
    /// encoding and token key; the plan says which connection uses which.
    pub(crate) targets: Vec<Target>,
    /// The scenario with its sizes.
    pub(crate) plan: Plan,
    /// The connection indexes this worker owns.
    pub(crate) slice: Range<u64>,
    /// Payload size in bytes.
    pub(crate) payload: usize,
    /// Publications per second per publisher; 0 = as fast as acks allow.
    pub(crate) rate: f64,
    /// Unacknowledged publications per publisher when `rate` is 0.
    pub(crate) inflight: usize,
    /// Handshakes in progress at once during the connect phase.
    pub(crate) connect_concurrency: usize,
    /// Spread client sockets over 127.0.0.1 ..= 127.0.0.N; 0 = do not bind.
    pub(crate) source_ips: u32,
}

impl Settings {
    /// The server connection `index` uses.
    fn target(&self, index: u64) -> &Target {
        let node = self.plan.node(index, self.targets.len());
        // Settings are never built without a target (coord checks).
        &self.targets[node.min(self.targets.len().saturating_sub(1))]
    }

    /// The source address for connection attempt `n`.
    fn source(&self, n: u64) -> Option<IpAddr> {
        (self.source_ips > 0).then(|| {
            // 1 + n % source_ips ≤ 255 because main clamps source_ips to 254.
            let host = 1 + (n % u64::from(self.source_ips)) as u8;
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, host))
        })
    }
}

/// The connect phase's outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Ready {
    /// Connections connected (and subscribed where the plan says).
    pub(crate) opened: u64,
    /// Connections that failed to connect or subscribe.
    pub(crate) failed: u64,
    /// Wall time of the connect phase.
    pub(crate) secs: f64,
    /// Latency of dial + handshake + connect + subscribe, ns.
    pub(crate) latency: Histogram,
    /// The first distinct errors.
    pub(crate) errors: Vec<String>,
}

/// The measurement window, in wall-clock ns (shared by every process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Go {
    /// Window start; publishing starts on receipt (the warm-up) and
    /// only what happens from here on counts.
    pub(crate) start_ns: u64,
    /// Window end; publishing stops here.
    pub(crate) end_ns: u64,
    /// How long to keep reading after the window, for late deliveries.
    pub(crate) drain_ms: u64,
}

/// What a worker measured in the window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct WorkerResult {
    /// Publications sent in the window.
    pub(crate) published: u64,
    /// Publish replies with an error.
    pub(crate) publish_errors: u64,
    /// Publish → reply latency, ns (publications sent in the window).
    pub(crate) ack_latency: Histogram,
    /// Publications received in the window.
    pub(crate) delivered: u64,
    /// Send → receive latency, ns, of publications sent in the window.
    pub(crate) latency: Histogram,
    /// Publications missing by offset (a subscriber saw offset n + k, k > 1, after n).
    pub(crate) gaps: u64,
    /// Connections the server closed or that failed after the connect phase.
    pub(crate) disconnects: u64,
    /// Close codes the server sent, with counts.
    pub(crate) close_codes: BTreeMap<u16, u64>,
    /// Churn: connect + subscribe completed in the window.
    pub(crate) churn_ops: u64,
    /// Churn: attempts that failed in the window.
    pub(crate) churn_failed: u64,
    /// Churn: dial + connect + subscribe latency, ns.
    pub(crate) churn_latency: Histogram,
    /// This process's CPU ticks (utime + stime) during the window.
    pub(crate) cpu_ticks: u64,
    /// The first distinct errors.
    pub(crate) errors: Vec<String>,
}

/// Counters every connection task of a worker records into.
#[derive(Debug)]
struct Shared {
    window_start: AtomicU64,
    window_end: AtomicU64,
    published: AtomicU64,
    publish_errors: AtomicU64,
    ack_latency: AtomicHistogram,
    delivered: AtomicU64,
    latency: AtomicHistogram,
    gaps: AtomicU64,
    disconnects: AtomicU64,
    close_codes: Mutex<BTreeMap<u16, u64>>,
    churn_ops: AtomicU64,
    churn_failed: AtomicU64,
    churn_latency: AtomicHistogram,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            // Nothing is in the window until Go sets it.
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
            published: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            ack_latency: AtomicHistogram::new(),
            delivered: AtomicU64::new(0),
            latency: AtomicHistogram::new(),
            gaps: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            close_codes: Mutex::new(BTreeMap::new()),
            churn_ops: AtomicU64::new(0),
            churn_failed: AtomicU64::new(0),
            churn_latency: AtomicHistogram::new(),
            errors: Mutex::new(Vec::new()),
        }
    }

    fn in_window(&self, ns: u64) -> bool {
        ns >= self.window_start.load(Ordering::Relaxed)
            && ns < self.window_end.load(Ordering::Relaxed)
    }

    fn error(&self, error: String) {
        // A poisoned lock only means another task panicked mid-push; the
        // list is still usable.
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < MAX_ERRORS && !errors.contains(&error) {
            errors.push(error);
        }
    }

    fn closed(&self, closed: Closed) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
        match closed {
            Closed::ByServer(code) => {
                let mut codes = self.close_codes.lock().unwrap_or_else(|e| e.into_inner());
                *codes.entry(code).or_default() += 1;
            }
            Closed::Failed(reason) => self.error(reason),
        }
    }
}

/// What connection tasks are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connecting; only answer pings.
    Waiting,
    /// Publish (publishers) until the instant; everyone counts deliveries.
    Publishing { until: Instant },
    /// The run is over; close.
    Stop,
}

/// One worker: a slice of connections and their counters.
#[derive(Debug)]
pub(crate) struct Worker {
    settings: Arc<Settings>,
    shared: Arc<Shared>,
    phase: watch::Sender<Phase>,
}

impl Worker {
    /// A worker for `settings`; nothing is connected yet.
    pub(crate) fn new(settings: Settings) -> Worker {
        Worker {
            settings: Arc::new(settings),
            shared: Arc::new(Shared::new()),
            phase: watch::Sender::new(Phase::Waiting),
        }
    }

    /// Opens every connection of the slice (except for churn, whose loops
    /// start with the window) and leaves each running in its own task.
    pub(crate) async fn connect(&self) -> Ready {
        let settings = &self.settings;
        if settings.plan.scenario == Scenario::Churn {
            return Ready::default();
        }
        let started = Instant::now();
        let semaphore = Arc::new(Semaphore::new(settings.connect_concurrency.max(1)));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        for index in settings.slice.clone() {
            // The semaphore is never closed, so acquiring only waits.
            let Ok(permit) = semaphore.clone().acquire_owned().await else {
                break;
            };
            let settings = settings.clone();
            let shared = self.shared.clone();
            let phase = self.phase.subscribe();
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                let role = settings.plan.role(index);
                let begun = Instant::now();
                let opened = open(&settings, index, index, role).await;
                drop(permit);
                match opened {
                    Ok(session) => {
                        let _ = done_tx.send(Ok(begun.elapsed()));
                        // The connect phase ends when every sender is gone.
                        drop(done_tx);
                        drive(session, index, role, &settings, &shared, phase).await;
                    }
                    Err(error) => {
                        let _ = done_tx.send(Err(format!("{error:#}")));
                    }
                }
            });
        }
        drop(done_tx);
        let latency = AtomicHistogram::new();
        let mut ready = Ready::default();
        while let Some(outcome) = done_rx.recv().await {
            match outcome {
                Ok(elapsed) => {
                    ready.opened += 1;
                    latency.record(duration_ns(elapsed));
                }
                Err(error) => {
                    ready.failed += 1;
                    if ready.errors.len() < MAX_ERRORS && !ready.errors.contains(&error) {
                        ready.errors.push(error);
                    }
                }
            }
        }
        ready.secs = started.elapsed().as_secs_f64();
        ready.latency = latency.snapshot();
        ready
    }

    /// Runs the window described by `go` and returns what was measured.
    pub(crate) async fn run(&self, go: Go) -> WorkerResult {
        self.shared
            .window_start
            .store(go.start_ns, Ordering::Relaxed);
        self.shared.window_end.store(go.end_ns, Ordering::Relaxed);
        let now = now_ns();
        let start = Instant::now() + Duration::from_nanos(go.start_ns.saturating_sub(now));
        let end = Instant::now() + Duration::from_nanos(go.end_ns.saturating_sub(now));
        self.phase.send_replace(Phase::Publishing { until: end });
        if self.settings.plan.scenario == Scenario::Churn {
            for index in self.settings.slice.clone() {
                let settings = self.settings.clone();
                let shared = self.shared.clone();
                tokio::spawn(async move { churn(&settings, &shared, index, end).await });
            }
        }
        sleep_until(start).await;
        let cpu_before = Proc::This.cpu_ticks();
        sleep_until(end).await;
        let cpu_after = Proc::This.cpu_ticks();
        sleep(Duration::from_millis(go.drain_ms)).await;
        self.phase.send_replace(Phase::Stop);
        let shared = &self.shared;
        let cpu_ticks = match (cpu_before, cpu_after) {
            (Ok(before), Ok(after)) => after.saturating_sub(before),
            (Err(e), _) | (_, Err(e)) => {
                shared.error(format!("reading /proc/self/stat: {e}"));
                0
            }
        };
        WorkerResult {
            published: shared.published.load(Ordering::Relaxed),
            publish_errors: shared.publish_errors.load(Ordering::Relaxed),
            ack_latency: shared.ack_latency.snapshot(),
            delivered: shared.delivered.load(Ordering::Relaxed),
            latency: shared.latency.snapshot(),
            gaps: shared.gaps.load(Ordering::Relaxed),
            disconnects: shared.disconnects.load(Ordering::Relaxed),
            close_codes: shared
                .close_codes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            churn_ops: shared.churn_ops.load(Ordering::Relaxed),
            churn_failed: shared.churn_failed.load(Ordering::Relaxed),
            churn_latency: shared.churn_latency.snapshot(),
            cpu_ticks,
            errors: shared
                .errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Connects as user `u<index>` from the source for attempt `attempt`, and
/// subscribes when the role says so.
async fn open(
    settings: &Settings,
    index: u64,
    attempt: u64,
    role: Role,
) -> anyhow::Result<Session> {
    let user = format!("u{index}");
    let mut session =
        Session::open(settings.target(index), settings.source(attempt), &user).await?;
    if role.subscribes {
        session.subscribe(&channel(role.room)).await?;
    }
    Ok(session)
}

/// One churn loop: connect, subscribe, close, again, until `end`.
async fn churn(settings: &Settings, shared: &Shared, index: u64, end: Instant) {
    let loops = settings.plan.connections.max(1);
    let role = settings.plan.role(index);
    let mut attempt = index;
    while Instant::now() < end {
        let begun = Instant::now();
        let outcome = open(settings, index, attempt, role).await;
        let elapsed = begun.elapsed();
        attempt += loops;
        let in_window = shared.in_window(now_ns());
        match outcome {
            Ok(session) => {
                if in_window {
                    shared.churn_ops.fetch_add(1, Ordering::Relaxed);
                    shared.churn_latency.record(duration_ns(elapsed));
                }
                session.close().await;
            }
            Err(error) => {
                if in_window {
                    shared.churn_failed.fetch_add(1, Ordering::Relaxed);
                }
                shared.error(format!("{error:#}"));
                // Back off so a refusing server is not hammered in a tight loop.
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The publishing side of a connection.
#[derive(Debug)]
struct Publisher {
    channel: String,
    /// Delay of this publisher's schedule, so that paced publishers do not
    /// all fire in the same instant.
    stagger: Duration,
    /// When publishing starts and when it stops; `None` before Go.
    active: Option<(Instant, Instant)>,
    sent: u64,
    /// Send instant and whether it was in the window, by command id.
    pending: HashMap<u32, (Instant, bool)>,
}

impl Publisher {
    /// How many publications are due at `now`.
    fn due(&self, settings: &Settings, now: Instant) -> u64 {
        let Some((started, until)) = self.active else {
            return 0;
        };
        if now < started || now >= until {
            return 0;
        }
        if settings.rate > 0.0 {
            // Catch up to the schedule: sleeps overshoot by up to a timer
            // tick, so a tick may owe several publications.
            let owed = (now - started).as_secs_f64() * settings.rate;
            (owed as u64 + 1).saturating_sub(self.sent)
        } else {
            settings.inflight.saturating_sub(self.pending.len()) as u64
        }
    }

    /// When the next publication is due, for paced publishing.
    fn next_wake(&self, settings: &Settings) -> Option<Instant> {
        let (started, until) = self.active?;
        if settings.rate <= 0.0 {
            return None;
        }
        let at = started + Duration::from_secs_f64(self.sent as f64 / settings.rate);
        (at < until).then_some(at)
    }
}

/// The schedule offset of publisher `index` at `rate`: a fraction of one
/// period, spread evenly over publishers by the golden ratio. Without it a
/// thousand publishers at 1/s would publish in one burst per second and the
/// latencies would measure the burst, not the server.
fn stagger(index: u64, rate: f64) -> Duration {
    if rate <= 0.0 {
        return Duration::ZERO;
    }
    let fraction = (index as f64 * 0.618_033_988_749_895).fract();
    Duration::try_from_secs_f64(fraction / rate).unwrap_or(Duration::ZERO)
}

/// Serves one open connection until the run stops or the server closes it:
/// counts deliveries, answers pings, and publishes if the role says so.
async fn drive(
    mut session: Session,
    index: u64,
    role: Role,
    settings: &Settings,
    shared: &Shared,
    phase: watch::Receiver<Phase>,
) {
    let mut publisher = role.publishes.then(|| Publisher {
        channel: channel(role.room),
        stagger: stagger(index, settings.rate),
        active: None,
        sent: 0,
        pending: HashMap::new(),
    });
    let mut last_offset = 0u64;
    // Reused for every frame: most carry one event, and a fresh Vec per
    // delivery would be an allocation per delivery in the generator.
    let mut events = Vec::new();
    // One long-lived future for phase changes: a fresh `changed()` per loop
    // would register with (and lock) the channel's waiter list on every
    // delivery, for every connection.
    let mut phase_change = pin!(next_phase(phase));
    loop {
        let wake = publisher.as_ref().and_then(|p| p.next_wake(settings));
        let publish_now = tokio::select! {
            message = session.ws.next() => {
                let message = match message {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => {
                        shared.closed(Closed::Failed(format!("read: {error}")));
                        return;
                    }
                    None => {
                        shared.closed(Closed::Failed("connection closed".to_owned()));
                        return;
                    }
                };
                events.clear();
                if let Err(closed) = session.events(&message, &mut events) {
                    shared.closed(closed);
                    return;
                }
                let mut pinged = false;
                for event in &events {
                    pinged |= on_event(event, shared, &mut publisher, &mut last_offset);
                }
                if pinged && let Err(error) = session.pong().await {
                    shared.closed(Closed::Failed(format!("{error:#}")));
                    return;
                }
                // Unpaced publishers refill their window as acks arrive.
                settings.rate <= 0.0
            }
            (current, receiver) = &mut phase_change => {
                phase_change.set(next_phase(receiver));
                match current {
                    None | Some(Phase::Stop) => return,
                    Some(Phase::Waiting) => false,
                    Some(Phase::Publishing { until }) => {
                        if let Some(publisher) = publisher.as_mut() {
                            publisher.active = Some((Instant::now() + publisher.stagger, until));
                        }
                        true
                    }
                }
            }
            () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => true,
        };
        if publish_now
            && let Some(publisher) = publisher.as_mut()
            && let Err(error) = publish(&mut session, publisher, settings, shared).await
        {
            shared.closed(Closed::Failed(format!("{error:#}")));
            return;
        }
    }
}

/// The next phase (`None` once the worker is gone), handing the receiver back.
async fn next_phase(mut phase: watch::Receiver<Phase>) -> (Option<Phase>, watch::Receiver<Phase>) {
    let current = match phase.changed().await {
        Ok(()) => Some(*phase.borrow_and_update()),
        Err(_) => None,
    };
    (current, phase)
}

/// Counts one event; true if it is a server ping that needs a pong.
fn on_event(
    event: &Event,
    shared: &Shared,
    publisher: &mut Option<Publisher>,
    last_offset: &mut u64,
) -> bool {
    match event {
        Event::Ack { id, error } => {
            if let Some(publisher) = publisher.as_mut()
                && let Some((sent, in_window)) = publisher.pending.remove(id)
            {
                if let Some(error) = error {
                    shared.publish_errors.fetch_add(1, Ordering::Relaxed);
                    shared.error(format!("publish {error}"));
                } else if in_window {
                    shared.ack_latency.record(duration_ns(sent.elapsed()));
                }
            }
            false
        }
        Event::Publication { sent_ns, offset } => {
            let now = now_ns();
            if shared.in_window(now) {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(sent) = *sent_ns
                && shared.in_window(sent)
            {
                shared.latency.record(now.saturating_sub(sent));
            }
            if let Some(offset) = *offset {
                if *last_offset != 0 && offset > *last_offset + 1 {
                    shared
                        .gaps
                        .fetch_add(offset - *last_offset - 1, Ordering::Relaxed);
                }
                *last_offset = offset;
            }
            false
        }
        Event::Ping => true,
        Event::ServerError(error) => {
            shared.error(error.clone());
            false
        }
        Event::Greeting | Event::Connected => false,
    }
}

/// Sends the publications due now, in one flush.
async fn publish(
    session: &mut Session,
    publisher: &mut Publisher,
    settings: &Settings,
    shared: &Shared,
) -> anyhow::Result<()> {
    let due = publisher.due(settings, Instant::now());
    if due == 0 {
        return Ok(());
    }
    for _ in 0..due {
        let sent_ns = now_ns();
        let id = session.next_id();
        let message =
            session.publish_message(id, &publisher.channel, stamped(sent_ns, settings.payload))?;
        session.ws.feed(message).await?;
        let in_window = shared.in_window(sent_ns);
        if in_window {
            shared.published.fetch_add(1, Ordering::Relaxed);
        }
        publisher.pending.insert(id, (Instant::now(), in_window));
        publisher.sent += 1;
    }
    session.ws.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Protocol;
    use crate::fake;

    fn settings(port: u16, encoding: starling_protocol::Encoding, plan: Plan) -> Settings {
        let url = format!("ws://127.0.0.1:{port}/connection/websocket");
        Settings {
            targets: vec![
                Target::new(&url, Protocol::Centrifugo(encoding), "secret").expect("target"),
            ],
            slice: plan.slice(0, 1),
            plan,
            payload: 100,
            rate: 100.0,
            inflight: 4,
            connect_concurrency: 8,
            source_ips: 2,
        }
    }

    fn window(from_now_ms: u64, length_ms: u64) -> Go {
        let start_ns = now_ns() + from_now_ms * 1_000_000;
        Go {
            start_ns,
            end_ns: start_ns + length_ms * 1_000_000,
            drain_ms: 1000,
        }
    }

    async fn fanout_run(encoding: starling_protocol::Encoding) {
        let (addr, seen) = fake::start().await;
        let worker = Worker::new(settings(addr.port(), encoding, Plan::fanout(3, 1)));
        let ready = worker.connect().await;
        assert_eq!((ready.opened, ready.failed), (4, 0), "{:?}", ready.errors);
        let result = worker.run(window(100, 500)).await;
        assert!(result.errors.is_empty(), "{:?}", result.errors);
        // 100/s for 0.5 s: never ahead of the schedule (a stalled machine may lag it).
        assert!((1..=51).contains(&result.published), "{}", result.published);
        assert_eq!(result.latency.count(), result.published * 3);
        assert!(result.delivered > 0);
        assert_eq!(result.ack_latency.count(), result.published);
        assert_eq!((result.gaps, result.disconnects), (0, 0));
        assert_eq!(
            seen.pongs.load(Ordering::Relaxed),
            3,
            "one pong per subscriber"
        );
        assert!(seen.publishes.load(Ordering::Relaxed) >= result.published);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fanout_counts_every_delivery_over_json() {
        fanout_run(starling_protocol::Encoding::Json).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fanout_counts_every_delivery_over_protobuf() {
        fanout_run(starling_protocol::Encoding::Protobuf).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unpaced_publisher_keeps_its_window_full() {
        let (addr, _seen) = fake::start().await;
        let mut settings = settings(
            addr.port(),
            starling_protocol::Encoding::Json,
            Plan::fanout(1, 1),
        );
        settings.rate = 0.0;
        let worker = Worker::new(settings);
        assert_eq!(worker.connect().await.opened, 2);
        let result = worker.run(window(50, 300)).await;
        assert!(result.published > 4, "acks should refill the window");
        assert_eq!(result.publish_errors, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn churn_loops_connect_and_subscribe_repeatedly() {
        let (addr, _seen) = fake::start().await;
        let worker = Worker::new(settings(
            addr.port(),
            starling_protocol::Encoding::Json,
            Plan::churn(2, 5),
        ));
        assert_eq!(
            worker.connect().await.opened,
            0,
            "churn connects in the window"
        );
        let result = worker.run(window(0, 300)).await;
        assert!(result.churn_ops >= 2, "{result:?}");
        assert_eq!(result.churn_latency.count(), result.churn_ops);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fanout_spreads_subscribers_over_nodes_and_publishes_on_the_first() {
        let nodes = [
            fake::start().await,
            fake::start().await,
            fake::start().await,
        ];
        let mut settings = settings(
            nodes[0].0.port(),
            starling_protocol::Encoding::Json,
            Plan::fanout(6, 1),
        );
        settings.targets = nodes
            .iter()
            .map(|(addr, _)| {
                let url = format!("ws://{addr}/connection/websocket");
                Target::new(
                    &url,
                    Protocol::Centrifugo(starling_protocol::Encoding::Json),
                    "s",
                )
                .expect("target")
            })
            .collect();
        let worker = Worker::new(settings);
        let ready = worker.connect().await;
        assert_eq!((ready.opened, ready.failed), (7, 0), "{:?}", ready.errors);
        let result = worker.run(window(100, 300)).await;
        assert!(result.errors.is_empty(), "{:?}", result.errors);
        // Each fake node pings its own subscribers once: two per node.
        let pongs: Vec<u64> = nodes
            .iter()
            .map(|(_, seen)| seen.pongs.load(Ordering::Relaxed))
            .collect();
        assert_eq!(pongs, [2, 2, 2]);
        let publishes: Vec<u64> = nodes
            .iter()
            .map(|(_, seen)| seen.publishes.load(Ordering::Relaxed))
            .collect();
        assert!(publishes[0] >= result.published && publishes[0] > 0);
        assert_eq!(&publishes[1..], [0, 0]);
        // The fake nodes are not a cluster: only node 0's two subscribers hear.
        assert_eq!(result.latency.count(), result.published * 2);
    }

    #[test]
    fn paced_publishers_are_staggered_within_one_period() {
        let offsets: Vec<Duration> = (0..1000).map(|i| stagger(i, 2.0)).collect();
        assert!(offsets.iter().all(|d| *d < Duration::from_millis(500)));
        let early = offsets
            .iter()
            .filter(|d| **d < Duration::from_millis(50))
            .count();
        assert!(
            (80..=120).contains(&early),
            "{early} of 1000 in the first tenth"
        );
        assert_eq!(stagger(7, 0.0), Duration::ZERO);
    }

    #[tokio::test]
    async fn refused_connections_are_counted_not_fatal() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let worker = Worker::new(settings(
            port,
            starling_protocol::Encoding::Json,
            Plan::idle(3, 1),
        ));
        let ready = worker.connect().await;
        assert_eq!((ready.opened, ready.failed), (0, 3));
        assert_eq!(ready.errors.len(), 1, "identical errors are kept once");
    }
}
