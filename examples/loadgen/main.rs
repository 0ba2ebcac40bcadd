//! raftchat's load generator: real WebSocket clients against a cluster, measured with HDR
//! histograms.
//!
//! ```text
//! cargo build --release --bin raftchat
//! cargo run --release -p raftchat-tests --example loadgen -- [--servers URL,..] [--secs 10] [--size 200] [--json FILE] SCENARIO
//! ```
//!
//! Without `--servers` it starts a local 3-node release cluster (`--data-groups`, per-user send
//! limits lifted, room for 250,000 connections); with it, the nodes must run `--internal-api`
//! (sessions are minted there, so no password hashing) and high `--sends-per-sec`.
//!
//! Scenarios:
//! - `throughput [--in-flight 1,64,256] [--chats 1000]`: closed loop, one sender connection per
//!   message in flight, direct chats whose recipients are connected to another node.
//! - `latency [--rate N]`: 64 paced senders at N messages/s (default: half of the closed-loop
//!   throughput at 64 in flight, measured first); latency counts from the intended send time.
//! - `connections [--connections 100000] [--rate 10000]`: idle connections on the first node
//!   (from many 127.1.x.y source addresses), its memory per connection, then delivery latency
//!   at a steady rate to recipients on that node.
//! - `fanout [--members 10000] [--rate 2]`: one group, members spread over the nodes.
//! - `soak [--minutes 30] [--rate N]`: the latency scenario for a long time; memory sampled.
//!
//! Figures: acked sends/s and ack latency (send to commit ack), delivered messages/s and
//! end-to-end latency (send to receipt by a recipient connection, over every recipient), server
//! CPU microseconds per acknowledged message, memory. A progress bar while it runs; a table and
//! (with `--json`) the rows as JSON at the end.

mod conn;
mod report;
mod scenario;
mod setup;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

#[derive(Parser)]
struct Args {
    /// Client URLs of running nodes (http://IP:PORT,...); without it, a local 3-node cluster.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Data groups of the cluster the generator starts (the node's default).
    #[arg(long, default_value_t = 3)]
    data_groups: u32,
    /// Measured seconds of each phase (after 2 s of warm-up).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Run the local cluster with TLS (mutual TLS between nodes, HTTPS and WSS for clients).
    #[arg(long)]
    tls: bool,
    /// Message size in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Also write the rows here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(clap::Subcommand)]
enum Scenario {
    Throughput {
        #[arg(long, value_delimiter = ',', default_value = "1,64,256")]
        in_flight: Vec<usize>,
        #[arg(long, default_value_t = 1000)]
        chats: usize,
    },
    Latency {
        #[arg(long)]
        rate: Option<u64>,
        #[arg(long, default_value_t = 1000)]
        chats: usize,
    },
    Connections {
        #[arg(long, default_value_t = 100_000)]
        connections: usize,
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
    },
    Fanout {
        #[arg(long, default_value_t = 10_000)]
        members: usize,
        #[arg(long, default_value_t = 2)]
        rate: u64,
    },
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        #[arg(long)]
        rate: Option<u64>,
    },
}

/// Half of the closed-loop throughput at 64 in flight.
async fn half_saturation(ctx: &scenario::Ctx) -> anyhow::Result<u64> {
    let rows = scenario::throughput(ctx, &[64], 1000).await?;
    Ok((rows.first().map_or(0.0, |r| r.acked_per_sec) / 2.0).max(1.0) as u64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // 100,000 connections need as many descriptors here, and on the nodes (they inherit it).
    // Raising the hard limit needs root (CAP_SYS_RESOURCE); otherwise the soft one goes up to it.
    let _ = rlimit::Resource::NOFILE.set(1 << 20, 1 << 20);
    let nofile = rlimit::increase_nofile_limit(1 << 20)?;
    let mut cluster = None;
    let (urls, procs) = if args.servers.is_empty() {
        // The per-user limits are not under test here: lifted.
        let extra_args = [
            "--sends-per-sec",
            "1000000",
            "--sends-burst",
            "1000000",
            "--receipts-per-sec",
            "1000000",
            "--receipts-burst",
            "1000000",
            "--ws-connections-max",
            "250000",
        ]
        .map(String::from)
        .to_vec();
        let bin = raftchat_tests::release_binary()?;
        let c = Cluster::start(Opts {
            binary: Some(bin),
            data_groups: args.data_groups,
            extra_args,
            secure: args.tls,
            ..Default::default()
        })
        .await?;
        let urls: Vec<String> = c.ids().iter().map(|id| c.url(*id)).collect();
        let pids: Vec<u32> = c.ids().iter().filter_map(|id| c.pid(*id)).collect();
        cluster = Some(c);
        (urls, report::Procs(pids))
    } else {
        (args.servers.clone(), report::Procs::default())
    };
    let nodes = urls.iter().map(|u| setup::Node::parse(u)).collect::<anyhow::Result<Vec<_>>>()?;
    let http = raftchat_tests::tls::http_builder().timeout(Duration::from_secs(30)).build()?;
    let ctx = scenario::Ctx { nodes, procs, http, secs: args.secs.max(1), size: args.size.max(20) };
    eprintln!("loadgen: {} nodes, descriptor limit {nofile}", ctx.nodes.len());
    let rows = match args.scenario {
        Scenario::Throughput { in_flight, chats } => scenario::throughput(&ctx, &in_flight, chats).await?,
        Scenario::Latency { rate, chats } => {
            let rate = match rate {
                Some(r) => r,
                None => half_saturation(&ctx).await?,
            };
            vec![scenario::paced(&ctx, "latency", rate, chats).await?]
        }
        Scenario::Connections { connections, rate } => {
            // Each connection is a descriptor here and on the loaded node (which inherits this
            // limit when the generator starts it); keep room for the active pairs and the cluster.
            let need = connections as u64 + 1000;
            anyhow::ensure!(
                need <= nofile,
                "{connections} connections need about {need} open files, but the limit here is {nofile} \
                 (raise the hard limit: ulimit -Hn, or LimitNOFILE= in systemd)"
            );
            vec![scenario::connections(&ctx, connections, rate).await?]
        }
        Scenario::Fanout { members, rate } => vec![scenario::fanout(&ctx, members, rate).await?],
        Scenario::Soak { minutes, rate } => {
            let rate = match rate {
                Some(r) => r,
                None => half_saturation(&ctx).await?,
            };
            vec![scenario::soak(&ctx, minutes, rate).await?]
        }
    };
    report::print_table(&rows);
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "unixTimeSecs": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "rows": rows,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)?;
    }
    drop(cluster);
    Ok(())
}
