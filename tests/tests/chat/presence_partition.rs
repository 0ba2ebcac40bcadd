//! After a partition between nodes heals (through a fault proxy), every node converges to the
//! same presence table, including changes made on either side during the partition.

use std::time::Duration;

use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::api;
use crate::users;
use crate::SECS_10;

async fn fingerprints(c: &Cluster) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for id in c.ids() {
        let v: serde_json::Value =
            c.http.get(format!("{}/internal/v1/presence", c.url(id))).send().await?.json().await?;
        out.push(v["fingerprint"].as_str().unwrap_or("").to_string());
    }
    Ok(out)
}

fn presence_of(user: uuid::Uuid, status: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |f| f["type"] == "presence" && f["userId"] == user.to_string() && f["status"] == status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_converges_after_a_partition_heals() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 8, proxied: true, ..Default::default() }).await?;
    let u = users(&c, "part", 4).await?;
    let (a, b, x, y) = (&u[0], &u[1], &u[2], &u[3]);
    api(&c, 1).group(a, "all", &[b, x, y]).await?;
    let mut wa = Ws::connect(&c.url(1), a, false).await?;
    let mut wb = Ws::connect(&c.url(3), b, false).await?;
    let wy = Ws::connect(&c.url(3), y, false).await?;
    wa.wait_for(SECS_10, "y online", presence_of(y.user, "online")).await?;
    // b's connection has read its chats and follows their members (linearizable reads, which
    // node 3 cannot make once it is cut off) before the partition.
    wb.wait_for(SECS_10, "y online for b", presence_of(y.user, "online")).await?;

    // Cut node 3 off from nodes 1 and 2.
    c.proxy(3).ok_or_else(|| anyhow::anyhow!("no proxy"))?.isolate();
    // Node 1 declares node 3 dead: its users go offline there.
    wa.wait_for(Duration::from_secs(20), "b offline while node 3 is cut off", presence_of(b.user, "offline")).await?;
    // Changes on both sides during the partition: x comes online on node 1, y leaves node 3.
    let _wx = Ws::connect(&c.url(1), x, false).await?;
    drop(wy);
    wb.wait_for(SECS_10, "y offline on node 3", presence_of(y.user, "offline")).await?;
    raftchat_tests::eventually(SECS_10, "the two sides to differ during the partition", || async {
        let f = fingerprints(&c).await.ok()?;
        (f[0] != f[2]).then_some(())
    })
    .await?;

    c.proxy(3).ok_or_else(|| anyhow::anyhow!("no proxy"))?.heal();
    wa.wait_for(Duration::from_secs(20), "b back online after heal", presence_of(b.user, "online")).await?;
    wb.wait_for(Duration::from_secs(20), "x seen online on node 3 after heal", presence_of(x.user, "online")).await?;
    let converged = raftchat_tests::eventually(Duration::from_secs(20), "identical presence tables", || async {
        let f = fingerprints(&c).await.ok()?;
        (f.iter().all(|x| *x == f[0]) && !f[0].is_empty()).then_some(f)
    })
    .await?;
    eprintln!("converged: {converged:?}");
    assert_eq!(api(&c, 1).presence(a, y.user).await?["status"], "offline");
    assert_eq!(api(&c, 3).presence(b, x.user).await?["status"], "online");
    Ok(())
}
