//! Replaying one segment at open. Every record's CRC is checked.
//!
//! Only a torn tail may be cut: in the last segment, a record that is incomplete, or whose
//! checksum fails with no intact record after it (a crash in the middle of a write that was
//! never fsynced). A bad record followed by an intact one is damage to data that was fsynced
//! (a bit flip, a bad sector): cutting there would silently drop acknowledged records and
//! votes, so open refuses, naming the file and offset, unless `repair` is asked for
//! (`raftchat node --repair-wal`), which cuts there and logs what it dropped.

use std::collections::HashMap;
use std::fs;
use std::fs::OpenOptions;
use std::path::Path;

use super::apply_to_index;
use super::record;
use super::record::Record;
use super::record::PAYLOAD_LEN_MIN;
use super::record::RECORD_HEADER_LEN;
use super::record::RECORD_LEN_MAX;
use super::record::SEGMENT_HEADER_LEN;
use super::GroupIndex;
use super::Loc;
use crate::error::StorageError;

/// The CRC-checked payload of the record at `pos`, if one starts there.
fn record_at(data: &[u8], pos: usize) -> Option<&[u8]> {
    let head = data.get(pos..pos + RECORD_HEADER_LEN)?;
    let crc = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if !(PAYLOAD_LEN_MIN..=RECORD_LEN_MAX).contains(&len) {
        return None;
    }
    let payload = data.get(pos + RECORD_HEADER_LEN..pos + RECORD_HEADER_LEN + len)?;
    (crc32fast::hash(payload) == crc).then_some(payload)
}

/// Replays one segment into `groups`; returns the length of its valid prefix.
pub(super) fn replay_segment(
    path: &Path,
    seg: u64,
    is_last: bool,
    repair: bool,
    groups: &mut HashMap<u32, GroupIndex>,
) -> Result<u64, StorageError> {
    let data = fs::read(path).map_err(|e| StorageError::io(path, e))?;
    let corrupt = |reason: String| StorageError::Corrupt { path: path.to_path_buf(), reason };
    record::check_segment_header(&data).map_err(corrupt)?;
    let mut pos = SEGMENT_HEADER_LEN as usize;
    while pos < data.len() {
        // `tail`: nothing intact follows, so this is where a crash stopped writing.
        let cut = |why: &str, tail: bool| -> Result<u64, StorageError> {
            let dropped = data.len() - pos;
            if is_last && (tail || repair) {
                if tail {
                    tracing::warn!(path = %path.display(), offset = pos, why, dropped, "cutting torn tail of WAL");
                } else {
                    tracing::error!(
                        path = %path.display(), offset = pos, why, dropped,
                        "--repair-wal: cutting the WAL at a damaged record; the records after it are dropped"
                    );
                }
                let f = OpenOptions::new().write(true).open(path).map_err(|e| StorageError::io(path, e))?;
                f.set_len(pos as u64).map_err(|e| StorageError::io(path, e))?;
                f.sync_all().map_err(|e| StorageError::io(path, e))?;
                return Ok(pos as u64);
            }
            let hint = if is_last {
                format!(
                    " (intact records follow, so this is damage, not a torn write); `raftchat node --repair-wal` cuts \
                     the log there, dropping {dropped} bytes, after which the node catches up from its peers"
                )
            } else {
                String::new()
            };
            Err(StorageError::Corrupt { path: path.to_path_buf(), reason: format!("{why} at offset {pos}{hint}") })
        };
        if data.len() - pos < RECORD_HEADER_LEN {
            return cut("short record header", true);
        }
        let len = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]) as usize;
        if len > RECORD_LEN_MAX || data.len() - pos - RECORD_HEADER_LEN < len {
            return cut("short record", true);
        }
        let Some(payload) = record_at(&data, pos) else {
            let intact_after = record_at(&data, pos + RECORD_HEADER_LEN + len).is_some();
            return cut("checksum mismatch", !intact_after);
        };
        let (rec, offs) = Record::decode(payload).map_err(|r| corrupt(format!("{r} at offset {pos}")))?;
        let base = (pos + RECORD_HEADER_LEN) as u64;
        apply_to_index(groups, &rec, offs.into_iter().map(|(off, len)| Loc { seg, off: base + off, len }));
        pos += RECORD_HEADER_LEN + len;
    }
    Ok(pos as u64)
}
