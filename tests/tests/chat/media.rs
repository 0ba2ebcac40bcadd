//! Media on a 4-node cluster: an upload on one node is downloaded whole and by ranges from
//! another, only by those allowed; a damaged copy is mended, a killed holder's copy is made
//! again on the fourth node, an unreferenced upload is collected, and bad uploads leave nothing.

use std::path::PathBuf;
use std::time::Duration;

use raftchat_tests::chat::ApiErr;
use raftchat_tests::chat::Ws;
use raftchat_tests::eventually;
use raftchat_tests::Cluster;
use raftchat_tests::Opts;
use serde_json::json;
use sha2::Digest;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

use crate::api;
use crate::users;
use crate::SECS_30;

const MAX_MIB: u64 = 4;
const GRACE_SECS: u64 = 8;

fn blob_dir(c: &Cluster, node: u64, sha: &str) -> PathBuf {
    c.data_dir(node).join("media").join("blobs").join(&sha[..2]).join(sha)
}

fn holders(c: &Cluster, sha: &str) -> Vec<u64> {
    c.live().into_iter().filter(|n| blob_dir(c, *n, sha).join("MANIFEST").is_file()).collect()
}

fn incoming(c: &Cluster, node: u64) -> usize {
    std::fs::read_dir(c.data_dir(node).join("media").join("incoming")).map(|d| d.count()).unwrap_or(usize::MAX)
}

fn blob_count(c: &Cluster, node: u64) -> usize {
    let root = c.data_dir(node).join("media").join("blobs");
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| std::fs::read_dir(d.path()).map(|e| e.count()).unwrap_or(0))
        .sum()
}

fn status_of(e: &anyhow::Error) -> u16 {
    e.downcast_ref::<ApiErr>().map(|a| a.status).unwrap_or(0)
}

/// Sends a request head by hand (a size no client would really send), returns the status line.
/// Sends a request head by hand (a size no client would really send) and `send` bytes of body.
async fn start_upload(addr: &str, token: &str, length: u64, send: usize) -> anyhow::Result<tokio::net::TcpStream> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST /api/v1/media?name=big.mp4 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: video/mp4\r\nContent-Length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    let piece = vec![7u8; 64 * 1024];
    let mut sent = 0;
    while sent < send {
        let n = piece.len().min(send - sent);
        s.write_all(&piece[..n]).await?;
        sent += n;
    }
    Ok(s)
}

/// An upload without a announced size (chunked) that goes past the limit; the status line of
/// the answer (the server may stop reading before the client stops writing).
async fn chunked_upload(addr: &str, token: &str, total: usize) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST /api/v1/media HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: video/mp4\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    let piece = vec![9u8; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        let mut frame = format!("{:x}\r\n", piece.len()).into_bytes();
        frame.extend_from_slice(&piece);
        frame.extend_from_slice(b"\r\n");
        if s.write_all(&frame).await.is_err() {
            break;
        }
        sent += piece.len();
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    status_line(s).await
}

/// The status line of the answer.
async fn status_line(mut s: tokio::net::TcpStream) -> anyhow::Result<String> {
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(SECS_30, s.read(&mut buf)).await??;
    Ok(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn media_upload_download_repair_and_collection() -> anyhow::Result<()> {
    let _serial = raftchat_tests::serial().await;
    let extra = ["--media-repair-secs", "1", "--media-max-mib", "4", "--media-grace-secs", "8"];
    let c = Cluster::start(Opts {
        nodes: 4,
        data_groups: 8,
        extra_args: extra.map(String::from).to_vec(),
        ..Default::default()
    })
    .await?;
    let u = users(&c, "media", 3).await?;
    let (alice, bob, carol) = (&u[0], &u[1], &u[2]);
    let chat = api(&c, 1).direct(alice, bob.user).await?;

    // Upload on node 1: named by its SHA-256, acknowledged with two copies durable.
    let data: Vec<u8> =
        (0..(2 * 1024 * 1024 + 123_457u32)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    // A PNG's signature first: only then is it served inline as image/png.
    let mut data = data;
    data[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    let sha = format!("{:x}", sha2::Sha256::digest(&data));
    let up = api(&c, 1).upload(alice, data.clone(), "image/png", "cat.png").await?;
    assert_eq!((up["mediaId"].as_str(), up["size"].as_u64()), (Some(sha.as_str()), Some(data.len() as u64)), "{up}");
    assert_eq!(up["mime"], "image/png");
    assert!(holders(&c, &sha).len() >= 2, "acknowledged before two copies: {:?}", holders(&c, &sha));
    eventually(SECS_30, "three copies", || async { (holders(&c, &sha).len() == 3).then_some(()) }).await?;

    // Stored XSS: an HTML upload comes back as a sandboxed attachment of no type a browser runs,
    // and so does a "PNG" whose bytes are not one.
    for (bytes, mime) in [
        (&b"<html><script>alert(document.cookie)</script></html>"[..], "text/html"),
        (&b"<svg onload=alert(1)>"[..], "image/png"),
    ] {
        let up = api(&c, 2).upload(alice, bytes.to_vec(), mime, "page.html").await?;
        let d = api(&c, 2).download(alice, up["mediaId"].as_str().unwrap_or(""), None).await?;
        assert_eq!(d.status, 200);
        assert_eq!(d.content_type.as_deref(), Some("application/octet-stream"), "{mime}");
        assert!(d.disposition.as_deref().is_some_and(|v| v.starts_with("attachment")), "{:?}", d.disposition);
        assert!(d.csp.as_deref().is_some_and(|v| v.starts_with("sandbox")), "{:?}", d.csp);
    }

    // Before any message references it: the uploader may download it, nobody else.
    assert_eq!(api(&c, 2).download(alice, &sha, None).await?.body, data);
    assert_eq!(api(&c, 3).download(bob, &sha, None).await?.status, 403);

    // A media message; bad references are refused.
    let media = json!({ "mediaId": sha, "mime": "image/png", "size": data.len(), "name": "cat.png", "width": 640, "height": 480 });
    let mut wb = Ws::connect(&c.url(3), bob, true).await?;
    let wrong_size = json!({ "mediaId": sha, "mime": "image/png", "size": 5, "name": "cat.png" });
    assert_eq!(status_of(&api(&c, 1).send_media(alice, chat, "image", wrong_size, "").await.unwrap_err()), 400);
    let unknown = json!({ "mediaId": "ab".repeat(32), "mime": "image/png", "size": 5, "name": "x" });
    assert_eq!(status_of(&api(&c, 1).send_media(alice, chat, "image", unknown, "").await.unwrap_err()), 404);
    assert_eq!(status_of(&api(&c, 1).send_media(alice, chat, "text", media.clone(), "").await.unwrap_err()), 400);
    assert_eq!(status_of(&api(&c, 1).send_media(carol, chat, "image", media.clone(), "").await.unwrap_err()), 403);
    let sent = api(&c, 1).send_media(alice, chat, "image", media.clone(), "look").await?;
    let frame =
        wb.wait_for(SECS_30, "the image message", |f| f["type"] == "message" && f["seq"] == sent["seq"]).await?;
    assert_eq!((frame["messageType"].as_str(), frame["text"].as_str()), (Some("image"), Some("look")), "{frame}");
    assert_eq!(frame["media"], media);
    let history = api(&c, 2).history(bob, chat, 0).await?;
    assert_eq!(history.last().map(|m| m["media"].clone()), Some(media.clone()));

    // Bob, a member now, downloads from node 3: whole and by ranges. Carol may not.
    let whole = api(&c, 3).download(bob, &sha, None).await?;
    assert_eq!((whole.status, whole.content_type.as_deref()), (200, Some("image/png")));
    assert!(whole.body == data, "whole download differs");
    let mid = api(&c, 3).download(bob, &sha, Some("bytes=1048570-1048590")).await?;
    assert_eq!(mid.status, 206);
    assert_eq!(mid.body, &data[1_048_570..=1_048_590]);
    assert_eq!(mid.content_range, Some(format!("bytes 1048570-1048590/{}", data.len())));
    let tail = api(&c, 4).download(bob, &sha, Some("bytes=-10")).await?;
    assert_eq!(tail.body, &data[data.len() - 10..]);
    let past = api(&c, 3).download(bob, &sha, Some(&format!("bytes={}-", data.len()))).await?;
    assert_eq!((past.status, past.content_range), (416, Some(format!("bytes */{}", data.len()))));
    assert_eq!(api(&c, 3).download(carol, &sha, None).await?.status, 403);
    assert_eq!(api(&c, 3).download(bob, &"cd".repeat(32), None).await?.status, 404);
    assert_eq!(api(&c, 3).download(bob, "not-a-media-id", None).await?.status, 404);

    // A damaged copy is detected, served from another copy, and mended.
    let h = holders(&c, &sha)[0];
    let chunk = blob_dir(&c, h, &sha).join("chunk-00000001");
    let good = std::fs::read(&chunk)?;
    std::fs::write(&chunk, vec![0u8; good.len()])?;
    assert!(api(&c, h).download(bob, &sha, None).await?.body == data, "a damaged chunk was served");
    assert!(std::fs::read(&chunk)? == good, "the damaged chunk was not mended");

    // A holder dies: the blob is still served, and the node that held no copy gets one.
    let before = holders(&c, &sha);
    let victim = *before.iter().find(|n| **n != 1).unwrap_or(&before[0]);
    c.kill(victim);
    let reader = c.live().into_iter().find(|n| *n != victim).unwrap_or(1);
    let after_kill = api(&c, reader).download(bob, &sha, None).await?;
    assert!(after_kill.status == 200 && after_kill.body == data, "not served after a holder died");
    eventually(Duration::from_secs(60), "a third copy on the remaining nodes", || async {
        (holders(&c, &sha).len() == 3).then_some(())
    })
    .await?;
    c.restart(victim)?;
    c.wait_ready(SECS_30).await?;

    // Multipart; unreferenced, it is collected after the grace period on every node.
    let note = b"meeting at noon".to_vec();
    let mp = api(&c, 2).upload_multipart(bob, &note, "text/plain", "notes.txt").await?;
    assert_eq!(
        (mp["name"].as_str(), mp["mime"].as_str(), mp["size"].as_u64()),
        (Some("notes.txt"), Some("text/plain"), Some(15))
    );
    let note_sha = mp["mediaId"].as_str().unwrap_or_default().to_string();
    assert_eq!(api(&c, 4).download(bob, &note_sha, None).await?.body, note);
    eventually(Duration::from_secs(GRACE_SECS * 6), "the unreferenced upload collected", || async {
        let gone = api(&c, 1).download(bob, &note_sha, None).await.ok()?.status == 404;
        (gone && holders(&c, &note_sha).is_empty()).then_some(())
    })
    .await?;
    // The referenced one stays.
    assert_eq!(holders(&c, &sha).len().min(3), 3);
    assert!(api(&c, 1).download(bob, &sha, None).await?.body == data);

    // Over the limit: refused from the announced size, and while streaming; a client that
    // hangs up mid-upload leaves nothing behind.
    let blobs_before: Vec<usize> = c.ids().iter().map(|n| blob_count(&c, *n)).collect();
    let line = status_line(start_upload(&c.api_addr(1), &alice.token, 2 << 30, 0).await?).await?;
    assert!(line.contains("413"), "a 2 GiB upload was not refused at once: {line:?}");
    let line = chunked_upload(&c.api_addr(1), &alice.token, (MAX_MIB as usize + 1) * 1024 * 1024).await?;
    assert!(line.contains("413"), "an upload past the limit was not refused: {line:?}");
    let half = start_upload(&c.api_addr(2), &alice.token, 3 * 1024 * 1024, 1536 * 1024).await?;
    eventually(SECS_30, "the upload's first chunk on disk", || async { (incoming(&c, 2) == 1).then_some(()) }).await?;
    drop(half);
    eventually(SECS_30, "no upload left in progress", || async {
        c.ids().iter().all(|n| incoming(&c, *n) == 0).then_some(())
    })
    .await?;
    assert_eq!(blobs_before, c.ids().iter().map(|n| blob_count(&c, *n)).collect::<Vec<_>>());

    // The admin view agrees.
    let out = std::process::Command::new(raftchat_tests::binary()?)
        .args(["admin", "--server", &c.url(1), "--output", "json", "media", "status"])
        .output()?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!((report["blobs"].as_u64(), report["underReplicated"].as_u64()), (Some(1), Some(0)), "{report}");
    Ok(())
}
