//! Consent: a blocked user cannot open a direct chat, message, invite or see the presence of
//! whoever blocked them (checked on other nodes than the block was made on); group members join
//! only by accepting an invite, which reaches their connection as an `invite` frame.

use std::time::Duration;

use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::api;
use crate::users;
use crate::SECS_10;

fn refused_as(e: anyhow::Error, code: &str) {
    assert!(e.to_string().contains(code), "expected {code}, got {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocked_user_cannot_reach_who_blocked_them() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 8, ..Default::default() }).await?;
    let u = users(&c, "blk", 4).await?;
    let (alice, mallory, bob, carol) = (&u[0], &u[1], &u[2], &u[3]);

    // A direct chat that existed before the block, and a shared group.
    let direct = api(&c, 1).direct(mallory, alice.user).await?;
    api(&c, 2).send(mallory, direct, "hi", "m1").await?;
    let group = api(&c, 3).group(bob, "shared", &[alice, mallory]).await?;
    let mut wm = Ws::connect(&c.url(2), mallory, false).await?;
    let wa = Ws::connect(&c.url(1), alice, false).await?;
    wm.wait_for(SECS_10, "alice online", |f| {
        f["type"] == "presence" && f["userId"] == alice.user.to_string() && f["status"] == "online"
    })
    .await?;

    api(&c, 3).block(alice, mallory.user).await?;
    assert_eq!(api(&c, 1).blocks(alice).await?, vec![mallory.user]);

    // Messages in the direct chat (by chat id or by user id) are refused, on any node.
    for node in [1, 2, 3] {
        refused_as(
            api(&c, node).send(mallory, direct, "still there?", &format!("m-{node}")).await.unwrap_err(),
            "blocked",
        );
    }
    refused_as(api(&c, 2).send_to_user(mallory, alice.user, "by id").await.unwrap_err(), "blocked");
    // ... also over WebSocket, where typing is refused as well.
    wm.send(serde_json::json!({ "type": "message", "chatId": direct, "text": "ws", "clientMsgId": "w1" })).await?;
    wm.wait_for(SECS_10, "blocked error", |f| f["type"] == "error" && f["code"] == "blocked" && f["ref"] == "w1")
        .await?;
    wm.send(serde_json::json!({ "type": "typing", "chatId": direct })).await?;
    wm.wait_for(SECS_10, "typing refused", |f| f["type"] == "error" && f["code"] == "blocked").await?;
    // Alice still writes, and mallory still reads the chat's history.
    api(&c, 1).send(alice, direct, "bye", "a1").await?;
    assert_eq!(api(&c, 2).history(mallory, direct, 0).await?.len(), 2);

    // Presence: mallory's connection stops following alice; asking is refused.
    refused_as(api(&c, 2).presence(mallory, alice.user).await.unwrap_err(), "not_a_contact");
    drop(wa);
    while let Some(f) = wm.next(Duration::from_millis(1500)).await {
        assert!(!(f["type"] == "presence" && f["userId"] == alice.user.to_string()), "mallory saw {f}");
    }
    // A new connection of mallory never gets alice's presence either, though they share a group.
    let mut wm2 = Ws::connect(&c.url(3), mallory, false).await?;
    let _wa = Ws::connect(&c.url(2), alice, false).await?;
    while let Some(f) = wm2.next(Duration::from_millis(1500)).await {
        assert!(!(f["type"] == "presence" && f["userId"] == alice.user.to_string()), "mallory saw {f}");
    }

    // Mallory cannot invite alice to a group, at creation or later.
    refused_as(api(&c, 1).group_invite(mallory, "trap", &[alice.user]).await.unwrap_err(), "blocked");
    let own = api(&c, 1).group_invite(mallory, "own", &[]).await?;
    refused_as(api(&c, 1).add_member(mallory, own, alice.user).await.unwrap_err(), "blocked");
    assert!(api(&c, 2).invites(alice).await?.is_empty());
    // In the group they share, mallory may still write (groups are the members' business).
    api(&c, 3).send(mallory, group, "group talk", "g1").await?;

    // A block made before any direct chat exists: the chat cannot be opened at all.
    api(&c, 2).block(carol, mallory.user).await?;
    refused_as(api(&c, 3).direct(mallory, carol.user).await.unwrap_err(), "blocked");
    refused_as(api(&c, 1).send_to_user(mallory, carol.user, "hello?").await.unwrap_err(), "blocked");
    // Carol may still open it herself (she blocked, she was not blocked)... and mallory stays muted there.
    let cm = api(&c, 1).direct(carol, mallory.user).await?;
    refused_as(api(&c, 2).send(mallory, cm, "now?", "c1").await.unwrap_err(), "blocked");

    // Unblocking restores everything, and the chat is in both lists.
    api(&c, 1).unblock(alice, mallory.user).await?;
    api(&c, 2).send(mallory, direct, "thanks", "m-after").await?;
    assert!(api(&c, 3).blocks(alice).await?.is_empty());
    assert_eq!(api(&c, 3).presence(mallory, alice.user).await?["status"], "online");
    api(&c, 3).unblock(carol, mallory.user).await?;
    api(&c, 2).send(mallory, cm, "hi carol", "c2").await?;
    let listed = |chats: Vec<serde_json::Value>| chats.iter().any(|ch| ch["chatId"] == cm.to_string());
    assert!(listed(api(&c, 1).chats(mallory).await?) && listed(api(&c, 2).chats(carol).await?));

    // Refusals: yourself, and unknown users.
    refused_as(api(&c, 1).block(alice, alice.user).await.unwrap_err(), "400");
    refused_as(api(&c, 1).block(alice, uuid::Uuid::new_v4()).await.unwrap_err(), "unknown_user");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_join_groups_only_by_accepting_an_invite() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 8, ..Default::default() }).await?;
    let u = users(&c, "inv", 3).await?;
    let (owner, guest, other) = (&u[0], &u[1], &u[2]);
    let mut wg = Ws::connect(&c.url(3), guest, false).await?;

    let chat = api(&c, 1).group_invite(owner, "club", &[guest.user, other.user]).await?;
    // The invite reaches the guest's connection (another node), with the group's name.
    let f = wg.wait_for(SECS_10, "invite", |f| f["type"] == "invite").await?;
    assert_eq!((f["chatId"].as_str(), f["name"].as_str()), (Some(chat.to_string().as_str()), Some("club")));
    assert_eq!(f["from"], owner.user.to_string());
    let listed = api(&c, 2).invites(guest).await?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["memberCount"], 1);

    // Not a member before accepting: no history, no sending, not in the chat list.
    refused_as(api(&c, 2).history(guest, chat, 0).await.unwrap_err(), "not_member");
    refused_as(api(&c, 2).send(guest, chat, "early", "e1").await.unwrap_err(), "not_member");
    assert!(api(&c, 2).chats(guest).await?.is_empty());
    let shown = api(&c, 1).chats(owner).await?;
    assert_eq!(shown[0]["memberCount"], 1);

    // Accepting joins: the chat frame, the chat in the list, messages flow.
    let joined = api(&c, 2).join(guest, chat).await?;
    assert_eq!(joined["memberCount"], 2);
    wg.wait_for(SECS_10, "chat frame", |f| f["type"] == "chat" && f["chatId"] == chat.to_string()).await?;
    api(&c, 3).send(guest, chat, "hello club", "h1").await?;
    assert!(api(&c, 1).invites(guest).await?.is_empty());
    // Joining again is harmless.
    api(&c, 1).join(guest, chat).await?;

    // Declining: the invite is gone and joining is refused.
    api(&c, 3).decline(other, chat).await?;
    assert!(api(&c, 1).invites(other).await?.is_empty());
    refused_as(api(&c, 2).join(other, chat).await.unwrap_err(), "not_invited");
    // Nobody joins a group uninvited, nor a direct chat at all.
    let stranger = api(&c, 1).signup("inv-stranger").await?;
    refused_as(api(&c, 1).join(&stranger, chat).await.unwrap_err(), "not_invited");
    let direct = api(&c, 1).direct(owner, guest.user).await?;
    refused_as(api(&c, 1).join(&stranger, direct).await.unwrap_err(), "400");
    Ok(())
}
