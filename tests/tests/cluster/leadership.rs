//! `raftchat admin transfer-leader` and `drain`: leadership moves where it is told, a drained
//! node leads nothing, is not ready, and still serves as a gateway; undraining restores it.

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

/// Groups node `id` leads, by its own status.
async fn led(c: &Cluster, id: u64) -> anyhow::Result<Vec<u64>> {
    let st = c.status(id).await?;
    Ok(st["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["isLeader"] == true)
        .filter_map(|g| g["group"].as_u64())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_leader_and_drain() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 4, ..Default::default() }).await?;
    let leaders = c.leaders(1).await?;
    let (_, leader) = leaders.iter().find(|(g, _)| *g == 1).copied().unwrap_or((1, None));
    let leader = leader.ok_or_else(|| anyhow::anyhow!("group 1 has no leader"))?;
    let target = if leader == 3 { 2 } else { 3 };
    let out = admin(&c, 1, &["transfer-leader", "1", &target.to_string()])?;
    assert!(out.contains(&format!("node {target} leads group 1")), "{out}");
    assert!(led(&c, target).await?.contains(&1), "the target leads group 1 now");

    let (sender, other) = (Uuid::new_v4(), Uuid::new_v4());
    let chat = Uuid::new_v4();
    client::create_chat(&c.http, &c.url(1), chat, "direct", sender, &[other]).await?;

    // Draining node 2 moves every leadership away and keeps it away.
    admin(&c, 1, &["drain", "2"])?;
    assert!(led(&c, 2).await?.is_empty(), "a drained node leads nothing");
    let r = c.http.get(format!("{}/readyz", c.url(2))).send().await?;
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.text().await?.contains("draining"));
    // It still works as a gateway, and stays out of leadership while the others change hands.
    for i in 0..20 {
        client::append(&c.http, &c.url(2), chat, sender, &format!("d{i}"), "x")
            .await
            .map_err(|e| anyhow::anyhow!("append through the drained node: {e:?}"))?;
    }
    let other_leader = if led(&c, 1).await?.is_empty() { 3 } else { 1 };
    let g = led(&c, other_leader).await?.first().copied().unwrap_or(1);
    let refused = admin(&c, 1, &["transfer-leader", &g.to_string(), "2"]);
    assert!(refused.is_err(), "a drained node does not take leadership");
    assert!(led(&c, 2).await?.is_empty());

    admin(&c, 1, &["drain", "2", "--off"])?;
    raftchat_tests::eventually(Duration::from_secs(10), "node 2 ready again", || async {
        c.ready(2).await.then_some(())
    })
    .await?;
    let out = admin(&c, 1, &["transfer-leader", &g.to_string(), "2"])?;
    assert!(out.contains(&format!("node 2 leads group {g}")), "{out}");
    Ok(())
}
