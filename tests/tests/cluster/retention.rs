//! History retention: `raftchat admin retention set` + `sweep` delete old messages on every
//! replica alike, keep seqs and dedup intact, and free disk: the Raft log, the message store's
//! segments and the snapshots of every node shrink at once, the state database at a restart
//! with `--compact-state`.

use std::path::Path;
use std::time::Duration;

use raftchat_tests::client;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;
use uuid::Uuid;

fn admin(c: &Cluster, args: &[&str]) -> anyhow::Result<String> {
    let out = c.admin_command(1)?.args(args).output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "admin {args:?} failed: {text}");
    Ok(text)
}

/// Bytes of every file under `dir`.
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Bytes of (wal/, snapshots/, state/, messages/) of every node.
fn sizes(c: &Cluster) -> Vec<(u64, u64, u64, u64)> {
    c.ids()
        .iter()
        .map(|id| {
            let d = c.data_dir(*id);
            (du(&d.join("wal")), du(&d.join("snapshots")), du(&d.join("state")), du(&d.join("messages")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_history_everywhere_and_frees_disk() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    // Small log and message segments: purge and retention delete whole segments. A fast sweep:
    // followers snapshot soon.
    let extra_args = ["--wal-segment-mib", "1", "--message-segment-mib", "1", "--retention-sweep-secs", "1"]
        .map(String::from)
        .to_vec();
    let c =
        Cluster::start(Opts { data_groups: 2, snapshot_every: 200, logs_kept: 5, extra_args, ..Default::default() })
            .await?;
    let (sender, other) = (Uuid::new_v4(), Uuid::new_v4());
    let chats: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    for chat in &chats {
        client::create_chat(&c.http, &c.url(1), *chat, "direct", sender, &[other]).await?;
    }
    let body = "x".repeat(8 * 1024);
    let per_chat = 600u64;
    let appends = futures::future::join_all(chats.iter().map(|chat| {
        let (http, urls, body) = (c.http.clone(), [c.url(1), c.url(2), c.url(3)], body.clone());
        async move {
            for i in 0..per_chat {
                client::append(&http, &urls[(i % 3) as usize], *chat, sender, &format!("m{i}"), &body)
                    .await
                    .map_err(|e| anyhow::anyhow!("append: {e:?}"))?;
            }
            anyhow::Ok(())
        }
    }))
    .await;
    for r in appends {
        r?;
    }
    let before = sizes(&c);
    eprintln!("before (wal, snapshots, state, messages) per node: {before:?}");

    let out = admin(&c, &["retention", "set", "--max-messages", "10"])?;
    anyhow::ensure!(out.contains("newest 10 messages"), "{out}");
    let shown = admin(&c, &["--output", "json", "retention", "show"])?;
    anyhow::ensure!(shown.contains("\"maxMessages\":10"), "{shown}");
    let out = admin(&c, &["--output", "json", "retention", "sweep"])?;
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or(""))?;
    // The nodes' own sweeps (every second here) may have come first: the report counts only
    // what this one removed.
    let expected = chats.len() as u64 * (per_chat - 10);
    anyhow::ensure!(report["removed"].as_u64().is_some_and(|n| n <= expected), "{out}");

    // Every replica keeps exactly the newest 10 of each chat, and seqs go on.
    for chat in &chats {
        for id in c.ids() {
            let h = raftchat_tests::eventually(Duration::from_secs(30), "replica trimmed", || async {
                let h = client::history(&c.http, &c.url(id), *chat, "local").await.ok()?;
                (h.len() == 10).then_some(h)
            })
            .await?;
            let seqs: Vec<u64> = h.iter().map(|m| m.seq).collect();
            anyhow::ensure!(seqs == ((per_chat - 9)..=per_chat).collect::<Vec<_>>(), "node {id}: {seqs:?}");
        }
        let a = client::append(&c.http, &c.url(2), *chat, sender, "after", "after retention")
            .await
            .map_err(|e| anyhow::anyhow!("append: {e:?}"))?;
        anyhow::ensure!(a.seq == per_chat + 1, "seq after retention: {}", a.seq);
        let again = client::append(&c.http, &c.url(3), *chat, sender, "m0", "retry of a deleted message")
            .await
            .map_err(|e| anyhow::anyhow!("append: {e:?}"))?;
        anyhow::ensure!(again.duplicate && again.seq == 1, "a retry of a deleted message was re-appended: {again:?}");
    }

    // Disk: the log is purged and the snapshots shrink on every node, without a restart.
    let res = raftchat_tests::eventually(Duration::from_secs(60), "log purged and snapshots shrunk", || async {
        let now = sizes(&c);
        // The log keeps a few entries per group, in the last few 1-MiB segments at most; the
        // message store keeps the segments holding the newest messages.
        now.iter()
            .zip(&before)
            .all(|(a, b)| a.0 < b.0 && a.0 <= 4 << 20 && a.1 * 4 < b.1 && a.3 * 4 < b.3)
            .then_some(())
    })
    .await;
    if let Err(e) = res {
        let st = c.status(1).await?;
        let groups: Vec<String> = st["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                format!(
                    "{}: log {}..={}, snapshot {}, {} bytes",
                    g["group"], g["purgedIndex"], g["lastLogIndex"], g["snapshotIndex"], g["logBytes"]
                )
            })
            .collect();
        anyhow::bail!("{e}: before {before:?}, now {:?}; node 1 groups {groups:?}", sizes(&c));
    }
    // Messages never were in the state database (chat heads and members are): it stays small,
    // and a restart with --compact-state, one node at a time while the others serve, keeps it so.
    for id in c.ids() {
        c.restart_with(id, &["--compact-state"])?;
        c.wait_ready(Duration::from_secs(60)).await?;
    }
    let after = sizes(&c);
    eprintln!("(wal, snapshots, state, messages) per node: before {before:?}, after {after:?}");
    for (id, (a, b)) in c.ids().iter().zip(after.iter().zip(&before)) {
        anyhow::ensure!(a.2 < 1 << 20 && b.2 < 1 << 20, "node {id}: state database grew: {} -> {}", b.2, a.2);
    }
    let total = |v: &[(u64, u64, u64, u64)]| v.iter().map(|(w, s, d, m)| w + s + d + m).sum::<u64>();
    anyhow::ensure!(total(&after) * 3 < total(&before), "disk not freed: {} -> {}", total(&before), total(&after));
    // Nothing that was kept is lost by the compaction (and the policy went on: the message
    // written after the sweep pushed one more out).
    for chat in &chats {
        for id in c.ids() {
            let h = raftchat_tests::eventually(Duration::from_secs(30), "newest 10 kept", || async {
                let h = client::history(&c.http, &c.url(id), *chat, "local").await.ok()?;
                (h.len() == 10).then_some(h)
            })
            .await?;
            let seqs: Vec<u64> = h.iter().map(|m| m.seq).collect();
            anyhow::ensure!(seqs == ((per_chat - 8)..=per_chat + 1).collect::<Vec<_>>(), "node {id}: {seqs:?}");
        }
    }
    Ok(())
}
