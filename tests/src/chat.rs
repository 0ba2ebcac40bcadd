//! A small client of raftchat's chat API (REST under `/api/v1` and the WebSocket), shared by the
//! tests, the terminal client (`examples/chat.rs`) and the load generator.

use std::time::Duration;

use futures::SinkExt;
use futures::StreamExt;
use serde_json::json;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use uuid::Uuid;

/// An HTTP error answer: status and the error code from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiErr {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiErr {}

/// A JSON answer, or its error as an [`ApiErr`].
pub(crate) async fn answer(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        let code = v["error"]["code"].as_str().unwrap_or("").to_string();
        let message = v["error"]["message"].as_str().unwrap_or("").to_string();
        return Err(ApiErr { status, code, message }.into());
    }
    Ok(v)
}

/// REST calls against one node.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    /// `http://host:port`
    pub base: String,
}

/// A logged-in user.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: Uuid,
    pub username: String,
    pub token: String,
}

impl Api {
    pub fn new(base: &str) -> Self {
        let http = crate::tls::http_builder().timeout(Duration::from_secs(20)).build().unwrap_or_default();
        Api { http, base: base.trim_end_matches('/').to_string() }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}/api/v1{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await?).await
    }

    pub async fn register(&self, username: &str, password: &str) -> anyhow::Result<Uuid> {
        let v = self
            .call(reqwest::Method::POST, "/users", None, Some(json!({ "username": username, "password": password })))
            .await?;
        Ok(serde_json::from_value(v["userId"].clone())?)
    }

    pub async fn login(&self, username: &str, password: &str) -> anyhow::Result<Session> {
        let v = self
            .call(reqwest::Method::POST, "/sessions", None, Some(json!({ "username": username, "password": password })))
            .await?;
        Ok(Session {
            user: serde_json::from_value(v["userId"].clone())?,
            username: username.to_string(),
            token: v["token"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Registers and logs in.
    pub async fn signup(&self, username: &str) -> anyhow::Result<Session> {
        let password = format!("pw-{username}-secret");
        self.register(username, &password).await?;
        self.login(username, &password).await
    }

    pub async fn lookup(&self, s: &Session, username: &str) -> anyhow::Result<Uuid> {
        let v = self.call(reqwest::Method::GET, &format!("/users/{username}"), Some(&s.token), None).await?;
        Ok(serde_json::from_value(v["userId"].clone())?)
    }

    pub async fn direct(&self, s: &Session, other: Uuid) -> anyhow::Result<Uuid> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/chats",
                Some(&s.token),
                Some(json!({ "type": "direct", "members": [other] })),
            )
            .await?;
        Ok(serde_json::from_value(v["chatId"].clone())?)
    }

    /// Creates a group of `s` that invites `members` (they are not members yet).
    pub async fn group_invite(&self, s: &Session, name: &str, members: &[Uuid]) -> anyhow::Result<Uuid> {
        let body = json!({ "type": "group", "name": name, "members": members });
        let v = self.call(reqwest::Method::POST, "/chats", Some(&s.token), Some(body)).await?;
        Ok(serde_json::from_value(v["chatId"].clone())?)
    }

    /// Creates a group of `s` whose `members` each accept the invite.
    pub async fn group(&self, s: &Session, name: &str, members: &[&Session]) -> anyhow::Result<Uuid> {
        let ids: Vec<Uuid> = members.iter().map(|m| m.user).collect();
        let chat = self.group_invite(s, name, &ids).await?;
        for m in members {
            self.join(m, chat).await?;
        }
        Ok(chat)
    }

    /// Accepts an invite to `chat`.
    pub async fn join(&self, s: &Session, chat: Uuid) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, &format!("/chats/{chat}/join"), Some(&s.token), None).await
    }

    /// Declines an invite to `chat`.
    pub async fn decline(&self, s: &Session, chat: Uuid) -> anyhow::Result<()> {
        self.call(reqwest::Method::DELETE, &format!("/invites/{chat}"), Some(&s.token), None).await.map(|_| ())
    }

    /// The pending invites of `s`.
    pub async fn invites(&self, s: &Session) -> anyhow::Result<Vec<Value>> {
        let v = self.call(reqwest::Method::GET, "/invites", Some(&s.token), None).await?;
        Ok(v["invites"].as_array().cloned().unwrap_or_default())
    }

    pub async fn block(&self, s: &Session, user: Uuid) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, "/blocks", Some(&s.token), Some(json!({ "userId": user }))).await.map(|_| ())
    }

    pub async fn unblock(&self, s: &Session, user: Uuid) -> anyhow::Result<()> {
        self.call(reqwest::Method::DELETE, &format!("/blocks/{user}"), Some(&s.token), None).await.map(|_| ())
    }

    /// The users `s` blocked.
    pub async fn blocks(&self, s: &Session) -> anyhow::Result<Vec<Uuid>> {
        let v = self.call(reqwest::Method::GET, "/blocks", Some(&s.token), None).await?;
        Ok(serde_json::from_value(v["blocked"].clone())?)
    }

    pub async fn chats(&self, s: &Session) -> anyhow::Result<Vec<Value>> {
        let v = self.call(reqwest::Method::GET, "/chats", Some(&s.token), None).await?;
        Ok(v["chats"].as_array().cloned().unwrap_or_default())
    }

    pub async fn add_member(&self, s: &Session, chat: Uuid, user: Uuid) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("/chats/{chat}/members"),
            Some(&s.token),
            Some(json!({ "userId": user })),
        )
        .await
        .map(|_| ())
    }

    pub async fn remove_member(&self, s: &Session, chat: Uuid, user: Uuid) -> anyhow::Result<()> {
        self.call(reqwest::Method::DELETE, &format!("/chats/{chat}/members/{user}"), Some(&s.token), None)
            .await
            .map(|_| ())
    }

    /// `POST /messages` to a chat; returns the answer (`seq`, `messageId`, ...).
    pub async fn send(&self, s: &Session, chat: Uuid, text: &str, client_msg_id: &str) -> anyhow::Result<Value> {
        let body = json!({ "chatId": chat, "message": text, "type": "text", "clientMsgId": client_msg_id });
        self.call(reqwest::Method::POST, "/messages", Some(&s.token), Some(body)).await
    }

    pub async fn send_to_user(&self, s: &Session, to: Uuid, text: &str) -> anyhow::Result<Value> {
        let body = json!({ "toUserId": to, "message": text, "type": "text", "groupId": null });
        self.call(reqwest::Method::POST, "/messages", Some(&s.token), Some(body)).await
    }

    /// Every message of a chat after `after`, oldest first.
    pub async fn history(&self, s: &Session, chat: Uuid, after: u64) -> anyhow::Result<Vec<Value>> {
        let mut out: Vec<Value> = Vec::new();
        let mut after = after;
        loop {
            let v = self
                .call(reqwest::Method::GET, &format!("/messages/{chat}?after={after}&limit=1000"), Some(&s.token), None)
                .await?;
            let page = v["messages"].as_array().cloned().unwrap_or_default();
            if let Some(last) = page.last() {
                after = last["seq"].as_u64().unwrap_or(after);
            }
            out.extend(page);
            if !v["hasMore"].as_bool().unwrap_or(false) {
                return Ok(out);
            }
        }
    }

    pub async fn presence(&self, s: &Session, user: Uuid) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, &format!("/presence/{user}"), Some(&s.token), None).await
    }

    pub async fn set_presence(&self, s: &Session, status: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, "/presence", Some(&s.token), Some(json!({ "status": status }))).await
    }

    pub async fn mark_read(&self, s: &Session, chat: Uuid, seq: u64) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, &format!("/chats/{chat}/read"), Some(&s.token), Some(json!({ "seq": seq })))
            .await
    }
}

/// A WebSocket connection; frames arrive on a channel, in order.
pub struct Ws {
    out: mpsc::Sender<String>,
    frames: mpsc::Receiver<Value>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Ws {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Ws {
    /// Connects to `base` (`http://host:port`) as `s`. With `auto_delivered`, every received
    /// message is acknowledged with a `delivered` frame, as a real client does.
    pub async fn connect(base: &str, s: &Session, auto_delivered: bool) -> anyhow::Result<Ws> {
        // The token rides in the subprotocol header, not in the URL (docs/PROTOCOL.md).
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/ws", base.replacen("http", "ws", 1));
        let connector = if url.starts_with("wss://") { crate::tls::ws_connector() } else { None };
        let mut req = url.into_client_request()?;
        req.headers_mut().insert("sec-websocket-protocol", format!("raftchat, bearer.{}", s.token).parse()?);
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(req, None, true, connector).await?;
        let (mut sink, mut stream) = socket.split();
        let (out_tx, mut out_rx) = mpsc::channel::<String>(1024);
        let (frame_tx, frames) = mpsc::channel::<Value>(100_000);
        let writer = tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if sink.send(WsMessage::Text(text.into())).await.is_err() {
                    return;
                }
            }
        });
        let acks = out_tx.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let WsMessage::Text(t) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                if auto_delivered && v["type"] == "message" {
                    let ack = json!({ "type": "delivered", "chatId": v["chatId"], "seq": v["seq"] });
                    let _ = acks.send(ack.to_string()).await;
                }
                if frame_tx.send(v).await.is_err() {
                    return;
                }
            }
        });
        Ok(Ws { out: out_tx, frames, tasks: vec![writer, reader] })
    }

    pub async fn send_raw(&self, text: impl Into<String>) -> anyhow::Result<()> {
        self.out.send(text.into()).await.map_err(|_| anyhow::anyhow!("socket closed"))
    }

    pub async fn send(&self, v: Value) -> anyhow::Result<()> {
        self.send_raw(v.to_string()).await
    }

    /// The next frame, or `None` on timeout or close.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        tokio::time::timeout(timeout, self.frames.recv()).await.ok().flatten()
    }

    /// Skips frames until one matches `pred`; errors on timeout.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(v) if pred(&v) => return Ok(v),
                Some(_) => {}
                None => anyhow::bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
    }

    /// Collects `message` frames of `chat` until `n` have arrived.
    pub async fn messages(&mut self, chat: Uuid, n: usize, timeout: Duration) -> anyhow::Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(v) if v["type"] == "message" && v["chatId"] == chat.to_string() => got.push(v),
                Some(_) => {}
                None => anyhow::bail!("got {} of {n} messages of chat {chat} before timeout", got.len()),
            }
        }
        Ok(got)
    }
}
