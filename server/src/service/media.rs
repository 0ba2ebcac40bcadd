//! What the replicated state knows about media: the record of each blob, who uploaded it, which
//! chats reference it, and so who may download it.
//!
//! Keys, all in the group of the blob (`group_of` the first 16 bytes of its SHA-256):
//! - `md/<sha>`: [`MediaRecord`] (size, type, name, first upload time);
//! - `mu/<sha><user>`: `user` uploaded it (first upload time, 8 bytes big-endian);
//! - `mr/<sha><chat>`: a message of `chat` references it.
//!
//! May download: an uploader, and every member of a chat that references the blob. A message
//! names its media as a [`MediaRef`]; its stored body is then `{"text", "media"}` as JSON
//! ([`encode_body`], [`decode_body`]), so the replicated message format is unchanged.

use axum::http::StatusCode;
use raftchat_raft::command::ChatCommand;
use raftchat_raft::router::Consistency;
use raftchat_raft::rpc::ReadQuery;
use raftchat_raft::rpc::ReadResult;
use raftchat_raft::types::GroupId;
use raftchat_storage::blobs::parse_hex;
use raftchat_storage::blobs::Sha;
use raftchat_storage::codec;
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

use super::ChatService;
use crate::http::error::ApiError;

/// Referencing chats checked for a download at most.
const REFERENCES_CHECKED_MAX: u32 = 256;
pub const MEDIA_NAME_MAX: usize = 255;
pub const MIME_MAX: usize = 127;

/// The replicated record of a stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    pub size: u64,
    pub mime: String,
    pub name: String,
    pub created_ms: u64,
}

/// A message's media, as clients send and receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MediaRef {
    pub media_id: String,
    pub mime: String,
    pub size: u64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

#[derive(Serialize, Deserialize)]
struct MediaBody {
    text: String,
    media: MediaRef,
}

/// The stored body of a media message.
pub fn encode_body(text: &str, media: &MediaRef) -> String {
    serde_json::to_string(&MediaBody { text: text.to_string(), media: media.clone() }).unwrap_or_default()
}

/// A stored body back as (text, media); text messages are their body.
pub fn decode_body(kind: &str, body: String) -> (String, Option<MediaRef>) {
    if kind == "text" {
        return (body, None);
    }
    match serde_json::from_str::<MediaBody>(&body) {
        Ok(b) => (b.text, Some(b.media)),
        Err(_) => (body, None),
    }
}

/// The id whose slot decides a blob's group: the first 16 bytes of its hash.
pub fn media_slot_id(sha: &Sha) -> Uuid {
    let mut first = [0u8; 16];
    first.copy_from_slice(&sha[..16]);
    Uuid::from_bytes(first)
}

fn key(prefix: &[u8], sha: &Sha, id: Option<&Uuid>) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(sha);
    if let Some(id) = id {
        k.extend_from_slice(id.as_bytes());
    }
    k
}

pub fn record_key(sha: &Sha) -> Vec<u8> {
    key(b"md/", sha, None)
}

pub fn parse_media_id(id: &str) -> Result<Sha, ApiError> {
    parse_hex(id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_media", format!("{id:?} is not a media id")))
}

impl ChatService {
    fn media_group_of(&self, sha: &Sha) -> Result<GroupId, ApiError> {
        self.group(&media_slot_id(sha))
    }

    /// Records an upload by `user` of a blob that is durable on its copies.
    pub async fn record_upload(&self, user: Uuid, sha: &Sha, record: &MediaRecord) -> Result<(), ApiError> {
        let g = self.media_group_of(sha)?;
        let value = codec::encode_versioned(record).map_err(ApiError::internal)?;
        match self.write(g, ChatCommand::Put { key: record_key(sha), value: Some(value), only_if_absent: true }).await {
            Ok(_) | Err(ApiError { code: "exists", .. }) => {}
            Err(e) => return Err(e),
        }
        let at = record.created_ms.to_be_bytes().to_vec();
        match self
            .write(g, ChatCommand::Put { key: key(b"mu/", sha, Some(&user)), value: Some(at), only_if_absent: true })
            .await
        {
            Ok(_) | Err(ApiError { code: "exists", .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn media_record(&self, sha: &Sha, c: Consistency) -> Result<Option<MediaRecord>, ApiError> {
        let g = self.media_group_of(sha)?;
        match self.get(g, record_key(sha), c).await? {
            None => Ok(None),
            Some(v) => codec::decode_versioned(&v).map(Some).map_err(ApiError::internal),
        }
    }

    /// The record of a blob `me` may download; 404 if there is none, 403 if `me` may not.
    pub async fn authorize_media(&self, me: Uuid, sha: &Sha) -> Result<MediaRecord, ApiError> {
        let not_found = || ApiError::new(StatusCode::NOT_FOUND, "unknown_media", "no such media");
        let record = self.media_record(sha, Consistency::Linearizable).await?.ok_or_else(not_found)?;
        let g = self.media_group_of(sha)?;
        if self.get(g, key(b"mu/", sha, Some(&me)), Consistency::Linearizable).await?.is_some() {
            return Ok(record);
        }
        for chat in self.media_chats(sha).await? {
            let query = ReadQuery::Member { chat, user: me };
            if let ReadResult::Member(Some(_)) = self.read(self.group(&chat)?, query, Consistency::Linearizable).await?
            {
                return Ok(record);
            }
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only members of a chat that shares this media may see it",
        ))
    }

    /// Chats that reference a blob (at most [`REFERENCES_CHECKED_MAX`]).
    pub async fn media_chats(&self, sha: &Sha) -> Result<Vec<Uuid>, ApiError> {
        let g = self.media_group_of(sha)?;
        let query = ReadQuery::KeyPrefix { prefix: key(b"mr/", sha, None), limit: REFERENCES_CHECKED_MAX };
        match self.read(g, query, Consistency::Linearizable).await? {
            ReadResult::Keys(keys) => {
                Ok(keys.iter().filter_map(|(k, _)| k.get(3 + 32..).and_then(|b| Uuid::from_slice(b).ok())).collect())
            }
            other => Err(super::unexpected(other)),
        }
    }

    /// Checks a message's media before it is sent: the sender may see it, and it is what the
    /// record says. Returns the blob's name.
    pub async fn check_media_ref(
        &self,
        me: Uuid,
        kind: &str,
        media: Option<&MediaRef>,
    ) -> Result<Option<Sha>, ApiError> {
        let Some(m) = media else {
            if kind == "text" {
                return Ok(None);
            }
            return Err(ApiError::bad_request(format!(
                "a message of type {kind} needs media {{mediaId, mime, size, name}}"
            )));
        };
        if kind == "text" {
            return Err(ApiError::bad_request("a text message has no media; use type image, video or file"));
        }
        if m.name.len() > MEDIA_NAME_MAX || m.mime.len() > MIME_MAX {
            return Err(ApiError::bad_request(format!(
                "media name and mime are at most {MEDIA_NAME_MAX} and {MIME_MAX} bytes"
            )));
        }
        let sha = parse_media_id(&m.media_id)?;
        let record = self.authorize_media(me, &sha).await?;
        if record.size != m.size {
            return Err(ApiError::bad_request(format!(
                "media {} is {} bytes, not {}",
                m.media_id, record.size, m.size
            )));
        }
        Ok(Some(sha))
    }

    /// Records that `chat` references a blob: from now on its members may download it.
    pub async fn reference_media(&self, sha: &Sha, chat: Uuid) -> Result<(), ApiError> {
        let g = self.media_group_of(sha)?;
        self.put(g, key(b"mr/", sha, Some(&chat)), Some(super::now_ms().to_be_bytes().to_vec())).await
    }

    /// Whether a blob is referenced, and its last upload time: what the collection of
    /// unreferenced uploads needs. `None`: no record.
    pub async fn media_liveness(&self, sha: &Sha) -> Result<Option<(bool, u64)>, ApiError> {
        let g = self.media_group_of(sha)?;
        let Some(record) = self.media_record(sha, Consistency::Linearizable).await? else { return Ok(None) };
        let referenced = !self.media_chats(sha).await?.is_empty();
        let query = ReadQuery::KeyPrefix { prefix: key(b"mu/", sha, None), limit: 1024 };
        let uploads = match self.read(g, query, Consistency::Linearizable).await? {
            ReadResult::Keys(keys) => keys,
            other => return Err(super::unexpected(other)),
        };
        let last = uploads
            .iter()
            .filter_map(|(_, v)| v.as_slice().try_into().ok().map(u64::from_be_bytes))
            .max()
            .unwrap_or(record.created_ms);
        Ok(Some((referenced, last)))
    }

    /// Deletes the record and upload grants of an unreferenced blob, in one command.
    pub async fn forget_media(&self, sha: &Sha) -> Result<(), ApiError> {
        let g = self.media_group_of(sha)?;
        let query = ReadQuery::KeyPrefix { prefix: key(b"mu/", sha, None), limit: 1024 };
        let grants = match self.read(g, query, Consistency::Linearizable).await? {
            ReadResult::Keys(keys) => keys,
            other => return Err(super::unexpected(other)),
        };
        let mut puts: Vec<(Vec<u8>, Option<Vec<u8>>)> = grants.into_iter().map(|(k, _)| (k, None)).collect();
        puts.push((record_key(sha), None));
        self.write(g, ChatCommand::PutMany { puts }).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip() {
        let m = MediaRef {
            media_id: "ab".repeat(32),
            mime: "image/png".into(),
            size: 10,
            name: "a.png".into(),
            width: Some(3),
            height: None,
        };
        let body = encode_body("look", &m);
        assert_eq!(decode_body("image", body), ("look".to_string(), Some(m)));
        assert_eq!(decode_body("text", "{\"text\":\"x\"}".into()), ("{\"text\":\"x\"}".to_string(), None));
        assert_eq!(decode_body("file", "plain".into()), ("plain".to_string(), None));
    }
}
