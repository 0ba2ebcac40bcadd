//! Clock skew: a node restarted under libfaketime (`LD_PRELOAD`, `FAKETIME="+45s"`). raftchat
//! takes message timestamps from the gateway's clock into the command and uses monotonic time
//! for Raft, so a skewed node must change timestamps at most, never order or acknowledgements.

use std::path::PathBuf;
use std::time::Duration;
use std::time::SystemTime;

use crate::db::Db;

const CANDIDATES: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

/// The libfaketime library, or why there is none.
pub fn library() -> Result<PathBuf, String> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| format!("libfaketime not found (looked in {CANDIDATES:?}; Debian package `faketime`)"))
}

/// Restarts node `n` with its clock `secs` off; true when its HTTP `Date` header shows the skew.
pub async fn skew(db: &Db, n: u64, secs: i64) -> bool {
    let Ok(lib) = library() else { return false };
    db.kill(n);
    db.set_clock(n, Some((lib, format!("{secs:+}s"))));
    if let Err(e) = db.spawn(n) {
        eprintln!("jepsen: restarting n{n} with a skewed clock failed: {e:#}");
        return false;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        if let Some(off) = offset(db, n).await {
            return (off - secs as f64).abs() < 5.0;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Restarts node `n` on real time.
pub fn reset(db: &Db, n: u64) {
    db.kill(n);
    db.set_clock(n, None);
    if let Err(e) = db.spawn(n) {
        eprintln!("jepsen: restarting n{n} failed: {e:#}");
    }
}

/// The node's clock minus ours, in seconds, from the `Date` header of `/livez`.
async fn offset(db: &Db, n: u64) -> Option<f64> {
    let resp = db.http.get(format!("{}/livez", db.url(n))).send().await.ok()?;
    let date = resp.headers().get("date")?.to_str().ok()?;
    let theirs = httpdate::parse_http_date(date).ok()?;
    let ours = SystemTime::now();
    Some(match theirs.duration_since(ours) {
        Ok(ahead) => ahead.as_secs_f64(),
        Err(behind) => -behind.duration().as_secs_f64(),
    })
}
