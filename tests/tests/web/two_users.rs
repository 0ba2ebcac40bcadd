//! Alice (page from node 1) and Bob (page from node 2) in two browsers.

use std::time::Duration;

use fantoccini::Client;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::browser::click;
use crate::browser::fill;
use crate::browser::js;
use crate::browser::png;
use crate::browser::screenshot;
use crate::browser::until;
use crate::browser::Driver;

const T: Duration = Duration::from_secs(30);

async fn sign_up(b: &Client, url: &str, name: &str) -> anyhow::Result<()> {
    b.goto(url).await?;
    until(b, "!document.getElementById('login-view').hidden", "the login form", T).await?;
    fill(b, "#login-username", name).await?;
    fill(b, "#login-password", "correct horse battery").await?;
    click(b, "#register-submit").await?;
    until(b, "!document.getElementById('app-view').hidden", &format!("{name} signed in"), T).await?;
    until(b, "document.getElementById('conn-banner').dataset.state === 'online'", "the socket online", T).await
}

/// The texts of the messages shown, in order.
async fn texts(b: &Client) -> anyhow::Result<Vec<String>> {
    let v = js(b, "[...document.querySelectorAll('#messages .msg .text')].map(e => e.textContent)").await?;
    Ok(serde_json::from_value(v)?)
}

async fn send(b: &Client, text: &str) -> anyhow::Result<()> {
    fill(b, "#composer-input", text).await?;
    click(b, "#composer-send").await
}

fn has_text(text: &str) -> String {
    format!("[...document.querySelectorAll('#messages .msg .text')].some(e => e.textContent === {text:?})")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_users_chat_in_browsers() -> anyhow::Result<()> {
    two_users(raftchat_tests::tls::secure_by_env()).await
}

/// The same over HTTPS and WSS, in a browser that trusts the cluster's CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_users_chat_in_browsers_over_https() -> anyhow::Result<()> {
    two_users(true).await
}

async fn two_users(secure: bool) -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { nodes: 3, data_groups: 8, secure, ..Default::default() }).await?;
    let driver = Driver::start(secure).await?;
    let alice = driver.browser().await?;
    let bob = driver.browser().await?;
    let result = run(&c, &alice, &bob).await;
    if result.is_err() {
        let _ = screenshot(&alice, "failure-alice").await;
        let _ = screenshot(&bob, "failure-bob").await;
    }
    let _ = alice.close().await;
    let _ = bob.close().await;
    result
}

async fn run(c: &Cluster, alice: &Client, bob: &Client) -> anyhow::Result<()> {
    screenshot(alice, "00-before-login").await.ok();
    sign_up(alice, &c.url(1), "alice-web").await?;
    sign_up(bob, &c.url(2), "bob-web").await?;

    // Alice opens a direct chat with Bob and writes; Bob's list shows it, unread.
    fill(alice, "#new-chat-username", "bob-web").await?;
    click(alice, "#new-chat-submit").await?;
    until(alice, "!document.getElementById('composer').hidden", "alice's conversation open", T).await?;
    send(alice, "Hello Bob").await?;
    until(alice, "document.querySelector('#messages .msg.mine[data-seq=\"1\"]')", "alice's message committed", T)
        .await?;
    until(bob, "document.querySelector('#chat-list .chat-item .badge')?.textContent === '1'", "bob's unread badge", T)
        .await?;
    screenshot(bob, "01-chat-list-unread").await?;

    // Bob opens it: he reads, Alice's tick turns to read, both see the other online.
    click(bob, "#chat-list .chat-item button").await?;
    until(bob, &has_text("Hello Bob"), "bob sees the message", T).await?;
    until(
        alice,
        "document.querySelector('#messages .msg.mine .tick')?.dataset.status === 'read'",
        "alice's read tick",
        T,
    )
    .await?;
    until(alice, "document.getElementById('peer-status').textContent === 'online'", "bob online for alice", T).await?;
    until(bob, "document.getElementById('peer-status').textContent === 'online'", "alice online for bob", T).await?;
    send(bob, "Hi Alice").await?;
    until(alice, &has_text("Hi Alice"), "alice sees the reply", T).await?;

    // A second tab of Alice's (same origin, so the same stored session): signed in at once, it
    // shows the chat, and what it sends shows in the first tab as Alice's own.
    let first_tab = alice.window().await?;
    let tab = alice.new_window(true).await?;
    alice.switch_to_window(tab.handle.clone()).await?;
    alice.goto(&c.url(1)).await?;
    until(alice, "!document.getElementById('app-view').hidden", "the second tab signed in", T).await?;
    click(alice, "#chat-list .chat-item button").await?;
    until(alice, &has_text("Hi Alice"), "the second tab shows the chat", T).await?;
    send(alice, "from my other tab").await?;
    until(
        alice,
        "document.querySelector('#messages .msg.mine[data-seq=\"3\"]')",
        "the second tab's message committed",
        T,
    )
    .await?;
    alice.close_window().await?;
    alice.switch_to_window(first_tab).await?;
    until(
        alice,
        &format!("{} && document.querySelector('#messages .msg.mine[data-seq=\"3\"]')", has_text("from my other tab")),
        "the first tab shows it as alice's",
        T,
    )
    .await?;
    until(bob, &has_text("from my other tab"), "bob sees the second tab's message", T).await?;

    // Typing shows on the other side (Bob keeps typing, as people do).
    let composer = bob.find(fantoccini::Locator::Css("#composer-input")).await?;
    raftchat_tests::eventually(T, "the typing indicator", || async {
        composer.send_keys("x").await.ok()?;
        let shown = js(alice, "document.getElementById('typing').textContent").await.ok()?;
        shown.as_str().is_some_and(|t| t.contains("bob-web is typing")).then_some(())
    })
    .await?;
    fill(bob, "#composer-input", "").await?;

    // An image: uploaded by Alice, shown inline to Bob.
    let dir = tempfile::tempdir()?;
    let image = dir.path().join("gradient.png");
    std::fs::write(&image, png(96, 64))?;
    alice.find(fantoccini::Locator::Css("#attach-input")).await?.send_keys(&image.display().to_string()).await?;
    until(
        bob,
        "[...document.querySelectorAll('#messages img.media-image')].some(i => i.complete && i.naturalWidth === 96)",
        "bob sees the image",
        T,
    )
    .await?;
    until(
        alice,
        "document.querySelectorAll('#messages .msg.mine .tick[data-status=\"read\"]').length === 3",
        "alice's messages read",
        T,
    )
    .await?;
    screenshot(alice, "02-conversation-alice").await?;
    screenshot(bob, "03-conversation-bob").await?;

    // Bob's node dies: his page says so, moves to another node, and gets what he missed.
    c.kill(2);
    until(bob, "document.getElementById('conn-banner').dataset.state !== 'online' || Number(document.getElementById('conn-banner').dataset.reconnects) > 0",
        "bob's page notices the lost node", T).await?;
    send(alice, "Still there?").await?;
    until(bob, &has_text("Still there?"), "bob gets the message sent while he was away", Duration::from_secs(60))
        .await?;
    until(bob, "document.getElementById('conn-banner').dataset.state === 'online'", "bob's socket online again", T)
        .await?;
    send(bob, "Yes, through another node").await?;
    until(alice, &has_text("Yes, through another node"), "alice sees bob's answer", T).await?;
    until(
        bob,
        "[...document.querySelectorAll('#messages img')].every(i => i.complete && i.naturalWidth === 96)",
        "the image loaded again from the new node",
        T,
    )
    .await?;
    screenshot(bob, "04-after-failover-bob").await?;
    let seen = texts(bob).await?;
    assert_eq!(
        seen,
        ["Hello Bob", "Hi Alice", "from my other tab", "Still there?", "Yes, through another node"],
        "no gap, no repeat"
    );
    let seqs = js(bob, "[...document.querySelectorAll('#messages .msg')].map(e => Number(e.dataset.seq))").await?;
    assert_eq!(seqs, serde_json::json!([1, 2, 3, 4, 5, 6]), "every seq once, in order (seq 4 is the image)");
    Ok(())
}
