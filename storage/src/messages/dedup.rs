//! Idempotency keys of the message store: their fingerprints, the originals they name, and the
//! Bloom filter of each sealed segment.
//!
//! A message is a duplicate when an earlier message of the same chat and sender carries the same
//! clientMsgId and is still inside the dedup window (see `super::MessageStore::find_original`).
//! The key (chat, sender, clientMsgId) is compared by a 128-bit fingerprint (FNV-1a, 128 bits):
//! two distinct keys collide with a probability under 10^-20 even among a billion keys in one
//! window, the reasoning that content addressing relies on, and a collision could only ever join
//! two messages of the same chat and sender. The fingerprint is stable across builds: it is
//! written into sealed segments' index files.

use crate::records::ChatId;
use crate::records::UserId;

/// The fingerprint of an idempotency key.
pub type Fingerprint = u128;

/// What a duplicate is answered with: the original message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Original {
    pub seq: u64,
    pub message_id: uuid::Uuid,
    pub ts_ms: u64,
}

const FNV128_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const FNV128_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

/// The fingerprint of (chat, sender, clientMsgId).
pub fn fingerprint(chat: &ChatId, sender: &UserId, client_msg_id: &str) -> Fingerprint {
    let mut h = FNV128_OFFSET;
    for b in chat.as_bytes().iter().chain(sender.as_bytes()).chain(client_msg_id.as_bytes()) {
        h ^= u128::from(*b);
        h = h.wrapping_mul(FNV128_PRIME);
    }
    h
}

/// Mixes 64 bits (splitmix64's finalizer): FNV's low bits alone are too regular for a filter.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Which of 256 buckets of a sealed index's dedup table holds a fingerprint.
pub fn bucket(fp: Fingerprint) -> usize {
    (fp >> 120) as usize
}

/// Bits per key of a sealed segment's filter: about 0.1% false positives.
const BITS_PER_KEY: usize = 16;
/// Bits set per key, all within one 512-bit block (one cache line per probe).
const PROBES: u32 = 8;
const BLOCK_WORDS: usize = 8;

/// A blocked Bloom filter over the fingerprints of one sealed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    /// A filter sized for `keys` keys.
    pub fn with_keys(keys: usize) -> Bloom {
        let blocks = (keys.max(1) * BITS_PER_KEY).div_ceil(BLOCK_WORDS * 64).next_power_of_two();
        Bloom { words: vec![0; blocks * BLOCK_WORDS] }
    }

    /// A filter read back from its words (see [`Bloom::words`]); `None` when the size is not one
    /// this type makes.
    pub fn from_words(words: Vec<u64>) -> Option<Bloom> {
        let blocks = words.len() / BLOCK_WORDS;
        (blocks > 0 && blocks.is_power_of_two() && words.len() == blocks * BLOCK_WORDS).then_some(Bloom { words })
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    fn positions(&self, fp: Fingerprint) -> (usize, u64, u64) {
        let blocks = self.words.len() / BLOCK_WORDS;
        let h1 = mix(fp as u64);
        let h2 = mix((fp >> 64) as u64) | 1;
        ((h1 as usize) & (blocks - 1), h1 >> 32, h2)
    }

    pub fn insert(&mut self, fp: Fingerprint) {
        let (block, a, b) = self.positions(fp);
        let base = block * BLOCK_WORDS;
        for i in 0..PROBES {
            let bit = (a.wrapping_add(u64::from(i).wrapping_mul(b)) % 512) as usize;
            self.words[base + bit / 64] |= 1 << (bit % 64);
        }
    }

    /// False only when `fp` was surely never inserted.
    pub fn may_contain(&self, fp: Fingerprint) -> bool {
        let (block, a, b) = self.positions(fp);
        let base = block * BLOCK_WORDS;
        (0..PROBES).all(|i| {
            let bit = (a.wrapping_add(u64::from(i).wrapping_mul(b)) % 512) as usize;
            self.words[base + bit / 64] & (1 << (bit % 64)) != 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let (c, s) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        // Golden value: fingerprints are stored in index files, so they must never change.
        assert_eq!(fingerprint(&c, &s, "m1"), fingerprint(&c, &s, "m1"));
        assert_ne!(fingerprint(&c, &s, "m1"), fingerprint(&c, &s, "m2"));
        assert_ne!(fingerprint(&c, &s, "m1"), fingerprint(&s, &c, "m1"));
        // Computed independently (FNV-1a 128 over the 32 id bytes, in Python).
        assert_eq!(fingerprint(&c, &s, ""), 0x6ecb_2f3e_2aee_1470_d2e6_43b8_dd9d_ae1c);
    }

    #[test]
    fn bloom_has_no_false_negatives_and_few_false_positives() {
        let n = 20_000u128;
        let mut b = Bloom::with_keys(n as usize);
        let c = uuid::Uuid::from_u128(7);
        for i in 0..n {
            b.insert(fingerprint(&c, &c, &format!("k{i}")));
        }
        assert!((0..n).all(|i| b.may_contain(fingerprint(&c, &c, &format!("k{i}")))));
        let fp = (0..n).filter(|i| b.may_contain(fingerprint(&c, &c, &format!("other{i}")))).count();
        assert!(fp < n as usize / 100, "{fp} false positives of {n}");
        let again = Bloom::from_words(b.words().to_vec()).unwrap();
        assert_eq!(again, b);
        assert!(Bloom::from_words(vec![0; 3]).is_none());
    }
}
