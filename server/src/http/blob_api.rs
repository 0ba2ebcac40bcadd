//! Blob copies between nodes (`/internal/v1/blobs`), for [`crate::media`]: served on every
//! node, only to callers that carry the peer token derived from the cluster secret.
//!
//! - `GET  /internal/v1/blobs/{sha}`: the manifest, or 404.
//! - `GET  /internal/v1/blobs/{sha}/chunks/{i}`: one checked chunk (503 if damaged here).
//! - `PUT  /internal/v1/blobs/{sha}/chunks/{i}?transfer=&sha256=`: one chunk of a copy.
//! - `POST /internal/v1/blobs/{sha}/commit?transfer=`: the manifest; the copy is checked whole.
//!
//! `GET /internal/v1/admin/media` (admin API) lists this node's blobs for `raftchat admin media`.

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::Request;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::routing::post;
use axum::Json;
use axum::Router;
use raftchat_storage::blobs::parse_hex;
use raftchat_storage::blobs::to_hex;
use raftchat_storage::blobs::Sha;
use raftchat_storage::blobs::CHUNK_BYTES;
use raftchat_storage::StorageError;
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::AppState;
use crate::media::peer::peer_token_valid;
use crate::media::peer::ManifestJson;

/// Chunks a blob may have: 1 MiB each, so 1 TiB.
const CHUNKS_MAX: usize = 1 << 20;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/internal/v1/blobs/{sha}", get(manifest))
        .route("/internal/v1/blobs/{sha}/chunks/{i}", get(chunk).put(receive_chunk))
        .route("/internal/v1/blobs/{sha}/commit", post(commit))
        .layer(DefaultBodyLimit::max(CHUNK_BYTES + 64 * 1024))
        .route_layer(axum::middleware::from_fn_with_state(state, require_peer))
}

async fn require_peer(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let secret = match s.service.token_secret() {
        Ok(secret) => secret,
        Err(e) => return e.into_response(),
    };
    let given = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let token_ok =
        given.strip_prefix("Bearer ").is_some_and(|t| peer_token_valid(&secret, t, crate::service::now_ms()));
    let cert_ok = req.extensions().get::<crate::tls::serve::ClientCert>().is_some_and(|c| c.admin);
    if token_ok || cert_ok {
        next.run(req).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "blob routes are for cluster nodes only")
            .into_response()
    }
}

fn sha_of(s: &str) -> Result<Sha, ApiError> {
    parse_hex(s)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_media", format!("{s:?} is not a blob name")))
}

fn index(i: usize) -> Result<usize, ApiError> {
    if i < CHUNKS_MAX {
        Ok(i)
    } else {
        Err(ApiError::bad_request(format!("chunk index {i} is out of range")))
    }
}

fn storage(e: StorageError) -> ApiError {
    match e {
        StorageError::Corrupt { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "damaged", e.to_string()),
        e => crate::media::storage_error(e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(storage)
}

async fn manifest(State(s): State<AppState>, Path(sha): Path<String>) -> Result<Json<ManifestJson>, ApiError> {
    let sha = sha_of(&sha)?;
    let store = s.media.store.clone();
    match blocking(move || store.manifest(&sha)).await? {
        Some(m) => Ok(Json(ManifestJson::from_manifest(&m))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_media", "this node holds no such blob")),
    }
}

async fn chunk(State(s): State<AppState>, Path((sha, i)): Path<(String, usize)>) -> Result<Bytes, ApiError> {
    let (sha, i) = (sha_of(&sha)?, index(i)?);
    let store = s.media.store.clone();
    let found = blocking(move || match store.manifest(&sha)? {
        Some(m) => store.read_chunk(&m, i),
        None => Ok(None),
    })
    .await?;
    found
        .map(Bytes::from)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_media", "this node holds no such chunk"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkParams {
    transfer: Uuid,
    sha256: String,
}

async fn receive_chunk(
    State(s): State<AppState>,
    Path((sha, i)): Path<(String, usize)>,
    Query(p): Query<ChunkParams>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (_, i) = (sha_of(&sha)?, index(i)?);
    let expected = parse_hex(&p.sha256).ok_or_else(|| ApiError::bad_request("sha256 must be 64 hex digits"))?;
    if body.len() > CHUNK_BYTES {
        return Err(ApiError::bad_request(format!("a chunk is at most {CHUNK_BYTES} bytes")));
    }
    let store = s.media.store.clone();
    blocking(move || store.receive_chunk(p.transfer, i, &expected, &body)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitParams {
    transfer: Uuid,
}

async fn commit(
    State(s): State<AppState>,
    Path(sha): Path<String>,
    Query(p): Query<CommitParams>,
    Json(body): Json<ManifestJson>,
) -> Result<StatusCode, ApiError> {
    let sha = sha_of(&sha)?;
    let m = body
        .to_manifest()
        .filter(|m| m.sha256 == sha)
        .ok_or_else(|| ApiError::bad_request("the manifest does not describe this blob"))?;
    if m.chunks.len() > CHUNKS_MAX {
        return Err(ApiError::bad_request("too many chunks"));
    }
    let store = s.media.store.clone();
    blocking(move || store.receive_commit(p.transfer, &m)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Blobs listed per node at most.
const LISTED_MAX: usize = 200_000;

/// `GET /internal/v1/admin/media`: this node's blobs `[[sha, size], ...]`.
pub async fn admin_list(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let store = s.media.store.clone();
    let (entries, incoming) = blocking(move || Ok((store.list()?, store.incoming_count()))).await?;
    let truncated = entries.len() > LISTED_MAX;
    let bytes: u64 = entries.iter().map(|e| e.size).sum();
    let blobs: Vec<(String, u64)> = entries.iter().take(LISTED_MAX).map(|e| (to_hex(&e.sha256), e.size)).collect();
    Ok(Json(serde_json::json!({
        "node": s.node.id(), "count": entries.len(), "bytes": bytes, "incoming": incoming,
        "truncated": truncated, "blobs": blobs,
    })))
}
