//! The core HTTP API, as the tests and benchmarks use it.

use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Appended {
    pub chat_id: Uuid,
    pub seq: u64,
    pub message_id: Uuid,
    pub timestamp: u64,
    pub duplicate: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub seq: u64,
    pub message_id: Uuid,
    pub from: Uuid,
    pub client_msg_id: String,
    pub text: String,
}

/// What came of an append.
#[derive(Debug)]
pub enum AppendError {
    /// Surely not applied (4xx, or 503 before reaching a leader).
    Failed(u16, String),
    /// May have been applied: timeouts, dropped connections, 504.
    Unknown(String),
}

pub async fn create_chat(
    http: &reqwest::Client,
    base: &str,
    chat: Uuid,
    kind: &str,
    creator: Uuid,
    members: &[Uuid],
) -> anyhow::Result<()> {
    let body = serde_json::json!({ "chatId": chat, "kind": kind, "creator": creator, "members": members });
    let r = http.post(format!("{base}/internal/v1/chats")).json(&body).send().await?;
    anyhow::ensure!(r.status().is_success(), "create chat: {} {}", r.status(), r.text().await.unwrap_or_default());
    Ok(())
}

pub async fn append(
    http: &reqwest::Client,
    base: &str,
    chat: Uuid,
    sender: Uuid,
    cmid: &str,
    text: &str,
) -> Result<Appended, AppendError> {
    let body = serde_json::json!({ "sender": sender, "clientMsgId": cmid, "text": text });
    let r = match http.post(format!("{base}/internal/v1/chats/{chat}/messages")).json(&body).send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Err(AppendError::Failed(0, e.to_string())),
        Err(e) => return Err(AppendError::Unknown(e.to_string())),
    };
    let status = r.status().as_u16();
    if r.status().is_success() {
        return r.json().await.map_err(|e| AppendError::Unknown(e.to_string()));
    }
    let text = r.text().await.unwrap_or_default();
    if status == 504 || status >= 500 && text.contains("outcome_unknown") {
        Err(AppendError::Unknown(text))
    } else {
        Err(AppendError::Failed(status, text))
    }
}

/// Every message of a chat, paging with `after`, at `consistency`.
pub async fn history(
    http: &reqwest::Client,
    base: &str,
    chat: Uuid,
    consistency: &str,
) -> anyhow::Result<Vec<Message>> {
    let mut out: Vec<Message> = Vec::new();
    loop {
        let after = out.last().map_or(0, |m| m.seq);
        let url =
            format!("{base}/internal/v1/chats/{chat}/messages?after={after}&limit=1000&consistency={consistency}");
        let r = http.get(url).send().await?;
        anyhow::ensure!(r.status().is_success(), "history: {} {}", r.status(), r.text().await.unwrap_or_default());
        let v: serde_json::Value = r.json().await?;
        let page: Vec<Message> = serde_json::from_value(v["messages"].clone())?;
        let more = v["hasMore"].as_bool().unwrap_or(false);
        out.extend(page);
        if !more {
            return Ok(out);
        }
    }
}
