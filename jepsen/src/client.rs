//! One operation against the chat API, and what the history says of its outcome.
//!
//! `fail` only when the operation surely had no effect: the server refused it before writing
//! (4xx, or 503 `unavailable`, which raftchat promises is never applied), or the connection was
//! refused before any byte was sent. Everything else that is not a clear answer (timeouts, 504
//! `outcome_unknown`, a connection cut mid-request) is `info`.

use std::time::Duration;

use serde_json::json;
use serde_json::Value;
use uuid::Uuid;

/// What came of one call.
pub enum Outcome {
    Ok(Value),
    Fail(String),
    Info(String),
}

/// A user's HTTP client with the harness's timeouts.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    token: String,
}

fn classify_transport(e: &reqwest::Error) -> Outcome {
    if e.is_connect() {
        Outcome::Fail(format!("connect: {e}"))
    } else if e.is_timeout() {
        Outcome::Info("timeout".into())
    } else {
        Outcome::Info(format!("transport: {e}"))
    }
}

async fn answer(resp: Result<reqwest::Response, reqwest::Error>) -> Result<Value, Outcome> {
    let resp = resp.map_err(|e| classify_transport(&e))?;
    let status = resp.status().as_u16();
    let body: Value = match resp.json().await {
        Ok(v) => v,
        // Headers arrived, the body did not: whatever the status said, the answer is lost.
        Err(e) => return Err(Outcome::Info(format!("body: {e}"))),
    };
    let code = body["error"]["code"].as_str().unwrap_or("").to_string();
    match status {
        200..=299 => Ok(body),
        503 if code == "unavailable" => Err(Outcome::Fail(format!("503 {code}"))),
        400..=499 if status != 408 => Err(Outcome::Fail(format!("{status} {code}"))),
        _ => Err(Outcome::Info(format!("{status} {code}"))),
    }
}

impl Client {
    pub fn new(token: String, timeout: Duration) -> anyhow::Result<Client> {
        let http = raftchat_tests::tls::http_builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_millis(1000))
            .pool_max_idle_per_host(4)
            .build()?;
        Ok(Client { http, token })
    }

    /// `POST /api/v1/messages`; ok carries `{seq}`.
    pub async fn send(&self, base: &str, chat: Uuid, msg_id: &str) -> Outcome {
        let body = json!({ "chatId": chat, "message": format!("body of {msg_id}"), "clientMsgId": msg_id });
        let resp = self.http.post(format!("{base}/api/v1/messages")).bearer_auth(&self.token).json(&body).send().await;
        match answer(resp).await {
            Ok(v) => match v["seq"].as_u64() {
                Some(seq) => Outcome::Ok(json!({ "seq": seq, "message_id": v["messageId"] })),
                None => Outcome::Info(format!("answer without seq: {v}")),
            },
            Err(o) => o,
        }
    }

    /// `GET /api/v1/messages/{chat}?after=from-1`: a window `from..=head`; ok carries
    /// `{head, entries}` with entries `[seq, clientMsgId]`.
    pub async fn read(&self, base: &str, chat: Uuid, from: u64, mode: &str) -> Outcome {
        let url =
            format!("{base}/api/v1/messages/{chat}?after={}&limit=1000&consistency={mode}", from.saturating_sub(1));
        match answer(self.http.get(url).bearer_auth(&self.token).send().await).await {
            Ok(v) => {
                let entries: Vec<Value> =
                    v["messages"].as_array().into_iter().flatten().map(crate::observed::from_public).collect();
                // What the read saw is what it returned: its last entry, or nothing from `from`
                // on (the server's `lastSeq` is kept as `claimed`, for the record only).
                let head = entries.last().and_then(|e| e[0].as_u64()).unwrap_or(from.saturating_sub(1));
                Outcome::Ok(json!({ "head": head, "claimed": v["lastSeq"], "entries": entries }))
            }
            Err(o) => o,
        }
    }
}

/// Why a dump did not come back.
#[derive(Debug, PartialEq, Eq)]
pub enum DumpError {
    /// The node holds no replica of the chat's group.
    NotHosted,
    /// Anything else (down, no leader, cut off): try again.
    Unavailable,
}

/// Every message of `chat` on one node, through the internal API: `consistency=linearizable`
/// (through the leader) or `replica` (this node's copy only).
pub async fn dump(http: &reqwest::Client, base: &str, chat: Uuid, consistency: &str) -> Result<Vec<Value>, DumpError> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let after = out.last().and_then(|e| e[0].as_u64()).unwrap_or(0);
        let url =
            format!("{base}/internal/v1/chats/{chat}/messages?after={after}&limit=1000&consistency={consistency}");
        let resp = http.get(url).send().await.map_err(|_| DumpError::Unavailable)?;
        match resp.status().as_u16() {
            200 => {}
            409 => return Err(DumpError::NotHosted),
            // The group answered that the chat does not exist: a definite answer, an empty log.
            // Every chat of a run was created before it, so a cluster that forgot one (lost
            // its data) shows as lost messages, not as a read that never succeeded.
            404 => {
                let v: Value = resp.json().await.map_err(|_| DumpError::Unavailable)?;
                return if v["error"]["code"] == "unknown_chat" { Ok(out) } else { Err(DumpError::Unavailable) };
            }
            _ => return Err(DumpError::Unavailable),
        }
        let v: Value = resp.json().await.map_err(|_| DumpError::Unavailable)?;
        for m in v["messages"].as_array().into_iter().flatten() {
            if m["seq"].as_u64().is_none() || m["clientMsgId"].as_str().is_none() {
                return Err(DumpError::Unavailable);
            }
            out.push(crate::observed::from_internal(m));
        }
        if v["hasMore"].as_bool() != Some(true) {
            return Ok(out);
        }
    }
}

/// Error codes of the chat API that mean the request surely had no effect (refused before any
/// write); anything else (`outcome_unknown`, `internal`, ...) leaves the outcome unknown.
const DEFINITE: [&str; 12] = [
    "unavailable",
    "bad_request",
    "bad_frame",
    "too_large",
    "not_member",
    "unknown_chat",
    "rate_limited",
    "overloaded",
    "unauthorized",
    "forbidden",
    "invalid",
    "exists",
];

/// A user's WebSocket for sends: one frame out, then its `ack` (or `error`) back.
pub struct WsSender {
    ws: raftchat_tests::chat::Ws,
    pub node: u64,
}

impl WsSender {
    pub async fn connect(base: &str, node: u64, session: &raftchat_tests::chat::Session) -> Option<WsSender> {
        let connect = raftchat_tests::chat::Ws::connect(base, session, false);
        let ws = tokio::time::timeout(Duration::from_secs(3), connect).await.ok()?.ok()?;
        Some(WsSender { ws, node })
    }

    /// Sends a message frame and waits up to `timeout` for its answer; the flag says whether the
    /// connection is still worth using (false: the caller reconnects).
    pub async fn send(&mut self, chat: Uuid, msg_id: &str, timeout: Duration) -> (Outcome, bool) {
        let frame =
            json!({ "type": "message", "chatId": chat, "text": format!("body of {msg_id}"), "clientMsgId": msg_id });
        if self.ws.send(frame).await.is_err() {
            // Never written: the frame surely did not reach the server.
            return (Outcome::Fail("websocket closed before sending".into()), false);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(f) = self.ws.next(left).await else {
                // Either way the connection is given up: a later answer can no longer count.
                let timed_out = tokio::time::Instant::now() >= deadline;
                return (Outcome::Info(if timed_out { "timeout".into() } else { "websocket closed".into() }), false);
            };
            match f["type"].as_str() {
                Some("ack") if f["clientMsgId"] == msg_id => {
                    return match f["seq"].as_u64() {
                        Some(seq) => (Outcome::Ok(json!({ "seq": seq, "message_id": f["messageId"] })), true),
                        None => (Outcome::Info(format!("ack without seq: {f}")), true),
                    };
                }
                Some("error") if f["ref"] == msg_id => {
                    let code = f["code"].as_str().unwrap_or("");
                    let what = format!("{code}: {}", f["message"].as_str().unwrap_or(""));
                    return if DEFINITE.contains(&code) {
                        (Outcome::Fail(what), true)
                    } else {
                        (Outcome::Info(what), true)
                    };
                }
                _ => {}
            }
        }
    }
}
