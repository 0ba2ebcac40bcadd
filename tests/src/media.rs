//! Media calls of the chat API client: uploads (raw and multipart), downloads with ranges, and
//! media messages.

use serde_json::json;
use serde_json::Value;
use uuid::Uuid;

use crate::chat::answer;
use crate::chat::Api;
use crate::chat::Session;

/// A download's answer.
#[derive(Debug)]
pub struct Download {
    pub status: u16,
    pub content_range: Option<String>,
    pub content_type: Option<String>,
    pub disposition: Option<String>,
    pub csp: Option<String>,
    pub body: Vec<u8>,
}

impl Api {
    /// `POST /media` with a raw body; returns `{mediaId, sha256, size, mime, name}`.
    pub async fn upload(&self, s: &Session, bytes: Vec<u8>, mime: &str, name: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}/api/v1/media", self.base))
            .query(&[("name", name)])
            .bearer_auth(&s.token)
            .header(reqwest::header::CONTENT_TYPE, mime)
            .body(bytes)
            .send()
            .await?;
        answer(resp).await
    }

    /// `POST /media` as multipart/form-data with one file part.
    pub async fn upload_multipart(&self, s: &Session, bytes: &[u8], mime: &str, name: &str) -> anyhow::Result<Value> {
        let boundary = format!("raftchat-{}", Uuid::new_v4().simple());
        let mut body = Vec::new();
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\nhello\r\n").as_bytes(),
        );
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {mime}\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let resp = self
            .http
            .post(format!("{}/api/v1/media", self.base))
            .bearer_auth(&s.token)
            .header(reqwest::header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await?;
        answer(resp).await
    }

    /// `GET /media/{id}`, with a `Range` header when given.
    pub async fn download(&self, s: &Session, id: &str, range: Option<&str>) -> anyhow::Result<Download> {
        let mut req = self.http.get(format!("{}/api/v1/media/{id}", self.base)).bearer_auth(&s.token);
        if let Some(r) = range {
            req = req.header(reqwest::header::RANGE, r);
        }
        let resp = req.send().await?;
        let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (content_range, content_type) =
            (header(reqwest::header::CONTENT_RANGE), header(reqwest::header::CONTENT_TYPE));
        let (disposition, csp) =
            (header(reqwest::header::CONTENT_DISPOSITION), header(reqwest::header::CONTENT_SECURITY_POLICY));
        let status = resp.status().as_u16();
        Ok(Download { status, content_range, content_type, disposition, csp, body: resp.bytes().await?.to_vec() })
    }

    /// `POST /messages` of type image, video or file with `media` = `{mediaId, mime, size, name, ...}`.
    pub async fn send_media(
        &self,
        s: &Session,
        chat: Uuid,
        kind: &str,
        media: Value,
        text: &str,
    ) -> anyhow::Result<Value> {
        let body = json!({ "chatId": chat, "message": text, "type": kind, "media": media });
        let resp =
            self.http.post(format!("{}/api/v1/messages", self.base)).bearer_auth(&s.token).json(&body).send().await?;
        answer(resp).await
    }
}
