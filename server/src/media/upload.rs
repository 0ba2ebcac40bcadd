//! `POST /api/v1/media`: an upload streamed to disk chunk by chunk (never whole in memory),
//! copied to the blob's holders, acknowledged once two copies are fsynced and its record is
//! committed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use futures::Stream;
use futures::StreamExt;
use raftchat_storage::blobs::to_hex;
use raftchat_storage::blobs::BlobManifest;
use raftchat_storage::blobs::BlobWriter;
use raftchat_storage::blobs::CHUNK_BYTES;
use uuid::Uuid;

use super::join_error;
use super::storage_error;
use super::Media;
use crate::http::error::ApiError;
use crate::service::media::MediaRecord;
use crate::service::media::MEDIA_NAME_MAX;
use crate::service::media::MIME_MAX;

/// Copies that must be durable before an upload is acknowledged.
pub const DURABLE_COPIES: usize = 2;
/// An upload that sends nothing for this long is dropped (and leaves nothing behind).
const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// What an upload is, as the client described it.
pub struct UploadMeta {
    pub mime: String,
    pub name: String,
    /// The Content-Length the client announced, if any.
    pub announced: Option<u64>,
}

/// The answer to an upload.
pub struct Uploaded {
    pub manifest: BlobManifest,
    pub record: MediaRecord,
}

impl Uploaded {
    pub fn json(&self) -> serde_json::Value {
        let id = to_hex(&self.manifest.sha256);
        serde_json::json!({
            "mediaId": id, "sha256": id, "size": self.manifest.size,
            "mime": self.record.mime, "name": self.record.name,
        })
    }
}

pub fn too_large(max: u64) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("uploads are at most {max} bytes"))
}

/// The first seconds of an upload are not held to the minimum rate (slow starts, TLS).
const RATE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// One upload in progress; dropping it gives the slot back.
struct UploadSlot<'a>(&'a Media, Uuid);

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        let mut m = self.0.uploading.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

impl Media {
    /// A slot for one more upload of `me`, or 429.
    fn upload_slot(&self, me: Uuid) -> Result<UploadSlot<'_>, ApiError> {
        let mut m = self.uploading.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = m.values().sum();
        let mine = m.get(&me).copied().unwrap_or(0);
        if mine >= self.config.per_user_max {
            return Err(ApiError::rate_limited(
                format!("at most {} uploads at once per user", self.config.per_user_max),
                1,
            ));
        }
        if total >= self.config.total_max {
            return Err(ApiError::rate_limited("this node has too many uploads in progress", 1));
        }
        *m.entry(me).or_insert(0) += 1;
        Ok(UploadSlot(self, me))
    }

    /// Checks what can be checked before a byte is read.
    pub fn precheck(&self, meta: &UploadMeta) -> Result<(), ApiError> {
        if meta.announced.is_some_and(|n| n > self.config.max_bytes) {
            return Err(too_large(self.config.max_bytes));
        }
        if meta.name.len() > MEDIA_NAME_MAX || meta.name.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "file names are at most {MEDIA_NAME_MAX} bytes, without control characters"
            )));
        }
        if meta.mime.len() > MIME_MAX || !meta.mime.contains('/') || !meta.mime.is_ascii() {
            return Err(ApiError::bad_request("the content type must be a MIME type such as image/png"));
        }
        Ok(())
    }

    /// Streams `body` into a new blob, copies it, and records `me`'s upload.
    pub async fn upload<S, E>(self: &Arc<Self>, me: Uuid, meta: UploadMeta, mut body: S) -> Result<Uploaded, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.precheck(&meta)?;
        let _slot = self.upload_slot(me)?;
        // What is left of the user's bytes for the day (refused here when the announced length
        // is over it); an upload of unannounced length is cut off when it passes it.
        let allowance = self.service.upload_allowance(me, meta.announced).await?;
        let started = tokio::time::Instant::now();
        let deadline = started + self.config.deadline;
        let store = self.store.clone();
        let mut writer = tokio::task::spawn_blocking(move || BlobWriter::new(store))
            .await
            .map_err(join_error)?
            .map_err(storage_error)?;
        let mut pending: Vec<u8> = Vec::with_capacity(CHUNK_BYTES);
        let mut total: u64 = 0;
        loop {
            let wait = UPLOAD_IDLE.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let next = tokio::time::timeout(wait, body.next()).await.map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    format!(
                        "the upload sent nothing for {wait:?}, or ran past its {:?} deadline",
                        self.config.deadline
                    ),
                )
            })?;
            let elapsed = started.elapsed();
            if elapsed > RATE_GRACE && (total as f64) < self.config.min_bytes_per_sec as f64 * elapsed.as_secs_f64() {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "too_slow",
                    format!("the upload is slower than {} bytes/s", self.config.min_bytes_per_sec),
                ));
            }
            let done = next.is_none();
            if let Some(frame) = next {
                let bytes = frame.map_err(|e| ApiError::bad_request(format!("the upload broke off: {e}")))?;
                total += bytes.len() as u64;
                if total > self.config.max_bytes {
                    return Err(too_large(self.config.max_bytes));
                }
                if total > allowance {
                    return Err(self.service.quotas.upload_quota_exceeded());
                }
                pending.extend_from_slice(&bytes);
            }
            if pending.len() >= CHUNK_BYTES || (done && !pending.is_empty()) {
                let data = std::mem::replace(&mut pending, Vec::with_capacity(CHUNK_BYTES));
                let (w, res) = tokio::task::spawn_blocking(move || {
                    let res = writer.write(&data);
                    (writer, res)
                })
                .await
                .map_err(join_error)?;
                writer = w;
                res.map_err(storage_error)?;
            }
            if done {
                break;
            }
        }
        let manifest =
            tokio::task::spawn_blocking(move || writer.finish()).await.map_err(join_error)?.map_err(storage_error)?;
        self.replicate(&manifest, DURABLE_COPIES).await?;
        let record =
            MediaRecord { size: manifest.size, mime: meta.mime, name: meta.name, created_ms: crate::service::now_ms() };
        self.service.record_upload(me, &manifest.sha256, &record).await?;
        // The upload is recorded: a counter that could not be written lets this one go uncounted
        // rather than fail an upload that succeeded.
        if let Err(e) = self.service.count_upload(me, manifest.size).await {
            tracing::warn!(user = %me, cause = %e, "an upload was not counted against its user's daily quota");
        }
        self.service.metrics.media_uploaded_bytes.inc_by(manifest.size);
        Ok(Uploaded { manifest, record })
    }
}
