//! A device that stops answering the server's pings goes offline after the heartbeat timeout;
//! one that sends nothing goes away after the inactivity timeout, and back online when it
//! speaks again.

use std::time::Duration;

use serde_json::json;

use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::api;
use crate::users;

fn presence_of(user: uuid::Uuid, status: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |f| f["type"] == "presence" && f["userId"] == user.to_string() && f["status"] == status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heartbeat_timeout_and_inactivity() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let extra_args = ["--heartbeat-secs", "3", "--away-secs", "2"].map(String::from).to_vec();
    let c = Cluster::start(Opts { data_groups: 8, extra_args, ..Default::default() }).await?;
    let u = users(&c, "hb", 3).await?;
    let (watcher, idle, silent) = (&u[0], &u[1], &u[2]);
    api(&c, 1).group(watcher, "hb", &[idle, silent]).await?;
    let mut w = Ws::connect(&c.url(1), watcher, false).await?;

    // Inactive: away after 2 s without a frame, online again on the next frame.
    let wi = Ws::connect(&c.url(2), idle, false).await?;
    w.wait_for(Duration::from_secs(10), "idle online", presence_of(idle.user, "online")).await?;
    w.wait_for(Duration::from_secs(10), "idle away", presence_of(idle.user, "away")).await?;
    wi.send(json!({ "type": "ping" })).await?;
    w.wait_for(Duration::from_secs(10), "idle back online", presence_of(idle.user, "online")).await?;

    // Silent: a raw socket that never reads, so it never answers the server's pings.
    let url = format!("{}/ws?token={}", c.url(3).replacen("http", "ws", 1), silent.token);
    let (_stuck, _) = tokio_tungstenite::connect_async(url).await?;
    w.wait_for(Duration::from_secs(10), "silent online", presence_of(silent.user, "online")).await?;
    let t = std::time::Instant::now();
    let f = w.wait_for(Duration::from_secs(15), "silent offline", presence_of(silent.user, "offline")).await?;
    eprintln!("silent device offline after {:?}", t.elapsed());
    assert!(f["lastSeen"].is_string());
    Ok(())
}

/// A status posted over REST lasts its TTL: online while it is refreshed, offline after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_presence_expires_after_its_ttl() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let extra_args = ["--rest-presence-ttl-secs", "2"].map(String::from).to_vec();
    let c = Cluster::start(Opts { data_groups: 3, extra_args, ..Default::default() }).await?;
    let u = users(&c, "rest", 2).await?;
    let (poster, reader) = (&u[0], &u[1]);
    api(&c, 1).direct(poster, reader.user).await?;
    let started = std::time::Instant::now();
    api(&c, 1).set_presence(poster, "online").await?;
    let status = |v: serde_json::Value| v["status"].as_str().unwrap_or("").to_string();
    // Seen on another node once gossiped.
    raftchat_tests::eventually(Duration::from_secs(5), "the REST status on node 2", || async {
        (status(api(&c, 2).presence(reader, poster.user).await.ok()?) == "online").then_some(())
    })
    .await?;
    raftchat_tests::eventually(Duration::from_secs(15), "the REST status to expire", || async {
        (status(api(&c, 2).presence(reader, poster.user).await.ok()?) == "offline").then_some(())
    })
    .await?;
    assert!(started.elapsed() >= Duration::from_secs(2), "expired by its TTL, not at once");
    Ok(())
}
