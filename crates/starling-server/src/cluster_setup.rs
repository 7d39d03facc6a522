//! From the validated `[cluster]` configuration to `starling_node::ClusterSettings`: resolve
//! the addresses, load (or, for development, generate) the cluster TLS material.
//!
//! Validation has already checked the form of every address; here names are resolved, files
//! are read, and every failure names the key (or flag) it came from.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use starling_cluster::{ClusterTls, DevTls, NodeId};
use starling_config::Config;
use starling_node::ClusterSettings;
use tracing::{info, warn};

/// Directory inside `node.data_dir` that holds generated development TLS material.
const DEV_TLS_DIR: &str = "cluster-tls";

/// Builds the cluster runtime's settings from `config`; `http_addr` is the client-plane
/// address actually bound (so port 0 is advertised as the real port).
pub(crate) async fn settings(
    config: &Config,
    http_addr: SocketAddr,
) -> anyhow::Result<ClusterSettings> {
    let cluster = &config.cluster;
    let node_id = NodeId(cluster.node_id);
    let listen = resolve("cluster.addr (--cluster-addr)", &cluster.addr, None).await?;
    let advertise = if cluster.advertise_addr.is_empty() {
        if listen.ip().is_unspecified() && !cluster.join.is_empty() {
            warn!(
                addr = %listen,
                "cluster.addr binds every interface and cluster.advertise_addr is empty: \
                 other members will be told to dial an unspecified address; set \
                 cluster.advertise_addr"
            );
        }
        None
    } else {
        Some(
            resolve(
                "cluster.advertise_addr",
                &cluster.advertise_addr,
                Some(listen),
            )
            .await?,
        )
    };
    let mut join = Vec::with_capacity(cluster.join.len());
    for (i, seed) in cluster.join.iter().enumerate() {
        let key = format!("cluster.join[{i}] (--join)");
        join.push(resolve(&key, seed, Some(listen)).await?);
    }
    let tls = load_tls(&cluster.tls_dir, &config.node.data_dir, node_id)?;
    Ok(ClusterSettings {
        node_id,
        listen,
        advertise,
        http_addr: http_addr.to_string(),
        join,
        tls,
        data_dir: config.node.data_dir.clone(),
        max_voters: cluster.max_voters,
        shard_count: cluster.shard_count,
        failover_timeout: cluster.failover_timeout.get(),
        drain_reconnect_spread: cluster.drain_reconnect_spread.get(),
        replication_factor: cluster.replication_factor,
    })
}

/// Resolves `host:port`. With `like`, an address of the same family is preferred: a QUIC
/// socket bound to IPv4 cannot dial the IPv6 address `localhost` may resolve to first.
async fn resolve(key: &str, value: &str, like: Option<SocketAddr>) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(value)
        .await
        .with_context(|| format!("{key}: cannot resolve {value:?}"))?
        .collect();
    let same_family = like.and_then(|like| {
        addrs
            .iter()
            .copied()
            .find(|addr| addr.is_ipv4() == like.is_ipv4())
    });
    same_family
        .or_else(|| addrs.first().copied())
        .with_context(|| format!("{key}: {value:?} resolves to no address"))
}

/// Loads `tls_dir`, or with an empty `tls_dir` generates (or reuses) development material in
/// `<data_dir>/cluster-tls`, saying so in the log.
fn load_tls(tls_dir: &Path, data_dir: &Path, node_id: NodeId) -> anyhow::Result<ClusterTls> {
    if !tls_dir.as_os_str().is_empty() {
        let tls = ClusterTls::load(tls_dir).with_context(|| {
            format!(
                "cluster.tls_dir (--cluster-tls) {}: cannot load the cluster TLS material",
                tls_dir.display()
            )
        })?;
        tls.check_node(node_id)
            .context("cluster.tls_dir (--cluster-tls): the certificate is not this node's")?;
        info!(dir = %tls_dir.display(), "cluster TLS loaded");
        return Ok(tls);
    }
    let dir = data_dir.join(DEV_TLS_DIR);
    let (tls, made) = ClusterTls::generate_dev(&dir, node_id).with_context(|| {
        format!(
            "cannot prepare development cluster TLS material in {}",
            dir.display()
        )
    })?;
    let what = match made {
        DevTls::Existing => "using development cluster TLS material generated earlier",
        DevTls::CreatedNodeCert => {
            "generated a development node certificate from the CA found there"
        }
        DevTls::CreatedCaAndNodeCert => "generated a development cluster CA and node certificate",
    };
    warn!(
        dir = %dir.display(),
        "no cluster.tls_dir configured: {what}; for a real cluster make certificates with \
         `starling certs init` and `starling certs node` and pass --cluster-tls DIR"
    );
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolve_prefers_the_bound_family() {
        let v4: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
        let addr = resolve("k", "localhost:7001", Some(v4))
            .await
            .expect("localhost resolves");
        assert!(addr.is_ipv4(), "{addr}");
        assert_eq!(addr.port(), 7001);
    }

    #[tokio::test]
    async fn unresolvable_name_error_names_the_key() {
        let error = resolve(
            "cluster.join[0] (--join)",
            "no-such-host.invalid:7000",
            None,
        )
        .await
        .expect_err("an .invalid name never resolves");
        let text = format!("{error:#}");
        assert!(
            text.contains("cluster.join[0]") && text.contains("no-such-host.invalid"),
            "{text}"
        );
    }

    #[test]
    fn dev_tls_is_generated_once_and_reused() {
        let data_dir =
            std::env::temp_dir().join(format!("starling-dev-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        load_tls(Path::new(""), &data_dir, NodeId(4)).expect("generate");
        for file in ["ca.pem", "ca.key", "node.pem", "node.key"] {
            assert!(data_dir.join(DEV_TLS_DIR).join(file).exists(), "{file}");
        }
        load_tls(Path::new(""), &data_dir, NodeId(4)).expect("reuse");
        // The generated certificate names node 4; loading it as node 5 must fail.
        let error = load_tls(&data_dir.join(DEV_TLS_DIR), &data_dir, NodeId(5))
            .expect_err("another node's certificate");
        assert!(
            format!("{error:#}").contains("cluster.tls_dir"),
            "{error:#}"
        );
        let _ = std::fs::remove_dir_all(&data_dir);
    }
}
