//! Password guessing: 20 wrong passwords for one account are answered 429 with `Retry-After`
//! once past the per-account limit (even the right password, until it refills), while other
//! accounts log in; one address registering and logging in too fast is turned away too.

use reqwest::StatusCode;
use serde_json::json;

use raftchat_tests::chat::Api;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

async fn login(api: &Api, user: &str, password: &str) -> anyhow::Result<(StatusCode, Option<String>)> {
    let r = api
        .http
        .post(format!("{}/api/v1/sessions", api.base))
        .json(&json!({ "username": user, "password": password }))
        .send()
        .await?;
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    Ok((r.status(), retry))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_rate_limited() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 3, ..Default::default() }).await?;
    let api = Api::new(&c.url(1));
    api.register("victim", "the-right-password").await?;
    api.register("bystander", "another-password").await?;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(login(&api, "victim", "a-wrong-password").await?);
    }
    let unauthorized = statuses.iter().filter(|(s, _)| *s == StatusCode::UNAUTHORIZED).count();
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS).collect();
    assert_eq!(unauthorized + limited.len(), 20, "{statuses:?}");
    assert!(limited.len() >= 9, "past the per-account limit every guess is refused: {statuses:?}");
    assert!(limited.iter().all(|(_, retry)| retry.as_deref().is_some_and(|r| r.parse::<u64>().is_ok())));
    // The right password waits too, and another account is not affected.
    assert_eq!(login(&api, "victim", "the-right-password").await?.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(login(&api, "bystander", "another-password").await?.0, StatusCode::OK);
    // Unknown names are answered like wrong passwords.
    assert_eq!(login(&api, "nobody-here", "whatever-pass").await?.0, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_limited_across_accounts() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let extra_args = vec!["--auth-attempts-per-addr-per-min".to_string(), "5".to_string()];
    let c = Cluster::start(Opts { data_groups: 3, extra_args, ..Default::default() }).await?;
    let api = Api::new(&c.url(2));
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(login(&api, &format!("someone-{i}"), "whatever-pass").await?.0);
    }
    assert_eq!(&statuses[..5], &[StatusCode::UNAUTHORIZED; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_connection_hoarding_are_cut_off() -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;
    let _serial = raftchat_tests::serial().await;
    let extra_args = ["--connections-per-addr-max", "4", "--header-read-timeout-secs", "2"].map(String::from).to_vec();
    let c = Cluster::start(Opts { data_groups: 3, extra_args, ..Default::default() }).await?;
    let addr = c.api_addr(1);
    // A client that never finishes its headers is closed by the node after the timeout.
    let mut slow = tokio::net::TcpStream::connect(&addr).await?;
    slow.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n").await?;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a slow-header connection must be closed");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "closed by the timeout, not at once");
    // Four idle connections from this address take every slot: the fifth is refused.
    let mut hoard = Vec::new();
    for _ in 0..4 {
        hoard.push(tokio::net::TcpStream::connect(&addr).await?);
    }
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let refused =
        raftchat_tests::eventually(std::time::Duration::from_secs(5), "the fifth connection refused", || async {
            http.get(format!("http://{addr}/livez")).send().await.is_err().then_some(())
        })
        .await;
    assert!(refused.is_ok());
    // Giving one back lets a request through.
    hoard.pop();
    raftchat_tests::eventually(std::time::Duration::from_secs(5), "a request once a slot is free", || async {
        http.get(format!("http://{addr}/livez")).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await?;
    Ok(())
}

/// Applied entries over every group of node 1 (which holds a replica of each).
async fn applied(c: &Cluster) -> anyhow::Result<u64> {
    let s = c.status(1).await?;
    Ok(s["groups"].as_array().into_iter().flatten().filter_map(|g| g["appliedIndex"].as_u64()).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_and_typing_for_a_foreign_chat_never_reach_the_log() -> anyhow::Result<()> {
    use raftchat_tests::chat::Ws;
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { data_groups: 3, ..Default::default() }).await?;
    let api = Api::new(&c.url(1));
    let alice = api.signup("alice").await?;
    let bob = api.signup("bob").await?;
    let mallory = api.signup("mallory").await?;
    let chat = api.direct(&alice, bob.user).await?;
    api.send(&alice, chat, "private", "p1").await?;
    let mut ws = Ws::connect(&c.url(2), &mallory, false).await?;
    // Settle: nothing else is being written.
    let before = raftchat_tests::eventually(std::time::Duration::from_secs(10), "a quiet cluster", || async {
        let a = applied(&c).await.ok()?;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        (applied(&c).await.ok()? == a).then_some(a)
    })
    .await?;
    assert!(api.mark_read(&mallory, chat, 1).await.is_err(), "a REST receipt for a foreign chat is refused");
    for kind in ["read", "delivered", "typing"] {
        ws.send(json!({ "type": kind, "chatId": chat, "seq": 1 })).await?;
        let e = ws.wait_for(std::time::Duration::from_secs(10), kind, |f| f["type"] == "error").await?;
        assert_eq!(e["code"], "not_member", "{kind}: {e}");
    }
    assert_eq!(applied(&c).await?, before, "nothing was committed for the refused receipts");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_upload_is_dropped() -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;
    let _serial = raftchat_tests::serial().await;
    let extra_args = ["--upload-min-bytes-per-sec", "1000"].map(String::from).to_vec();
    let c = Cluster::start(Opts { data_groups: 3, extra_args, ..Default::default() }).await?;
    let alice = Api::new(&c.url(1)).signup("trickler").await?;
    let mut s = tokio::net::TcpStream::connect(c.api_addr(1)).await?;
    let head = format!(
        "POST /api/v1/media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n",
        alice.token
    );
    s.write_all(head.as_bytes()).await?;
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    // One byte every 300 ms (about 3 bytes/s), until the node answers.
    let result = tokio::time::timeout(std::time::Duration::from_secs(40), async {
        loop {
            tokio::select! {
                r = s.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        answer.extend_from_slice(&buf[..n]);
                        if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                            return;
                        }
                    }
                },
                _ = tokio::time::sleep(std::time::Duration::from_millis(300)) => {
                    if s.write_all(b"x").await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(result.is_ok(), "the node must give up on a trickling upload");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(9), "after the grace period, not at once");
    Ok(())
}
