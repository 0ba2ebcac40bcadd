//! A recipient offline during 100 messages reconnects to another node and gets them all in
//! order, then live ones; several connections of one user all receive; `sync` replays.

use serde_json::json;

use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::api;
use crate::users;
use crate::SECS_10;
use crate::SECS_30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offline_recipient_catches_up_on_another_node() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 16, ..Default::default() }).await?;
    let u = users(&c, "offline", 2).await?;
    let (alice, bob) = (&u[0], &u[1]);
    let chat = api(&c, 1).direct(alice, bob.user).await?;
    {
        let mut wb = Ws::connect(&c.url(1), bob, true).await?;
        api(&c, 2).send(alice, chat, "first", "o-0").await?;
        let got = wb.messages(chat, 1, SECS_10).await?;
        assert_eq!(crate::seqs(&got), vec![1]);
        // Let the delivered receipt commit before going away.
        raftchat_tests::eventually(SECS_10, "bob's delivered receipt to commit", || async {
            let chats = api(&c, 1).chats(bob).await.ok()?;
            (chats.first()?["deliveredSeq"] == 1).then_some(())
        })
        .await?;
    }
    for i in 1..=100 {
        api(&c, 1 + i % 3).send(alice, chat, &format!("while away {i}"), &format!("o-{i}")).await?;
    }
    // Two devices of bob, on two other nodes. A device starts after the user's delivered
    // watermark as it is when the device connects, so the laptop (which does not acknowledge)
    // catches up before the phone (which does) connects.
    let mut laptop = Ws::connect(&c.url(2), bob, false).await?;
    let got = laptop.messages(chat, 100, SECS_30).await?;
    assert_eq!(crate::seqs(&got), (2..=101).collect::<Vec<u64>>());
    let mut phone = Ws::connect(&c.url(3), bob, true).await?;
    let got = phone.messages(chat, 100, SECS_30).await?;
    assert_eq!(crate::seqs(&got), (2..=101).collect::<Vec<u64>>());
    api(&c, 1).send(alice, chat, "live", "o-live").await?;
    for dev in [&mut phone, &mut laptop] {
        assert_eq!(crate::seqs(&dev.messages(chat, 1, SECS_10).await?), vec![102]);
    }
    // `sync` names what a device has; it gets the rest again, in order.
    laptop.send(json!({ "type": "sync", "chats": { chat.to_string(): 99 } })).await?;
    assert_eq!(crate::seqs(&laptop.messages(chat, 3, SECS_10).await?), vec![100, 101, 102]);
    Ok(())
}
