//! Chat service tests: real nodes, real REST and WebSocket clients
//! (build the binary first: `cargo build --bin raftchat`).

mod abuse;
mod authz;
mod authz_ws;
mod bad_input;
mod consent;
mod direct;
mod fresh_chat;
mod gateway_failover;
mod group;
mod media;
mod no_replica;
mod offline;
mod presence;
mod presence_partition;
mod presence_timeouts;
mod push;
mod quotas;
mod sessions;
mod slow_consumer;

use raftchat_tests::chat::Api;
use raftchat_tests::chat::Session;
use raftchat_tests::Cluster;

pub const SECS_10: std::time::Duration = std::time::Duration::from_secs(10);
pub const SECS_30: std::time::Duration = std::time::Duration::from_secs(30);

pub fn api(c: &Cluster, node: u64) -> Api {
    Api::new(&c.url(node))
}

/// Registers `n` users named `<prefix>-<i>`, spread over the nodes.
pub async fn users(c: &Cluster, prefix: &str, n: usize) -> anyhow::Result<Vec<Session>> {
    use futures::StreamExt;
    let ids = c.ids();
    let results: Vec<anyhow::Result<Session>> = futures::stream::iter(0..n)
        .map(|i| {
            let a = api(c, ids[i % ids.len()]);
            let name = format!("{prefix}-{i}");
            async move { a.signup(&name).await }
        })
        .buffered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

pub fn seqs(frames: &[serde_json::Value]) -> Vec<u64> {
    frames.iter().map(|f| f["seq"].as_u64().unwrap_or(0)).collect()
}
