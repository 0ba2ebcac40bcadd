//! A group in the browser: created from the sidebar, members invited and removed from the
//! members panel, history paged back by scrolling up, a video and a file sent and fetched, an
//! invite accepted from the sidebar.

use std::time::Duration;

use fantoccini::Client;
use raftchat_tests::chat::Api;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;

use crate::browser::click;
use crate::browser::fill;
use crate::browser::js;
use crate::browser::screenshot;
use crate::browser::until;
use crate::browser::Driver;

const T: Duration = Duration::from_secs(30);
/// More than two pages of history (the client reads 50 at a time).
const HISTORY: u64 = 120;

async fn log_in(b: &Client, url: &str, name: &str) -> anyhow::Result<()> {
    b.goto(url).await?;
    until(b, "!document.getElementById('login-view').hidden", "the login form", T).await?;
    fill(b, "#login-username", name).await?;
    fill(b, "#login-password", &format!("pw-{name}-secret")).await?;
    click(b, "#login-submit").await?;
    until(b, "document.getElementById('conn-banner').dataset.state === 'online'", &format!("{name} online"), T).await
}

/// Closes and opens the members panel: it reads the chat again.
async fn reopen_members(b: &Client) -> anyhow::Result<()> {
    click(b, "#members-toggle").await?;
    until(b, "document.getElementById('members-panel').hidden", "the panel closed", T).await?;
    click(b, "#members-toggle").await
}

fn members_are(names: &[&str]) -> String {
    let want = serde_json::to_string(names).unwrap_or_default();
    format!("JSON.stringify([...document.querySelectorAll('#member-list li span')].map(s => s.textContent.replace(' (admin)', '')).sort()) === JSON.stringify({want}.sort())")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_members_history_and_files() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let c = Cluster::start(Opts { nodes: 3, data_groups: 8, ..Default::default() }).await?;
    let api = Api::new(&c.url(2));
    let carol = api.signup("carol-g").await?;
    let dave = api.signup("dave-g").await?;
    let erin = api.signup("erin-g").await?;
    let driver = Driver::start(raftchat_tests::tls::secure_by_env()).await?;
    let b = driver.browser().await?;
    let result = run(&c, &api, [&carol, &dave, &erin], &b).await;
    if result.is_err() {
        let _ = screenshot(&b, "failure-groups").await;
    }
    let _ = b.close().await;
    result
}

async fn run(c: &Cluster, api: &Api, users: [&raftchat_tests::chat::Session; 3], b: &Client) -> anyhow::Result<()> {
    let [carol, dave, erin] = users;
    log_in(b, &c.url(3), "carol-g").await?;

    // A group inviting dave, from the sidebar; dave accepts; then erin invited and accepting,
    // and dave removed, in the panel.
    click(b, ".new-group summary").await?;
    fill(b, "#new-group-name", "Team").await?;
    fill(b, "#new-group-members", "dave-g").await?;
    click(b, "#new-group-submit").await?;
    until(b, "document.getElementById('conv-name').textContent === 'Team'", "the group open", T).await?;
    click(b, "#members-toggle").await?;
    until(b, &members_are(&["carol-g", "dave-g (invited)"]), "dave invited in the panel", T).await?;
    let chat: uuid::Uuid =
        serde_json::from_value(js(b, "document.querySelector('#chat-list .chat-item').dataset.chatId").await?)?;
    api.join(dave, chat).await?;
    reopen_members(b).await?;
    until(b, &members_are(&["carol-g", "dave-g"]), "carol and dave in the panel", T).await?;
    fill(b, "#add-member-username", "erin-g").await?;
    click(b, "#add-member-submit").await?;
    until(b, &members_are(&["carol-g", "dave-g", "erin-g (invited)"]), "erin invited", T).await?;
    api.join(erin, chat).await?;
    reopen_members(b).await?;
    until(b, &members_are(&["carol-g", "dave-g", "erin-g"]), "erin joined", T).await?;
    screenshot(b, "05-group-members").await?;
    js(b, "[...document.querySelectorAll('#member-list li')].find(li => li.textContent.startsWith('dave-g')).querySelector('button').click()").await?;
    until(b, &members_are(&["carol-g", "erin-g"]), "dave removed", T).await?;
    until(b, "document.getElementById('peer-status').textContent === '2 members'", "the header counts 2", T).await?;

    // History written elsewhere, then paged back by scrolling up after a reload.
    for i in 1..=HISTORY {
        api.send(carol, chat, &format!("p{i}"), &format!("p{i}")).await?;
    }
    // (Same origin: the stored session is per origin.)
    b.goto(&c.url(3)).await?;
    until(b, "document.querySelector('#chat-list .chat-item')", "the chat list after a reload", T).await?;
    click(b, "#chat-list .chat-item button").await?;
    until(
        b,
        &format!("[...document.querySelectorAll('#messages .text')].some(e => e.textContent === 'p{HISTORY}')"),
        "the newest page",
        T,
    )
    .await?;
    let shown = js(b, "document.querySelectorAll('#messages .msg').length").await?;
    assert!(shown.as_u64().unwrap_or(0) <= 50, "only one page at first, not {shown}");
    raftchat_tests::eventually(T, "every message after scrolling up", || async {
        js(b, "document.getElementById('messages').scrollTop = 0, document.getElementById('messages').dispatchEvent(new Event('scroll'))").await.ok()?;
        let v = js(b, "[...document.querySelectorAll('#messages .text')].map(e => e.textContent)").await.ok()?;
        let texts: Vec<String> = serde_json::from_value(v).ok()?;
        let want: Vec<String> = (1..=HISTORY).map(|i| format!("p{i}")).collect();
        (texts == want).then_some(())
    })
    .await?;

    // A video (a player whose source answers ranges) and a file (a download link).
    let dir = tempfile::tempdir()?;
    let video = dir.path().join("clip.mp4");
    std::fs::write(&video, vec![7u8; 300_000])?;
    b.find(fantoccini::Locator::Css("#attach-input")).await?.send_keys(&video.display().to_string()).await?;
    // The player gets its source once the signed media link arrives.
    until(
        b,
        "document.querySelector('#messages video.media-video')?.src.includes('/api/v1/media/')",
        "the video player",
        T,
    )
    .await?;
    let status = b
        .execute_async(
            "const done = arguments[0]; fetch(document.querySelector('#messages video').src, { headers: { Range: 'bytes=1000-1999' } })
               .then(async r => done([r.status, (await r.arrayBuffer()).byteLength])).catch(e => done(String(e)));",
            vec![],
        )
        .await?;
    assert_eq!(status, serde_json::json!([206, 1000]), "the player can seek");
    let note = dir.path().join("notes.txt");
    std::fs::write(&note, "meeting at noon")?;
    b.find(fantoccini::Locator::Css("#attach-input")).await?.send_keys(&note.display().to_string()).await?;
    until(b, "document.querySelector('#messages a.media-file[download=\"notes.txt\"]')", "the file link", T).await?;
    let body = b
        .execute_async(
            "const done = arguments[0]; fetch(document.querySelector('#messages a.media-file').href).then(r => r.text()).then(done, e => done(String(e)));",
            vec![],
        )
        .await?;
    assert_eq!(body, "meeting at noon");
    screenshot(b, "06-group-media").await?;

    // An invite from dave reaches carol's sidebar live; she joins from there.
    let party = api.group_invite(dave, "Party", &[carol.user]).await?;
    until(b, "!document.getElementById('invites').hidden", "the invite in the sidebar", T).await?;
    let shown = js(b, "document.querySelector('#invite-list li span').textContent").await?;
    assert_eq!(shown, "Party (from dave-g)");
    click(b, "#invite-list li button.join").await?;
    until(b, "document.getElementById('conv-name').textContent === 'Party'", "the joined group open", T).await?;
    until(b, "document.getElementById('invites').hidden", "the invite gone", T).await?;
    api.send(dave, party, "welcome carol", "party-1").await?;
    until(
        b,
        "[...document.querySelectorAll('#messages .text')].some(e => e.textContent === 'welcome carol')",
        "dave's message in the joined group",
        T,
    )
    .await?;
    Ok(())
}
