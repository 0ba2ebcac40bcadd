//! Retention in the message store: whole segments go once every chat in them is trimmed past
//! them, their index files once their newest message is older than the dedup window.

use std::collections::HashSet;
use std::fs;

use super::idx_path;
use super::seg_path;
use super::Inner;
use super::MessageStore;
use super::SegIndex;
use crate::error::StorageError;
use crate::identity::sync_dir;
use crate::records::ChatId;

impl MessageStore {
    /// Drops what retention no longer needs: the records of sealed segments all of whose
    /// messages are below their chat's floor (`floor(chat)`: the lowest seq kept), and the
    /// index files of those whose newest message is older than `dedup_since_ms`; segments that
    /// old whose messages are kept lose their in-memory dedup filter. Returns the segments whose
    /// records were dropped.
    pub fn collect(&self, floor: &dyn Fn(&ChatId) -> u64, dedup_since_ms: u64) -> Result<u32, StorageError> {
        let (candidates, active, live_data) = {
            let inner = self.read_inner();
            let live_data = live_segments(&inner, floor);
            let candidates: Vec<(u64, bool, u64)> = inner
                .segments
                .iter()
                .filter_map(|(id, s)| match &s.index {
                    SegIndex::Sealed(x) => {
                        // Outside every dedup window: lookups skip it, so its filter goes.
                        if x.max_ts < dedup_since_ms {
                            x.release_filter();
                        }
                        Some((*id, s.file.is_some(), x.max_ts))
                    }
                    SegIndex::Live(_) => None,
                })
                .collect();
            (candidates, inner.active, live_data)
        };
        let mut dropped = 0;
        for (id, has_records, max_ts) in candidates {
            if id >= active || live_data.contains(&id) {
                continue;
            }
            let forget = max_ts < dedup_since_ms;
            if has_records {
                let path = seg_path(&self.0.dir, id);
                fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
                dropped += 1;
            }
            if forget {
                let path = idx_path(&self.0.dir, id);
                fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
            }
            let mut inner = self.write_inner();
            if forget {
                inner.segments.remove(&id);
                for runs in inner.chats.values_mut() {
                    runs.retain(|r| r.segment != id);
                }
                inner.chats.retain(|_, runs| !runs.is_empty());
            } else if let Some(seg) = inner.segments.get_mut(&id) {
                seg.file = None;
            }
        }
        if dropped > 0 {
            sync_dir(&self.0.dir)?;
        }
        Ok(dropped)
    }
}

/// Segments that hold a message at or above its chat's floor (`floor(chat)`).
pub(super) fn live_segments(inner: &Inner, floor: &dyn Fn(&ChatId) -> u64) -> HashSet<u64> {
    let mut live = HashSet::new();
    for (chat, runs) in &inner.chats {
        let f = floor(chat);
        for r in runs {
            let (first, count) = match (&r.sealed, inner.segments.get(&r.segment).map(|s| &s.index)) {
                (Some(s), _) => (s.first_seq, u64::from(s.count)),
                (None, Some(SegIndex::Live(l))) => {
                    l.runs.get(chat).map_or((0, 0), |x| (x.first_seq, x.locs.len() as u64))
                }
                _ => (0, 0),
            };
            if first + count > f {
                live.insert(r.segment);
            }
        }
    }
    live
}
