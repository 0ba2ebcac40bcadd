//! API errors: an HTTP status plus a JSON body `{"error": {"code", "message"}}`.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::Json;
use raftchat_raft::command::Rejection;
use raftchat_raft::rpc::AppError;

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `Retry-After` in seconds (429 and 503 answers that know when to come back).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after_secs: None }
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> Self {
        ApiError {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A fault of this node (an encoding or storage error), with its cause as the message.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A fault of this node says so without its internals (file paths, causes): those go to
        // the log under an id the client can quote.
        let message = if self.status == axum::http::StatusCode::INTERNAL_SERVER_ERROR {
            let id: u32 = rand::random();
            tracing::error!(error_id = %format!("{id:08x}"), code = self.code, message = %self.message, "internal error");
            format!("internal error {id:08x} (the node's log has the details)")
        } else {
            self.message
        };
        let body = serde_json::json!({ "error": { "code": self.code, "message": message } });
        let mut r = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        r
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let msg = e.to_string();
        match e {
            AppError::NoSuchChat => ApiError::new(StatusCode::NOT_FOUND, "unknown_chat", msg),
            AppError::Overloaded(_) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", msg),
            // The write may have been applied: a retry with the same clientMsgId is safe.
            AppError::Unknown(_) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "outcome_unknown", msg),
            AppError::NotLeader { .. } | AppError::GroupNotHosted | AppError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg)
            }
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let msg = r.to_string();
        match r {
            Rejection::NoSuchChat => ApiError::new(StatusCode::NOT_FOUND, "unknown_chat", msg),
            Rejection::NotMember => ApiError::new(StatusCode::FORBIDDEN, "not_member", msg),
            Rejection::NotAdmin => ApiError::new(StatusCode::FORBIDDEN, "not_admin", msg),
            Rejection::KeyExists => ApiError::new(StatusCode::CONFLICT, "exists", msg),
            Rejection::Blocked => ApiError::new(StatusCode::FORBIDDEN, "blocked", msg),
            Rejection::NotInvited => ApiError::new(StatusCode::FORBIDDEN, "not_invited", msg),
            Rejection::DirectChatFixed | Rejection::Invalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid", msg)
            }
        }
    }
}

/// A JSON body whose rejections (malformed JSON, wrong fields, oversize) are API errors.
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_request" };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}
