//! The authorization matrix: every public REST route and WebSocket frame, as no token, a forged
//! token, a signed-in stranger (mallory), a member (bob), the group's admin (alice) and a member
//! alice blocked (erin), with the status (or frame outcome) each must get; the operator routes
//! without credentials. The table must name every route the node's OpenAPI document lists and
//! every client frame type, so a new route or frame cannot be added without its row.

use std::collections::BTreeSet;

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::json;
use serde_json::Value;

use raftchat_tests::chat::Api;
use raftchat_tests::chat::Session;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

/// Who calls.
#[derive(Clone, Copy, Debug)]
enum Who {
    NoToken,
    Forged,
    Stranger,
    Member,
    Admin,
    /// A member of the group whom the admin blocked.
    Blocked,
}

const WHO: [Who; 6] = [Who::NoToken, Who::Forged, Who::Stranger, Who::Member, Who::Admin, Who::Blocked];

/// One route: method, path (with `{chat}`, `{media}`, `{alice}`, `{bob}`, `{carol}`, `{dave}` filled in),
/// body, and the status for each of [`WHO`]. `fresh`: each caller logs in anew for this row
/// (the call ends its session).
struct Row {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    expect: [u16; 6],
    fresh: bool,
}

fn row(method: Method, path: &'static str, body: Option<Value>, expect: [u16; 6]) -> Row {
    Row { method, path, body, expect, fresh: false }
}

fn table() -> Vec<Row> {
    use Method as M;
    vec![
        row(M::GET, "/api/v1/openapi.json", None, [200, 200, 200, 200, 200, 200]),
        row(M::GET, "/api/v1/nodes", None, [200, 200, 200, 200, 200, 200]),
        row(
            M::POST,
            "/api/v1/users",
            Some(json!({ "username": "x", "password": "short" })),
            [400, 400, 400, 400, 400, 400],
        ),
        row(
            M::POST,
            "/api/v1/sessions",
            Some(json!({ "username": "nobody-at-all", "password": "whatever-pw" })),
            [401; 6],
        ),
        // No token needed (the refresh token is the body): a bad one is 401, none at all 400,
        // whatever the Authorization header says.
        row(M::POST, "/api/v1/sessions/refresh", Some(json!({ "refreshToken": "not-a-refresh-token" })), [401; 6]),
        row(M::POST, "/api/v1/sessions/refresh", Some(json!({})), [400; 6]),
        row(M::GET, "/api/v1/users/carol", None, [401, 401, 200, 200, 200, 200]),
        row(M::GET, "/api/v1/users/id/{bob}", None, [401, 401, 200, 200, 200, 200]),
        row(
            M::PUT,
            "/api/v1/users/me/password",
            Some(json!({ "oldPassword": "not-it-at-all", "newPassword": "new-password-1" })),
            [401; 6],
        ),
        row(
            M::POST,
            "/api/v1/chats",
            Some(json!({ "type": "group", "name": "g", "members": [] })),
            [401, 401, 200, 200, 200, 200],
        ),
        row(M::GET, "/api/v1/chats", None, [401, 401, 200, 200, 200, 200]),
        row(M::GET, "/api/v1/chats/{chat}", None, [401, 401, 403, 200, 200, 200]),
        row(
            M::POST,
            "/api/v1/chats/{chat}/members",
            Some(json!({ "userId": "{dave}" })),
            [401, 401, 403, 403, 200, 403],
        ),
        row(M::DELETE, "/api/v1/chats/{chat}/members/{carol}", None, [401, 401, 403, 403, 200, 403]),
        row(M::POST, "/api/v1/chats/{chat}/read", Some(json!({ "seq": 1 })), [401, 401, 403, 200, 200, 200]),
        row(
            M::POST,
            "/api/v1/messages",
            Some(json!({ "chatId": "{chat}", "message": "hi" })),
            [401, 401, 403, 200, 200, 200],
        ),
        row(M::GET, "/api/v1/messages/{chat}", None, [401, 401, 403, 200, 200, 200]),
        row(M::GET, "/api/v1/media/{media}", None, [401, 401, 403, 200, 200, 200]),
        row(M::POST, "/api/v1/media/{media}/link", None, [401, 401, 403, 200, 200, 200]),
        // Toward alice, who blocked erin (presence first: the direct chats below make contacts).
        row(M::GET, "/api/v1/presence/{alice}", None, [401, 401, 403, 200, 200, 403]),
        row(
            M::POST,
            "/api/v1/chats",
            Some(json!({ "type": "group", "name": "g", "members": ["{alice}"] })),
            [401, 401, 200, 200, 200, 403],
        ),
        row(
            M::POST,
            "/api/v1/chats",
            Some(json!({ "type": "direct", "members": ["{alice}"] })),
            [401, 401, 200, 200, 400, 403],
        ),
        row(
            M::POST,
            "/api/v1/messages",
            Some(json!({ "toUserId": "{alice}", "message": "hi" })),
            [401, 401, 200, 200, 400, 403],
        ),
        row(M::POST, "/api/v1/blocks", Some(json!({ "userId": "{dave}" })), [401, 401, 200, 200, 200, 200]),
        row(M::GET, "/api/v1/blocks", None, [401, 401, 200, 200, 200, 200]),
        row(M::DELETE, "/api/v1/blocks/{dave}", None, [401, 401, 200, 200, 200, 200]),
        row(M::GET, "/api/v1/invites", None, [401, 401, 200, 200, 200, 200]),
        row(M::DELETE, "/api/v1/invites/{chat}", None, [401, 401, 403, 403, 403, 403]),
        row(M::POST, "/api/v1/chats/{chat}/join", None, [401, 401, 403, 200, 200, 200]),
        row(M::POST, "/api/v1/presence", Some(json!({ "status": "online" })), [401, 401, 200, 200, 200, 200]),
        row(M::GET, "/api/v1/presence/{bob}", None, [401, 401, 403, 200, 200, 200]),
        Row { fresh: true, ..row(M::DELETE, "/api/v1/sessions/current", None, [401, 401, 204, 204, 204, 204]) },
        Row { fresh: true, ..row(M::DELETE, "/api/v1/sessions", None, [401, 401, 204, 204, 204, 204]) },
    ]
}

/// `POST /api/v1/media` is exercised through the upload itself (below), not a row.
const COVERED_ELSEWHERE: [(&str, &str); 1] = [("POST", "/media")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_as_every_caller() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 3, internal_api: false, ..Default::default() }).await?;
    let api = Api::new(&c.url(1));
    let pw = "matrix-password";
    let mut users = Vec::new();
    for name in ["alice", "bob", "mallory", "carol", "dave", "erin"] {
        api.register(name, pw).await?;
        users.push(api.login(name, pw).await?);
    }
    let (alice, bob, mallory, carol, dave, erin) = (&users[0], &users[1], &users[2], &users[3], &users[4], &users[5]);
    let chat = api.group(alice, "matrix", &[bob, carol, erin]).await?;
    api.block(alice, erin.user).await?;
    api.send(alice, chat, "first", "m1").await?;
    let up = api.upload(alice, b"\x89PNG\r\n\x1a\nrest".to_vec(), "image/png", "p.png").await?;
    let media = up["mediaId"].as_str().unwrap_or_default().to_string();
    let sent = json!({ "mediaId": media, "mime": "image/png", "size": 12, "name": "p.png" });
    api.send_media(alice, chat, "image", sent, "").await?;
    let fill = |s: &str| {
        s.replace("{chat}", &chat.to_string())
            .replace("{media}", &media)
            .replace("{alice}", &alice.user.to_string())
            .replace("{bob}", &bob.user.to_string())
            .replace("{carol}", &carol.user.to_string())
            .replace("{dave}", &dave.user.to_string())
    };
    let session = |w: Who| -> Option<&Session> {
        match w {
            Who::Stranger => Some(mallory),
            Who::Member => Some(bob),
            Who::Admin => Some(alice),
            Who::Blocked => Some(erin),
            _ => None,
        }
    };
    let mut wrong = Vec::new();
    for r in table() {
        for (i, who) in WHO.iter().enumerate() {
            let token = match (who, session(*who)) {
                (Who::Forged, _) => Some("AAAAforgedtokenAAAA".to_string()),
                (_, Some(s)) if r.fresh => Some(api.login(&s.username, pw).await?.token),
                (_, Some(s)) => Some(s.token.clone()),
                _ => None,
            };
            let mut req = api.http.request(r.method.clone(), format!("{}{}", api.base, fill(r.path)));
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &r.body {
                req = req.header("content-type", "application/json").body(fill(&b.to_string()));
            }
            let got = req.send().await?.status().as_u16();
            if got != r.expect[i] {
                wrong.push(format!("{} {} as {who:?}: {got}, expected {}", r.method, r.path, r.expect[i]));
            }
        }
    }
    assert!(wrong.is_empty(), "authorization matrix:\n{}", wrong.join("\n"));

    // The WebSocket frames, with fresh sessions (the last rows logged everyone out).
    let mut fresh = Vec::new();
    for s in [mallory, bob, alice, erin] {
        fresh.push(api.login(&s.username, pw).await?);
    }
    crate::authz_ws::every_frame_as_every_caller(&c, [&fresh[0], &fresh[1], &fresh[2], &fresh[3]], chat, alice.user)
        .await?;

    // A forged media link is refused.
    let r = api.http.get(format!("{}/api/v1/media/{media}?sig=AAAA", api.base)).send().await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The operator API answers nobody without credentials here (no --internal-api, no token).
    for path in ["/internal/v1/status", "/internal/v1/cluster", "/metrics", "/internal/v1/admin/plan"] {
        let r = reqwest::get(format!("{}{path}", c.url(3))).await?;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }

    // Every route of the OpenAPI document has its row.
    let doc: Value = reqwest::get(format!("{}/api/v1/openapi.json", c.url(1))).await?.json().await?;
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(p, ops)| ops.as_object().into_iter().flatten().map(move |(m, _)| (m.to_uppercase(), p.to_string())))
        .collect();
    let normalize = |p: &str| {
        let p = p.trim_start_matches("/api/v1");
        p.split('/')
            .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
            .collect::<Vec<_>>()
            .join("/")
            .replace("users/carol", "users/{}")
    };
    let rows: BTreeSet<(String, String)> = table()
        .iter()
        .map(|r| (r.method.to_string(), normalize(r.path)))
        .chain(COVERED_ELSEWHERE.iter().map(|(m, p)| (m.to_string(), p.to_string())))
        .collect();
    let missing: Vec<_> = documented.iter().filter(|(m, p)| !rows.contains(&(m.clone(), normalize(p)))).collect();
    assert!(missing.is_empty(), "routes without a row in the matrix: {missing:?}");
    Ok(())
}
