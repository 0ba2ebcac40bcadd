//! Reads of the message store: history by (chat, seq), and the original of an idempotency key.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;

use super::corrupt;
use super::dedup::Fingerprint;
use super::dedup::Original;
use super::index::Loc;
use super::index::Sealed;
use super::index::SealedRun;
use super::record;
use super::record::Scan;
use super::seg_path;
use super::MessageStore;
use super::RunRef;
use super::SegIndex;
use crate::error::StorageError;
use crate::message::MessageBytes;
use crate::records::ChatId;

impl MessageStore {
    /// The original message of idempotency key `fp` in `chat` whose time is at least
    /// `since_ms`, if the store holds one.
    pub fn find_original(
        &self,
        chat: &ChatId,
        fp: Fingerprint,
        since_ms: u64,
    ) -> Result<Option<Original>, StorageError> {
        let sealed: Vec<Sealed> = {
            let inner = self.read_inner();
            let Some(runs) = inner.chats.get(chat) else { return Ok(None) };
            let mut sealed = Vec::new();
            for r in runs.iter().rev() {
                let Some(seg) = inner.segments.get(&r.segment) else { continue };
                match &seg.index {
                    SegIndex::Live(l) => {
                        if let Some(o) = l.dedup.get(&fp).filter(|o| o.ts_ms >= since_ms) {
                            return Ok(Some(*o));
                        }
                    }
                    SegIndex::Sealed(s) if s.max_ts >= since_ms && r.segment >= inner.dedup_from => {
                        sealed.push(s.clone())
                    }
                    SegIndex::Sealed(_) => {}
                }
            }
            sealed
        };
        for s in sealed {
            if let Some(o) = s.find(fp)?.filter(|o| o.ts_ms >= since_ms) {
                return Ok(Some(o));
            }
        }
        Ok(None)
    }

    /// Messages of `chat` with `from <= seq < to`, oldest first (newest first with `reverse`),
    /// at most `limit`.
    pub fn read(
        &self,
        chat: &ChatId,
        from: u64,
        to: u64,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(u64, MessageBytes)>, StorageError> {
        if from >= to || limit == 0 {
            return Ok(Vec::new());
        }
        // The plan: what to read from where, taken under the lock.
        enum Src {
            Cached(MessageBytes),
            At(Loc),
        }
        let mut plan: Vec<(u64, u64, Arc<File>, Src)> = Vec::new();
        let mut sealed_runs: Vec<(u64, Sealed, SealedRun, u64, u64, Arc<File>)> = Vec::new();
        {
            let inner = self.read_inner();
            let Some(runs) = inner.chats.get(chat) else { return Ok(Vec::new()) };
            let order: Box<dyn Iterator<Item = &RunRef>> =
                if reverse { Box::new(runs.iter().rev()) } else { Box::new(runs.iter()) };
            let mut planned = 0usize;
            for r in order {
                if planned >= limit {
                    break;
                }
                let Some(seg) = inner.segments.get(&r.segment) else { continue };
                let Some(file) = seg.file.clone() else { continue };
                let (first, count) = match (&seg.index, &r.sealed) {
                    (SegIndex::Live(l), _) => l.runs.get(chat).map_or((0, 0), |x| (x.first_seq, x.locs.len() as u64)),
                    (SegIndex::Sealed(_), Some(s)) => (s.first_seq, u64::from(s.count)),
                    (SegIndex::Sealed(_), None) => (0, 0),
                };
                let (lo, hi) = (from.max(first), to.min(first + count));
                if lo >= hi {
                    continue;
                }
                let n = ((hi - lo) as usize).min(limit - planned);
                let (lo, hi) = if reverse { (hi - n as u64, hi) } else { (lo, lo + n as u64) };
                planned += n;
                match (&seg.index, &r.sealed) {
                    (SegIndex::Live(l), _) => {
                        let Some(run) = l.runs.get(chat) else { continue };
                        let seqs: Box<dyn Iterator<Item = u64>> =
                            if reverse { Box::new((lo..hi).rev()) } else { Box::new(lo..hi) };
                        for seq in seqs {
                            let loc = run.locs[(seq - run.first_seq) as usize];
                            if loc.len == 0 {
                                continue;
                            }
                            let src = match inner.recent.get(chat, seq) {
                                Some(b) => Src::Cached(b),
                                None => Src::At(loc),
                            };
                            plan.push((seq, r.segment, file.clone(), src));
                        }
                    }
                    (SegIndex::Sealed(s), Some(run)) => {
                        sealed_runs.push((r.segment, s.clone(), *run, lo - first, hi - lo, file));
                    }
                    _ => {}
                }
            }
        }
        // Sealed runs: their locations come from the index files (outside the lock).
        for (segment, s, run, from_i, n, file) in sealed_runs {
            let locs = s.locs(&run, from_i as u32, n as u32)?;
            let mut items: Vec<(u64, u64, Arc<File>, Src)> = locs
                .into_iter()
                .enumerate()
                .filter(|(_, l)| l.len > 0)
                .map(|(i, l)| (run.first_seq + from_i + i as u64, segment, file.clone(), Src::At(l)))
                .collect();
            if reverse {
                items.reverse();
            }
            plan.extend(items);
        }
        if reverse {
            plan.sort_by_key(|b| std::cmp::Reverse(b.0));
        } else {
            plan.sort_by_key(|a| a.0);
        }
        plan.truncate(limit);
        let mut out = Vec::with_capacity(plan.len());
        for (seq, segment, file, src) in plan {
            let body = match src {
                Src::Cached(b) => b,
                Src::At(loc) => self.read_record(segment, &file, loc, chat, seq)?,
            };
            out.push((seq, body));
        }
        Ok(out)
    }

    /// One record, checked to be the message it should be.
    fn read_record(
        &self,
        segment: u64,
        file: &File,
        loc: Loc,
        chat: &ChatId,
        seq: u64,
    ) -> Result<MessageBytes, StorageError> {
        let path = seg_path(&self.0.dir, segment);
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, u64::from(loc.off)).map_err(|e| StorageError::io(&path, e))?;
        match record::decode(&Bytes::from(buf)) {
            Scan::Record(r, _) if r.chat == *chat && r.seq == seq => Ok(r.body),
            Scan::Record(r, _) => Err(corrupt(
                &path,
                format!("offset {} holds {} seq {}, expected {chat} seq {seq}", loc.off, r.chat, r.seq),
            )),
            Scan::Short => Err(corrupt(&path, format!("record at offset {} is cut short", loc.off))),
            Scan::Bad(why) => Err(corrupt(&path, format!("{why} at offset {}", loc.off))),
        }
    }
}
