//! `POST /api/v1/media` (upload: a raw body, or multipart/form-data with one file) and
//! `GET /api/v1/media/{mediaId}` (download, with Range), authorized by the bearer token or by
//! a signed URL from `POST /api/v1/media/{mediaId}/link` (for `<img src>`, which sends no header).

use axum::extract::FromRequest;
use axum::extract::Multipart;
use axum::extract::Path;
use axum::extract::Query;
use axum::extract::Request;
use axum::extract::State;
use axum::http::header;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;

use super::AuthUser;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::media::upload::UploadMeta;
use crate::service::media::parse_media_id;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// The file name (raw uploads; multipart takes the part's filename).
    name: Option<String>,
    token: Option<String>,
}

const OCTETS: &str = "application/octet-stream";

/// Answers `201 {mediaId, sha256, size, mime, name}` once two copies are durable.
pub async fn upload(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    Query(p): Query<UploadParams>,
    req: Request,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let _ = p.token;
    let headers = req.headers();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or(OCTETS).to_string();
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let header_name = headers.get("x-filename").and_then(|v| v.to_str().ok()).map(str::to_string);
    let name = p.name.or(header_name);
    let media = s.media.clone();
    let uploaded = if content_type.starts_with("multipart/form-data") {
        // The part's own size is checked while it streams; the request's announced size too.
        media.precheck(&UploadMeta { mime: OCTETS.into(), name: String::new(), announced })?;
        let mut form = Multipart::from_request(req, &s)
            .await
            .map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
        loop {
            let field = form
                .next_field()
                .await
                .map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?
                .ok_or_else(|| ApiError::bad_request("the multipart body has no file part"))?;
            if field.file_name().is_none() && field.name() != Some("file") {
                continue;
            }
            let meta = UploadMeta {
                mime: field.content_type().unwrap_or(OCTETS).to_string(),
                name: field.file_name().map(str::to_string).or(name).unwrap_or_else(|| "upload".into()),
                announced: None,
            };
            break media.upload(me, meta, Box::pin(field)).await?;
        }
    } else {
        let mime = content_type.split(';').next().unwrap_or(OCTETS).trim().to_string();
        let meta = UploadMeta { mime, name: name.unwrap_or_else(|| "upload".into()), announced };
        media.precheck(&meta)?;
        media.upload(me, meta, Box::pin(req.into_body().into_data_stream())).await?
    };
    Ok((StatusCode::CREATED, Json(uploaded.json())))
}

/// How long a signed media URL works.
const LINK_TTL_MS: u64 = 60 * 60 * 1000;

#[derive(Deserialize)]
pub struct DownloadParams {
    sig: Option<String>,
}

pub async fn download(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<DownloadParams>,
    req: Request,
) -> Result<Response, ApiError> {
    let sha = parse_media_id(&id)?;
    let (parts, _) = req.into_parts();
    let me = match p.sig {
        Some(sig) => {
            crate::auth::check_media_signature(&s.service.token_secret()?, &sig, &sha, crate::service::now_ms())
                .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", format!("media link: {e}")))?
        }
        None => {
            let token = super::bearer(&parts)
                .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "no_token", "a bearer token is required"))?;
            s.service.authenticate(&token).await?.user
        }
    };
    s.media.download(me, sha, &parts.headers).await
}

/// `POST /api/v1/media/{mediaId}/link` -> `{"url", "expiresAt"}`: a URL that fetches this
/// media as the caller for an hour, for elements that cannot send a header.
pub async fn link(
    State(s): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sha = parse_media_id(&id)?;
    s.service.authorize_media(me, &sha).await?;
    let expires = crate::service::now_ms() + LINK_TTL_MS;
    let sig = crate::auth::media_signature(&s.service.token_secret()?, me, &sha, expires);
    Ok(Json(serde_json::json!({ "url": format!("/api/v1/media/{id}?sig={sig}"), "expiresAt": expires })))
}
