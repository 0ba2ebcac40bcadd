//! Disaster recovery: three of four nodes are lost for good. The survivor restarts with
//! `--force-new-cluster`, serves every acknowledged message of the groups it held, reports the
//! group it never held as lost, refuses a second forcing, and grows back to three replicas per
//! group with `members add` and `rebalance`.

use std::time::Duration;

use raftchat_tests::client;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;
use uuid::Uuid;

fn admin(c: &Cluster, node: u64, args: &[&str]) -> anyhow::Result<String> {
    let out = c.admin_command(node)?.args(args).output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "admin {args:?} failed: {text}");
    Ok(text)
}

/// The documented chat -> group hash (raft/src/meta.rs `group_of`).
fn group_of(chat: &Uuid, groups: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in chat.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    1 + h % groups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_node_forces_a_new_cluster_and_grows_back() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let mut c = Cluster::start(Opts { nodes: 4, data_groups: 4, ..Default::default() }).await?;
    let layout: serde_json::Value =
        c.http.get(format!("{}/internal/v1/cluster", c.url(1))).send().await?.json().await?;
    let on_node_1: Vec<u64> = layout["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["replicas"].as_array().is_some_and(|r| r.iter().any(|n| n == 1)))
        .filter_map(|g| g["group"].as_u64())
        .collect();
    anyhow::ensure!(on_node_1.len() == 3, "node 1 should hold 3 of 4 groups: {layout}");

    let (sender, other) = (Uuid::new_v4(), Uuid::new_v4());
    let chats: Vec<Uuid> = (0..16).map(|_| Uuid::new_v4()).collect();
    let mut acked: Vec<(Uuid, String, u64)> = Vec::new();
    for chat in &chats {
        client::create_chat(&c.http, &c.url(2), *chat, "direct", sender, &[other]).await?;
        for i in 0..10 {
            let id = format!("m{i}");
            let a = client::append(&c.http, &c.url(1 + i % 4), *chat, sender, &id, "before the disaster")
                .await
                .map_err(|e| anyhow::anyhow!("append: {e:?}"))?;
            acked.push((*chat, id, a.seq));
        }
    }
    // Node 1 has applied everything (it is a replica of every group it holds).
    raftchat_tests::eventually(Duration::from_secs(30), "node 1 caught up", || async {
        for chat in chats.iter().filter(|ch| on_node_1.contains(&group_of(ch, 4))) {
            let h = client::history(&c.http, &c.url(1), *chat, "local").await.ok()?;
            if h.len() < 10 {
                return None;
            }
        }
        Some(())
    })
    .await?;

    for id in [2, 3, 4] {
        c.kill(id);
        std::fs::remove_dir_all(c.data_dir(id))?;
    }
    c.restart_with(1, &["--force-new-cluster"])?;
    c.wait_ready(Duration::from_secs(60)).await?;
    raftchat_tests::eventually(Duration::from_secs(30), "the layout holds node 1 alone", || async {
        let l: serde_json::Value =
            c.http.get(format!("{}/internal/v1/cluster", c.url(1))).send().await.ok()?.json().await.ok()?;
        (l["nodes"].as_array()?.len() == 1).then_some(())
    })
    .await?;
    // Every acknowledged message of a group node 1 held is there; the other group starts empty.
    for (chat, id, seq) in &acked {
        let held = on_node_1.contains(&group_of(chat, 4));
        let h = client::history(&c.http, &c.url(1), *chat, "linearizable").await;
        match (held, h) {
            (true, Ok(h)) => anyhow::ensure!(
                h.iter().any(|m| m.client_msg_id == *id && m.seq == *seq),
                "chat {chat}: acked {id} at {seq} is missing after the forced recovery"
            ),
            (true, Err(e)) => anyhow::bail!("chat {chat} of a held group: {e}"),
            (false, Ok(h)) => anyhow::ensure!(h.is_empty(), "chat {chat} of the lost group has messages"),
            (false, Err(e)) => anyhow::ensure!(e.to_string().contains("404"), "chat {chat} of the lost group: {e}"),
        }
    }
    anyhow::ensure!(c.log(1).contains("their data is lost"), "the lost group is not reported in the log");
    // Writes work in every group, the lost one included.
    for chat in &chats {
        client::create_chat(&c.http, &c.url(1), *chat, "direct", sender, &[other]).await?;
        client::append(&c.http, &c.url(1), *chat, sender, "after", "after the recovery")
            .await
            .map_err(|e| anyhow::anyhow!("append after the recovery: {e:?}"))?;
    }

    // The flag is for once: a second start with it is refused, with a reason.
    c.restart_with(1, &["--force-new-cluster"])?;
    let code = c.wait_exit(1, Duration::from_secs(30)).await;
    anyhow::ensure!(code.is_some_and(|c| c != 0), "a second --force-new-cluster must be refused: {code:?}");
    anyhow::ensure!(c.log(1).contains("already forced"), "the refusal gives no reason");
    c.restart(1)?;
    c.wait_ready(Duration::from_secs(60)).await?;

    // Grow back: two new nodes, then three replicas per group and three meta voters.
    for _ in 0..2 {
        let id = c.add_node().await?;
        let (raft, api) = (c.raft_addr(id), c.api_addr(id));
        admin(&c, 1, &["members", "add", "--id", &id.to_string(), "--raft-addr", &raft, "--api-addr", &api])?;
    }
    admin(&c, 1, &["rebalance"])?;
    let st: serde_json::Value = serde_json::from_str(&admin(&c, 1, &["--output", "json", "status"])?)?;
    for g in st["groups"].as_array().into_iter().flatten().filter(|g| g["group"] != 0) {
        anyhow::ensure!(g["replicas"] == serde_json::json!([1, 5, 6]), "group {}: {}", g["group"], g["replicas"]);
    }
    let meta = st["groups"].as_array().and_then(|g| g.iter().find(|g| g["group"] == 0)).cloned().unwrap_or_default();
    anyhow::ensure!(meta["voters"] == serde_json::json!([1, 5, 6]), "meta voters: {meta}");
    anyhow::ensure!(st["faultTolerance"]["canLoseNodes"] == 1, "{}", st["faultTolerance"]);
    // And it does survive losing one: node 5 goes, writes through node 6 still commit.
    c.kill(5);
    for chat in &chats {
        raftchat_tests::eventually(Duration::from_secs(30), "a write with node 5 down", || async {
            client::append(&c.http, &c.url(6), *chat, sender, "after-5", "one node down").await.ok()
        })
        .await?;
    }
    Ok(())
}
