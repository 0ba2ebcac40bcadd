//! `raftchat admin backup` of a cluster under load, then `restore` into a new cluster: every
//! chat's log comes back identical up to the backup's cut, with no gap, accounts log in again,
//! and the admin API turns away calls without the admin token.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use raftchat_tests::chat::Api;
use raftchat_tests::client;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;
use uuid::Uuid;

const TOKEN: &str = "backup-test-admin-token-0123456789";

fn admin(c: &Cluster, token: Option<&str>, args: &[&str]) -> anyhow::Result<(bool, String)> {
    let mut cmd = c.admin_command(1)?;
    cmd.args(args).env_remove("RAFTCHAT_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("RAFTCHAT_ADMIN_TOKEN", t);
    }
    let out = cmd.output()?;
    Ok((
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    ))
}

fn opts(secure: bool) -> Opts {
    // Small snapshots: the backup of a busy group meets snapshots built while it waits.
    Opts {
        data_groups: 4,
        snapshot_every: 300,
        logs_kept: 50,
        extra_args: vec!["--admin-token".into(), TOKEN.into()],
        secure: secure || raftchat_tests::tls::secure_by_env(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_then_restore_into_a_new_cluster() -> anyhow::Result<()> {
    backup_and_restore(false).await
}

/// The same over TLS (the admin CLI trusts the cluster CA and still needs the token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_over_tls() -> anyhow::Result<()> {
    backup_and_restore(true).await
}

async fn backup_and_restore(secure: bool) -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("cluster.backup");
    let file_s = file.to_string_lossy().to_string();
    let a = Cluster::start(opts(secure)).await?;

    // An account and a chat through the public API (accounts are replicated keys).
    let api = Api::new(&a.url(2));
    let alice = api.signup("alice").await?;
    let bob = api.signup("bob").await?;
    let direct = api.direct(&alice, bob.user).await?;
    for i in 0..20 {
        api.send(&alice, direct, &format!("hello {i}"), &format!("a{i}")).await?;
    }
    // Many chats through the core API, then a writer that keeps going during the backup.
    let (sender, other) = (Uuid::new_v4(), Uuid::new_v4());
    let chats: Vec<Uuid> = (0..12).map(|_| Uuid::new_v4()).collect();
    for chat in &chats {
        client::create_chat(&a.http, &a.url(1), *chat, "direct", sender, &[other]).await?;
    }
    for i in 0..600 {
        let chat = chats[i % chats.len()];
        client::append(&a.http, &a.url(1 + (i as u64 % 3)), chat, sender, &format!("pre{i}"), &format!("before {i}"))
            .await
            .map_err(|e| anyhow::anyhow!("append: {e:?}"))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (http, url, chats, stop) = (a.http.clone(), a.url(3), chats.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) && n < 20_000 {
                let chat = chats[n as usize % chats.len()];
                if client::append(&http, &url, chat, sender, &format!("during{n}"), "during").await.is_ok() {
                    n += 1;
                }
            }
            n
        })
    };

    // No token, a wrong token: refused, and nothing written.
    let (ok, out) = admin(&a, None, &["backup", "--out", &file_s])?;
    anyhow::ensure!(!ok && out.contains("admin token"), "a backup without the token must be refused: {out}");
    let (ok, out) = admin(&a, Some("not-the-right-token-at-all"), &["transfer-leader", "1", "2"])?;
    anyhow::ensure!(!ok && out.contains("401"), "a wrong token must be refused: {out}");
    anyhow::ensure!(!file.exists(), "a refused backup left a file");

    let (ok, out) = admin(&a, Some(TOKEN), &["backup", "--out", &file_s])?;
    anyhow::ensure!(ok, "backup failed: {out}");
    stop.store(true, Ordering::SeqCst);
    let during = writer.await?;
    anyhow::ensure!(during > 0, "the writer made no progress during the backup");

    // The source's logs after the backup: the backup must hold a gap-free prefix of each.
    let mut source: BTreeMap<Uuid, Vec<client::Message>> = BTreeMap::new();
    for chat in &chats {
        source.insert(*chat, client::history(&a.http, &a.url(1), *chat, "linearizable").await?);
    }
    drop(a);

    let b = Cluster::start(opts(secure)).await?;
    // Refused into a cluster of another shape.
    let c5 = Cluster::start(Opts { data_groups: 5, ..opts(secure) }).await?;
    let (ok, out) = admin(&c5, Some(TOKEN), &["restore", "--in", &file_s])?;
    anyhow::ensure!(!ok && out.contains("--data-groups 4"), "a restore into 5 groups must be refused: {out}");
    drop(c5);

    let (ok, out) = admin(&b, Some(TOKEN), &["restore", "--in", &file_s])?;
    anyhow::ensure!(ok, "restore failed: {out}");
    for chat in &chats {
        let restored = client::history(&b.http, &b.url(2), *chat, "linearizable").await?;
        let src = &source[chat];
        anyhow::ensure!(restored.len() >= 50, "chat {chat}: only {} messages restored", restored.len());
        anyhow::ensure!(
            restored.as_slice() == &src[..restored.len()],
            "chat {chat}: the restored log is not a prefix of the source's"
        );
        // Every message acknowledged before the backup started is in it.
        let pre = src.iter().filter(|m| m.client_msg_id.starts_with("pre")).count();
        let pre_restored = restored.iter().filter(|m| m.client_msg_id.starts_with("pre")).count();
        anyhow::ensure!(pre == pre_restored, "chat {chat}: {pre_restored} of {pre} pre-backup messages restored");
        // The dedup table came along: a retry of a restored message is answered, not re-appended.
        let last = restored.last().ok_or_else(|| anyhow::anyhow!("empty chat"))?;
        let again = client::append(&b.http, &b.url(1), *chat, sender, &last.client_msg_id, "retry")
            .await
            .map_err(|e| anyhow::anyhow!("retry: {e:?}"))?;
        anyhow::ensure!(again.duplicate && again.seq == last.seq, "chat {chat}: a retry re-appended: {again:?}");
    }
    // Accounts came along: alice logs in on the new cluster and reads her chat.
    let api_b = Api::new(&b.url(3));
    let alice_b = api_b.login("alice", "pw-alice-secret").await?;
    anyhow::ensure!(alice_b.user == alice.user, "alice has another id after the restore");
    let hist = api_b.history(&alice_b, direct, 0).await?;
    anyhow::ensure!(hist.len() == 20, "alice's chat has {} messages after the restore", hist.len());

    // A second restore is refused (the cluster is no longer empty); --resume rewrites nothing.
    let (ok, out) = admin(&b, Some(TOKEN), &["restore", "--in", &file_s])?;
    anyhow::ensure!(!ok && out.contains("fresh cluster"), "a restore into a used cluster must be refused: {out}");
    let (ok, out) = admin(&b, Some(TOKEN), &["--output", "json", "restore", "--in", &file_s, "--resume"])?;
    anyhow::ensure!(ok && out.contains("\"written\":0"), "a resumed restore rewrote records: {out}");

    // A damaged backup is refused before anything is written.
    let mut bytes = std::fs::read(&file)?;
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    let bad = dir.path().join("damaged.backup");
    std::fs::write(&bad, &bytes)?;
    let c = Cluster::start(opts(false)).await?;
    let (ok, out) = admin(&c, Some(TOKEN), &["restore", "--in", &bad.to_string_lossy()])?;
    anyhow::ensure!(!ok && out.contains("not a usable raftchat backup"), "a damaged backup must be refused: {out}");
    Ok(())
}
