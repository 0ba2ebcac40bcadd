//! Commands as bytes: encoded once where they enter the cluster, carried as they are.
//!
//! The gateway turns a [`ChatCommand`] into an [`EncodedCommand`] once; forwarding carries those
//! bytes to the group's leader, whose batcher concatenates the commands waiting into one
//! [`CommandBatch`], the payload of a Raft entry. The WAL, AppendEntries and the entry cache copy
//! the batch as one blob; apply reads the commands back out of it, and a message's
//! [`MessageBytes`] comes out as a slice of the same allocation, not a copy.
//!
//! ```text
//! command: 1 | chat [16] | dedup window ms u64 LE | message bytes      (an Append)
//!          2 | codec encoding of the ChatCommand                        (anything else)
//! batch:   per command: len u32 LE | command
//! ```

use bytes::Bytes;
use bytes::BytesMut;
use raftchat_storage::codec;
use raftchat_storage::codec::CodecError;
use raftchat_storage::message::MessageBytes;
use serde::Deserialize;
use serde::Serialize;

use crate::command::ChatCommand;
use crate::command::ChatId;

const TAG_APPEND: u8 = 1;
const TAG_OTHER: u8 = 2;
const APPEND_HEAD: usize = 1 + 16 + 8;

/// One command, encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedCommand(Bytes);

impl EncodedCommand {
    pub fn encode(cmd: &ChatCommand) -> Result<EncodedCommand, CodecError> {
        Ok(match cmd {
            ChatCommand::Append { chat, message, dedup_window_ms } => {
                let mut b = BytesMut::with_capacity(APPEND_HEAD + message.len());
                b.extend_from_slice(&[TAG_APPEND]);
                b.extend_from_slice(chat.as_bytes());
                b.extend_from_slice(&dedup_window_ms.to_le_bytes());
                b.extend_from_slice(message.as_bytes());
                EncodedCommand(b.freeze())
            }
            other => {
                let mut v = vec![TAG_OTHER];
                codec::encode_into(other, &mut v)?;
                EncodedCommand(Bytes::from(v))
            }
        })
    }

    /// The command, its message bytes shared with `self`.
    pub fn decode(&self) -> Result<ChatCommand, CodecError> {
        decode_slice(&self.0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn decode_slice(b: &Bytes) -> Result<ChatCommand, CodecError> {
    match b.first() {
        Some(&TAG_APPEND) if b.len() >= APPEND_HEAD => {
            let mut chat = [0u8; 16];
            chat.copy_from_slice(&b[1..17]);
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[17..25]);
            Ok(ChatCommand::Append {
                chat: ChatId::from_bytes(chat),
                message: MessageBytes::from_bytes(b.slice(APPEND_HEAD..)),
                dedup_window_ms: u64::from_le_bytes(w),
            })
        }
        Some(&TAG_OTHER) => codec::decode(&b[1..]),
        Some(_) => Err(CodecError::UnknownVersion { found: b[0] }),
        None => Err(CodecError::Empty),
    }
}

/// The commands of one Raft entry, as one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandBatch(Bytes);

impl CommandBatch {
    /// Concatenates encoded commands (one copy of each, into the entry's blob).
    pub fn of<'a>(cmds: impl IntoIterator<Item = &'a EncodedCommand>) -> CommandBatch {
        let mut b = BytesMut::new();
        for c in cmds {
            b.extend_from_slice(&(c.0.len() as u32).to_le_bytes());
            b.extend_from_slice(&c.0);
        }
        CommandBatch(b.freeze())
    }

    /// The commands, in order; a malformed batch is an error for the whole entry.
    pub fn commands(&self) -> Result<Vec<ChatCommand>, CodecError> {
        let mut out = Vec::new();
        let mut pos = 0usize;
        while pos < self.0.len() {
            let Some(len) = self.0.get(pos..pos + 4) else { return Err(CodecError::Empty) };
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let end = pos + 4 + len;
            if end > self.0.len() {
                return Err(CodecError::Empty);
            }
            out.push(decode_slice(&self.0.slice(pos + 4..end))?);
            pos = end;
        }
        Ok(out)
    }

    /// Bytes of the batch.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use raftchat_storage::message::MessageView;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn commands_round_trip_through_a_batch_sharing_message_bytes() {
        let view = MessageView {
            sender: Uuid::new_v4(),
            message_id: Uuid::new_v4(),
            ts_ms: 5,
            client_msg_id: "c",
            kind: "text",
            body: "hello",
        };
        let append = ChatCommand::Append {
            chat: Uuid::new_v4(),
            message: MessageBytes::encode(&view).unwrap(),
            dedup_window_ms: 9,
        };
        let receipt = ChatCommand::Receipt { chat: Uuid::new_v4(), user: Uuid::new_v4(), delivered: 3, read: 2 };
        let encoded: Vec<EncodedCommand> =
            [&append, &receipt].iter().map(|c| EncodedCommand::encode(c).unwrap()).collect();
        assert_eq!(encoded[0].decode().unwrap(), append);
        let batch = CommandBatch::of(&encoded);
        let back = batch.commands().unwrap();
        assert_eq!(back, vec![append, receipt]);
        // The message is a slice of the batch's blob.
        let ChatCommand::Append { message, .. } = &back[0] else { panic!("not an append") };
        let blob = batch.0.as_ptr_range();
        assert!(blob.contains(&message.as_bytes().as_ptr()));
        // Garbage is an error, never a panic.
        assert!(CommandBatch(Bytes::from_static(&[9, 0, 0, 0, 1])).commands().is_err());
        assert!(CommandBatch(Bytes::from_static(&[1, 0, 0, 0, 7])).commands().is_err());
        assert!(EncodedCommand(Bytes::from_static(&[1, 2, 3])).decode().is_err());
    }
}
