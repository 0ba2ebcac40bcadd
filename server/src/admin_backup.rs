//! `raftchat admin backup --out FILE` and `raftchat admin restore --in FILE`.
//!
//! A backup is taken online, one data group at a time, each from its leader: a snapshot that
//! holds every write acknowledged before that group's turn (server/src/http/backup_api.rs). It
//! is consistent per group, as the chat log needs: a chat lives in one group. The file is
//! written as `FILE.partial`, read back and checked, fsynced, and only then renamed to `FILE`.
//!
//! ```text
//! "RCBACKUP" | version u32 LE (1) | header len u32 LE | header JSON
//!            {clusterId, dataGroups, createdAtMs, raftchatVersion}
//! per group: "GRP\0" | group u32 LE | last index u64 LE | last term u64 LE | len u64 LE
//!            | the group's snapshot stream (storage/src/snapshot.rs: manifest, state file with
//!              count and CRC, message segments with a CRC per record; a format-1 backup holds
//!              one state file with every record)
//! end:       "END\0" | groups u32 LE
//! ```
//!
//! Restore needs a cluster with the same number of data groups (a chat's slot goes to group
//! `1 + slot mod groups` in a new cluster; a format-1 cluster hashed chats the same way when its
//! group count was a power of two). It first checks every record of the file, then that every target
//! group is empty (unless `--resume`), then commits the records group by group in batches
//! through the normal write path: replicated and fsynced like any message. A batch is
//! idempotent (records whose keys exist are left alone), so a restore that stopped can be rerun
//! with `--resume`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::io::BufWriter;
use std::io::Read;
use std::io::Seek;
use std::io::SeekFrom;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use raftchat_storage::snapshot::StreamItem;
use raftchat_storage::snapshot::StreamReader;
use serde_json::json;
use serde_json::Value;

use crate::admin::Admin;
use crate::admin_members::call;

const MAGIC: &[u8; 8] = b"RCBACKUP";
const VERSION: u32 = 1;
const GROUP_MARK: &[u8; 4] = b"GRP\0";
const END_MARK: &[u8; 4] = b"END\0";
const HEADER_MAX: u32 = 1024 * 1024;
/// Records per restore request, by size (the API takes bodies up to 1 MiB).
const RESTORE_BATCH_BYTES: usize = 512 * 1024;
/// How long one group's backup or one restore batch keeps retrying across leader changes.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// One group's section of a backup file.
#[derive(Debug, Clone)]
pub struct Section {
    pub group: u32,
    pub last_index: u64,
    /// Where its snapshot stream starts, and its length.
    pub offset: u64,
    pub len: u64,
    pub records: u64,
}

/// A checked backup file.
#[derive(Debug)]
pub struct BackupFile {
    pub header: Value,
    pub sections: Vec<Section>,
}

pub async fn backup(a: &Admin, out: &Path) -> anyhow::Result<()> {
    let report = crate::admin::status(&a.client(Duration::from_secs(5))?, &a.server).await?;
    let urls: BTreeMap<u64, String> = report["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["nodeId"].as_u64()?, crate::admin::url_of(&a.server, n["apiAddr"].as_str()?))))
        .collect();
    let groups: Vec<(u32, Vec<u64>)> = report["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| {
            let id = g["group"].as_u64().filter(|g| *g > 0)? as u32;
            let mut order: Vec<u64> = g["leader"].as_u64().into_iter().collect();
            order.extend(g["replicas"].as_array().into_iter().flatten().filter_map(Value::as_u64));
            order.dedup();
            Some((id, order))
        })
        .collect();
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut w = BufWriter::with_capacity(1024 * 1024, file);
    let header = json!({
        "clusterId": report["clusterId"],
        "dataGroups": groups.len(),
        "createdAtMs": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        "raftchatVersion": env!("CARGO_PKG_VERSION"),
    });
    let h = serde_json::to_vec(&header)?;
    w.write_all(MAGIC)?;
    w.write_all(&VERSION.to_le_bytes())?;
    w.write_all(&(h.len() as u32).to_le_bytes())?;
    w.write_all(&h)?;
    let http = a.client(Duration::from_secs(600))?;
    let bar = progress(groups.len() as u64, "{bar:40} {pos}/{len} groups backed up {msg}");
    let started = Instant::now();
    for (g, order) in &groups {
        bar.set_message(format!("(group {g})"));
        let last = fetch_group(&http, &urls, *g, order, &mut w).await.inspect_err(|_| {
            bar.abandon_with_message(format!("stopped at group {g}"));
        })?;
        bar.inc(1);
        if bar.is_hidden() && !a.json {
            println!("group {g}: up to log index {last}");
        }
    }
    w.write_all(END_MARK)?;
    w.write_all(&(groups.len() as u32).to_le_bytes())?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all().with_context(|| format!("fsync {}", partial.display()))?;
    bar.finish_with_message("done");
    let checked = read_backup(&partial).context("reading the new backup back")?;
    std::fs::rename(&partial, out).with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("fsync {}", dir.display()))?;
    }
    let records: u64 = checked.sections.iter().map(|s| s.records).sum();
    let bytes = std::fs::metadata(out).map_or(0, |m| m.len());
    if a.json {
        println!(
            "{}",
            json!({ "file": out, "groups": groups.len(), "records": records, "bytes": bytes,
            "tookMs": started.elapsed().as_millis() as u64 })
        );
    } else {
        println!(
            "backed up {} groups, {records} records, {bytes} bytes to {} in {:.1} s (checked)",
            groups.len(),
            out.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn progress(len: u64, template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Downloads group `g`'s backup snapshot into `w` as one section; returns its last log index.
async fn fetch_group(
    http: &reqwest::Client,
    urls: &BTreeMap<u64, String>,
    g: u32,
    order: &[u64],
    w: &mut BufWriter<File>,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + RETRY_FOR;
    let mut order = order.to_vec();
    let mut last_err = String::from("no replica to ask");
    while Instant::now() < deadline {
        for node in order.clone() {
            let Some(url) = urls.get(&node) else { continue };
            let r = match http.get(format!("{url}/internal/v1/admin/backup/{g}")).send().await {
                Ok(r) => r,
                Err(e) => {
                    last_err = format!("node {node}: {e}");
                    continue;
                }
            };
            if r.status() == reqwest::StatusCode::MISDIRECTED_REQUEST {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                last_err = format!("node {node}: {}", v["error"]["message"].as_str().unwrap_or("not the leader"));
                if let Some(l) = v["error"]["leader"].as_u64() {
                    order.retain(|n| *n != l);
                    order.insert(0, l);
                    break;
                }
                continue;
            }
            if !r.status().is_success() {
                let status = r.status();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                anyhow::ensure!(
                    status != reqwest::StatusCode::UNAUTHORIZED,
                    "backup of group {g}: 401: the nodes need the admin token (--token or RAFTCHAT_ADMIN_TOKEN)"
                );
                last_err = format!("node {node}: {status}: {}", v["error"]["message"].as_str().unwrap_or(""));
                continue;
            }
            let header_u64 = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let (Some(len), Some(index), Some(term)) =
                (r.content_length(), header_u64("x-raftchat-last-index"), header_u64("x-raftchat-last-term"))
            else {
                anyhow::bail!("backup of group {g} from node {node}: the answer lacks its length or log id");
            };
            w.flush()?;
            let start = w.get_mut().stream_position()?;
            match copy_section(r, g, index, term, len, w).await {
                Ok(()) => return Ok(index),
                Err(e) => {
                    // Drop the half-written section and try again.
                    last_err = format!("node {node}: {e:#}");
                    w.flush()?;
                    w.get_mut().set_len(start)?;
                    w.get_mut().seek(SeekFrom::Start(start))?;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("backup of group {g} did not finish in {RETRY_FOR:?}; last: {last_err}")
}

async fn copy_section(
    mut r: reqwest::Response,
    g: u32,
    index: u64,
    term: u64,
    len: u64,
    w: &mut BufWriter<File>,
) -> anyhow::Result<()> {
    w.write_all(GROUP_MARK)?;
    w.write_all(&g.to_le_bytes())?;
    w.write_all(&index.to_le_bytes())?;
    w.write_all(&term.to_le_bytes())?;
    w.write_all(&len.to_le_bytes())?;
    let mut got = 0u64;
    while let Some(chunk) = r.chunk().await? {
        got += chunk.len() as u64;
        anyhow::ensure!(got <= len, "more bytes than announced");
        w.write_all(&chunk)?;
    }
    anyhow::ensure!(got == len, "cut short at {got} of {len} bytes");
    Ok(())
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Reads a whole backup file and checks every section's snapshot stream (count and CRC).
pub fn read_backup(path: &Path) -> anyhow::Result<BackupFile> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = BufReader::with_capacity(1024 * 1024, f);
    let bad = |why: String| anyhow::anyhow!("{} is not a usable raftchat backup: {why}", path.display());
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|e| bad(e.to_string()))?;
    if &magic != MAGIC {
        return Err(bad("bad magic".into()));
    }
    let version = read_u32(&mut r)?;
    if version != VERSION {
        return Err(bad(format!("backup format version {version}; this build reads version {VERSION}")));
    }
    let hlen = read_u32(&mut r)?;
    if hlen > HEADER_MAX {
        return Err(bad("header too large".into()));
    }
    let mut h = vec![0u8; hlen as usize];
    r.read_exact(&mut h)?;
    let header: Value = serde_json::from_slice(&h).map_err(|e| bad(format!("header: {e}")))?;
    let mut sections = Vec::new();
    loop {
        let mut mark = [0u8; 4];
        r.read_exact(&mut mark).map_err(|e| bad(format!("after {} groups: {e}", sections.len())))?;
        if &mark == END_MARK {
            let n = read_u32(&mut r)?;
            if n as usize != sections.len() {
                return Err(bad(format!("the end mark counts {n} groups, the file holds {}", sections.len())));
            }
            break;
        }
        if &mark != GROUP_MARK {
            return Err(bad(format!("no group mark after {} groups", sections.len())));
        }
        let group = read_u32(&mut r)?;
        let last_index = read_u64(&mut r)?;
        let _term = read_u64(&mut r)?;
        let len = read_u64(&mut r)?;
        let offset = r.stream_position()?;
        let mut take = (&mut r).take(len);
        let mut n = 0u64;
        {
            let mut items =
                StreamReader::new(Box::new(&mut take), path).map_err(|e| bad(format!("group {group}: {e}")))?;
            while items.next_item().map_err(|e| bad(format!("group {group}: {e}")))?.is_some() {
                n += 1;
            }
        }
        if take.limit() != 0 {
            return Err(bad(format!("group {group}: {} bytes after the snapshot's end", take.limit())));
        }
        sections.push(Section { group, last_index, offset, len, records: n });
    }
    Ok(BackupFile { header, sections })
}

pub async fn restore(a: &Admin, input: &Path, resume: bool) -> anyhow::Result<()> {
    let backup = read_backup(input)?;
    let http = a.client(Duration::from_secs(60))?;
    let cluster = call(http.get(format!("{}/internal/v1/cluster", a.server)), "reading the target cluster").await?;
    anyhow::ensure!(cluster["initialized"] == true, "the target cluster is not initialized yet");
    let (theirs, ours) = (backup.header["dataGroups"].as_u64(), cluster["dataGroups"].as_u64());
    anyhow::ensure!(
        theirs == ours,
        "the backup has {theirs:?} data groups and the target cluster {ours:?}: a chat's group is its id hashed \
         modulo that number, so restore needs a cluster started with --data-groups {}",
        theirs.unwrap_or(0)
    );
    if let Some(first) = backup.sections.first() {
        let mut f = File::open(input)?;
        f.seek(SeekFrom::Start(first.offset))?;
        let head = StreamReader::new(Box::new(BufReader::new(f).take(first.len)), input)?;
        let groups = theirs.unwrap_or(0);
        anyhow::ensure!(
            head.version != 1 || (groups > 0 && u64::from(raftchat_raft::meta::SLOTS) % groups == 0),
            "this format-1 backup has {groups} data groups; only a power of two up to {} restores (format 1 \
             hashed chats modulo the group count, format 2 through {} slots)",
            raftchat_raft::meta::SLOTS,
            raftchat_raft::meta::SLOTS
        );
    }
    if !resume {
        for s in &backup.sections {
            let url = format!("{}/internal/v1/admin/restore/{}?requireEmpty=true", a.server, s.group);
            call(http.post(url).body(Vec::new()), &format!("checking that group {} is empty", s.group))
                .await
                .context("restore writes only into a fresh cluster (use --resume to finish a restore that stopped)")?;
        }
    }
    let total: u64 = backup.sections.iter().map(|s| s.len).sum();
    let bar = progress(total, "{bar:40} {bytes}/{total_bytes} restored {msg}");
    let (mut written, mut present) = (0u64, 0u64);
    let started = Instant::now();
    for s in &backup.sections {
        bar.set_message(format!("(group {})", s.group));
        let mut f = File::open(input)?;
        f.seek(SeekFrom::Start(s.offset))?;
        let mut items = StreamReader::new(Box::new(BufReader::new(f).take(s.len)), input)?;
        let mut body = Vec::with_capacity(RESTORE_BATCH_BYTES + 64 * 1024);
        loop {
            let next = items.next_item()?.map(StreamItem::into_restore_pair).transpose()?;
            if let Some((k, v)) = &next {
                if k.as_slice() == raftchat_storage::chat_store::KEY_APPLIED {
                    continue;
                }
                body.extend_from_slice(&(k.len() as u32).to_le_bytes());
                body.extend_from_slice(&(v.len() as u32).to_le_bytes());
                body.extend_from_slice(k);
                body.extend_from_slice(v);
            }
            if body.len() >= RESTORE_BATCH_BYTES || (next.is_none() && !body.is_empty()) {
                let v = send_batch(&http, &a.server, s.group, std::mem::take(&mut body)).await.inspect_err(|_| {
                    bar.abandon_with_message(format!("stopped in group {}", s.group));
                })?;
                written += v["written"].as_u64().unwrap_or(0);
                present += v["present"].as_u64().unwrap_or(0);
            }
            if next.is_none() {
                break;
            }
        }
        bar.inc(s.len);
        if bar.is_hidden() && !a.json {
            println!("group {}: {} records (source log index {})", s.group, s.records, s.last_index);
        }
    }
    bar.finish_with_message("done");
    if a.json {
        println!(
            "{}",
            json!({ "groups": backup.sections.len(), "written": written, "present": present,
            "tookMs": started.elapsed().as_millis() as u64 })
        );
    } else {
        println!(
            "restored {} groups from {}: {written} records written, {present} already present, in {:.1} s",
            backup.sections.len(),
            input.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Commits one batch, retrying while the group has no leader (a batch is idempotent).
async fn send_batch(http: &reqwest::Client, server: &str, g: u32, body: Vec<u8>) -> anyhow::Result<Value> {
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        let url = format!("{server}/internal/v1/admin/restore/{g}");
        match call(http.post(url).body(body.clone()), &format!("restoring into group {g}")).await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let msg = format!("{e:#}");
                let retry = msg.contains("503") || msg.contains("504") || msg.contains("error sending");
                if !retry || Instant::now() > deadline {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
