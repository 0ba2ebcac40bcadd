//! `raftchat dev`: a local cluster of N nodes on 127.0.0.1 in one process.
//!
//! Node i serves HTTP and WebSocket on BASE+i-1 and Raft on BASE+100+i-1, keeps its data in
//! DIR/node-i, and comes back with all its data on the next run with the same DIR.
//!
//! Peers always use mutual TLS: a throwaway CA and node certificates are generated in DIR/certs
//! on the first run (DIR/node-i/certs for each node). Clients use plain HTTP on 127.0.0.1 unless
//! `--secure`, which serves HTTPS and WSS with the same CA (and writes an admin client
//! certificate for `raftchat admin --certs-dir DIR/certs`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::NodeArgs;
use crate::run;

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// First client port; node i listens on BASE+i-1.
    #[arg(long, default_value_t = 7700)]
    port: u16,
    /// Data directory; node i keeps its data in DIR/node-i.
    #[arg(long, default_value = "raftchat-data")]
    data_dir: PathBuf,
    /// Data groups of a new cluster.
    #[arg(long, default_value_t = 3)]
    data_groups: u32,
    /// Serve clients over HTTPS and WSS too (certificates from the generated CA in DIR/certs).
    #[arg(long)]
    secure: bool,
}

const CLUSTER_ID: &str = "raftchat-dev";

/// The dev cluster's CA (made once) and each node's certificates; returns node i's directory.
fn certificates(dir: &std::path::Path, nodes: u64) -> anyhow::Result<Vec<PathBuf>> {
    use crate::tls::certs;
    let ca_dir = dir.join("certs");
    let (ca_cert, ca_key) = (ca_dir.join(crate::tls::CA_CERT), ca_dir.join(crate::tls::CA_KEY));
    if !ca_cert.exists() {
        let ca = certs::create_ca(CLUSTER_ID, 3650)?;
        certs::write(&ca_key, &ca.key_pem, true, true)?;
        certs::write(&ca_cert, &ca.cert_pem, false, true)?;
        let client = certs::Ca::from_pem(&ca.cert_pem, &ca.key_pem)?.client(CLUSTER_ID, 3650)?;
        certs::write(&ca_dir.join(crate::tls::CLIENT_KEY), &client.key_pem, true, true)?;
        certs::write(&ca_dir.join(crate::tls::CLIENT_CERT), &client.cert_pem, false, true)?;
    }
    let ca = certs::Ca::load(&ca_cert, &ca_key)?;
    let ca_pem = certs::read(&ca_cert)?;
    let mut out = Vec::new();
    for i in 1..=nodes {
        let d = dir.join(format!("node-{i}")).join("certs");
        if !d.join(crate::tls::NODE_CERT).exists() {
            let issued = ca.node(CLUSTER_ID, i, &crate::tls::cli::default_hosts(), 3650)?;
            certs::write(&d.join(crate::tls::NODE_KEY), &issued.key_pem, true, true)?;
            certs::write(&d.join(crate::tls::NODE_CERT), &issued.cert_pem, false, true)?;
            certs::write(&d.join(crate::tls::CA_CERT), &ca_pem, false, true)?;
        }
        out.push(d);
    }
    Ok(out)
}

pub async fn dev_main(args: DevArgs) -> anyhow::Result<()> {
    run::init_logging("text");
    anyhow::ensure!((1..=9).contains(&args.nodes), "--nodes must be 1 to 9");
    let raft_port = |i: u64| args.port as u64 + 100 + i - 1;
    let peers: Vec<String> = (1..=args.nodes).map(|i| format!("{i}=127.0.0.1:{}", raft_port(i))).collect();
    let peers = peers.join(",");
    let (tx, rx) = watch::channel(false);
    let certs = certificates(&args.data_dir, args.nodes).context("making the dev cluster's certificates")?;
    let mut running = Vec::new();
    for i in 1..=args.nodes {
        let node_args = NodeArgs {
            node_id: Some(i),
            cluster_id: Some(CLUSTER_ID.into()),
            certs_dir: Some(certs[i as usize - 1].clone()),
            plain_http: !args.secure,
            listen: Some(format!("127.0.0.1:{}", args.port as u64 + i - 1)),
            raft_listen: Some(format!("127.0.0.1:{}", raft_port(i))),
            data_dir: Some(args.data_dir.join(format!("node-{i}"))),
            peers: Some(peers.clone()),
            data_groups: Some(args.data_groups),
            // A local playground: the core log API is handy and nothing is exposed.
            internal_api: true,
            ..Default::default()
        };
        let cfg = node_args.resolve()?;
        running.push(run::start(cfg, rx.clone()).await.with_context(|| format!("starting node {i}"))?);
    }
    let ready = wait_ready(&running).await;
    println!();
    println!("raftchat dev cluster: {} nodes, data in {}", args.nodes, args.data_dir.display());
    let scheme = if args.secure { "https" } else { "http" };
    for r in &running {
        println!("  node {}: {scheme}://{}", r.node.id(), r.http_addr);
    }
    let ca = args.data_dir.join("certs");
    if args.secure {
        println!(
            "TLS for clients and peers; the CA is {} (admin: --certs-dir {})",
            ca.join("ca.crt").display(),
            ca.display()
        );
    } else {
        println!("Peers use mutual TLS; clients plain HTTP on 127.0.0.1 (--secure for HTTPS).");
    }
    if !ready {
        println!("  (not all groups have a leader yet; see /readyz)");
    }
    if let Some(first) = running.first() {
        println!("Open {scheme}://{}/ in a browser to chat (any node serves the web client).", first.http_addr);
    }
    println!("Press Ctrl-C to stop.");
    run::signal().await;
    println!("stopping...");
    tx.send_replace(true);
    for r in running {
        r.stop().await;
    }
    Ok(())
}

async fn wait_ready(nodes: &[run::RunningNode]) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let all = nodes.iter().all(|r| {
            let n = &r.node;
            n.layout()
                .is_some_and(|l| l.groups_of(n.id()).iter().all(|g| n.group(*g).is_some_and(|h| h.leader().is_some())))
        });
        if all {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
