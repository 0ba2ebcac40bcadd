//! A 200-member group spread over 3 nodes receives every message in order; admins add and
//! remove members; a member added later sees the chat appear.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::api;
use crate::users;
use crate::SECS_30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_200_member_group_receives_every_message_in_order() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 16, ..Default::default() }).await?;
    let members = users(&c, "member", 201).await?;
    let (owner, rest) = (&members[0], &members[1..200]);
    let late = &members[200];
    let ids = c.ids();
    let mut sockets = Vec::new();
    for (i, m) in members[..200].iter().enumerate() {
        sockets.push(Ws::connect(&c.url(ids[i % ids.len()]), m, true).await?);
    }
    let ids_of: Vec<uuid::Uuid> = rest.iter().map(|m| m.user).collect();
    let chat = api(&c, 2).group_invite(owner, "two hundred", &ids_of).await?;
    // Each invitee's connection hears of the invite, then accepts it.
    for (i, s) in sockets.iter_mut().enumerate().skip(1) {
        s.wait_for(SECS_30, "invite frame", |f| f["type"] == "invite" && f["chatId"] == chat.to_string()).await?;
        api(&c, ids[i % ids.len()]).join(&members[i], chat).await?;
    }
    // Every member's connection learns of the new chat.
    for s in sockets.iter_mut() {
        s.wait_for(SECS_30, "chat frame", |f| f["type"] == "chat" && f["member"] == true).await?;
    }
    for i in 0..20 {
        api(&c, ids[i % 3]).send(owner, chat, &format!("m{i}"), &format!("g{i}")).await?;
    }
    let results: Vec<anyhow::Result<Vec<serde_json::Value>>> = futures::stream::iter(sockets.iter_mut())
        .then(|s| async move { s.messages(chat, 20, SECS_30).await })
        .collect()
        .await;
    for (i, r) in results.into_iter().enumerate() {
        let got = r?;
        assert_eq!(crate::seqs(&got), (1..=20).collect::<Vec<u64>>(), "member {i}");
        assert!(got.iter().enumerate().all(|(k, f)| f["text"] == format!("m{k}")));
    }

    // Only admins invite; nobody joins uninvited; the joined member's connection sees the chat
    // and then live messages.
    let mut wl = Ws::connect(&c.url(3), late, true).await?;
    let e = api(&c, 1).add_member(&members[5], chat, late.user).await.unwrap_err();
    assert!(e.to_string().contains("not_admin"), "{e}");
    let e = api(&c, 2).join(late, chat).await.unwrap_err();
    assert!(e.to_string().contains("not_invited"), "{e}");
    api(&c, 1).add_member(owner, chat, late.user).await?;
    api(&c, 2).join(late, chat).await?;
    wl.wait_for(SECS_30, "chat frame for the late member", |f| f["type"] == "chat" && f["chatId"] == chat.to_string())
        .await?;
    api(&c, 2).send(owner, chat, "welcome", "g-welcome").await?;
    let got = wl.messages(chat, 1, SECS_30).await?;
    assert_eq!(got[0]["seq"].as_u64(), Some(21));

    // A member leaves; the socket is told and gets nothing more; sending is refused.
    api(&c, 3).remove_member(&members[7], chat, members[7].user).await?;
    sockets[7].wait_for(SECS_30, "left frame", |f| f["type"] == "chat" && f["member"] == false).await?;
    let e = api(&c, 1).send(&members[7], chat, "still here?", "left-1").await.unwrap_err();
    assert!(e.to_string().contains("not_member"), "{e}");
    api(&c, 2).send(owner, chat, "after leave", "g-after").await?;
    sockets[8].messages(chat, 2, SECS_30).await?;
    let leftover = sockets[7].next(Duration::from_millis(500)).await;
    assert!(leftover.as_ref().is_none_or(|f| f["type"] != "message"), "{leftover:?}");
    sockets[8].send(json!({ "type": "ping" })).await?;
    Ok(())
}
