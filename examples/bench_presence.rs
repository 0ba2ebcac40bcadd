//! Presence gossip: convergence time of a status change, and gossip bytes per node per second
//! with 10,000 present users and 100 changes/s.
//!
//! `cargo build --release --bin raftchat && cargo run --release -p raftchat-tests --example bench_presence -- [seconds]`
//!
//! Users are set online through `/internal/v1/presence` (as a REST client of each user would, so
//! no accounts are needed). Convergence: a change is made on one node and every other node is
//! polled every 2 ms until it shows the change.

use std::time::Duration;
use std::time::Instant;

use futures::StreamExt;
use hdrhistogram::Histogram;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;
use rand::Rng;
use uuid::Uuid;

const USERS: usize = 10_000;
const CHANGES_PER_SEC: u64 = 100;
const SAMPLES: usize = 100;

async fn set(c: &Cluster, node: u64, user: Uuid, status: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({ "userId": user, "status": status });
    let r = c.http.post(format!("{}/internal/v1/presence", c.url(node))).json(&body).send().await?;
    anyhow::ensure!(r.status().is_success(), "set presence: {}", r.status());
    Ok(())
}

async fn status(c: &Cluster, node: u64, user: Uuid) -> anyhow::Result<String> {
    let v: serde_json::Value =
        c.http.get(format!("{}/internal/v1/presence/{user}", c.url(node))).send().await?.json().await?;
    Ok(v["status"].as_str().unwrap_or("").to_string())
}

async fn gossip_bytes(c: &Cluster) -> anyhow::Result<u64> {
    let mut total = 0;
    for id in c.ids() {
        let v: serde_json::Value =
            c.http.get(format!("{}/internal/v1/presence", c.url(id))).send().await?.json().await?;
        total += v["gossipBytesSent"].as_u64().unwrap_or(0);
    }
    Ok(total)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let bin = raftchat_tests::release_binary()?;
    println!("{:>5} {:>10} {:>10} {:>10} {:>22}", "nodes", "conv p50", "conv p99", "conv max", "gossip B/s per node");
    for nodes in [3u64, 5] {
        let c = Cluster::start(Opts { nodes, data_groups: 8, binary: Some(bin.clone()), ..Default::default() }).await?;
        let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::new_v4()).collect();
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(users.iter().enumerate())
            .map(|(i, u)| set(&c, 1 + i as u64 % nodes, *u, "online"))
            .buffer_unordered(64)
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<()>>()?;
        // Let the initial load spread, then measure steady gossip at 100 changes/s.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let b0 = gossip_bytes(&c).await?;
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / CHANGES_PER_SEC));
        let mut k = 0usize;
        while t0.elapsed() < Duration::from_secs(secs) {
            tick.tick().await;
            let i = rand::thread_rng().gen_range(0..USERS);
            let s = if k.is_multiple_of(2) { "away" } else { "online" };
            set(&c, 1 + i as u64 % nodes, users[i], s).await?;
            k += 1;
        }
        let bytes_per_node_sec = (gossip_bytes(&c).await? - b0) as f64 / t0.elapsed().as_secs_f64() / nodes as f64;
        // Convergence: one change at a time, watched on every other node.
        let mut h = Histogram::<u64>::new(3)?;
        for s in 0..SAMPLES {
            let i = rand::thread_rng().gen_range(0..USERS);
            let owner = 1 + i as u64 % nodes;
            let target = if s.is_multiple_of(2) { "offline" } else { "online" };
            let start = Instant::now();
            set(&c, owner, users[i], target).await?;
            for other in c.ids().into_iter().filter(|n| *n != owner) {
                let deadline = Instant::now() + Duration::from_secs(10);
                while status(&c, other, users[i]).await? != target {
                    anyhow::ensure!(Instant::now() < deadline, "node {other} never saw the change");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            h.record(start.elapsed().as_micros() as u64)?;
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{:>5} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>22.0}",
            nodes,
            ms(0.5),
            ms(0.99),
            h.max() as f64 / 1000.0,
            bytes_per_node_sec
        );
    }
    Ok(())
}
