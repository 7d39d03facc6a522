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
//! Layout:
//! - [`Sdk`] and [`Encoding`]: which script runs and how it speaks.
//! - [`run_script`]: node, tokens, child process, timeout, verdict;
//!   [`run_cent_api`] the same for the server API script, [`run_fallback`]
//!   for `transports.mjs`, [`run_uni_sse`] for `uni_sse.mjs` and [`run_cluster_chat`] for
//!   `cluster_chat.py` against a cluster.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use starling_tests::cluster::TestCluster;
use starling_tests::{TestNode, hs256_token};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
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

/// Forwards each line of a child's stream to the test output as it comes and
/// keeps it for the failure message.
fn forward(
    stream: impl AsyncRead + Unpin + Send + 'static,
    tag: String,
    lines: Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            println!("[{tag}] {line}");
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

/// Runs `script` with `env` (plus alice's token) and collects its output.
async fn run_child(
    tag: &str,
    program: &Path,
    script: &str,
    dir: &Path,
    env: Vec<(&str, String)>,
) -> Result<(ExitStatus, String)> {
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
    let mut forwarders = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        forwarders.push(forward(stdout, tag.to_owned(), Arc::clone(&lines)));
    }
    if let Some(stderr) = child.stderr.take() {
        forwarders.push(forward(stderr, tag.to_owned(), Arc::clone(&lines)));
    }

    let waited = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait()).await;
    if waited.is_err() {
        // The wait was cut short; kill() also reaps the child.
        child.kill().await.context("killing the timed-out script")?;
    }
    for forwarder in forwarders {
        // The streams end once the child is gone; a forwarder that panicked
        // has nothing more to give.
        let _ = forwarder.await;
    }
    let output = lines
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .join("\n");
    match waited {
        Ok(status) => Ok((status.context("waiting for the script")?, output)),
        Err(_) => bail!(
            "{tag} interop script did not finish within {SCRIPT_TIMEOUT:?}; its output:\n{output}"
        ),
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
