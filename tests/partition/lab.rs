//! The lab: three `starling serve` processes, each in its own network namespace, wired so the
//! test can cut one node's cluster plane while still reaching its client plane.
//!
//! Two networks, both built from veth pairs only:
//!
//! - **Cluster network** (QUIC between nodes): a full mesh of veth pairs between the three
//!   namespaces (`to<j>` in namespace `i` is the end facing node `j`). Node `i`'s cluster
//!   address `10.78.0.<i>` sits on its loopback with a /32 route to each peer through the
//!   matching veth. Cutting node `i` takes its mesh ends down; nothing else can carry its
//!   cluster traffic, since namespaces do not forward.
//! - **Client network** (the test's HTTP requests): one veth pair per namespace into the
//!   test's own namespace, point-to-point: `10.77.0.<i>` in the node's namespace,
//!   `10.77.1.<i>` on the test's end. It never goes down, so the test can watch the isolated
//!   node refuse publishes through its real server API.
//!
//! Why no bridge: bridged traffic passes the host's `FORWARD` chain when `br_netfilter` is
//! loaded, which Docker hosts have with a `DROP` policy; point-to-point veths never forward.
//! Why not drop only the cluster UDP port with `tc`/`nft`: neither is guaranteed (`nft` is not
//! in iproute2, and kernels without the `prio` qdisc exist — this machine's is one), while
//! taking a link down needs only `ip`.
//!
//! Names carry the test's pid (`starling-p<pid>-n<i>`, `sp<pid>c<i>`), so runs do not collide,
//! and a run killed before its cleanup is swept by the next one ([`sweep_stale`]). [`Lab`]'s
//! `Drop` kills the processes and deletes the namespaces, on success, error and panic alike.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

/// The nodes of the lab, by id.
pub(crate) const NODES: [u64; 3] = [1, 2, 3];
/// The client-plane port every node listens on (`0.0.0.0:8000` in its namespace).
const HTTP_PORT: u16 = 8000;
/// The cluster-plane (QUIC) port every node binds on its cluster address.
const CLUSTER_PORT: u16 = 7000;
/// The prefix of every namespace this test creates; the pid and node id follow.
const NETNS_PREFIX: &str = "starling-p";
/// Log lines shown per node when the test fails.
const LOG_TAIL: usize = 150;

/// Fails, rather than skips, when the test cannot build namespaces: a partition test that
/// silently passes without running proves nothing.
pub(crate) fn preflight() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("the partition test needs Linux (/proc/self/status)")?;
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .context("no Uid line in /proc/self/status")?;
    anyhow::ensure!(
        euid == "0",
        "the partition test must run as root (effective uid {euid}): it creates network \
         namespaces and veth links with `ip`. Run it as root (CI does)."
    );
    let version = Command::new("ip").arg("-V").output();
    anyhow::ensure!(
        version.as_ref().is_ok_and(|out| out.status.success()),
        "the partition test needs the `ip` command (Debian: apt-get install iproute2): {version:?}"
    );
    Ok(())
}

/// The `starling` binary the nodes run.
///
/// `CARGO_BIN_EXE_starling` only exists for tests of the package that owns the binary, so for
/// this package the binary is found next to the test executable: `target/<profile>/deps/
/// partition-<hash>` → `target/<profile>/starling`. `cargo test --workspace` builds it there,
/// because starling-server has integration tests and cargo builds a package's binaries for
/// them. When it is missing (`cargo test -p starling-tests` alone on a clean tree) it is built
/// here with the same profile; building it when it exists would not be a no-op, since cargo
/// unifies features differently for `-p starling-server` and would rebuild it.
pub(crate) fn starling_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_starling") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("cannot find the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("unexpected test executable location {}", exe.display()))?;
    let binary = profile_dir.join("starling");
    if binary.exists() {
        return Ok(binary);
    }
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev",
        Some(name) => name,
    };
    let target_dir = profile_dir.parent().context("no target directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    say(&format!(
        "partition: {} is missing; building it (cargo build -p starling-server --profile \
         {profile})",
        binary.display()
    ));
    let status = Command::new(cargo)
        .args([
            "build",
            "-p",
            "starling-server",
            "--bin",
            "starling",
            "--profile",
        ])
        .arg(profile)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .context("cannot run cargo to build the starling binary")?;
    anyhow::ensure!(status.success(), "building the starling binary failed");
    anyhow::ensure!(
        binary.exists(),
        "cargo built the starling binary but not at {}",
        binary.display()
    );
    Ok(binary)
}

/// Writes to stderr directly. The test harness captures `println!`/`eprintln!` and shows
/// them only for failing tests; what the test does and how long it took belongs in CI logs
/// either way.
pub(crate) fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Runs `ip args…`; an error carries the command and its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("cannot run ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `ip args…` and returns its stdout.
fn ip_output(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("cannot run ip {}", args.join(" ")))?;
    anyhow::ensure!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes the namespaces of earlier runs that died without cleaning up (killed with
/// SIGKILL, or a crashed runner), with the nodes still running in them: their addresses would
/// otherwise shadow this run's. Only namespaces named by this test whose pid is gone are
/// touched. Deleting a namespace also deletes its veth pairs, the test-side ends included.
pub(crate) fn sweep_stale() -> anyhow::Result<()> {
    for line in ip_output(&["netns", "list"])?.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|rest| rest.split_once("-n"))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        say(&format!(
            "partition: removing stale namespace {name} of dead test run {pid}"
        ));
        for node_pid in ip_output(&["netns", "pids", name])?.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", node_pid]).status();
        }
        ip(&["netns", "del", name])?;
    }
    Ok(())
}

/// The three namespaces, their links and the `starling serve` processes in them.
pub(crate) struct Lab {
    /// The test's pid, part of every name.
    pid: u32,
    /// Configuration, certificates, data directories and node logs.
    pub(crate) dir: PathBuf,
    binary: PathBuf,
    /// The namespaces created so far (all of them are deleted on drop).
    namespaces: Vec<String>,
    /// The running node processes, by node id.
    children: Vec<(u64, Child)>,
    /// Set when the scenario passed: the directory is removed and no logs are printed.
    passed: bool,
}

impl Lab {
    /// Builds the namespaces and both networks, and writes the certificates (one CA, a node
    /// certificate per node) and the shared configuration file.
    pub(crate) fn new(binary: PathBuf, config_toml: &str) -> anyhow::Result<Lab> {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("starling-partition-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut lab = Lab {
            pid,
            dir,
            binary,
            namespaces: Vec::new(),
            children: Vec::new(),
            passed: false,
        };
        std::fs::write(lab.config_path(), config_toml)?;
        lab.certificates()?;
        for id in NODES {
            let ns = lab.netns(id);
            ip(&["netns", "add", &ns])?;
            lab.namespaces.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let cluster_ip = format!("{}/32", cluster_ip(id));
            ip(&["-n", &ns, "addr", "add", &cluster_ip, "dev", "lo"])?;
            lab.client_link(id)?;
        }
        for (a, b) in [(1, 2), (1, 3), (2, 3)] {
            let (end_a, end_b) = (format!("to{b}"), format!("to{a}"));
            let (ns_a, ns_b) = (lab.netns(a), lab.netns(b));
            ip(&[
                "link", "add", "name", &end_a, "netns", &ns_a, "type", "veth", "peer", "name",
                &end_b, "netns", &ns_b,
            ])?;
        }
        for id in NODES {
            lab.mesh_links_up(id)?;
        }
        for id in NODES {
            lab.mesh_routes(id)?;
        }
        Ok(lab)
    }

    /// Node `id`'s namespace.
    fn netns(&self, id: u64) -> String {
        format!("{NETNS_PREFIX}{}-n{id}", self.pid)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("starling.toml")
    }

    fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.log"))
    }

    /// Node `id`'s client plane, as the test reaches it.
    pub(crate) fn http_addr(&self, id: u64) -> SocketAddr {
        SocketAddr::from((client_ip(id), HTTP_PORT))
    }

    /// Node `id`'s cluster address, inside the cluster network.
    fn cluster_addr(&self, id: u64) -> SocketAddr {
        SocketAddr::from((cluster_ip(id), CLUSTER_PORT))
    }

    /// A CA with `starling certs init` and a certificate per node with `starling certs node`,
    /// as an operator would make them.
    fn certificates(&self) -> anyhow::Result<()> {
        let ca = self.dir.join("ca");
        self.run_cli(&[
            "certs".as_ref(),
            "init".as_ref(),
            "--out".as_ref(),
            ca.as_os_str(),
        ])?;
        for id in NODES {
            let out = self.node_dir(id).join("tls");
            let id = id.to_string();
            self.run_cli(&[
                "certs".as_ref(),
                "node".as_ref(),
                "--ca".as_ref(),
                ca.as_os_str(),
                "--node-id".as_ref(),
                id.as_ref(),
                "--out".as_ref(),
                out.as_os_str(),
            ])?;
        }
        Ok(())
    }

    /// Runs the starling binary with `args` outside the namespaces (the `certs` commands).
    fn run_cli(&self, args: &[&OsStr]) -> anyhow::Result<()> {
        let out = Command::new(&self.binary)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", self.binary.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "starling {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// The veth pair between the test's namespace and node `id`'s, point-to-point.
    fn client_link(&self, id: u64) -> anyhow::Result<()> {
        let ns = self.netns(id);
        let host_end = format!("sp{}c{id}", self.pid);
        let (node_ip, host_ip) = (client_ip(id).to_string(), host_client_ip(id).to_string());
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", "client0", "netns", &ns,
        ])?;
        let host_addr = format!("{host_ip}/32");
        let node_addr = format!("{node_ip}/32");
        ip(&[
            "addr", "add", &host_addr, "peer", &node_addr, "dev", &host_end,
        ])?;
        ip(&["link", "set", &host_end, "up"])?;
        ip(&[
            "-n", &ns, "addr", "add", &node_addr, "peer", &host_addr, "dev", "client0",
        ])?;
        ip(&["-n", &ns, "link", "set", "client0", "up"])?;
        Ok(())
    }

    /// Brings node `id`'s mesh ends up.
    fn mesh_links_up(&self, id: u64) -> anyhow::Result<()> {
        for peer in NODES.into_iter().filter(|&p| p != id) {
            ip(&[
                "-n",
                &self.netns(id),
                "link",
                "set",
                &format!("to{peer}"),
                "up",
            ])?;
        }
        Ok(())
    }

    /// (Re)installs the /32 routes between node `id` and each peer, in both directions:
    /// taking a link down flushes the routes through it. Both ends must be up.
    fn mesh_routes(&self, id: u64) -> anyhow::Result<()> {
        for peer in NODES.into_iter().filter(|&p| p != id) {
            for (from, to) in [(id, peer), (peer, id)] {
                ip(&[
                    "-n",
                    &self.netns(from),
                    "route",
                    "replace",
                    &format!("{}/32", cluster_ip(to)),
                    "dev",
                    &format!("to{to}"),
                    "src",
                    &cluster_ip(from).to_string(),
                ])?;
            }
        }
        Ok(())
    }

    /// Cuts node `id` off the cluster network: its mesh ends go down (its peers' ends lose
    /// carrier), so no datagram passes between it and any other node. Its client plane stays
    /// reachable from the test.
    pub(crate) fn cut(&self, id: u64) -> anyhow::Result<()> {
        for peer in NODES.into_iter().filter(|&p| p != id) {
            ip(&[
                "-n",
                &self.netns(id),
                "link",
                "set",
                &format!("to{peer}"),
                "down",
            ])?;
        }
        Ok(())
    }

    /// Reconnects node `id` to the cluster network.
    pub(crate) fn heal(&self, id: u64) -> anyhow::Result<()> {
        self.mesh_links_up(id)?;
        self.mesh_routes(id)
    }

    /// Starts `starling serve` for node `id` in its namespace, joining through node 1 unless it
    /// is node 1. Its log goes to `node-<id>.log` in the lab directory.
    pub(crate) fn start(&mut self, id: u64) -> anyhow::Result<()> {
        let log = File::create(self.log_path(id))?;
        let node_dir = self.node_dir(id);
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.netns(id)])
            .arg(&self.binary)
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .args(["--node-id", &id.to_string()])
            .args(["--cluster-addr", &self.cluster_addr(id).to_string()])
            .arg("--cluster-tls")
            .arg(node_dir.join("tls"))
            .arg("--data-dir")
            .arg(node_dir.join("data"));
        if id != 1 {
            command.args(["--join", &self.cluster_addr(1).to_string()]);
        }
        // `ip netns exec` execs the command in place, so the child's pid is the node's and
        // killing the child kills the node.
        let child = command
            .env(
                "STARLING_LOG",
                std::env::var("STARLING_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start node {id}"))?;
        self.children.push((id, child));
        Ok(())
    }

    /// Fails when a node process has exited: waiting for a dead node to answer would only
    /// time out later with a vaguer message.
    pub(crate) fn check_running(&mut self) -> anyhow::Result<()> {
        for (id, child) in &mut self.children {
            if let Some(status) = child.try_wait()? {
                bail!("node {id} exited: {status}");
            }
        }
        Ok(())
    }

    /// Marks the scenario passed: `Drop` removes the lab directory instead of keeping it and
    /// printing the node logs.
    pub(crate) fn passed(&mut self) {
        self.passed = true;
    }

    /// The last lines of every node's log, for a failure report.
    pub(crate) fn log_tails(&self) -> String {
        let mut out = String::new();
        for id in NODES {
            let path = self.log_path(id);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(LOG_TAIL);
            let _ = writeln!(
                out,
                "----- node {id}: last {} of {} lines of {} -----",
                lines.len() - skip,
                lines.len(),
                path.display()
            );
            for line in &lines[skip..] {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.passed {
            say(&self.log_tails());
            say(&format!(
                "partition: node logs, configuration and data kept in {}",
                self.dir.display()
            ));
        }
        // The namespaces go last: a namespace with a live process in it outlives `netns del`.
        for ns in &self.namespaces {
            if let Err(error) = ip(&["netns", "del", ns]) {
                say(&format!("partition: cleanup: {error:#}"));
            }
        }
        if self.passed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Node `id`'s client-plane address, in its namespace.
fn client_ip(id: u64) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, octet(id))
}

/// The test's end of node `id`'s client link.
fn host_client_ip(id: u64) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 1, octet(id))
}

/// Node `id`'s cluster address.
fn cluster_ip(id: u64) -> Ipv4Addr {
    Ipv4Addr::new(10, 78, 0, octet(id))
}

fn octet(id: u64) -> u8 {
    u8::try_from(id).expect("node ids of the lab are 1 to 3")
}
