//! Interop tests: the real Centrifugo SDKs against a real Starling node.
//!
//! Each test starts a node with [`CONFIG`], mints HS256 connection tokens for
//! "alice" and "bob", and runs one SDK script as a child process, which mints
//! its own subscription tokens with the same secret:
//! `python/interop.py` (centrifuge-python from PyPI) or `js/interop.mjs`
//! (centrifuge-js from npm), in JSON or Protobuf mode. The script prints one
//! line per check and exits non-zero on the first failure; the test fails with
//! its output. The SDKs are installed by `scripts/setup-interop.sh` (run by
//! `scripts/test.sh`); a missing install fails the test, it is never skipped.
//!
//! `python_cent_api` drives the server HTTP API instead, with cent (the
//! official Python client for Centrifugo's server API) from PyPI:
//! `python/cent_api.py`, against a node whose `http_api.key` is [`API_KEY`].
//!
//! The fallback transports: `js/transports.mjs` runs centrifuge-js with only
//! HTTP-streaming or only SSE in its transport list (bidirectional emulation
//! through `/emulation`), and `js/uni_sse.mjs` checks that a plain
//! `EventSource` (npm `eventsource`) on `/connection/uni_sse` resumes every
//! room after a dropped connection through `Last-Event-ID`.
//!
//! Across a cluster: `python/cluster_chat.py` runs two centrifuge-python clients, alice on
//! node 1 and bob on node 3 of a 3-node [`TestCluster`], chatting in a room node 2 owns, so
//! both reach the room through their node's relay. The script checks what the SDKs see (each
//! gets its own and the other's messages, at the same consecutive offsets); the test then
//! checks on the owner's metrics that every publication crossed to each relay node once.
//!
//! Failover: `python/failover.py` runs one centrifuge-python client through a [`TcpProxy`]
//! (the load balancer) to node 3 of a 3-node cluster, subscribed to a room node 1 owns and one
//! node 3 owns. The test kills node 3 under it (the proxy cuts the connection, then points at
//! node 1); the SDK reconnects and resubscribes on its own, recovers what it missed in the room
//! that survived, and recovers in the room that moved too (its shard's replica continued it). Test and script keep in
//! step through the `SYNC <step>` lines the script prints ([`Script::sync`]).
//!
//! Layout:
//! - [`Sdk`] and [`Encoding`]: which script runs and how it speaks.
//! - [`run_script`]: node, tokens, child process, timeout, verdict;
//!   [`run_cent_api`] the same for the server API script, [`run_fallback`]
//!   for `transports.mjs`, [`run_uni_sse`] for `uni_sse.mjs`, [`run_cluster_chat`] for
//!   `cluster_chat.py` against a cluster and [`run_failover`] (with [`drive_failover`]) for
//!   `failover.py`.
//! - [`Script`]: a running script whose lines a test can wait for.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use starling_tests::cluster::{TEST_FAILOVER, TestCluster};
use starling_tests::proxy::TcpProxy;
use starling_tests::{TestNode, eventually, hs256_token, until_ok};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The server config the scripts' expectations are written against, as an
/// application would write it: no channel lets a client subscribe on its own,
/// so every subscribe needs a subscription token (the scripts mint them with
/// [`SECRET`] in the SDKs' `getToken` hooks).
const CONFIG: &str = r#"
[client.token]
hmac_secret_key = "secret"

[client.subscribe_to_user_personal_channel]
enabled = true

[channel.without_namespace]
presence = true
join_leave = true
force_push_join_leave = true
history_size = 100
history_ttl = "300s"
force_recovery = true
allow_publish_for_subscriber = true
allow_presence_for_subscriber = true
allow_history_for_subscriber = true

[[channel.namespaces]]
name = "smallhistory"
history_size = 2
history_ttl = "300s"
force_recovery = true
allow_publish_for_subscriber = true
allow_history_for_subscriber = true
"#;

/// The server API key `python_cent_api` configures and hands to its script.
const API_KEY: &str = "interop-api-key";

/// `hmac_secret_key` of [`CONFIG`]: it signs the connection tokens minted here
/// and, passed to the scripts as `STARLING_HMAC_SECRET`, the subscription
/// tokens they mint.
const SECRET: &str = "secret";

/// A script that runs longer than this is killed and the test fails. The
/// scripts give each wait 10 s and themselves 55 s.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Publications each client of `cluster_chat.py` sends at once in its check 5; with the two
/// lines of check 4 the script publishes `2 * (1 + CHAT_BURST)` times.
const CHAT_BURST: u64 = 5;

/// Which SDK drives the checks.
#[derive(Clone, Copy)]
enum Sdk {
    Python,
    Js,
}

/// The client protocol encoding the SDK is told to use.
#[derive(Clone, Copy)]
enum Encoding {
    Json,
    Protobuf,
}

impl fmt::Display for Sdk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sdk::Python => "python",
            Sdk::Js => "js",
        })
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Json => "json",
            Encoding::Protobuf => "protobuf",
        })
    }
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

impl Sdk {
    /// The interpreter, the script and the directory to run it in, after
    /// checking that the SDK is installed.
    fn command(self) -> Result<(PathBuf, &'static str, PathBuf)> {
        const SETUP: &str = "run scripts/test.sh (or scripts/setup-interop.sh) to install the SDKs";
        match self {
            Sdk::Python => {
                let dir = interop_dir().join("python");
                let python = dir.join(".venv/bin/python");
                if !python.exists() {
                    bail!("{} is missing: {SETUP}", python.display());
                }
                Ok((python, "interop.py", dir))
            }
            Sdk::Js => {
                let dir = interop_dir().join("js");
                let sdk = dir.join("node_modules/centrifuge/package.json");
                if !sdk.exists() {
                    bail!("{} is missing: {SETUP}", sdk.display());
                }
                Ok((PathBuf::from("node"), "interop.mjs", dir))
            }
        }
    }
}

/// Forwards each line of a child's stream to the test output as it comes,
/// keeps it for the failure message and hands it to `live` (for tests that
/// follow a script's progress; nobody need be listening).
fn forward(
    stream: impl AsyncRead + Unpin + Send + 'static,
    tag: String,
    lines: Arc<Mutex<Vec<String>>>,
    live: mpsc::UnboundedSender<String>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            println!("[{tag}] {line}");
            let _ = live.send(line.clone());
            // A poisoned lock only means another forwarder panicked; the
            // lines are still worth keeping.
            let mut kept = lines
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            kept.push(line);
        }
    })
}

/// Runs one SDK script against a fresh node and fails with its output unless
/// it exits 0 within [`SCRIPT_TIMEOUT`].
async fn run_script(sdk: Sdk, encoding: Encoding) -> Result<()> {
    let (program, script, dir) = sdk.command()?;
    let node = TestNode::start(CONFIG)
        .await
        .context("starting the Starling node")?;
    let tag = format!("{sdk} {encoding}");
    let env = vec![
        ("STARLING_WS_URL", node.ws_url()),
        ("STARLING_ENCODING", encoding.to_string()),
        ("STARLING_TOKEN_BOB", hs256_token(SECRET, "bob", None)),
        ("STARLING_HMAC_SECRET", SECRET.to_owned()),
        (
            "STARLING_CHANNEL_PREFIX",
            format!("interop-{sdk}-{encoding}-{}", std::process::id()),
        ),
    ];
    let outcome = run_child(&tag, &program, script, &dir, env).await;
    node.stop().await;
    let (status, output) = outcome?;
    if !status.success() {
        bail!("{tag} interop script failed ({status}); its output:\n{output}");
    }
    Ok(())
}

/// Runs `python/cent_api.py` against a fresh node with the server API enabled.
async fn run_cent_api() -> Result<()> {
    let (program, _, dir) = Sdk::Python.command()?;
    let config = format!("{CONFIG}\n[http_api]\nkey = \"{API_KEY}\"\n");
    let node = TestNode::start(&config)
        .await
        .context("starting the Starling node")?;
    let env = vec![
        ("STARLING_WS_URL", node.ws_url()),
        ("STARLING_API_URL", format!("http://{}/api", node.http_addr)),
        ("STARLING_API_KEY", API_KEY.to_owned()),
        (
            "STARLING_CHANNEL_PREFIX",
            format!("interop-cent-{}", std::process::id()),
        ),
    ];
    let outcome = run_child("python cent", &program, "cent_api.py", &dir, env).await;
    node.stop().await;
    let (status, output) = outcome?;
    if !status.success() {
        bail!("cent server API script failed ({status}); its output:\n{output}");
    }
    Ok(())
}

/// Runs `js/transports.mjs` over `transport` (`http_stream` or `sse`) against
/// a fresh node.
async fn run_fallback(transport: &str, encoding: Encoding) -> Result<()> {
    let (program, _, dir) = Sdk::Js.command()?;
    let node = TestNode::start(CONFIG)
        .await
        .context("starting the Starling node")?;
    let tag = format!("js {transport} {encoding}");
    let env = vec![
        ("STARLING_HTTP_URL", format!("http://{}", node.http_addr)),
        ("STARLING_TRANSPORT", transport.to_owned()),
        ("STARLING_ENCODING", encoding.to_string()),
        ("STARLING_TOKEN_BOB", hs256_token(SECRET, "bob", None)),
        ("STARLING_HMAC_SECRET", SECRET.to_owned()),
        (
            "STARLING_CHANNEL_PREFIX",
            format!("interop-{transport}-{encoding}-{}", std::process::id()),
        ),
    ];
    let outcome = run_child(&tag, &program, "transports.mjs", &dir, env).await;
    node.stop().await;
    let (status, output) = outcome?;
    if !status.success() {
        bail!("{tag} script failed ({status}); its output:\n{output}");
    }
    Ok(())
}

/// Runs `js/uni_sse.mjs` against a fresh node whose server API is enabled (the
/// script publishes through it, as a backend would).
async fn run_uni_sse() -> Result<()> {
    let (program, _, dir) = Sdk::Js.command()?;
    let config = format!("{CONFIG}\n[http_api]\nkey = \"{API_KEY}\"\n");
    let node = TestNode::start(&config)
        .await
        .context("starting the Starling node")?;
    let env = vec![
        ("STARLING_HTTP_URL", format!("http://{}", node.http_addr)),
        ("STARLING_API_URL", format!("http://{}/api", node.http_addr)),
        ("STARLING_API_KEY", API_KEY.to_owned()),
        ("STARLING_HMAC_SECRET", SECRET.to_owned()),
        (
            "STARLING_CHANNEL_PREFIX",
            format!("interop-uni-sse-{}", std::process::id()),
        ),
    ];
    let outcome = run_child("js uni_sse", &program, "uni_sse.mjs", &dir, env).await;
    node.stop().await;
    let (status, output) = outcome?;
    if !status.success() {
        bail!("uni_sse script failed ({status}); its output:\n{output}");
    }
    Ok(())
}

/// Runs `python/cluster_chat.py` against a fresh 3-node cluster: alice on node 1 with encoding
/// `alice`, bob on node 3 with encoding `bob`, in a room owned by node 2.
async fn run_cluster_chat(alice: Encoding, bob: Encoding) -> Result<()> {
    let (program, _, dir) = Sdk::Python.command()?;
    let cluster = TestCluster::start(3, CONFIG)
        .await
        .context("starting a 3-node cluster")?;
    let prefix = format!("interop-cluster-{alice}-{bob}-{}-", std::process::id());
    let room = cluster.room_owned_by(2, &prefix);
    for via in [1, 3] {
        let owner = cluster.owner_of(via, &room);
        ensure!(
            owner == 2,
            "node {via} routes {room} to node {owner}, not node 2"
        );
    }
    let metrics = |id: u64| cluster.member(id).node.node.metrics().snapshot();
    let copies_before = metrics(2).cluster_copies;
    let tag = format!("python cluster {alice}/{bob}");
    let env = vec![
        ("STARLING_WS_URL_ALICE", cluster.member(1).node.ws_url()),
        ("STARLING_WS_URL_BOB", cluster.member(3).node.ws_url()),
        ("STARLING_ENCODING_ALICE", alice.to_string()),
        ("STARLING_ENCODING_BOB", bob.to_string()),
        ("STARLING_TOKEN_BOB", hs256_token(SECRET, "bob", None)),
        ("STARLING_HMAC_SECRET", SECRET.to_owned()),
        ("STARLING_ROOM", room.clone()),
        ("STARLING_BURST", CHAT_BURST.to_string()),
    ];
    let outcome = run_child(&tag, &program, "cluster_chat.py", &dir, env).await;
    let copies = metrics(2).cluster_copies - copies_before;
    let forwarded = [1, 3].map(|id| metrics(id).forwarded_calls);
    cluster.stop().await;
    let (status, output) = outcome?;
    if !status.success() {
        bail!("{tag} script failed ({status}); its output:\n{output}");
    }
    // Nodes 1 and 3 had a subscriber for every publication: the owner sent each one to both
    // of them once, and to nobody else.
    let publications = 2 * (1 + CHAT_BURST);
    ensure!(
        copies == 2 * publications,
        "the owner sent {copies} publication copies to other nodes, want {}",
        2 * publications
    );
    ensure!(
        forwarded.iter().all(|&calls| calls > 0),
        "nodes 1 and 3 forwarded {forwarded:?} calls to the owner; both should have"
    );
    Ok(())
}

/// Runs `python/failover.py` against a fresh 3-node cluster behind a [`TcpProxy`] that first
/// forwards to node 3, and kills node 3 under the client; see [`drive_failover`] for the steps.
async fn run_failover() -> Result<()> {
    let (program, _, dir) = Sdk::Python.command()?;
    let mut cluster = TestCluster::start(3, CONFIG)
        .await
        .context("starting a 3-node cluster")?;
    let prefix = format!("interop-failover-{}-", std::process::id());
    let rooms = Rooms {
        stays: cluster.room_owned_by(1, &format!("{prefix}stays-")),
        moves: cluster.room_owned_by(3, &format!("{prefix}moves-")),
    };
    let proxy = TcpProxy::start(cluster.member(3).node.http_addr)
        .await
        .context("starting the proxy")?;
    let tag = "python failover";
    let env = vec![
        (
            "STARLING_WS_URL",
            format!("ws://{}/connection/websocket", proxy.local_addr()),
        ),
        ("STARLING_HMAC_SECRET", SECRET.to_owned()),
        ("STARLING_ROOM_STAYS", rooms.stays.clone()),
        ("STARLING_ROOM_MOVES", rooms.moves.clone()),
        ("STARLING_OUTAGE", OUTAGE.to_string()),
    ];
    let mut script = match Script::spawn(tag, &program, "failover.py", &dir, env) {
        Ok(script) => script,
        Err(error) => {
            cluster.stop().await;
            return Err(error);
        }
    };
    let outcome = match drive_failover(&mut cluster, &proxy, &mut script, &rooms).await {
        Ok(()) => script.finish().await,
        Err(error) => Err(script.abandon(error).await),
    };
    let accepted = proxy.accepted();
    cluster.stop().await;
    let (status, output) = outcome?;
    if !status.success() {
        bail!("{tag} script failed ({status}); its output:\n{output}");
    }
    // The first connection, and at least the one that got through after the switch (attempts
    // while the proxy was cut were accepted and closed).
    ensure!(
        accepted >= 2,
        "the proxy accepted {accepted} connections; the client never reconnected through it"
    );
    Ok(())
}

/// Publications the test makes in the surviving room while the client is away.
const OUTAGE: u64 = 3;

/// The rooms of `failover.py`: `stays` is owned by node 1, `moves` by node 3, the one killed.
struct Rooms {
    stays: String,
    moves: String,
}

/// The test's side of `failover.py`, step by step with the script's `SYNC` lines.
async fn drive_failover(
    cluster: &mut TestCluster,
    proxy: &TcpProxy,
    script: &mut Script,
    rooms: &Rooms,
) -> Result<()> {
    let Rooms { stays, moves } = rooms;
    for via in 1..=3 {
        ensure!(
            cluster.owner_of(via, stays) == 1 && cluster.owner_of(via, moves) == 3,
            "node {via} routes {stays} to node {} and {moves} to node {}, want 1 and 3",
            cluster.owner_of(via, stays),
            cluster.owner_of(via, moves)
        );
    }

    // The client is on node 3, which relays stays from node 1: the owners list it.
    let first_id = script.sync("subscribed").await?;
    for room in [stays, moves] {
        let owner = cluster.owner_of(1, room);
        ensure_present(cluster, owner, room, &first_id).await?;
    }
    for room in [stays, moves] {
        publish(cluster, 1, room, "before", 1).await?;
    }
    script.sync("received").await?;

    // Node 3 dies: its connections drop without a word, and the load balancer has nowhere to
    // send the client until it points at node 1.
    proxy.cut();
    cluster.kill(3).await;
    for n in 1..=OUTAGE {
        publish(cluster, 2, stays, "outage", n).await?;
    }
    proxy.switch_to(cluster.member(1).node.http_addr);

    // The client is back on node 1 and resubscribed to both rooms; moves has a new owner.
    let back_id = script.sync("resubscribed").await?;
    cluster
        .settled()
        .await
        .context("the cluster after the death of node 3")?;
    let new_owner = cluster.owner_of(1, moves);
    ensure!(new_owner != 3, "{moves} is still owned by the dead node 3");
    // Node 3's relay entries are gone: only the new connection is present.
    ensure_present(cluster, 1, stays, &back_id).await?;
    ensure_present(cluster, new_owner, moves, &back_id).await?;
    for room in [stays, moves] {
        publish(cluster, 2, room, "after", 1).await?;
    }
    Ok(())
}

/// Publishes `{"room": "stays"|"moves", "phase": phase, "n": n}` in `room` through the server
/// API of node `via`, retrying (bounded) as a backend does while a publish is refused: right
/// after node 3 dies, rooms whose shard it replicated refuse until the leader names another
/// replica. A refused publish was taken back, so a retry never duplicates it.
async fn publish(cluster: &TestCluster, via: u64, room: &str, phase: &str, n: u64) -> Result<()> {
    let label = room
        .rsplit('-')
        .nth(1)
        .context("the room names end in -stays-N or -moves-N")?;
    let data = serde_json::json!({"room": label, "phase": phase, "n": n});
    let body = serde_json::to_vec(&data)?;
    let node = &cluster.member(via).node.node;
    until_ok(TEST_FAILOVER * 5, || {
        node.publish_from_api(room, body.clone().into(), Default::default(), false)
    })
    .await
    .with_context(|| format!("publishing {data} in {room} through node {via}"))?;
    Ok(())
}

/// Waits (bounded) until the presence of `room`, asked of node `via`, is exactly alice's
/// connection `client`.
async fn ensure_present(cluster: &TestCluster, via: u64, room: &str, client: &str) -> Result<()> {
    let node = &cluster.member(via).node.node;
    let want = vec![("alice".to_owned(), client.to_owned())];
    let last = Mutex::new(Vec::new());
    let settled = eventually(PRESENCE_WAIT, || async {
        let found = match node.presence(room).await {
            Ok(infos) => infos
                .into_iter()
                .map(|info| (info.user, info.client))
                .collect(),
            Err(error) => vec![("error".to_owned(), error.to_string())],
        };
        let ok = found == want;
        *last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = found;
        ok
    })
    .await;
    let last = last
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    ensure!(
        settled,
        "presence of {room} via node {via} is {last:?}, want only alice's client {client}"
    );
    Ok(())
}

/// How long presence may take to show the client's current connection only.
const PRESENCE_WAIT: Duration = Duration::from_secs(5);

/// Runs `script` with `env` (plus alice's token) and collects its output.
async fn run_child(
    tag: &str,
    program: &Path,
    script: &str,
    dir: &Path,
    env: Vec<(&str, String)>,
) -> Result<(ExitStatus, String)> {
    Script::spawn(tag, program, script, dir, env)?
        .finish()
        .await
}

/// A running script: its process, its output so far, and its lines as they come. It is killed
/// [`SCRIPT_TIMEOUT`] after it started, or when dropped.
struct Script {
    tag: String,
    child: Child,
    forwarders: Vec<JoinHandle<()>>,
    lines: Arc<Mutex<Vec<String>>>,
    live: mpsc::UnboundedReceiver<String>,
    deadline: tokio::time::Instant,
}

impl Script {
    /// Starts `script` with `env` (plus alice's token).
    fn spawn(
        tag: &str,
        program: &Path,
        script: &str,
        dir: &Path,
        env: Vec<(&str, String)>,
    ) -> Result<Script> {
        let deadline = tokio::time::Instant::now() + SCRIPT_TIMEOUT;
        let mut child = Command::new(program)
            .arg(script)
            .current_dir(dir)
            .envs(env)
            .env("STARLING_TOKEN_ALICE", hs256_token(SECRET, "alice", None))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} {script} in {}",
                    program.display(),
                    dir.display()
                )
            })?;

        let lines = Arc::new(Mutex::new(Vec::new()));
        let (live_tx, live) = mpsc::unbounded_channel();
        let mut forwarders = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            forwarders.push(forward(
                stdout,
                tag.to_owned(),
                Arc::clone(&lines),
                live_tx.clone(),
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            forwarders.push(forward(stderr, tag.to_owned(), Arc::clone(&lines), live_tx));
        }
        Ok(Script {
            tag: tag.to_owned(),
            child,
            forwarders,
            lines,
            live,
            deadline,
        })
    }

    /// Everything the script printed so far.
    fn output(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .join("\n")
    }

    /// Waits for the script to print `SYNC <step>` (optionally followed by a space and an
    /// argument, which is returned). Fails when the script ends its output first, prints
    /// `FAIL`, or reaches its deadline.
    async fn sync(&mut self, step: &str) -> Result<String> {
        let want = format!("SYNC {step}");
        loop {
            let line = match tokio::time::timeout_at(self.deadline, self.live.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => bail!("{}: the script ended before `{want}`", self.tag),
                Err(_) => bail!(
                    "{}: no `{want}` within {SCRIPT_TIMEOUT:?} of the start",
                    self.tag
                ),
            };
            if line.starts_with("FAIL") {
                bail!("{}: the script failed before `{want}`: {line}", self.tag);
            }
            if line == want {
                return Ok(String::new());
            }
            if let Some(arg) = line.strip_prefix(&format!("{want} ")) {
                return Ok(arg.to_owned());
            }
        }
    }

    /// Waits for the script to exit (killing it at its deadline) and returns its exit status
    /// and output.
    async fn finish(mut self) -> Result<(ExitStatus, String)> {
        let waited = tokio::time::timeout_at(self.deadline, self.child.wait()).await;
        if waited.is_err() {
            // The wait was cut short; kill() also reaps the child.
            self.child
                .kill()
                .await
                .context("killing the timed-out script")?;
        }
        for forwarder in self.forwarders.drain(..) {
            // The streams end once the child is gone; a forwarder that panicked
            // has nothing more to give.
            let _ = forwarder.await;
        }
        let output = self.output();
        match waited {
            Ok(status) => Ok((status.context("waiting for the script")?, output)),
            Err(_) => bail!(
                "{} interop script did not finish within {SCRIPT_TIMEOUT:?}; its output:\n{output}",
                self.tag
            ),
        }
    }

    /// Kills the script (the test gave up on it) and returns `error` with its output.
    async fn abandon(mut self, error: anyhow::Error) -> anyhow::Error {
        let _ = self.child.kill().await;
        for forwarder in self.forwarders.drain(..) {
            let _ = forwarder.await;
        }
        anyhow::anyhow!("{error:#}; the script's output:\n{}", self.output())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_json() -> Result<()> {
    run_script(Sdk::Python, Encoding::Json).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_protobuf() -> Result<()> {
    run_script(Sdk::Python, Encoding::Protobuf).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_json() -> Result<()> {
    run_script(Sdk::Js, Encoding::Json).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_protobuf() -> Result<()> {
    run_script(Sdk::Js, Encoding::Protobuf).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_cent_api() -> Result<()> {
    run_cent_api().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_http_stream_json() -> Result<()> {
    run_fallback("http_stream", Encoding::Json).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_http_stream_protobuf() -> Result<()> {
    run_fallback("http_stream", Encoding::Protobuf).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_sse_json() -> Result<()> {
    run_fallback("sse", Encoding::Json).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_uni_sse_resumes_after_drop() -> Result<()> {
    run_uni_sse().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_cluster_chat_json() -> Result<()> {
    run_cluster_chat(Encoding::Json, Encoding::Json).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_cluster_chat_json_to_protobuf() -> Result<()> {
    run_cluster_chat(Encoding::Json, Encoding::Protobuf).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_survives_its_node_dying() -> Result<()> {
    run_failover().await
}
