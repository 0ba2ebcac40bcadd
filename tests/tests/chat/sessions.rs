//! Sessions end when the user says so: logout ends one session on every node, "log out
//! everywhere" and a password change end all of them (an open WebSocket is closed with 4001),
//! and the old password stops working. Refresh tokens renew a session on any node, are never
//! taken for access tokens (nor the other way round), die with their session, and a rotated one
//! used again revokes the whole session.

use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use raftchat_tests::chat::Api;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

/// The status of `GET /api/v1/chats` with `token` on `api`'s node.
async fn status_with(api: &Api, token: &str) -> anyhow::Result<StatusCode> {
    Ok(api.http.get(format!("{}/api/v1/chats", api.base)).bearer_auth(token).send().await?.status())
}

/// Waits (the other nodes' view may be up to 5 s old) until `token` is refused on `api`'s node.
async fn refused(api: &Api, token: &str) -> anyhow::Result<()> {
    raftchat_tests::eventually(Duration::from_secs(15), "the session refused", || async {
        (status_with(api, token).await.ok()? == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await
}

/// `POST /api/v1/sessions/refresh` on `api`'s node: the status and the answer.
async fn refresh(api: &Api, refresh_token: &str) -> anyhow::Result<(StatusCode, Value)> {
    let r = api
        .http
        .post(format!("{}/api/v1/sessions/refresh", api.base))
        .json(&json!({ "refreshToken": refresh_token }))
        .send()
        .await?;
    let status = r.status();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// A login's or a refresh's answer: its access and refresh tokens (checking the other fields).
fn tokens(v: &Value) -> anyhow::Result<(String, String)> {
    for field in ["userId", "expiresAt", "refreshExpiresAt"] {
        anyhow::ensure!(v[field].is_string(), "no {field} in {v}");
    }
    anyhow::ensure!(
        v["expiresAt"].as_str() < v["refreshExpiresAt"].as_str(),
        "the access token outlives the refresh: {v}"
    );
    match (v["token"].as_str(), v["refreshToken"].as_str()) {
        (Some(t), Some(r)) => Ok((t.to_string(), r.to_string())),
        _ => anyhow::bail!("no tokens in {v}"),
    }
}

/// Logs in on `api`'s node: the answer's access and refresh tokens.
async fn login(api: &Api, username: &str, password: &str) -> anyhow::Result<(String, String)> {
    let r = api
        .http
        .post(format!("{}/api/v1/sessions", api.base))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await?;
    anyhow::ensure!(r.status() == StatusCode::OK, "login: {}", r.status());
    tokens(&r.json().await?)
}

/// Refreshes `refresh_token` on `api`'s node, which must succeed: the new tokens.
async fn refreshed(api: &Api, refresh_token: &str) -> anyhow::Result<(String, String)> {
    let (status, v) = refresh(api, refresh_token).await?;
    anyhow::ensure!(status == StatusCode::OK, "refresh: {status} {v}");
    tokens(&v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_reuse_and_revocation() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 3, ..Default::default() }).await?;
    let (n1, n2, n3) = (Api::new(&c.url(1)), Api::new(&c.url(2)), Api::new(&c.url(3)));
    let pw = "refresh-password";
    n1.register("rita", pw).await?;
    let (a1, r1) = login(&n1, "rita", pw).await?;

    // Refreshed on another node than the login: new tokens of the same session, and the old
    // access token goes on working until it expires.
    let (a2, r2) = refreshed(&n2, &r1).await?;
    assert!(a2 != a1 && r2 != r1, "the refresh token rotates");
    assert_eq!(status_with(&n3, &a2).await?, StatusCode::OK);
    assert_eq!(status_with(&n3, &a1).await?, StatusCode::OK, "the old access token lives until its expiry");

    // Neither kind of token is taken for the other.
    let (status, v) = refresh(&n3, &a2).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an access token is no refresh token: {v}");
    assert_eq!(status_with(&n1, &r2).await?, StatusCode::UNAUTHORIZED, "a refresh token is no access token");
    let (status, _) = refresh(&n3, "not-a-token").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = n3.http.post(format!("{}/api/v1/sessions/refresh", n3.base)).json(&json!({})).send().await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no refresh token at all");

    // A rotated refresh token used again (a stolen copy) revokes the whole session: the
    // newest tokens included, on every node.
    let (a3, r3) = refreshed(&n3, &r2).await?;
    assert_eq!(status_with(&n1, &a3).await?, StatusCode::OK);
    let (status, v) = refresh(&n1, &r2).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "refresh_reused");
    assert_eq!(status_with(&n1, &a3).await?, StatusCode::UNAUTHORIZED, "at once on the node that saw the reuse");
    refused(&n2, &a3).await?;
    refused(&n3, &a1).await?;
    let (status, v) = refresh(&n2, &r3).await?;
    assert_eq!((status, v["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("revoked")));

    // After a logout on one node, no node refreshes the session (the revocation is read
    // linearizably, not from a node's cache).
    let (_, s1) = login(&n2, "rita", pw).await?;
    let (b2, s2) = refreshed(&n3, &s1).await?;
    let r = n1.http.delete(format!("{}/api/v1/sessions/current", n1.base)).bearer_auth(&b2).send().await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for api in [&n1, &n2, &n3] {
        let (status, v) = refresh(api, &s2).await?;
        assert_eq!((status, v["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("revoked")), "{v}");
    }

    // "Log out everywhere" ends the refresh tokens of every session too.
    let (d1, t1) = login(&n3, "rita", pw).await?;
    let (_, u1) = login(&n1, "rita", pw).await?;
    let r = n3.http.delete(format!("{}/api/v1/sessions", n3.base)).bearer_auth(&d1).send().await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(refresh(&n1, &t1).await?.0, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&n2, &u1).await?.0, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revocation_and_password_change() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let extra_args = ["--session-check-secs", "2"].map(String::from).to_vec();
    let c = Cluster::start(Opts { data_groups: 3, extra_args, ..Default::default() }).await?;
    let (n1, n2, n3) = (Api::new(&c.url(1)), Api::new(&c.url(2)), Api::new(&c.url(3)));
    n1.register("alice", "first-password").await?;
    let a = n1.login("alice", "first-password").await?;
    let b = n2.login("alice", "first-password").await?;

    // Logout ends that session on every node; the other session goes on.
    let r = n1.http.delete(format!("{}/api/v1/sessions/current", n1.base)).bearer_auth(&a.token).send().await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(status_with(&n1, &a.token).await?, StatusCode::UNAUTHORIZED, "at once on the node that logged out");
    refused(&n3, &a.token).await?;
    assert_eq!(status_with(&n3, &b.token).await?, StatusCode::OK);

    // A WebSocket of session b, then "log out everywhere" with b: b is refused and the socket closed.
    let mut req = format!("{}/ws", c.url(3).replacen("http", "ws", 1)).into_client_request()?;
    req.headers_mut().insert("sec-websocket-protocol", format!("raftchat, bearer.{}", b.token).parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let r = n2.http.delete(format!("{}/api/v1/sessions", n2.base)).bearer_auth(&b.token).send().await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    refused(&n1, &b.token).await?;
    let code = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(Some(f))) => return Some(u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await?;
    assert_eq!(code, Some(4001), "the revoked session's socket is closed with 4001");

    // A password change: the caller gets a new session, the others end, the old password fails.
    let d = n3.login("alice", "first-password").await?;
    let e = n1.login("alice", "first-password").await?;
    let r = n3
        .http
        .put(format!("{}/api/v1/users/me/password", n3.base))
        .bearer_auth(&d.token)
        .json(&json!({ "oldPassword": "first-password", "newPassword": "second-password" }))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await?;
    let fresh = v["token"].as_str().unwrap_or_default().to_string();
    assert_eq!(status_with(&n3, &fresh).await?, StatusCode::OK);
    refused(&n2, &e.token).await?;
    refused(&n2, &d.token).await?;
    assert!(n2.login("alice", "first-password").await.is_err(), "the old password is refused");
    n1.login("alice", "second-password").await?;
    // A wrong old password changes nothing.
    let r = n1
        .http
        .put(format!("{}/api/v1/users/me/password", n1.base))
        .bearer_auth(&fresh)
        .json(&json!({ "oldPassword": "not-the-password", "newPassword": "third-password" }))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}
