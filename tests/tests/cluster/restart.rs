//! A killed node restarts from its data directory and catches up; a node that stays down until
//! its groups' logs are purged catches up by snapshot.

use std::time::Duration;

use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::check_all;
use crate::load;
use crate::make_chats;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_nodes_catch_up_by_log_and_by_snapshot() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    // Small groups and frequent snapshots, so that a short outage outlives the logs.
    let c = Cluster::start(Opts { data_groups: 4, snapshot_every: 50, logs_kept: 10, ..Default::default() }).await?;
    let chats = make_chats(&c, 8).await?;
    let mut all = load(&c, &chats, 100, 4, "a").await;

    // Short outage: catch up from the log.
    c.kill(2);
    let r = load(&c, &chats, 20, 2, "b").await;
    all.acks.extend(r.acks);
    all.unknown.extend(r.unknown);
    c.restart(2)?;
    c.wait_ready(Duration::from_secs(60)).await?;
    check_all(&c, 2, "replica", &chats, &all).await?;

    // Long outage: every group writes well past the snapshot interval plus the kept logs.
    c.kill(3);
    let r = load(&c, &chats, 800, 4, "c").await;
    assert_eq!(r.acks.len(), 800, "unknown {} failed {}", r.unknown.len(), r.failed);
    all.acks.extend(r.acks);
    all.unknown.extend(r.unknown);
    c.restart(3)?;
    c.wait_ready(Duration::from_secs(60)).await?;
    check_all(&c, 3, "replica", &chats, &all).await?;
    let log = c.log(3);
    assert!(log.contains("installed snapshot"), "node 3 should have caught up by snapshot");
    for node in c.ids() {
        check_all(&c, node, "linearizable", &chats, &all).await?;
    }
    Ok(())
}
