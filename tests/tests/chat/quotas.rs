//! Per-user quotas, each tripped with a small flag value: chat creation, membership changes and
//! receipts (REST and WebSocket) are refused with `rate_limited` and leave every group's applied
//! index where it was; typing past its quota is dropped; WebSockets per user on a node; upload
//! bytes per user per day, counted over the cluster; and the send limit, shared by the nodes a
//! user is connected through.

use futures::SinkExt;
use futures::StreamExt;
use raftchat_tests::chat::Api;
use raftchat_tests::chat::ApiErr;
use raftchat_tests::chat::Ws;
use raftchat_tests::eventually;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;
use serde_json::json;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::api;
use crate::users;
use crate::SECS_10;
use crate::SECS_30;

fn flags(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs.iter().flat_map(|(k, v)| [format!("--{k}"), v.to_string()]).collect()
}

/// A call answered as (status, `Retry-After`, error code).
async fn call(
    a: &Api,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Option<u64>, String)> {
    let mut req = a.http.request(method, format!("{}/api/v1{path}", a.base)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let v: Value = r.json().await.unwrap_or(Value::Null);
    Ok((status, retry, v["error"]["code"].as_str().unwrap_or("").to_string()))
}

fn limited(answer: &(u16, Option<u64>, String)) -> bool {
    answer.0 == 429 && answer.1.is_some_and(|s| s >= 1) && answer.2 == "rate_limited"
}

/// Applied entries over every group of node 1 (which holds a replica of each).
async fn applied(c: &Cluster) -> anyhow::Result<u64> {
    let s = c.status(1).await?;
    Ok(s["groups"].as_array().into_iter().flatten().filter_map(|g| g["appliedIndex"].as_u64()).sum())
}

/// The applied entries once they have stopped moving (the same over several polls).
async fn settled(c: &Cluster) -> anyhow::Result<u64> {
    let seen = std::sync::Mutex::new((u64::MAX, 0u32));
    eventually(SECS_10, "a quiet cluster", || async {
        let a = applied(c).await.ok()?;
        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
        *s = if s.0 == a { (a, s.1 + 1) } else { (a, 0) };
        (s.1 >= 6).then_some(a)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_chats_members_and_receipts_never_reach_raft() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let limits = [
        ("chats-created-per-sec", "0.001"),
        ("chats-created-burst", "3"),
        ("membership-changes-per-sec", "0.001"),
        ("membership-changes-burst", "2"),
        ("receipts-per-sec", "0.001"),
        ("receipts-burst", "3"),
        ("typing-per-sec", "0.001"),
        ("typing-burst", "2"),
    ];
    let c = Cluster::start(Opts { data_groups: 3, extra_args: flags(&limits), ..Default::default() }).await?;
    let a = api(&c, 1);
    let u = users(&c, "quota", 5).await?;
    let (alice, bob, carol, dave, erin) = (&u[0], &u[1], &u[2], &u[3], &u[4]);
    // Alice's three chats take her chat-creation burst; two invites her membership burst.
    let with_bob = a.direct(alice, bob.user).await?;
    let with_carol = a.direct(alice, carol.user).await?;
    let group = a.group(alice, "quota", &[bob]).await?;
    for invitee in [carol, dave] {
        let body = json!({ "userId": invitee.user });
        let r = call(&a, reqwest::Method::POST, &format!("/chats/{group}/members"), &alice.token, Some(body)).await?;
        assert_eq!(r.0, 200, "{r:?}");
    }
    // Her receipts burst, over REST.
    a.send(bob, with_bob, "hello", "q1").await?;
    for _ in 0..3 {
        a.mark_read(alice, with_bob, 1).await?;
    }

    // Typing past its quota is dropped without an answer: of three signals (three chats, so the
    // one-per-chat-per-second rule passes them all), the third never reaches Bob, while the
    // message Alice sends after it does (same node: typing and deliveries share Bob's queue).
    let mut wa = Ws::connect(&c.url(1), alice, false).await?;
    let mut wb = Ws::connect(&c.url(1), bob, false).await?;
    for chat in [with_carol, with_bob, group] {
        wa.send(json!({ "type": "typing", "chatId": chat })).await?;
    }
    wa.send(json!({ "type": "message", "chatId": group, "text": "after typing", "clientMsgId": "q2" })).await?;
    let mut typing_seen = Vec::new();
    loop {
        let f = wb.next(SECS_10).await.ok_or_else(|| anyhow::anyhow!("no message in the group for Bob"))?;
        if f["type"] == "typing" {
            typing_seen.push(f["chatId"].as_str().unwrap_or("").to_string());
        }
        if f["type"] == "message" && f["chatId"] == group.to_string() {
            break;
        }
    }
    assert_eq!(typing_seen, vec![with_bob.to_string()], "the signal past the typing quota was dropped");

    // Now everything Alice does over her quotas is refused before Raft.
    let before = settled(&c).await?;
    let post = reqwest::Method::POST;
    let direct = json!({ "type": "direct", "members": [dave.user] });
    let created = call(&a, post.clone(), "/chats", &alice.token, Some(direct)).await?;
    assert!(limited(&created), "chat creation: {created:?}");
    let members = format!("/chats/{group}/members");
    let invited = call(&a, post.clone(), &members, &alice.token, Some(json!({ "userId": erin.user }))).await?;
    assert!(limited(&invited), "add member: {invited:?}");
    let removed = call(&a, reqwest::Method::DELETE, &format!("{members}/{}", dave.user), &alice.token, None).await?;
    assert!(limited(&removed), "remove member: {removed:?}");
    let read = call(&a, post, &format!("/chats/{with_bob}/read"), &alice.token, Some(json!({ "seq": 1 }))).await?;
    assert!(limited(&read), "REST receipt: {read:?}");
    for kind in ["read", "delivered"] {
        wa.send(json!({ "type": kind, "chatId": with_bob, "seq": 1 })).await?;
        let e = wa.wait_for(SECS_10, kind, |f| f["type"] == "error").await?;
        assert_eq!((e["code"].as_str(), e["ref"].as_str()), (Some("rate_limited"), Some(kind)), "{e}");
    }
    assert_eq!(applied(&c).await?, before, "a refused request wrote nothing");
    assert!(a.invites(erin).await?.is_empty(), "the refused invite does not exist");
    let dave_chats = a.chats(dave).await?;
    assert!(dave_chats.iter().all(|ch| ch["type"] != "direct"), "the refused chat does not exist: {dave_chats:?}");
    // Another user's buckets are full.
    a.direct(bob, carol.user).await?;
    Ok(())
}

/// The status of a WebSocket upgrade with the token in the subprotocol (101 when it opened).
async fn upgrade_status(base: &str, token: &str) -> anyhow::Result<u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/ws", base.replacen("http", "ws", 1));
    let connector = if url.starts_with("wss://") { raftchat_tests::tls::ws_connector() } else { None };
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("sec-websocket-protocol", format!("raftchat, bearer.{token}").parse()?);
    match tokio_tungstenite::connect_async_tls_with_config(req, None, false, connector).await {
        Ok(_) => Ok(101),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Ok(r.status().as_u16()),
        Err(e) => Err(e.into()),
    }
}

/// Opens a WebSocket that authenticates by its first frame; returns the error code and the
/// close code it gets.
async fn first_frame_refusal(base: &str, token: &str) -> anyhow::Result<(String, Option<u16>)> {
    let url = format!("{}/ws", base.replacen("http", "ws", 1));
    let connector = if url.starts_with("wss://") { raftchat_tests::tls::ws_connector() } else { None };
    let (mut s, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, false, connector).await?;
    s.send(WsMessage::Text(json!({ "type": "auth", "token": token }).to_string().into())).await?;
    let (mut code, mut close) = (String::new(), None);
    let _ = tokio::time::timeout(SECS_10, async {
        while let Some(Ok(m)) = s.next().await {
            match m {
                WsMessage::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or_default();
                    code = v["code"].as_str().unwrap_or("").to_string();
                }
                WsMessage::Close(f) => {
                    close = f.map(|f| u16::from(f.code));
                    return;
                }
                _ => {}
            }
        }
    })
    .await;
    Ok((code, close))
}

fn api_err(e: &anyhow::Error) -> Option<(u16, String)> {
    e.downcast_ref::<ApiErr>().map(|a| (a.status, a.code.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_per_user_and_upload_bytes_per_day() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let limits = [("ws-connections-per-user-max", "2"), ("upload-mib-per-user-per-day", "1")];
    let c = Cluster::start(Opts { data_groups: 3, extra_args: flags(&limits), ..Default::default() }).await?;
    let u = users(&c, "wsq", 2).await?;
    let (alice, bob) = (&u[0], &u[1]);

    // Two WebSockets of Alice on node 1; a third is refused before the upgrade, or with close
    // code 4008 when it authenticates by its first frame; node 2 and Bob are not affected.
    let first = Ws::connect(&c.url(1), alice, false).await?;
    let _second = Ws::connect(&c.url(1), alice, false).await?;
    assert_eq!(upgrade_status(&c.url(1), &alice.token).await?, 429);
    assert_eq!(first_frame_refusal(&c.url(1), &alice.token).await?, ("too_many_connections".into(), Some(4008)));
    let _elsewhere = Ws::connect(&c.url(2), alice, false).await?;
    let _bob = Ws::connect(&c.url(1), bob, false).await?;
    // Closing one gives its slot back.
    drop(first);
    eventually(SECS_10, "a slot once a socket closed", || async {
        (upgrade_status(&c.url(1), &alice.token).await.ok()? == 101).then_some(())
    })
    .await?;

    // 1 MiB a day over the cluster: 600 KiB through node 1, then a second 600 KiB announced
    // through node 2 is refused before a byte is stored.
    const KIB: usize = 1024;
    api(&c, 1).upload(alice, vec![1u8; 600 * KIB], "application/octet-stream", "a.bin").await?;
    let r = api(&c, 2)
        .http
        .post(format!("{}/api/v1/media", c.url(2)))
        .bearer_auth(&alice.token)
        .header("content-type", "application/octet-stream")
        .body(vec![2u8; 600 * KIB])
        .send()
        .await?;
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    assert_eq!(r.status().as_u16(), 429);
    assert!(retry.is_some_and(|s| (1..=86_400).contains(&s)), "Retry-After until the day ends: {retry:?}");
    let body: Value = r.json().await?;
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    // What is left still fits; a multipart upload (its file's length unannounced) past the rest
    // is cut off while it streams, and counts nothing.
    api(&c, 3).upload(alice, vec![3u8; 100 * KIB], "application/octet-stream", "b.bin").await?;
    let e = api(&c, 1).upload_multipart(alice, &vec![4u8; 400 * KIB], "application/octet-stream", "c.bin").await;
    assert_eq!(e.as_ref().err().and_then(api_err), Some((429, "quota_exceeded".into())), "{e:?}");
    api(&c, 2).upload(alice, vec![5u8; 100 * KIB], "application/octet-stream", "d.bin").await?;
    // Bob's day is his own.
    api(&c, 1).upload(bob, vec![6u8; 900 * KIB], "application/octet-stream", "e.bin").await?;
    Ok(())
}

/// Entries in node `n`'s presence table owned by node `owner`.
async fn entries_owned(c: &Cluster, n: u64, owner: u64) -> Option<u64> {
    let v: Value = c.http.get(format!("{}/internal/v1/presence", c.url(n))).send().await.ok()?.json().await.ok()?;
    Some(v["entriesPerOwner"][owner.to_string()].as_u64().unwrap_or(0))
}

/// Sends through the given nodes in turn until every one refuses; the messages accepted.
async fn sends_until_refused(c: &Cluster, s: &raftchat_tests::chat::Session, chat: uuid::Uuid, nodes: &[u64]) -> usize {
    let (mut accepted, mut refused_in_a_row) = (0, 0);
    for i in 0..200 {
        if refused_in_a_row >= 2 * nodes.len() {
            break;
        }
        match api(c, nodes[i % nodes.len()]).send(s, chat, "x", &format!("{}-{i}", s.username)).await {
            Ok(_) => (accepted, refused_in_a_row) = (accepted + 1, 0),
            Err(e) => {
                assert_eq!(api_err(&e), Some((429, "rate_limited".into())), "{e}");
                refused_in_a_row += 1;
            }
        }
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_limit_is_shared_by_the_nodes_a_user_is_on() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    // A burst of 20 that barely refills (one message per 10 s).
    let limits = [("sends-per-sec", "0.1"), ("sends-burst", "20")];
    let c = Cluster::start(Opts { data_groups: 3, extra_args: flags(&limits), ..Default::default() }).await?;
    let u = users(&c, "share", 2).await?;
    let (alice, bob) = (&u[0], &u[1]);
    let chat = api(&c, 1).direct(alice, bob.user).await?;
    // Alice is connected through nodes 1 and 2 (the only connections in the cluster), once each
    // node's presence table says so (gossip, every 200 ms).
    let _w1 = Ws::connect(&c.url(1), alice, false).await?;
    let _w2 = Ws::connect(&c.url(2), alice, false).await?;
    eventually(SECS_30, "nodes 1 and 2 see each other's connection", || async {
        (entries_owned(&c, 1, 2).await? >= 1 && entries_owned(&c, 2, 1).await? >= 1).then_some(())
    })
    .await?;
    // Through both nodes she gets about one burst in total (each node grants half), not two.
    let shared = sends_until_refused(&c, alice, chat, &[1, 2]).await;
    assert!((18..=22).contains(&shared), "sent {shared} through two nodes with a burst of 20");
    // Bob, connected nowhere, gets the whole burst through one node.
    let alone = sends_until_refused(&c, bob, chat, &[1]).await;
    eprintln!("accepted: {shared} through two nodes, {alone} through one (burst 20)");
    assert!((19..=22).contains(&alone), "sent {alone} through one node with a burst of 20");
    Ok(())
}
