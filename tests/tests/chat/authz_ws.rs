//! The WebSocket half of the authorization matrix: every client frame type, as a stranger, a
//! member, the group's admin and a member the admin blocked; and the upgrade itself without a
//! token and with a forged one.
//!
//! Each frame is followed by a barrier (a message to a chat that does not exist, named
//! "barrier"): frames are answered in order, so whatever the frame caused arrived before the
//! barrier's error.

use std::time::Duration;

use serde_json::json;
use serde_json::Value;
use uuid::Uuid;

use raftchat_tests::chat::Session;
use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;

const T: Duration = Duration::from_secs(10);

/// A frame (with `{chat}` and `{alice}` filled in) and its outcome as each of stranger, member,
/// admin and blocked member: "ok", or the code of the error frame it gets.
struct FrameRow {
    frame: &'static str,
    expect: [&'static str; 4],
}

fn frames() -> Vec<FrameRow> {
    let r = |frame, expect| FrameRow { frame, expect };
    vec![
        r(r#"{"type":"message","chatId":"{chat}","text":"hi","clientMsgId":"f1"}"#, ["not_member", "ok", "ok", "ok"]),
        r(
            r#"{"type":"message","to":"{alice}","text":"hi","clientMsgId":"f2"}"#,
            ["ok", "ok", "bad_request", "blocked"],
        ),
        r(r#"{"type":"read","chatId":"{chat}","seq":1}"#, ["not_member", "ok", "ok", "ok"]),
        r(r#"{"type":"delivered","chatId":"{chat}","seq":1}"#, ["not_member", "ok", "ok", "ok"]),
        r(r#"{"type":"typing","chatId":"{chat}"}"#, ["not_member", "ok", "ok", "ok"]),
        r(r#"{"type":"sync","chats":{"{chat}":0}}"#, ["not_member", "ok", "ok", "ok"]),
        r(r#"{"type":"presence","status":"away"}"#, ["ok", "ok", "ok", "ok"]),
        r(r#"{"type":"ping"}"#, ["ok", "ok", "ok", "ok"]),
        r(r#"{"type":"auth","token":"x"}"#, ["unknown_type", "unknown_type", "unknown_type", "unknown_type"]),
        r(r#"{"type":"dance"}"#, ["unknown_type", "unknown_type", "unknown_type", "unknown_type"]),
    ]
}

/// Every client frame type the server knows; each must have a row above.
const FRAME_TYPES: [&str; 8] = ["message", "read", "delivered", "typing", "sync", "presence", "ping", "auth"];

/// What `frame` caused on `ws`, up to the barrier: the first error's code, else "ok".
async fn outcome(ws: &mut Ws, frame: String) -> anyhow::Result<String> {
    ws.send_raw(frame).await?;
    let barrier = json!({ "type": "message", "chatId": Uuid::new_v4(), "text": "b", "clientMsgId": "barrier" });
    ws.send(barrier).await?;
    let mut first_error = None;
    loop {
        let Some(f) = ws.next(T).await else { anyhow::bail!("no answer to the barrier") };
        if f["type"] == "error" && f["ref"] == "barrier" {
            return Ok(first_error.unwrap_or_else(|| "ok".to_string()));
        }
        if f["type"] == "error" && first_error.is_none() {
            first_error = f["code"].as_str().map(str::to_string);
        }
    }
}

/// Runs the frame table; `callers` are stranger, member, admin and blocked member (fresh
/// sessions), `chat` the group and `alice` its admin.
pub async fn every_frame_as_every_caller(
    c: &Cluster,
    callers: [&Session; 4],
    chat: Uuid,
    alice: Uuid,
) -> anyhow::Result<()> {
    let names = ["stranger", "member", "admin", "blocked"];
    let mut wrong = Vec::new();
    for (i, s) in callers.iter().enumerate() {
        let mut ws = Ws::connect(&c.url(1 + i as u64 % 3), s, false).await?;
        for r in frames() {
            let frame = r.frame.replace("{chat}", &chat.to_string()).replace("{alice}", &alice.to_string());
            let got = outcome(&mut ws, frame).await?;
            if got != r.expect[i] {
                wrong.push(format!("{} as {}: {got}, expected {}", r.frame, names[i], r.expect[i]));
            }
        }
    }
    assert!(wrong.is_empty(), "WebSocket authorization matrix:\n{}", wrong.join("\n"));
    for t in FRAME_TYPES {
        let needle = format!(r#"{{"type":"{t}""#);
        assert!(frames().iter().any(|r| r.frame.starts_with(&needle)), "frame type {t} has no row");
    }

    // No token, or a forged one: the upgrade is refused, or nothing but an auth frame is taken.
    let forged = Session { user: Uuid::nil(), username: "forged".into(), token: "AAAAforgedAAAA".into() };
    assert!(Ws::connect(&c.url(2), &forged, false).await.is_err(), "a forged token was let in");
    let url = format!("{}/ws", c.url(3).replacen("http", "ws", 1));
    let connector = if url.starts_with("wss://") { raftchat_tests::tls::ws_connector() } else { None };
    let (mut socket, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, true, connector).await?;
    use futures::SinkExt;
    use futures::StreamExt;
    let frame = json!({ "type": "message", "chatId": chat, "text": "anon", "clientMsgId": "anon" }).to_string();
    socket.send(tokio_tungstenite::tungstenite::Message::Text(frame.into())).await?;
    let answer = tokio::time::timeout(T, async {
        let mut seen = Vec::new();
        while let Some(Ok(m)) = socket.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                seen.push(serde_json::from_str::<Value>(&t).unwrap_or_default());
            }
        }
        seen
    })
    .await?;
    assert!(!answer.iter().any(|f| f["type"] == "ack" || f["type"] == "message"), "an anonymous socket got {answer:?}");
    Ok(())
}
