//! Bad input gets a clear error and the socket keeps working; a non-member is refused
//! everywhere; bad tokens are refused.

use serde_json::json;

use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::api;
use crate::users;
use crate::SECS_10;

fn code(e: &anyhow::Error) -> String {
    e.downcast_ref::<raftchat_tests::chat::ApiErr>()
        .map(|a| format!("{} {}", a.status, a.code))
        .unwrap_or_else(|| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_frames_non_members_and_bad_tokens_are_refused() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 16, ..Default::default() }).await?;
    let u = users(&c, "bad", 3).await?;
    let (alice, bob, eve) = (&u[0], &u[1], &u[2]);
    let chat = api(&c, 1).direct(alice, bob.user).await?;
    api(&c, 1).send(alice, chat, "private", "b-1").await?;

    let mut w = Ws::connect(&c.url(2), alice, false).await?;
    let expect = |code: &'static str| move |f: &serde_json::Value| f["type"] == "error" && f["code"] == code;
    w.send_raw("{this is not json").await?;
    let e = w.wait_for(SECS_10, "bad_frame", expect("bad_frame")).await?;
    assert_eq!(e["ref"], "{this is not json");
    w.send(json!({ "type": "dance", "clientMsgId": "d1" })).await?;
    assert_eq!(w.wait_for(SECS_10, "unknown_type", expect("unknown_type")).await?["ref"], "d1");
    let big = "x".repeat(64 * 1024 + 1);
    w.send(json!({ "type": "message", "chatId": chat, "text": big, "clientMsgId": "big" })).await?;
    assert_eq!(w.wait_for(SECS_10, "too_large", expect("too_large")).await?["ref"], "big");
    w.send(
        json!({ "type": "message", "chatId": uuid::Uuid::new_v4(), "text": "to nowhere", "clientMsgId": "nowhere" }),
    )
    .await?;
    assert_eq!(w.wait_for(SECS_10, "unknown chat", expect("unknown_chat")).await?["ref"], "nowhere");
    w.send(json!({ "type": "ping" })).await?;
    w.wait_for(SECS_10, "pong after errors", |f| f["type"] == "pong").await?;
    w.send(json!({ "type": "message", "chatId": chat, "text": "still works", "clientMsgId": "ok-1" })).await?;
    assert_eq!(w.wait_for(SECS_10, "ack", |f| f["type"] == "ack").await?["seq"], 2);

    // Eve is no member: refused on every path, on every node.
    for node in c.ids() {
        let a = api(&c, node);
        assert_eq!(code(&a.send(eve, chat, "hi", &format!("e{node}")).await.unwrap_err()), "403 not_member");
        assert_eq!(code(&a.history(eve, chat, 0).await.unwrap_err()), "403 not_member");
        assert_eq!(code(&a.mark_read(eve, chat, 1).await.unwrap_err()), "403 not_member");
        assert_eq!(code(&a.add_member(eve, chat, eve.user).await.unwrap_err()), "400 invalid");
    }
    let mut we = Ws::connect(&c.url(3), eve, false).await?;
    we.send(json!({ "type": "message", "chatId": chat, "text": "let me in", "clientMsgId": "e-ws" })).await?;
    assert_eq!(we.wait_for(SECS_10, "not_member", expect("not_member")).await?["ref"], "e-ws");
    we.send(json!({ "type": "read", "chatId": chat, "seq": 1 })).await?;
    we.wait_for(SECS_10, "not_member on read", expect("not_member")).await?;
    let leak = we.next(std::time::Duration::from_millis(300)).await;
    assert!(leak.as_ref().is_none_or(|f| f["type"] != "message"), "{leak:?}");

    // Bad tokens.
    let forged = raftchat_tests::chat::Session { token: "AAAA".into(), ..alice.clone() };
    assert_eq!(code(&api(&c, 1).chats(&forged).await.unwrap_err()), "401 bad_token");
    assert!(Ws::connect(&c.url(1), &forged, false).await.is_err());
    let r = reqwest::get(format!("{}/api/v1/chats", c.url(1))).await?;
    assert_eq!(r.status().as_u16(), 401);
    // Malformed REST bodies.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/messages", c.url(1)))
        .bearer_auth(&alice.token)
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = r.json().await?;
    assert_eq!(v["error"]["code"], "bad_request");
    // Per-route body limits: 32 KiB is too much for the small routes, not for a group's creation.
    let padded = |extra: usize| json!({ "seq": 1, "pad": "x".repeat(extra) }).to_string();
    let http = reqwest::Client::new();
    for path in ["/api/v1/sessions".to_string(), format!("/api/v1/chats/{chat}/read"), "/api/v1/blocks".into()] {
        let r = http
            .post(format!("{}{path}", c.url(2)))
            .bearer_auth(&alice.token)
            .header("content-type", "application/json")
            .body(padded(32 * 1024))
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 413, "{path}");
    }
    let big_group = json!({ "type": "group", "name": "g", "members": [], "pad": "x".repeat(32 * 1024) });
    let r = http.post(format!("{}/api/v1/chats", c.url(2))).bearer_auth(&alice.token).json(&big_group).send().await?;
    assert_eq!(r.status().as_u16(), 422, "read past the small limit, refused for its unknown field");
    // Nothing acknowledged was lost along the way.
    assert_eq!(crate::seqs(&api(&c, 3).history(bob, chat, 0).await?), vec![1, 2]);
    let doc: serde_json::Value = reqwest::get(format!("{}/api/v1/openapi.json", c.url(2))).await?.json().await?;
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/messages"]["post"].is_object());
    Ok(())
}
