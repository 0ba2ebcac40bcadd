//! Property-based fuzz tests of every decoder of this crate that reads bytes from the disk or from
//! a peer: the codec ([`crate::codec`], bincode behind a version byte), the WAL's records and
//! its replay at open ([`crate::wal`]), the message store's segment records and segment files
//! ([`crate::messages`]), and snapshot state files and streams ([`crate::snapshot`]).
//!
//! Each property feeds a decoder arbitrary bytes, or a valid encoding with one byte flipped, cut
//! short or followed by garbage, and checks that it never panics, never allocates what a length
//! prefix claims before the bytes are there, and either refuses the input or returns what was
//! written (a prefix of it, where the format allows a torn tail); valid encodings round-trip.
//!
//! Bound: proptest's default of 256 cases per property (a few seconds in a debug build), so they
//! run with every `cargo test`. For a longer local run:
//!
//! ```text
//! PROPTEST_CASES=100000 cargo test -p raftchat-storage --lib fuzz
//! ```
//!
//! Every crash a property found is pinned by a plain `#[test]` (`regression_*`) beside its
//! property, with the exact input.
//!
//! - [`decoding`]: the codec's decoders; [`wal_replay`]: WAL records and replay;
//!   [`segment_files`]: message store records and segment files; [`snapshot_files`]: snapshot
//!   state files and streams.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::Path;

use bytes::Bytes;
use openraft::BasicNode;
use openraft::CommittedLeaderId;
use openraft::LogId;
use openraft::Membership;
use openraft::StoredMembership;
use proptest::prelude::*;
use proptest::sample::Index;
use serde::Deserialize;
use serde::Serialize;
use uuid::Uuid;

use crate::chat_store::ChatHeader;
use crate::chat_store::Member;
use crate::chat_store::MessageRecord;
use crate::codec;
use crate::codec::FORMAT_VERSION;
use crate::message::MessageBytes;
use crate::message::MessageView;
use crate::messages;
use crate::messages::record as seg;
use crate::messages::MessageStore;
use crate::messages::StorePos;
use crate::snapshot::Manifest;
use crate::snapshot::Meta;
use crate::snapshot::RawRecord;
use crate::snapshot::RecordReader;
use crate::snapshot::StreamItem;
use crate::snapshot::StreamReader;
use crate::wal::record as wal;
use crate::wal::LogEngine;
use crate::wal::SEGMENT_BYTES_DEFAULT;

mod decoding;
mod segment_files;
mod snapshot_files;
mod wal_replay;

/// Proptest's configuration: `PROPTEST_CASES` when set, else `cases`; failures are not persisted
/// to files (a crash becomes a `regression_*` test below instead).
fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c.failure_persistence = None;
    c
}

// ---- Mutations of a valid encoding ----

/// One damage done to a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR the byte at the index with a non-zero mask (a bit flip, a bad sector).
    Flip(Index, u8),
    /// Keep only the first bytes (a torn write, a cut download).
    Truncate(Index),
    /// Add bytes at the end (zeros: a file extended by a crash; or random garbage).
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
        1 => (1..64usize).prop_map(|n| Mutation::Append(vec![0; n])),
    ]
}

impl Mutation {
    /// Applies the damage; returns the first byte offset that differs from the original
    /// (`None` when the result is the original).
    fn apply(&self, bytes: &mut Vec<u8>) -> Option<usize> {
        match self {
            Mutation::Flip(i, x) if !bytes.is_empty() => {
                let at = i.index(bytes.len());
                bytes[at] ^= x;
                Some(at)
            }
            Mutation::Flip(..) => None,
            Mutation::Truncate(i) => {
                let at = i.index(bytes.len() + 1);
                let cut = at < bytes.len();
                bytes.truncate(at);
                cut.then_some(at)
            }
            Mutation::Append(extra) => {
                let at = bytes.len();
                bytes.extend_from_slice(extra);
                Some(at)
            }
        }
    }
}

fn arbitrary_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}
