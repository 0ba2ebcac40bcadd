//! On a 5-node cluster, a recipient connected to a node that holds no replica of the chat's
//! group receives every message live and in order.

use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::api;
use crate::users;
use crate::SECS_30;

async fn group_of(c: &Cluster, chat: uuid::Uuid) -> anyhow::Result<u64> {
    let v: serde_json::Value =
        c.http.get(format!("{}/internal/v1/chats/{chat}/messages?limit=1", c.url(1))).send().await?.json().await?;
    v["group"].as_u64().ok_or_else(|| anyhow::anyhow!("no group in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_through_a_node_without_a_replica() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { nodes: 5, data_groups: 8, ..Default::default() }).await?;
    let u = users(&c, "far", 2).await?;
    let (alice, bob) = (&u[0], &u[1]);
    let far_node = 5;
    let hosted: Vec<u64> = c.status(far_node).await?["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|g| g["group"].as_u64())
        .collect();
    let mut chat = None;
    for i in 0..40 {
        let ch = api(&c, 1).group(alice, &format!("far {i}"), &[bob]).await?;
        if !hosted.contains(&group_of(&c, ch).await?) {
            chat = Some(ch);
            break;
        }
    }
    let chat = chat.ok_or_else(|| anyhow::anyhow!("every chat landed on node {far_node}'s groups {hosted:?}"))?;
    let mut wb = Ws::connect(&c.url(far_node), bob, true).await?;
    let mut wa = Ws::connect(&c.url(2), alice, false).await?;
    for i in 0..50 {
        wa.send(serde_json::json!({ "type": "message", "chatId": chat, "text": format!("far {i}"), "clientMsgId": format!("f{i}") })).await?;
    }
    let got = wb.messages(chat, 50, SECS_30).await?;
    assert_eq!(crate::seqs(&got), (1..=50).collect::<Vec<u64>>());
    assert!(got.iter().enumerate().all(|(i, f)| f["text"] == format!("far {i}")));
    // And the receipts flow back the other way.
    wa.wait_for(SECS_30, "bob's delivered receipt", |f| f["type"] == "receipt" && f["delivered"] == 50).await?;
    Ok(())
}
