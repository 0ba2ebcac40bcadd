//! The message store under SIGKILL: nodes are killed while they append, seal segments (small
//! segments, so seals are frequent) and snapshot (small snapshot threshold), then restart. Each
//! restart cuts its store back to the checkpoint its state names and applies the log again; every
//! replica ends with every acknowledged message, at its seq, once.

use std::time::Duration;

use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::check_all;
use crate::load_padded;
use crate::make_chats;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_nine_during_appends_seals_and_snapshots_loses_nothing() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let extra_args = ["--message-segment-mib", "1"].map(String::from).to_vec();
    let c =
        Cluster::start(Opts { data_groups: 3, snapshot_every: 200, logs_kept: 50, extra_args, ..Default::default() })
            .await?;
    let chats = make_chats(&c, 24).await?;
    // 2 KiB messages: a node's 1-MiB segments fill every few hundred messages.
    let mut all = load_padded(&c, &chats, 300, 8, "warm", 2048).await;
    for round in 0..6u64 {
        // Kill a node while the load runs: mid-apply, mid-seal or mid-snapshot, whichever it is.
        let victim = 1 + round % 3;
        // Once the victim's store has taken this round's first appends (more of them each
        // round, so the kill lands at different points of a segment's life).
        let store = c.data_dir(victim).join("messages");
        let start = bytes(&store);
        let grown = start + (64 << 10) * (1 + round);
        let kill = async {
            let seen = raftchat_tests::eventually(Duration::from_secs(60), "the victim's store to grow", || async {
                (bytes(&store) >= grown).then_some(())
            })
            .await;
            c.kill(victim);
            seen
        };
        let tag = format!("k{round}");
        let (r, seen) = tokio::join!(load_padded(&c, &chats, 600, 16, &tag, 2048), kill);
        seen?;
        all.acks.extend(r.acks);
        all.unknown.extend(r.unknown);
        c.restart(victim)?;
        c.wait_ready(Duration::from_secs(60)).await?;
    }
    let segments: usize = c
        .ids()
        .iter()
        .map(|id| {
            walk(&c.data_dir(*id).join("messages")).iter().filter(|p| p.extension().is_some_and(|e| e == "idx")).count()
        })
        .sum();
    assert!(segments > 6, "the run should seal segments (found {segments} index files)");
    for node in c.ids() {
        check_all(&c, node, "replica", &chats, &all).await?;
    }
    check_all(&c, 1, "linearizable", &chats, &all).await?;
    Ok(())
}

/// Bytes of every file under `dir`.
fn bytes(dir: &std::path::Path) -> u64 {
    walk(dir).iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}
