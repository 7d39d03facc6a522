//! `starling certs`: the cluster CA and node certificates.
//!
//! Thin wrappers over `starling_cluster::{init_ca, issue_node_cert}` that say on stdout which
//! files they wrote and what to do with them.

use anyhow::Context as _;
use starling_cluster::NodeId;

use crate::cli::CertsCommand;

/// Runs one `starling certs` subcommand.
pub(crate) fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init(args) => {
            let files =
                starling_cluster::init_ca(&args.out).context("cannot create the cluster CA")?;
            println!("wrote {}", files.cert.display());
            println!("wrote {} (keep it secret)", files.key.display());
            println!(
                "next: starling certs node --ca {} --node-id N --out DIR, once per node",
                args.out.display()
            );
        }
        CertsCommand::Node(args) => {
            let node_id = NodeId(args.node_id);
            let files = starling_cluster::issue_node_cert(&args.ca, node_id, &args.out)
                .with_context(|| format!("cannot create the certificate of node {node_id}"))?;
            println!("wrote {}", files.ca_cert.display());
            println!(
                "wrote {} ({})",
                files.cert.display(),
                starling_cluster::node_dns_name(node_id)
            );
            println!("wrote {} (keep it secret)", files.key.display());
            println!(
                "next: starling serve --node-id {node_id} --cluster-tls {}",
                args.out.display()
            );
        }
    }
    Ok(())
}
