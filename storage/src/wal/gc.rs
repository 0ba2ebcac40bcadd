//! Freeing log segments: deleting the ones no group needs, and copying the few live entries of
//! small groups out of old segments (TiKV raft-engine's "rewrite") so that they can go.

use std::fs;
use std::os::unix::fs::FileExt;

use super::record::Record;
use super::record::RECORD_LEN_MAX;
use super::seg_path;
use super::EngineState;
use super::LogEngine;
use crate::error::StorageError;

/// A group's live entries copied into a new segment, with each entry's (offset, length) in
/// the segment's buffer.
pub(super) type Carried = (Record, Vec<(u64, u32)>);

impl LogEngine {
    /// Deletes segments that hold no live entry of any group (older than the active one).
    /// Call it only after the purge or drop records that freed them are durable: otherwise a
    /// crash could replay a log that still needs a deleted segment.
    pub fn gc(&self) {
        let mut st = self.lock();
        self.gc_locked(&mut st);
        // Old segments still alive only for small groups (quiet since, or just purged): start
        // a new segment now, which copies them forward, instead of at the next rotation.
        let active = st.active.id;
        let pinning: Vec<u64> = st
            .groups
            .values()
            .filter(|g| g.entries.front().is_some_and(|l| l.seg < active))
            .map(|g| g.entries.iter().map(|l| u64::from(l.len)).sum())
            .collect();
        if !pinning.is_empty() && pinning.iter().all(|b| *b <= self.carry_limit()) {
            if let Err(e) = self.rotate_locked(&mut st) {
                tracing::warn!(cause = %e, "could not start a new WAL segment to free old ones");
            }
        }
    }

    /// Live bytes of a group small enough to be copied into a new segment.
    fn carry_limit(&self) -> u64 {
        (self.inner.segment_bytes / 8).min(RECORD_LEN_MAX as u64 / 2)
    }

    pub(super) fn gc_locked(&self, st: &mut EngineState) {
        let oldest_live = st.groups.values().filter_map(|g| g.entries.front().map(|l| l.seg)).min();
        let keep_from = oldest_live.unwrap_or(st.active.id).min(st.active.id);
        let dead: Vec<u64> = st.segments.range(..keep_from).map(|(id, _)| *id).collect();
        for id in dead {
            st.segments.remove(&id);
            let path = seg_path(&self.inner.dir, id);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), cause = %e, "could not delete WAL segment");
            }
        }
    }

    /// Copies the live entries of small groups that keep old segments alive (an idle group, the
    /// meta group) into the new segment, so purges of the busy groups can free those segments
    /// (TiKV raft-engine's "rewrite"). Returns each copy with its entries' offsets in `buf`.
    pub(super) fn carry_forward(&self, st: &EngineState, buf: &mut Vec<u8>) -> Result<Vec<Carried>, StorageError> {
        let per_group_max = self.carry_limit();
        let mut budget = self.inner.segment_bytes / 2;
        let mut ids: Vec<u32> = st.groups.keys().copied().collect();
        ids.sort_unstable();
        let mut out = Vec::new();
        for group in ids {
            let g = &st.groups[&group];
            // Entries in the segment just filled do not hold anything old; leave them.
            if g.entries.front().is_none_or(|l| l.seg >= st.active.id) {
                continue;
            }
            let bytes: u64 = g.entries.iter().map(|l| u64::from(l.len)).sum();
            if bytes > per_group_max || bytes > budget {
                continue;
            }
            budget -= bytes;
            let mut entries = Vec::with_capacity(g.entries.len());
            for loc in &g.entries {
                let path = seg_path(&self.inner.dir, loc.seg);
                let file = st.segments.get(&loc.seg).ok_or_else(|| StorageError::Corrupt {
                    path: path.clone(),
                    reason: format!("segment of a live entry of group {group} is missing"),
                })?;
                let mut b = vec![0u8; loc.len as usize];
                file.read_exact_at(&mut b, loc.off).map_err(|e| StorageError::io(&path, e))?;
                entries.push(b);
            }
            let rec = Record::Entries { group, first_index: g.first, entries };
            let start = buf.len() as u64;
            let offsets = rec.encode_into(buf).into_iter().map(|(off, len)| (start + off, len)).collect();
            out.push((rec, offsets));
        }
        Ok(out)
    }
}
