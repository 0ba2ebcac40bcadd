//! Push notifications: an offline user's webhook notification is signed, sent once per burst
//! (coalesced), sent again after the user was back online, dead-lettered after failures and
//! replayed, and survives the death of the node that was sending it.

use std::time::Duration;

use hmac::Mac;
use raftchat_tests::chat::Ws;
use raftchat_tests::eventually;
use raftchat_tests::webhook::Call;
use raftchat_tests::webhook::Webhook;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;
use serde_json::Value;

use crate::api;
use crate::users;
use crate::SECS_30;

const SECRET: &str = "push-test-secret-0123456789";

async fn push_stats(c: &Cluster) -> Vec<Value> {
    let mut out = Vec::new();
    for n in c.live() {
        if let Ok(r) = c.http.get(format!("{}/internal/v1/push", c.url(n))).send().await {
            out.push(r.json::<Value>().await.unwrap_or(Value::Null)["stats"].clone());
        }
    }
    out
}

async fn total(c: &Cluster, field: &str) -> u64 {
    push_stats(c).await.iter().map(|s| s[field].as_u64().unwrap_or(0)).sum()
}

/// Waits until every live node's notifier has finished two more passes (so whatever it had to
/// do about what is already committed is done).
async fn settle(c: &Cluster) -> anyhow::Result<()> {
    let start: Vec<u64> = push_stats(c).await.iter().map(|s| s["passes"].as_u64().unwrap_or(0)).collect();
    eventually(SECS_30, "two notifier passes on every node", || async {
        let now: Vec<u64> = push_stats(c).await.iter().map(|s| s["passes"].as_u64().unwrap_or(0)).collect();
        (now.len() == start.len() && now.iter().zip(&start).all(|(n, s)| *n >= s + 2)).then_some(())
    })
    .await
}

fn check_signature(call: &Call) -> anyhow::Result<()> {
    let sig = call.headers.get("x-raftchat-signature").cloned().unwrap_or_default();
    let (t, v1) = sig.split_once(",v1=").unwrap_or_default();
    let t = t.trim_start_matches("t=");
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes())?;
    m.update(format!("{t}.").as_bytes());
    m.update(&call.raw);
    let want: String = m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v1, want, "bad signature {sig:?}");
    assert_eq!(call.headers.get("idempotency-key").map(String::as_str), call.body["id"].as_str());
    Ok(())
}

async fn admin(c: &Cluster, node: u64, args: &[&str]) -> anyhow::Result<(bool, Value)> {
    let url = c.url(node);
    let mut all = vec!["admin", "--server", &url, "--output", "json"];
    all.extend_from_slice(args);
    let out = tokio::process::Command::new(raftchat_tests::binary()?).args(&all).output().await?;
    Ok((out.status.success(), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)))
}

async fn wait_presence(c: &Cluster, user: uuid::Uuid, status: &str) -> anyhow::Result<()> {
    eventually(SECS_30, &format!("{user} {status} on every node"), || async {
        for n in c.live() {
            let v: Value =
                c.http.get(format!("{}/internal/v1/presence/{user}", c.url(n))).send().await.ok()?.json().await.ok()?;
            if v["status"] != status {
                return None;
            }
        }
        Some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_to_offline_users() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let hook = Webhook::start().await?;
    let url = hook.url();
    let extra = [
        "--push-webhook",
        &url,
        "--push-secret",
        SECRET,
        "--push-max-attempts",
        "5",
        "--push-retry-base-ms",
        "400",
        "--push-retry-max-ms",
        "2000",
    ];
    let c = Cluster::start(Opts {
        nodes: 3,
        data_groups: 8,
        extra_args: extra.map(String::from).to_vec(),
        ..Default::default()
    })
    .await?;
    let u = users(&c, "push", 4).await?;
    let (alice, bob, carol, dave) = (&u[0], &u[1], &u[2], &u[3]);
    let _alice_online = Ws::connect(&c.url(1), alice, true).await?;
    wait_presence(&c, alice.user, "online").await?;

    // A burst to offline bob: one signed notification.
    let chat = api(&c, 1).direct(alice, bob.user).await?;
    for i in 1..=5 {
        api(&c, 1).send(alice, chat, &format!("m{i}"), &format!("b{i}")).await?;
    }
    eventually(SECS_30, "bob's notification", || async { (!hook.calls_for(bob.user).is_empty()).then_some(()) })
        .await?;
    eventually(SECS_30, "the notifier saw the burst", || async {
        (total(&c, "messagesSeen").await >= 5).then_some(())
    })
    .await?;
    settle(&c).await?;
    let calls = hook.calls_for(bob.user);
    assert_eq!(calls.len(), 1, "one notification per burst: {:?}", calls.iter().map(|c| &c.body).collect::<Vec<_>>());
    check_signature(&calls[0])?;
    assert_eq!(calls[0].body["chatId"], chat.to_string());
    assert_eq!(calls[0].body["lastMessage"]["from"], alice.user.to_string());
    assert!(calls[0].body["count"].as_u64().unwrap_or(0) >= 1);

    // Bob comes online, then leaves: the next message notifies again, under a new key.
    let online = Ws::connect(&c.url(2), bob, true).await?;
    wait_presence(&c, bob.user, "online").await?;
    settle(&c).await?;
    drop(online);
    wait_presence(&c, bob.user, "offline").await?;
    api(&c, 1).send(alice, chat, "again", "b6").await?;
    eventually(SECS_30, "bob's second notification", || async { (hook.calls_for(bob.user).len() == 2).then_some(()) })
        .await?;
    let second = &hook.calls_for(bob.user)[1];
    check_signature(second)?;
    assert_eq!(second.body["lastMessage"]["preview"], "again");
    assert_ne!(second.body["id"], calls[0].body["id"]);

    // A failing webhook: every attempt fails, the notification lands in the dead-letter queue,
    // and a replay sends it under the same key.
    hook.fail(true);
    let chat_c = api(&c, 1).direct(alice, carol.user).await?;
    api(&c, 1).send(alice, chat_c, "hello carol", "c1").await?;
    let (ok, dlq) = eventually(SECS_30, "carol's notification dead-lettered", || async {
        let (ok, v) = admin(&c, 2, &["dlq", "list"]).await.ok()?;
        (v["count"] == 1).then_some((ok, v))
    })
    .await?;
    assert!(ok);
    let failed = hook.calls_for(carol.user);
    assert_eq!(failed.len(), 5, "every attempt was made");
    assert!(failed.iter().all(|f| f.status == 503 && f.body["id"] == dlq["notifications"][0]["id"]));
    hook.fail(false);
    let (ok, replay) = admin(&c, 3, &["dlq", "replay"]).await?;
    assert!(ok, "replay failed: {replay}");
    let last = hook.calls_for(carol.user).pop().map(|c| (c.status, c.body["id"].clone()));
    assert_eq!(last, Some((200, dlq["notifications"][0]["id"].clone())));
    assert_eq!(admin(&c, 1, &["dlq", "list"]).await?.1["count"], 0);

    // The node sending dave's notification dies after its first attempt; another sends it.
    hook.fail(true);
    let chat_d = api(&c, 1).direct(alice, dave.user).await?;
    api(&c, 1).send(alice, chat_d, "hi dave", "d1").await?;
    let first =
        eventually(SECS_30, "dave's first attempt", || async { hook.calls_for(dave.user).first().cloned() }).await?;
    let sender: u64 = first.headers.get("x-raftchat-node").and_then(|n| n.parse().ok()).unwrap_or(0);
    c.kill(sender);
    hook.fail(false);
    let delivered = eventually(Duration::from_secs(60), "dave's notification from another node", || async {
        hook.calls_for(dave.user).into_iter().find(|c| c.status == 200)
    })
    .await?;
    assert_eq!(delivered.body["id"], first.body["id"]);
    assert_ne!(delivered.headers.get("x-raftchat-node"), first.headers.get("x-raftchat-node"));
    Ok(())
}
