//! A message as it is proposed, replicated, stored and served: encoded once, at the gateway.
//!
//! [`MessageBytes`] holds the message's own fields (sender, ids, time, type, body) behind a
//! format version byte. The gateway builds it once; the same bytes then ride in the forwarded
//! command, the Raft entry, the WAL, AppendEntries, the message store's segment record and the
//! event ring, and are decoded (without copying strings) only where a field is needed: the
//! idempotency check in apply, and the JSON frame a node builds once for its connections.
//! The chat and the seq are not in it: the chat rides in the command, the seq is assigned in
//! apply and stored next to the bytes.

use bytes::Bytes;
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

use crate::codec;
use crate::codec::CodecError;
use crate::records::MessageRecord;

/// The fields of a message, borrowing its strings (the wire form of [`MessageBytes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView<'a> {
    pub sender: Uuid,
    pub message_id: Uuid,
    pub ts_ms: u64,
    pub client_msg_id: &'a str,
    /// "text", "image", "video", "file", "system".
    pub kind: &'a str,
    pub body: &'a str,
}

/// An encoded message: cheap to clone (shared bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBytes(Bytes);

impl MessageBytes {
    /// Encodes a message's fields (once, at the gateway).
    pub fn encode(v: &MessageView<'_>) -> Result<MessageBytes, CodecError> {
        let mut buf = Vec::with_capacity(64 + v.client_msg_id.len() + v.kind.len() + v.body.len());
        buf.push(codec::FORMAT_VERSION);
        codec::encode_into(v, &mut buf)?;
        Ok(MessageBytes(Bytes::from(buf)))
    }

    /// Wraps bytes read back from storage or the wire; [`MessageBytes::view`] checks them.
    pub fn from_bytes(b: Bytes) -> MessageBytes {
        MessageBytes(b)
    }

    /// The fields, borrowed from the bytes.
    pub fn view(&self) -> Result<MessageView<'_>, CodecError> {
        codec::decode_versioned_borrowed(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The owned record of this message at `seq`.
    pub fn record(&self, seq: u64) -> Result<MessageRecord, CodecError> {
        let v = self.view()?;
        Ok(MessageRecord {
            seq,
            message_id: v.message_id,
            sender: v.sender,
            client_msg_id: v.client_msg_id.to_string(),
            ts_ms: v.ts_ms,
            kind: v.kind.to_string(),
            body: v.body.to_string(),
        })
    }

    /// The encoding of an owned record (restores and tests).
    pub fn of_record(m: &MessageRecord) -> Result<MessageBytes, CodecError> {
        MessageBytes::encode(&MessageView {
            sender: m.sender,
            message_id: m.message_id,
            ts_ms: m.ts_ms,
            client_msg_id: &m.client_msg_id,
            kind: &m.kind,
            body: &m.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_borrows_and_refuses_garbage() {
        let v = MessageView {
            sender: Uuid::new_v4(),
            message_id: Uuid::new_v4(),
            ts_ms: 42,
            client_msg_id: "c-1",
            kind: "text",
            body: "héllo \"quoted\"",
        };
        let m = MessageBytes::encode(&v).unwrap();
        assert_eq!(m.view().unwrap(), v);
        let r = m.record(7).unwrap();
        assert_eq!((r.seq, r.body.as_str(), r.ts_ms), (7, v.body, 42));
        assert_eq!(MessageBytes::of_record(&r).unwrap(), m);
        assert!(MessageBytes::from_bytes(Bytes::from_static(&[codec::FORMAT_VERSION, 0xff])).view().is_err());
        assert!(MessageBytes::from_bytes(Bytes::new()).view().is_err());
    }
}
