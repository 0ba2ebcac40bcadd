//! `GET /api/v1/media/{mediaId}`: the content from any node, whole or one byte range (so a
//! video player can seek), every chunk checked on the way out.

use std::sync::Arc;

use axum::body::Body;
use axum::body::Bytes;
use axum::http::header;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use raftchat_storage::blobs::to_hex;
use raftchat_storage::blobs::Sha;
use uuid::Uuid;

use super::Media;
use crate::http::error::ApiError;

/// A `Range` header against a blob of `size` bytes: `Ok(None)` serves the whole blob (no range,
/// or several ranges, which this server answers whole as RFC 9110 allows), `Ok(Some((first,
/// last)))` one inclusive range, `Err(())` a range outside the blob (416).
pub fn parse_range(header: Option<&HeaderValue>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.to_str().ok()).and_then(|s| s.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        (true, true) => return Err(()),
        // The last b bytes.
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 || size == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size - 1)
        }
        (false, _) => {
            let first: u64 = a.parse().map_err(|_| ())?;
            let last: u64 = if b.is_empty() { u64::MAX } else { b.parse().map_err(|_| ())? };
            if first >= size || last < first {
                return Err(());
            }
            (first, last.min(size - 1))
        }
    };
    Ok(Some(range))
}

fn disposition(kind: &str, name: &str) -> HeaderValue {
    let safe: String =
        name.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').filter(|c| *c != '"' && *c != '\\').collect();
    HeaderValue::from_str(&format!("{kind}; filename=\"{safe}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

impl Media {
    /// Whether media `sha` of type `mime` may be shown inline: decided from its first bytes
    /// once, then remembered (a seeking video player asks many times).
    async fn inline(&self, sha: &Sha, mime: &str, m: &raftchat_storage::blobs::BlobManifest) -> Result<bool, ApiError> {
        if let Some(v) = self.inline_known.lock().unwrap_or_else(|e| e.into_inner()).get(sha) {
            return Ok(*v);
        }
        let v = m.size > 0 && {
            let head = self.chunk(m, 0).await?;
            super::inert::inline(mime, &head[..head.len().min(16)])
        };
        let mut known = self.inline_known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= super::INLINE_KNOWN_MAX {
            known.clear();
        }
        known.insert(*sha, v);
        Ok(v)
    }

    pub async fn download(self: &Arc<Self>, me: Uuid, sha: Sha, headers: &HeaderMap) -> Result<Response, ApiError> {
        let record = self.service.authorize_media(me, &sha).await?;
        let Some(m) = self.manifest(&sha).await? else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "media_unavailable",
                "no copy of this media is reachable now",
            ));
        };
        let size = m.size;
        // Inline only for inert types whose first bytes agree (super::inert).
        let inline = self.inline(&sha, &record.mime, &m).await?;
        let (status, first, last) = match parse_range(headers.get(header::RANGE), size) {
            Ok(None) => (StatusCode::OK, 0, size.saturating_sub(1)),
            Ok(Some((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
            Err(()) => {
                let mut r = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "bad_range",
                    format!("the range is outside the {size} bytes of this media"),
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(r);
            }
        };
        let length = if size == 0 { 0 } else { last - first + 1 };
        let chunk = u64::from(m.chunk_bytes);
        let chunks = if length == 0 { 0..0 } else { (first / chunk) as usize..(last / chunk) as usize + 1 };
        let media = self.clone();
        let stream = futures::stream::unfold(chunks, move |mut left| {
            let (media, m) = (media.clone(), m.clone());
            async move {
                let i = left.next()?;
                let (start, _) = m.chunk_range(i);
                let out = media.chunk(&m, i).await.map(|bytes| {
                    let from = first.saturating_sub(start) as usize;
                    let to = ((last + 1 - start) as usize).min(bytes.len());
                    Bytes::from(bytes).slice(from..to)
                });
                Some((out.map_err(std::io::Error::other), left))
            }
        });
        let mut r = Response::new(Body::from_stream(stream));
        *r.status_mut() = status;
        let h = r.headers_mut();
        let octets = HeaderValue::from_static("application/octet-stream");
        let mime = if inline { HeaderValue::from_str(&record.mime).unwrap_or(octets) } else { octets };
        h.insert(header::CONTENT_TYPE, mime);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(header::CONTENT_DISPOSITION, disposition(if inline { "inline" } else { "attachment" }, &record.name));
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", to_hex(&sha))) {
            h.insert(header::ETAG, v);
        }
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if status == StatusCode::PARTIAL_CONTENT {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{size}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;
    use axum::http::HeaderValue;

    fn r(s: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        parse_range(Some(&HeaderValue::from_str(s).unwrap()), size)
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(r("bytes=0-3", 10), Ok(Some((0, 3))));
        assert_eq!(r("bytes=4-", 10), Ok(Some((4, 9))));
        assert_eq!(r("bytes=5-100", 10), Ok(Some((5, 9))));
        assert_eq!(r("bytes=-3", 10), Ok(Some((7, 9))));
        assert_eq!(r("bytes=-30", 10), Ok(Some((0, 9))));
        assert_eq!(r("bytes=0-1,4-5", 10), Ok(None));
        assert_eq!(r("items=0-1", 10), Ok(None));
        assert_eq!(r("bytes=10-", 10), Err(()));
        assert_eq!(r("bytes=5-2", 10), Err(()));
        assert_eq!(r("bytes=-0", 10), Err(()));
        assert_eq!(r("bytes=x-2", 10), Err(()));
        assert_eq!(r("bytes=0-0", 0), Err(()));
    }
}
