//! Records of a segment file and the segment file header.
//!
//! ```text
//! segment: "RCSEG\0\0\0" | format version u32 LE | reserved u32 | records...
//! record:  crc32 u32 LE | len u32 LE | payload (len bytes)
//! payload: format version u8 | kind u8 | log index u64 LE | chat [16] | seq u64 LE | body
//! ```
//!
//! Kind 1 is a message, whose body is its [`MessageBytes`]. Later kinds (an edit, a delete for
//! everyone, a reaction) will name the message they change by (chat, seq) the same way: a
//! message's current state may change after it is written, its seq never does. The CRC covers
//! the payload, so a torn tail (a crash mid-write) and a flipped bit are both detected; which of
//! the two it is follows from where it lies against the checkpoint (see `super`).

use bytes::Bytes;

use crate::codec::FORMAT_VERSION;
use crate::message::MessageBytes;
use crate::records::ChatId;

pub const SEGMENT_MAGIC: &[u8; 8] = b"RCSEG\0\0\0";
pub const SEGMENT_HEADER_LEN: u64 = 16;
pub const RECORD_HEADER_LEN: usize = 8;
/// Payload bytes before the body.
pub const PAYLOAD_HEAD_LEN: usize = 1 + 1 + 8 + 16 + 8;
/// No record may exceed this; anything larger on a scan is corruption.
pub const RECORD_LEN_MAX: usize = 64 * 1024 * 1024;

pub const KIND_MESSAGE: u8 = 1;

pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&u32::from(FORMAT_VERSION).to_le_bytes());
    h
}

/// Checks a segment header; returns why it is not one.
pub fn check_segment_header(h: &[u8]) -> Result<(), String> {
    if h.len() < SEGMENT_HEADER_LEN as usize || &h[..8] != SEGMENT_MAGIC {
        return Err("not a raftchat message segment (bad magic)".into());
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != u32::from(FORMAT_VERSION) {
        return Err(format!("unknown message segment format version {version}; this build reads {FORMAT_VERSION}"));
    }
    Ok(())
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub log_index: u64,
    pub chat: ChatId,
    pub seq: u64,
    pub body: MessageBytes,
}

/// Appends the framed record of a message to `buf`; returns the record's length.
pub fn encode_message(buf: &mut Vec<u8>, log_index: u64, chat: &ChatId, seq: u64, body: &MessageBytes) -> u32 {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    buf.push(FORMAT_VERSION);
    buf.push(KIND_MESSAGE);
    buf.extend_from_slice(&log_index.to_le_bytes());
    buf.extend_from_slice(chat.as_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(body.as_bytes());
    let payload = &buf[start + RECORD_HEADER_LEN..];
    let crc = crc32fast::hash(payload);
    let len = payload.len() as u32;
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    (buf.len() - start) as u32
}

/// What a look at the bytes at some offset found.
#[derive(Debug)]
pub enum Scan {
    /// A whole record that checks, and its framed length.
    Record(Record, u32),
    /// Fewer bytes than a whole record: the end of what was written (or a torn tail).
    Short,
    /// Bytes that are not a record: a torn write, or corruption.
    Bad(String),
}

/// Decodes the record at the start of `buf` (a slice of shared bytes, so the body is not copied).
pub fn decode(buf: &Bytes) -> Scan {
    if buf.len() < RECORD_HEADER_LEN {
        return Scan::Short;
    }
    let crc = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if len > RECORD_LEN_MAX {
        return Scan::Bad(format!("record length {len} exceeds the limit"));
    }
    if buf.len() - RECORD_HEADER_LEN < len {
        return Scan::Short;
    }
    let payload = &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    if crc32fast::hash(payload) != crc {
        return Scan::Bad("checksum mismatch".into());
    }
    if len < PAYLOAD_HEAD_LEN {
        return Scan::Bad("record too short".into());
    }
    if payload[0] != FORMAT_VERSION {
        return Scan::Bad(format!("unknown record format version {}", payload[0]));
    }
    let kind = payload[1];
    if kind != KIND_MESSAGE {
        return Scan::Bad(format!("unknown record kind {kind}"));
    }
    let u64_at = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&payload[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let mut chat = [0u8; 16];
    chat.copy_from_slice(&payload[10..26]);
    let body = buf.slice(RECORD_HEADER_LEN + PAYLOAD_HEAD_LEN..RECORD_HEADER_LEN + len);
    let record = Record {
        kind,
        log_index: u64_at(2),
        chat: ChatId::from_bytes(chat),
        seq: u64_at(26),
        body: MessageBytes::from_bytes(body),
    };
    Scan::Record(record, (RECORD_HEADER_LEN + len) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageView;

    fn body(text: &str) -> MessageBytes {
        MessageBytes::encode(&MessageView {
            sender: uuid::Uuid::nil(),
            message_id: uuid::Uuid::nil(),
            ts_ms: 1,
            client_msg_id: "c",
            kind: "text",
            body: text,
        })
        .unwrap()
    }

    #[test]
    fn round_trip_short_and_bad() {
        let chat = uuid::Uuid::new_v4();
        let mut buf = Vec::new();
        let n = encode_message(&mut buf, 9, &chat, 3, &body("hi"));
        assert_eq!(n as usize, buf.len());
        let bytes = Bytes::from(buf.clone());
        match decode(&bytes) {
            Scan::Record(r, len) => {
                assert_eq!((r.log_index, r.chat, r.seq, len), (9, chat, 3, n));
                assert_eq!(r.body.view().unwrap().body, "hi");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode(&Bytes::from(buf[..buf.len() - 1].to_vec())), Scan::Short));
        let mut flipped = buf.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(decode(&Bytes::from(flipped)), Scan::Bad(_)));
        assert!(matches!(decode(&Bytes::from(vec![0u8; 4])), Scan::Short));
    }
}
