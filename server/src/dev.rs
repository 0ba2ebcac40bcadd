//! `raftchat dev`: a local cluster of N nodes on 127.0.0.1 in one process.
//!
//! Node i serves HTTP and WebSocket on BASE+i-1 and Raft on BASE+100+i-1, keeps its data in
//! DIR/node-i, and comes back with all its data on the next run with the same DIR.

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
}

pub async fn dev_main(args: DevArgs) -> anyhow::Result<()> {
    run::init_logging("text");
    anyhow::ensure!((1..=9).contains(&args.nodes), "--nodes must be 1 to 9");
    let raft_port = |i: u64| args.port as u64 + 100 + i - 1;
    let peers: Vec<String> = (1..=args.nodes).map(|i| format!("{i}=127.0.0.1:{}", raft_port(i))).collect();
    let peers = peers.join(",");
    let (tx, rx) = watch::channel(false);
    let mut running = Vec::new();
    for i in 1..=args.nodes {
        let node_args = NodeArgs {
            node_id: Some(i),
            cluster_id: Some("raftchat-dev".into()),
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
    for r in &running {
        println!("  node {}: http://{}", r.node.id(), r.http_addr);
    }
    if !ready {
        println!("  (not all groups have a leader yet; see /readyz)");
    }
    if let Some(first) = running.first() {
        println!("Open http://{}/ in a browser to chat (any node serves the web client).", first.http_addr);
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
