//! Presence: seen online across nodes within 2 s, offline with last seen on disconnect, a
//! killed node's users offline after the failure bound, nothing seen without a shared chat,
//! typing to online members only.

use std::time::Duration;
use std::time::Instant;

use serde_json::json;

use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::api;
use crate::users;
use crate::SECS_10;

fn presence_of(user: uuid::Uuid, status: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |f| f["type"] == "presence" && f["userId"] == user.to_string() && f["status"] == status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_and_typing_across_nodes() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 8, ..Default::default() }).await?;
    let u = users(&c, "pres", 4).await?;
    let (alice, bob, carol, stranger) = (&u[0], &u[1], &u[2], &u[3]);
    let chat = api(&c, 1).group(alice, "friends", &[bob, carol]).await?;

    let mut wb = Ws::connect(&c.url(3), bob, false).await?;
    // Alice is offline (never connected): bob's connection says so first.
    wb.wait_for(SECS_10, "alice offline", presence_of(alice.user, "offline")).await?;
    let mut ws_stranger = Ws::connect(&c.url(2), stranger, false).await?;

    let t = Instant::now();
    let wa = Ws::connect(&c.url(1), alice, false).await?;
    wb.wait_for(SECS_10, "alice online", presence_of(alice.user, "online")).await?;
    let seen_in = t.elapsed();
    eprintln!("alice seen online on another node after {seen_in:?}");
    assert!(seen_in < Duration::from_secs(2), "took {seen_in:?}");
    assert_eq!(api(&c, 2).presence(bob, alice.user).await?["status"], "online");

    // Typing reaches bob (online), and neither carol (offline) nor the stranger.
    wa.send(json!({ "type": "typing", "chatId": chat })).await?;
    let f = wb.wait_for(SECS_10, "typing", |f| f["type"] == "typing").await?;
    assert_eq!(
        (f["chatId"].as_str(), f["userId"].as_str()),
        (Some(chat.to_string().as_str()), Some(alice.user.to_string().as_str()))
    );
    // Away, set by the client.
    wa.send(json!({ "type": "presence", "status": "away" })).await?;
    wb.wait_for(SECS_10, "alice away", presence_of(alice.user, "away")).await?;

    // Disconnect: offline, with last seen.
    drop(wa);
    let f = wb.wait_for(SECS_10, "alice offline again", presence_of(alice.user, "offline")).await?;
    assert!(f["lastSeen"].as_str().is_some_and(|s| s.ends_with('Z')), "{f}");
    let rest = api(&c, 1).presence(carol, alice.user).await?;
    assert_eq!(rest["status"], "offline");
    assert!(rest["lastSeen"].is_string());

    // The stranger shares no chat: nothing about alice reached them, and asking is refused.
    while let Some(f) = ws_stranger.next(Duration::from_millis(200)).await {
        assert!(f["type"] != "presence" && f["type"] != "typing", "stranger saw {f}");
    }
    let e = api(&c, 2).presence(stranger, alice.user).await.unwrap_err();
    assert!(e.to_string().contains("not_a_contact"), "{e}");

    // The brief's POST /presence.
    api(&c, 2).set_presence(carol, "online").await?;
    wb.wait_for(SECS_10, "carol online via REST", presence_of(carol.user, "online")).await?;

    // A killed node's users go offline elsewhere once it is declared dead (5 s by default).
    let _wa = Ws::connect(&c.url(1), alice, false).await?;
    wb.wait_for(SECS_10, "alice online before the kill", presence_of(alice.user, "online")).await?;
    let t = Instant::now();
    c.kill(1);
    wb.wait_for(Duration::from_secs(20), "alice offline after node 1 died", presence_of(alice.user, "offline")).await?;
    let took = t.elapsed();
    eprintln!("users of the killed node offline after {took:?}");
    assert!(took < Duration::from_secs(12), "took {took:?}");
    let stats: serde_json::Value =
        c.http.get(format!("{}/internal/v1/presence", c.url(3))).send().await?.json().await?;
    assert!(stats["entries"].as_u64().unwrap_or(0) >= 2, "{stats}");
    Ok(())
}
