//! A device that stops reading is cut off (its queue is bounded, nothing grows without limit)
//! and resumes on reconnect without loss.

use std::time::Duration;

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::api;
use crate::users;
use crate::SECS_30;

const MESSAGES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_that_stops_reading_is_cut_off_and_resumes() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let opts = Opts { data_groups: 8, extra_args: vec!["--ws-queue-len".into(), "16".into()], ..Default::default() };
    let c = Cluster::start(opts).await?;
    let u = users(&c, "slow", 2).await?;
    let (alice, bob) = (&u[0], &u[1]);
    let chat = api(&c, 1).direct(alice, bob.user).await?;
    let url = format!("{}/ws?token={}", c.url(2).replacen("http", "ws", 1), bob.token);
    let (mut stuck, _) = tokio_tungstenite::connect_async(url).await?;
    // 300 messages of 32 KiB: far more than the socket buffers and the 16-delivery queue hold.
    let text = "s".repeat(32 * 1024);
    for i in 0..MESSAGES {
        api(&c, 1).send(alice, chat, &text, &format!("s{i}")).await?;
    }
    // Now read: the server must have given up on this socket before delivering everything.
    let mut delivered = 0;
    let mut told = false;
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(m)) = stuck.next().await {
            if let WsMessage::Text(t) = m {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                if v["type"] == "message" {
                    delivered += 1;
                }
                if v["code"] == "slow_consumer" {
                    told = true;
                }
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server never closed the stuck socket");
    assert!(delivered < MESSAGES, "a socket that did not read got everything: its queue was not bounded");
    eprintln!("stuck socket got {delivered} of {MESSAGES} before it was closed (told: {told})");
    // Reconnecting resumes from the delivered watermark (none was acknowledged): everything.
    let mut again = Ws::connect(&c.url(3), bob, true).await?;
    let got = again.messages(chat, MESSAGES, SECS_30).await?;
    assert_eq!(crate::seqs(&got), (1..=MESSAGES as u64).collect::<Vec<u64>>());
    Ok(())
}
