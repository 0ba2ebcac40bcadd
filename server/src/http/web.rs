//! The web client: `/` and `/web/{file}`, its files compiled into the binary (server/web/).

use axum::extract::Path;
use axum::http::header;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::AppState;

/// (name, content type, bytes) of every file of the client.
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../../web/index.html")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../web/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../web/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_bytes!("../../web/api.js")),
    ("socket.js", "text/javascript; charset=utf-8", include_bytes!("../../web/socket.js")),
    ("chats.js", "text/javascript; charset=utf-8", include_bytes!("../../web/chats.js")),
    ("view.js", "text/javascript; charset=utf-8", include_bytes!("../../web/view.js")),
    ("icon.svg", "image/svg+xml", include_bytes!("../../web/icon.svg")),
];

/// Scripts and styles only from this node; the API, WebSocket and media from any node (the
/// client fails over between them).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src *; img-src * data: blob:; \
                   media-src *; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(|| async { file("index.html") })).route("/web/{name}", get(asset))
}

async fn asset(Path(name): Path<String>) -> Response {
    file(&name)
}

fn file(name: &str) -> Response {
    let Some((_, mime, bytes)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mut r = (*bytes).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    // Small, and changed by every release: always revalidated.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}
