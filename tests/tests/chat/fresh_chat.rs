//! A recipient who connects after the chat was created (and before anything was sent) gets the
//! first message live.

use serde_json::json;

use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::api;
use crate::users;
use crate::SECS_10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_message_of_a_fresh_chat_arrives_live() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts::default()).await?;
    for round in 0..3 {
        let u = users(&c, &format!("fresh{round}"), 2).await?;
        let (s, r) = (&u[0], &u[1]);
        let chat = api(&c, 1).direct(s, r.user).await?;
        let mut ws_s = Ws::connect(&c.url(1), s, false).await?;
        let mut ws_r = Ws::connect(&c.url(2), r, true).await?;
        for i in 1..=3u64 {
            ws_s.send(
                json!({ "type": "message", "chatId": chat, "text": format!("m{i}"), "clientMsgId": format!("f{i}") }),
            )
            .await?;
            ws_r.wait_for(SECS_10, &format!("round {round} message {i}"), |f| f["type"] == "message" && f["seq"] == i)
                .await?;
            ws_s.wait_for(SECS_10, "ack", |f| f["type"] == "ack").await?;
        }
    }
    Ok(())
}
