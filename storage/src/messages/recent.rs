//! The newest messages of a store, in memory: catch-up after a reconnect or a gap reads them
//! without touching the segment files.

use std::collections::HashMap;
use std::collections::VecDeque;

use crate::message::MessageBytes;
use crate::records::ChatId;

/// Messages kept at most per store.
const RECENT_MAX: usize = 16_384;
/// Bytes of message bodies kept at most per store.
const RECENT_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The newest messages, oldest evicted first.
#[derive(Default)]
pub struct Recent {
    by_key: HashMap<(ChatId, u64), MessageBytes>,
    order: VecDeque<(ChatId, u64)>,
    bytes: usize,
}

impl Recent {
    pub fn put(&mut self, chat: ChatId, seq: u64, body: MessageBytes) {
        self.bytes += body.len();
        if let Some(old) = self.by_key.insert((chat, seq), body) {
            // Only a deliberately broken build writes one seq twice; the newer body wins.
            self.bytes -= old.len();
        } else {
            self.order.push_back((chat, seq));
        }
        while self.order.len() > RECENT_MAX || self.bytes > RECENT_BYTES_MAX {
            let Some(key) = self.order.pop_front() else { break };
            if let Some(b) = self.by_key.remove(&key) {
                self.bytes -= b.len();
            }
        }
    }

    pub fn get(&self, chat: &ChatId, seq: u64) -> Option<MessageBytes> {
        self.by_key.get(&(*chat, seq)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_within_bounds() {
        let mut r = Recent::default();
        let chat = uuid::Uuid::new_v4();
        let body = MessageBytes::from_bytes(bytes::Bytes::from(vec![0u8; 100]));
        for seq in 0..(RECENT_MAX as u64 + 10) {
            r.put(chat, seq, body.clone());
        }
        assert!(r.get(&chat, 0).is_none());
        assert!(r.get(&chat, RECENT_MAX as u64 + 9).is_some());
        assert_eq!(r.by_key.len(), RECENT_MAX);
        assert_eq!(r.bytes, RECENT_MAX * 100);
    }
}
