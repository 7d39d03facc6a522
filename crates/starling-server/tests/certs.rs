//! `starling certs init` and `starling certs node`, run as a real process: the files they write
//! are what `ClusterTls::load` (and so `starling serve --cluster-tls`) accepts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use starling_cluster::{ClusterEndpoint, ClusterTls, Frame, NodeId};

const BIN: &str = env!("CARGO_BIN_EXE_starling");

fn starling(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("STARLING_CONFIG")
        .output()
        .expect("run starling")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("starling-certs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_node(ca: &Path, id: u64, out: &Path) {
    ok(&starling(&[
        "certs",
        "node",
        "--ca",
        path(ca),
        "--node-id",
        &id.to_string(),
        "--out",
        path(out),
    ]));
}

#[test]
fn init_then_node_writes_files_that_cluster_tls_loads() {
    let root = temp_dir("load");
    let ca = root.join("ca");
    let node = root.join("node-7");
    let out = starling(&["certs", "init", "--out", path(&ca)]);
    ok(&out);
    assert!(ca.join("ca.pem").is_file());
    assert!(ca.join("ca.key").is_file());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ca.key"));

    make_node(&ca, 7, &node);
    for file in ["ca.pem", "node.pem", "node.key"] {
        assert!(node.join(file).is_file(), "{file} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for key in [ca.join("ca.key"), node.join("node.key")] {
            let mode = std::fs::metadata(&key).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        }
    }
    let tls = ClusterTls::load(&node).expect("ClusterTls::load accepts the files");
    tls.check_node(NodeId(7)).expect("certificate names node 7");
}

#[test]
fn init_refuses_to_overwrite_a_ca() {
    let ca = temp_dir("twice");
    ok(&starling(&["certs", "init", "--out", path(&ca)]));
    let out = starling(&["certs", "init", "--out", path(&ca)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists"), "stderr: {err}");
}

#[test]
fn node_without_a_ca_names_the_missing_file() {
    let root = temp_dir("no-ca");
    let out = starling(&[
        "certs",
        "node",
        "--ca",
        path(&root.join("nowhere")),
        "--node-id",
        "1",
        "--out",
        path(&root.join("out")),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ca.pem"), "stderr: {err}");
}

#[tokio::test]
async fn nodes_with_cli_made_certificates_link_over_mutual_tls() {
    let root = temp_dir("link");
    let ca = root.join("ca");
    ok(&starling(&["certs", "init", "--out", path(&ca)]));
    make_node(&ca, 1, &root.join("n1"));
    make_node(&ca, 2, &root.join("n2"));

    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let tls1 = ClusterTls::load(&root.join("n1")).expect("n1");
    let tls2 = ClusterTls::load(&root.join("n2")).expect("n2");
    let (a, _a_in) = ClusterEndpoint::bind(any, tls1, NodeId(1)).expect("bind a");
    let (b, mut b_in) = ClusterEndpoint::bind(any, tls2, NodeId(2)).expect("bind b");

    let wait = Duration::from_secs(10);
    let mut ab = tokio::time::timeout(wait, a.connect(b.local_addr(), NodeId(2)))
        .await
        .expect("connect in time")
        .expect("connect");
    let ba = tokio::time::timeout(wait, b_in.next())
        .await
        .expect("accept in time")
        .expect("accepted link");
    assert_eq!(ba.peer(), NodeId(1));
    ab.send(Frame::Ping { seq: 1 }).await.expect("ping");
    let pong = tokio::time::timeout(wait, ab.recv())
        .await
        .expect("pong in time");
    assert_eq!(pong, Some(Frame::Pong { seq: 1 }));
}
