//! `/metrics` serves every documented metric name in the Prometheus text format.

use std::time::Duration;

use raftchat_tests::client;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

/// The names documented in docs/OPERATIONS.md (histograms by their `_count` series).
pub const NAMES: &[&str] = &[
    "raftchat_build_info",
    "raftchat_raft_has_leader",
    "raftchat_raft_is_leader",
    "raftchat_raft_term",
    "raftchat_raft_last_log_index",
    "raftchat_raft_applied_index",
    "raftchat_raft_replication_lag_entries",
    "raftchat_raft_leader_changes_total",
    "raftchat_raft_proposals_total",
    "raftchat_wal_fsync_duration_seconds_count",
    "raftchat_wal_entries_per_fsync_count",
    "raftchat_snapshot_build_duration_seconds_count",
    "raftchat_snapshot_install_duration_seconds_count",
    "raftchat_storage_wal_bytes",
    "raftchat_storage_state_bytes",
    "raftchat_ws_connections",
    "raftchat_messages_committed_total",
    "raftchat_messages_delivered_total",
    "raftchat_commit_latency_seconds_count",
    "raftchat_delivery_latency_seconds_count",
    "raftchat_presence_users",
    "raftchat_presence_entries",
    "raftchat_rate_limited_total",
    "raftchat_media_uploaded_bytes_total",
    "raftchat_media_copies_restored_total",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_names_are_present() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 4, ..Default::default() }).await?;
    let chat = uuid::Uuid::new_v4();
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    client::create_chat(&c.http, &c.url(1), chat, "direct", a, &[b]).await?;
    client::append(&c.http, &c.url(1), chat, a, "m1", "hi").await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    // The leader of a group reports replication lag; look at every node.
    let mut all = String::new();
    for id in c.ids() {
        let r = c.http.get(format!("{}/metrics", c.url(id))).send().await?;
        assert!(r.status().is_success());
        all.push_str(&r.text().await?);
    }
    for name in NAMES {
        assert!(all.lines().any(|l| l.starts_with(name)), "metric {name} missing");
    }
    assert!(all.contains("raftchat_raft_has_leader{group=\"1\"} 1"));
    // The leader of the chat's group counted the two commands it proposed (sampled every 250 ms).
    raftchat_tests::eventually(Duration::from_secs(10), "proposals counted", || async {
        let mut total = 0.0;
        for id in c.ids() {
            let text = c.http.get(format!("{}/metrics", c.url(id))).send().await.ok()?.text().await.ok()?;
            total += text
                .lines()
                .filter(|l| l.starts_with("raftchat_raft_proposals_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        (total >= 2.0).then_some(())
    })
    .await?;
    Ok(())
}
