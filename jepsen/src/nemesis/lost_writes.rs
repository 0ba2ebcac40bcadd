//! Lost un-fsynced writes: SIGKILL nodes and drop everything they wrote but did not fsync
//! ([`crate::lazyfs`]), then restart them, as after a power loss. Every other fault, and
//! raftchat's promise, hinge on this one: nothing is acknowledged before it is fsynced on a
//! quorum. Taking turns, it takes the whole cluster down at once (coordinated power loss), or
//! one node (often the busiest leader).

use std::sync::OnceLock;

use crate::db::Db;

/// Whether FUSE mounts work here (tried once, with a real mount).
pub fn probe() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            if !std::path::Path::new("/dev/fuse").exists() {
                return Err("/dev/fuse is missing (FUSE is not available in this kernel or container)".into());
            }
            let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
            let m = crate::lazyfs::LazyFs::mount(&dir.path().join("b"), &dir.path().join("m")).map_err(|e| {
                format!("a FUSE mount failed: {e} (root, or fusermount3 from Debian's fuse3, is needed)")
            })?;
            std::fs::write(dir.path().join("m/probe"), b"x")
                .map_err(|e| format!("the FUSE mount does not work: {e}"))?;
            drop(m);
            Ok(())
        })
        .clone()
}

/// Kills the nodes of the `nth` fault and drops their unsynced writes; returns the nodes to
/// restart and whether any write was lost (the fault bit).
pub async fn crash(db: &Db, nth: usize, leader: Option<u64>) -> (Vec<u64>, u64) {
    let nodes = if nth.is_multiple_of(2) { db.ids() } else { vec![leader.unwrap_or(1)] };
    for n in &nodes {
        db.kill(*n);
    }
    let lost = nodes.iter().map(|n| db.lose_unsynced(*n)).sum();
    (nodes, lost)
}
