//! A cluster with TLS on: a chat over HTTPS and WSS (the token in the subprotocol header or a
//! first frame, not the URL), the operator API only for an admin certificate, and strangers
//! refused on the client and Raft ports with the nodes unaffected.

use std::time::Duration;

use futures::SinkExt;
use futures::StreamExt;
use raftchat_tests::chat::Api;
use raftchat_tests::chat::Session;
use raftchat_tests::chat::Ws;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SECS_10: Duration = Duration::from_secs(10);

/// Opens `/ws` on node `id` with `protocols` offered and no token in the URL.
async fn ws_with(
    c: &Cluster,
    id: u64,
    protocols: Option<String>,
) -> anyhow::Result<(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Option<String>,
)> {
    let mut req = format!("{}/ws", c.url(id).replacen("http", "ws", 1)).into_client_request()?;
    if let Some(p) = protocols {
        req.headers_mut().insert("sec-websocket-protocol", p.parse()?);
    }
    let (socket, resp) =
        tokio_tungstenite::connect_async_tls_with_config(req, None, true, raftchat_tests::tls::ws_connector()).await?;
    let selected = resp.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_string);
    Ok((socket, selected))
}

/// Sends a ping and waits for the pong: the connection is authenticated and served.
async fn pongs(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> anyhow::Result<bool> {
    socket.send(Message::Text(json!({ "type": "ping" }).to_string().into())).await?;
    let found = tokio::time::timeout(SECS_10, async {
        while let Some(Ok(m)) = socket.next().await {
            if let Message::Text(t) = m {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                if v["type"] == "pong" {
                    return true;
                }
                if v["type"] == "error" {
                    return false;
                }
            }
        }
        false
    })
    .await;
    Ok(found.unwrap_or(false))
}

async fn chat_over_tls(c: &Cluster) -> anyhow::Result<Session> {
    assert!(c.url(1).starts_with("https://"));
    let (a1, a2) = (Api::new(&c.url(1)), Api::new(&c.url(2)));
    let alice = a1.signup("alice").await?;
    let bob = a2.signup("bob").await?;
    let mut wb = Ws::connect(&c.url(3), &bob, true).await?;
    let chat = a1.direct(&alice, bob.user).await?;
    a1.send(&alice, chat, "over tls", "t1").await?;
    let m = wb.wait_for(SECS_10, "message", |f| f["type"] == "message").await?;
    assert_eq!(m["text"], "over tls");

    // The token in the subprotocol header: the server selects `raftchat`.
    let (mut s, selected) = ws_with(c, 2, Some(format!("raftchat, bearer.{}", bob.token))).await?;
    assert_eq!(selected.as_deref(), Some("raftchat"));
    assert!(pongs(&mut s).await?, "a connection with the token in its header is served");
    // The token in a first frame.
    let (mut s, _) = ws_with(c, 1, None).await?;
    s.send(Message::Text(json!({ "type": "auth", "token": bob.token }).to_string().into())).await?;
    assert!(pongs(&mut s).await?, "a connection that authenticated by its first frame is served");
    // A wrong token in the first frame: an error, never served.
    let (mut s, _) = ws_with(c, 1, None).await?;
    s.send(Message::Text(json!({ "type": "auth", "token": "forged" }).to_string().into())).await?;
    assert!(!pongs(&mut s).await.unwrap_or(false), "a bad auth frame is refused");
    Ok(bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_cluster_serves_chat_and_refuses_strangers() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 3, secure: true, internal_api: false, ..Default::default() }).await?;
    chat_over_tls(&c).await?;

    // The operator API: refused without an admin certificate, served with one.
    let anonymous = raftchat_tests::tls::http_builder().build()?;
    for path in ["/internal/v1/status", "/internal/v1/cluster", "/metrics", "/internal/v1/admin/plan"] {
        let r = anonymous.get(format!("{}{path}", c.url(1))).send().await?;
        assert_eq!(r.status(), 401, "{path} without credentials");
        let r = c.http.get(format!("{}{path}", c.url(1))).send().await?;
        assert!(r.status().is_success(), "{path} with the admin certificate: {}", r.status());
    }
    // What the web client needs is public and names no Raft address.
    let nodes: serde_json::Value = anonymous.get(format!("{}/api/v1/nodes", c.url(2))).send().await?.json().await?;
    assert_eq!(nodes["nodes"].as_array().map(|a| a.len()), Some(3), "{nodes}");
    assert!(nodes["nodes"][0].as_str().is_some_and(|u| u.starts_with("https://")), "{nodes}");
    assert!(!nodes.to_string().contains(&c.raft_addr(1)), "{nodes}");

    // The admin CLI: with the CA only it is refused; with the admin certificate it works.
    let out = c.admin_command(1)?.arg("status").output()?;
    assert!(!out.status.success(), "admin without a certificate must fail");
    let ca = raftchat_tests::tls::ca(&raftchat_tests::binary()?)?;
    let out = std::process::Command::new(raftchat_tests::binary()?)
        .args(["admin", "--server", &c.url(1), "--certs-dir", &ca.dir.to_string_lossy(), "status"])
        .output()?;
    assert!(out.status.success(), "admin with its certificate: {}", String::from_utf8_lossy(&out.stderr));

    // An expired admin certificate, and one from another CA, fail the TLS handshake.
    let bin = raftchat_tests::binary()?;
    let scratch = tempfile::tempdir()?;
    let expired = scratch.path().join("expired");
    std::fs::create_dir_all(&expired)?;
    std::fs::copy(ca.dir.join("ca.crt"), expired.join("ca.crt"))?;
    let ca_key = ca.dir.join("ca.key").to_string_lossy().into_owned();
    let ex = expired.to_string_lossy().into_owned();
    raftchat_tests::tls::cert(
        &bin,
        &[
            "create-client",
            "--certs-dir",
            &ex,
            "--ca-key",
            &ca_key,
            "--lifetime-days",
            "0",
            "--cluster-id",
            "test-cluster",
        ],
    )?;
    let other = scratch.path().join("other");
    let ot = other.to_string_lossy().into_owned();
    raftchat_tests::tls::cert(&bin, &["create-ca", "--certs-dir", &ot, "--cluster-id", "test-cluster"])?;
    raftchat_tests::tls::cert(&bin, &["create-client", "--certs-dir", &ot, "--cluster-id", "test-cluster"])?;
    for dir in [&expired, &other] {
        // A new client each attempt: a full handshake, not a resumed session (a session resumed
        // from before the expiry keeps its verified certificate, as TLS does).
        let refused = raftchat_tests::eventually(Duration::from_secs(5), "the handshake to fail", || async {
            let client = raftchat_tests::tls::admin_builder_from(dir).ok()?.build().ok()?;
            client.get(format!("{}/internal/v1/status", c.url(1))).send().await.is_err().then_some(())
        })
        .await;
        assert!(refused.is_ok(), "{}: a bad client certificate must fail the handshake", dir.display());
    }

    // A client that does not offer the admin protocol is never asked for a certificate.
    let r = raftchat_tests::tls::http_builder().build()?.get(format!("{}/livez", c.url(1))).send().await?;
    assert!(r.status().is_success());

    // Plain HTTP to the TLS port gets a readable answer.
    let r = reqwest::get(format!("http://{}/livez", c.api_addr(1))).await?;
    assert_eq!(r.status(), 400);
    assert!(r.text().await?.contains("https://"));

    // Strangers on the Raft port: refused with a log line; the node goes on.
    for junk in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0, 0, 0, 40, 0, 1, 2, 3][..]] {
        let mut s = tokio::net::TcpStream::connect(c.raft_addr(3)).await?;
        s.write_all(junk).await?;
        let _ = s.shutdown().await;
    }
    raftchat_tests::eventually(SECS_10, "a refusal in node 3's log", || async {
        c.log(3).contains("refused node connection").then_some(())
    })
    .await?;
    // The node is unaffected: still ready, still connected to both peers, still serving chat.
    assert!(c.ready(3).await);
    let status: serde_json::Value = c.http.get(format!("{}/internal/v1/status", c.url(3))).send().await?.json().await?;
    assert_eq!(status["connectedPeers"], json!([1, 2]), "{status}");
    let api = Api::new(&c.url(3));
    let carol = api.signup("carol").await?;
    let dave = api.signup("dave").await?;
    let chat = api.direct(&carol, dave.user).await?;
    api.send(&carol, chat, "still here", "s1").await?;
    Ok(())
}
