//! A killed node restarts from its data directory and catches up; a node that stays down until
//! its groups' logs are purged catches up by snapshot.

use std::collections::HashMap;
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

    // Long outage: write until both other nodes have purged some group's log past what node 3
    // holds, so whichever of them leads it must send a snapshot. (Each node snapshots on its
    // own schedule, and openraft postpones a purge while a replication to the down node is in
    // flight, so how many writes that takes varies.)
    let before: HashMap<u64, u64> = group_indexes(&c, 3, "lastLogIndex").await?;
    c.kill(3);
    let mut purged_past = false;
    for round in 0..8 {
        let r = load(&c, &chats, 300, 4, &format!("c{round}")).await;
        assert_eq!(r.acks.len(), 300, "unknown {} failed {}", r.unknown.len(), r.failed);
        all.acks.extend(r.acks);
        all.unknown.extend(r.unknown);
        let mut purged = group_indexes(&c, 1, "purgedIndex").await?;
        for (g, p) in group_indexes(&c, 2, "purgedIndex").await? {
            let e = purged.entry(g).or_insert(0);
            *e = (*e).min(p);
        }
        if before.iter().any(|(g, last)| *g != 0 && purged.get(g).is_some_and(|p| p > last)) {
            purged_past = true;
            break;
        }
    }
    assert!(purged_past, "nodes 1 and 2 never both purged a group's log past node 3's position");
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

/// Per group, a numeric field of node `id`'s status.
async fn group_indexes(c: &Cluster, id: u64, field: &str) -> anyhow::Result<HashMap<u64, u64>> {
    let st = c.status(id).await?;
    Ok(st["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| Some((g["group"].as_u64()?, g[field].as_u64().unwrap_or(0))))
        .collect())
}
