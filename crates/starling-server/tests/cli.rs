//! The `starling` binary, run as a real process: CLI, configuration errors, the first-run flow
//! (defaults, development secret, `gentoken`) and SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use starling_client::Client;
use starling_config::Config;
use starling_protocol::{Encoding, SubscribeRequest};

const BIN: &str = env!("CARGO_BIN_EXE_starling");

fn starling(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("STARLING_CONFIG")
        .output()
        .expect("run starling")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("starling-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn version_prints_the_package_version() {
    let out = starling(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("starling {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn config_default_prints_the_embedded_defaults() {
    let out = starling(&["config", "default"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let parsed = Config::from_toml_str(&text).expect("default config parses");
    assert_eq!(parsed, Config::default());
}

#[test]
fn unknown_config_key_stops_startup_and_names_the_key() {
    let dir = temp_dir("unknown-key");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[client]\nping_intervall = \"1s\"\n").expect("write");
    let out = starling(&["serve", "--config", file.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("client.ping_intervall"), "stderr: {err}");
}

#[test]
fn invalid_value_and_unknown_env_var_stop_startup() {
    let out = Command::new(BIN)
        .args(["serve"])
        .env("STARLING_CLIENT_PING_INTERVAL", "soon")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("client.ping_interval") && err.contains("soon"),
        "stderr: {err}"
    );

    let out = Command::new(BIN)
        .args(["serve"])
        .env("STARLING_CLIENT_PING_INTERVALL", "1s")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("STARLING_CLIENT_PING_INTERVALL"),
        "stderr: {err}"
    );
}

/// Starts `starling serve` on OS-assigned ports (client plane and cluster plane, so tests run
/// in parallel) and returns the child and its client-plane address, read from the start-up log
/// line. `extra` adds flags; `envs` adds environment variables.
fn spawn_serve(data_dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--cluster-addr",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("STARLING_CONFIG")
        .env("STARLING_LOG", "info")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn starling serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("ws://").nth(1) {
                let addr = rest.split('/').next().unwrap_or_default().to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("start-up log line with the WebSocket address");
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_with_defaults_serves_tokens_from_gentoken_and_stops_on_sigterm() {
    let data_dir = temp_dir("first-run");
    let (mut child, addr) = spawn_serve(&data_dir, &[], &[]);
    let data_dir_arg = data_dir.to_str().expect("utf-8 path");

    let out = starling(&["gentoken", "--user", "alice", "--data-dir", data_dir_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    let url = format!("ws://{addr}/connection/websocket");
    let (client, connected) = Client::builder(&url)
        .encoding(Encoding::Json)
        .token(token)
        .connect()
        .await
        .expect("connect with a gentoken token");
    assert!(connected.expires);

    // The default namespace needs subscription tokens; gensubtoken makes one.
    let out = starling(&[
        "gensubtoken",
        "--user",
        "alice",
        "--channel",
        "chat",
        "--data-dir",
        data_dir_arg,
    ]);
    assert!(out.status.success());
    let sub_token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    client
        .subscribe(SubscribeRequest {
            channel: "chat".into(),
            token: sub_token,
            ..Default::default()
        })
        .await
        .expect("subscribe with a gensubtoken token");

    sigterm(&child);
    let close = tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("client told before exit");
    assert_eq!(close.code, 3001, "{close}");
    let exit = wait_exit(&mut child);
    assert!(exit.success(), "exit status {exit}");
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits (bounded) for `child` to exit.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            return exit;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("no exit within 15 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the child on drop, so a failed assertion does not leave a node running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const API_KEY: &str = "cli-test-key";

#[test]
fn cluster_status_reports_a_one_node_cluster_and_refuses_a_bad_key() {
    let data_dir = temp_dir("cluster-status");
    let (child, addr) = spawn_serve(
        &data_dir,
        &["--node-id", "7"],
        &[("STARLING_HTTP_API_KEY", API_KEY)],
    );
    let mut child = Running(child);
    let status = |extra: &[&str], key: &str| {
        let mut args = vec![
            "cluster",
            "status",
            "--http-addr",
            addr.as_str(),
            "--api-key",
            key,
        ];
        args.extend_from_slice(extra);
        starling(&args)
    };

    // The one-node cluster is initialized before the start-up line; its first shard map is
    // committed right after, so wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let json = loop {
        let out = status(&["--json"], API_KEY);
        assert!(out.status.success(), "stderr: {}", stderr_of(&out));
        let json: serde_json::Value =
            serde_json::from_str(&stdout_of(&out)).expect("--json prints JSON");
        if json["shard_map_version"].as_u64().unwrap_or(0) > 0 && !json["leader"].is_null() {
            break json;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no leader and shard map within 20 s: {json}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(json["leader"], 7, "{json}");
    let members = json["members"].as_array().expect("members is an array");
    assert_eq!(members.len(), 1, "{json}");
    assert_eq!(members[0]["node_id"], 7, "{json}");
    assert_eq!(members[0]["role"], "voter", "{json}");
    assert_eq!(members[0]["alive"], true, "{json}");
    assert_eq!(members[0]["shards"], 256, "{json}");
    assert_eq!(members[0]["http_addr"], addr.as_str(), "{json}");
    assert!(json["shard_map_version"].as_u64().is_some(), "{json}");

    let out = status(&[], API_KEY);
    assert!(out.status.success(), "stderr: {}", stderr_of(&out));
    let table = stdout_of(&out);
    assert!(table.contains("leader 7"), "{table}");
    assert!(table.contains("256 shards"), "{table}");
    assert!(table.contains("7 *   voter"), "{table}");

    let out = status(&["--json"], "wrong-key");
    assert_eq!(out.status.code(), Some(1), "stdout: {}", stdout_of(&out));
    assert!(out.stdout.is_empty(), "stdout: {}", stdout_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("HTTP 401") && err.contains("API key"), "{err}");

    let out = starling(&[
        "cluster",
        "remove",
        "--node-id",
        "9",
        "--http-addr",
        addr.as_str(),
        "--api-key",
        API_KEY,
    ]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", stdout_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("HTTP 404") && err.contains("node 9"), "{err}");

    // The shard commands print what they did: node 7 already owns shard 3, so nothing moves;
    // a split doubles the shards; a move to a stranger is refused with the reason.
    let shards = |args: &[&str]| {
        let mut all = vec!["shards"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--http-addr", addr.as_str(), "--api-key", API_KEY]);
        starling(&all)
    };
    let out = shards(&["move", "--shard", "3", "--to", "7"]);
    assert!(out.status.success(), "stderr: {}", stderr_of(&out));
    let text = stdout_of(&out);
    assert!(text.starts_with("moved shard 3 to node 7 in "), "{text}");
    assert!(
        text.contains("0 shard move(s)") && text.contains("256 shards"),
        "{text}"
    );
    let out = shards(&["split"]);
    assert!(out.status.success(), "stderr: {}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains("512 shards"),
        "{}",
        stdout_of(&out)
    );
    let out = shards(&["move", "--shard", "3", "--to", "9"]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", stdout_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("HTTP 400") && err.contains("node 9 is not a member"),
        "{err}"
    );

    sigterm(&child.0);
    let exit = wait_exit(&mut child.0);
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn cluster_status_without_a_node_fails_with_exit_code_1() {
    // A port that was free a moment ago: nothing listens there.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("addr").to_string();
    drop(free);
    let out = starling(&[
        "cluster",
        "status",
        "--http-addr",
        addr.as_str(),
        "--api-key",
        "k",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("cannot connect"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn serve_help_lists_the_cluster_flags() {
    let out = starling(&["serve", "--help"]);
    assert!(out.status.success());
    let help = stdout_of(&out);
    for flag in ["--node-id", "--cluster-addr", "--join", "--cluster-tls"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn json_log_format_writes_one_json_object_per_line() {
    let data_dir = temp_dir("json-logs");
    let mut child = Command::new(BIN)
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env_remove("STARLING_CONFIG")
        .env("STARLING_CLUSTER_ADDR", "127.0.0.1:0")
        .env("STARLING_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn starling serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .expect("a log line")
        .expect("readable log line");
    let _ = child.kill();
    let _ = child.wait();
    let value: serde_json::Value = serde_json::from_str(&first).expect("log line is JSON");
    assert!(value.get("level").is_some(), "{first}");
    assert!(value.get("fields").is_some(), "{first}");
}
