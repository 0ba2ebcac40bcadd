//! Sessions end when the user says so: logout ends one session on every node, "log out
//! everywhere" and a password change end all of them (an open WebSocket is closed with 4001),
//! and the old password stops working.

use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
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
