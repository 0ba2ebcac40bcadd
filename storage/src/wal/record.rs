//! On-disk framing of the write-ahead log.
//!
//! A segment file starts with a 16-byte header (`RCWAL\0\0\0`, format version u32 LE, reserved
//! u32), then holds records back to back:
//!
//! ```text
//! crc32 u32 LE | len u32 LE | payload (len bytes)
//! payload = format version u8 | kind u8 | group u32 LE | body
//! ```
//!
//! The CRC covers the payload, so a torn write at the tail (a crash mid-write) or a flipped bit is
//! detected on replay. Integers are little-endian; entry bodies are opaque bytes produced by the
//! codec one layer up.

use crate::codec::FORMAT_VERSION;

pub const SEGMENT_MAGIC: &[u8; 8] = b"RCWAL\0\0\0";
pub const SEGMENT_HEADER_LEN: u64 = 16;
pub const RECORD_HEADER_LEN: usize = 8;
/// No single record may exceed this; anything larger on replay is corruption.
pub const RECORD_LEN_MAX: usize = 256 * 1024 * 1024;
/// Every payload holds at least its version, kind and group. A shorter one is never a record,
/// even with a matching CRC: eight zero bytes (a file extended by a crash before its data was
/// written) are a zero CRC over an empty payload, which matches.
pub const PAYLOAD_LEN_MIN: usize = 1 + 1 + 4;

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Log entries `first_index..first_index+entries.len()` of a group.
    Entries {
        group: u32,
        first_index: u64,
        entries: Vec<Vec<u8>>,
    },
    Vote {
        group: u32,
        vote: Vec<u8>,
    },
    Committed {
        group: u32,
        committed: Vec<u8>,
    },
    /// Entries up to and including `upto` are gone; `log_id` is the encoded purged log id.
    Purged {
        group: u32,
        upto: u64,
        log_id: Vec<u8>,
    },
    /// Entries from `from` on are gone.
    Truncate {
        group: u32,
        from: u64,
    },
    /// The group left this node; all its state is gone.
    DropGroup {
        group: u32,
    },
}

const KIND_ENTRIES: u8 = 1;
const KIND_VOTE: u8 = 2;
const KIND_COMMITTED: u8 = 3;
const KIND_PURGED: u8 = 4;
const KIND_TRUNCATE: u8 = 5;
const KIND_DROP: u8 = 6;

pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&u32::from(FORMAT_VERSION).to_le_bytes());
    h
}

/// Checks a segment header; returns a reason when it is not one.
pub fn check_segment_header(h: &[u8]) -> Result<(), String> {
    if h.len() < SEGMENT_HEADER_LEN as usize || &h[..8] != SEGMENT_MAGIC {
        return Err("not a raftchat WAL segment (bad magic)".into());
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != u32::from(FORMAT_VERSION) {
        return Err(format!("unknown WAL format version {version}; this build reads {FORMAT_VERSION}"));
    }
    Ok(())
}

impl Record {
    pub fn group(&self) -> u32 {
        match self {
            Record::Entries { group, .. }
            | Record::Vote { group, .. }
            | Record::Committed { group, .. }
            | Record::Purged { group, .. }
            | Record::Truncate { group, .. }
            | Record::DropGroup { group } => *group,
        }
    }

    /// Appends the framed record to `buf`. For `Entries`, returns the offset of each entry's
    /// bytes relative to the start of the frame, so the caller can index them.
    pub fn encode_into(&self, buf: &mut Vec<u8>) -> Vec<(u64, u32)> {
        let start = buf.len();
        buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
        buf.push(FORMAT_VERSION);
        let mut offsets = Vec::new();
        let group = self.group();
        match self {
            Record::Entries { first_index, entries, .. } => {
                buf.push(KIND_ENTRIES);
                buf.extend_from_slice(&group.to_le_bytes());
                buf.extend_from_slice(&first_index.to_le_bytes());
                buf.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                for e in entries {
                    buf.extend_from_slice(&(e.len() as u32).to_le_bytes());
                    offsets.push(((buf.len() - start) as u64, e.len() as u32));
                    buf.extend_from_slice(e);
                }
            }
            Record::Vote { vote, .. } => {
                buf.push(KIND_VOTE);
                buf.extend_from_slice(&group.to_le_bytes());
                buf.extend_from_slice(vote);
            }
            Record::Committed { committed, .. } => {
                buf.push(KIND_COMMITTED);
                buf.extend_from_slice(&group.to_le_bytes());
                buf.extend_from_slice(committed);
            }
            Record::Purged { upto, log_id, .. } => {
                buf.push(KIND_PURGED);
                buf.extend_from_slice(&group.to_le_bytes());
                buf.extend_from_slice(&upto.to_le_bytes());
                buf.extend_from_slice(log_id);
            }
            Record::Truncate { from, .. } => {
                buf.push(KIND_TRUNCATE);
                buf.extend_from_slice(&group.to_le_bytes());
                buf.extend_from_slice(&from.to_le_bytes());
            }
            Record::DropGroup { .. } => {
                buf.push(KIND_DROP);
                buf.extend_from_slice(&group.to_le_bytes());
            }
        }
        let payload = &buf[start + RECORD_HEADER_LEN..];
        let crc = crc32fast::hash(payload);
        let len = payload.len() as u32;
        buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
        buf[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
        offsets
    }

    /// Decodes a payload (CRC already checked). Entry offsets are relative to the payload start.
    pub fn decode(payload: &[u8]) -> Result<(Record, Vec<(u64, u32)>), String> {
        let mut r = Reader { buf: payload, pos: 0 };
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(format!("unknown record format version {version}"));
        }
        let kind = r.u8()?;
        let group = r.u32()?;
        let mut offsets = Vec::new();
        let rec = match kind {
            KIND_ENTRIES => {
                let first_index = r.u64()?;
                let n = r.u32()? as usize;
                let mut entries = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    let len = r.u32()? as usize;
                    offsets.push((r.pos as u64, len as u32));
                    entries.push(r.take(len)?.to_vec());
                }
                Record::Entries { group, first_index, entries }
            }
            KIND_VOTE => Record::Vote { group, vote: r.rest().to_vec() },
            KIND_COMMITTED => Record::Committed { group, committed: r.rest().to_vec() },
            KIND_PURGED => {
                let upto = r.u64()?;
                Record::Purged { group, upto, log_id: r.rest().to_vec() }
            }
            KIND_TRUNCATE => Record::Truncate { group, from: r.u64()? },
            KIND_DROP => Record::DropGroup { group },
            other => return Err(format!("unknown record kind {other}")),
        };
        Ok((rec, offsets))
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or("record too short")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let recs = vec![
            Record::Entries { group: 7, first_index: 10, entries: vec![b"a".to_vec(), vec![], b"ccc".to_vec()] },
            Record::Vote { group: 1, vote: b"v".to_vec() },
            Record::Committed { group: 2, committed: b"c".to_vec() },
            Record::Purged { group: 3, upto: 99, log_id: b"l".to_vec() },
            Record::Truncate { group: 4, from: 5 },
            Record::DropGroup { group: 5 },
        ];
        for rec in recs {
            let mut buf = Vec::new();
            let offs = rec.encode_into(&mut buf);
            let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
            assert_eq!(len, buf.len() - RECORD_HEADER_LEN);
            assert_eq!(crc32fast::hash(&buf[8..]), u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]));
            let (back, offs2) = Record::decode(&buf[8..]).unwrap();
            assert_eq!(back, rec);
            // Encoder offsets are frame-relative, decoder offsets payload-relative.
            let shifted: Vec<_> = offs2.iter().map(|(o, l)| (o + RECORD_HEADER_LEN as u64, *l)).collect();
            assert_eq!(offs, shifted);
        }
    }

    #[test]
    fn truncated_payload_is_an_error() {
        let mut buf = Vec::new();
        Record::Entries { group: 1, first_index: 1, entries: vec![vec![1; 100]] }.encode_into(&mut buf);
        assert!(Record::decode(&buf[8..buf.len() - 10]).is_err());
        assert!(Record::decode(&[9]).is_err());
    }
}
