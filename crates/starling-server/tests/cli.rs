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

/// Starts `starling serve` on an OS-assigned port and returns the child and its address, read
/// from the start-up log line.
fn spawn_serve(data_dir: &Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("STARLING_CONFIG")
        .env("STARLING_LOG", "info")
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
    let (mut child, addr) = spawn_serve(&data_dir);
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

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let close = tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("client told before exit");
    assert_eq!(close.code, 3001, "{close}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn json_log_format_writes_one_json_object_per_line() {
    let data_dir = temp_dir("json-logs");
    let mut child = Command::new(BIN)
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env_remove("STARLING_CONFIG")
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
