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
//! Every crash a property found is pinned by a plain `#[test]` at the end of this file
//! (`regression_*`), with the exact input.

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

// ---- Codec ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum SampleKind {
    Plain,
    Numbered(u32),
    Named { name: String, weight: i64 },
}

/// A value with every shape the crate's records use: ids, strings, byte strings, varints of
/// every width, options, sequences and enums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sample {
    id: Uuid,
    text: String,
    seq: u64,
    big: u128,
    bytes: Bytes,
    tags: Vec<String>,
    opt: Option<i64>,
    kind: SampleKind,
    map: BTreeMap<u64, Vec<u8>>,
}

fn sample() -> impl Strategy<Value = Sample> {
    let kind = prop_oneof![
        Just(SampleKind::Plain),
        any::<u32>().prop_map(SampleKind::Numbered),
        (".{0,12}", any::<i64>()).prop_map(|(name, weight)| SampleKind::Named { name, weight }),
    ];
    (
        any::<u128>(),
        ".{0,40}",
        any::<u64>(),
        any::<u128>(),
        arbitrary_bytes(64),
        prop::collection::vec(".{0,8}", 0..4),
        any::<Option<i64>>(),
        kind,
        prop::collection::btree_map(any::<u64>(), arbitrary_bytes(8), 0..4),
    )
        .prop_map(|(id, text, seq, big, bytes, tags, opt, kind, map)| Sample {
            id: Uuid::from_u128(id),
            text,
            seq,
            big,
            bytes: Bytes::from(bytes),
            tags,
            opt,
            kind,
            map,
        })
}

fn snapshot_meta(index: u64, id: &str) -> Meta {
    let log_id = LogId::new(CommittedLeaderId::new(3, 1), index);
    let nodes: BTreeMap<u64, BasicNode> =
        (1..=3).map(|n| (n, BasicNode::new(format!("127.0.0.1:{}", 7000 + n)))).collect();
    let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes);
    Meta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(Some(log_id), membership),
        snapshot_id: id.into(),
    }
}

/// Decodes `bytes` as every type the crate reads from disk or the wire (versioned and not), so
/// that a panic or an abort in any of them fails the property.
fn decode_as_everything(bytes: &[u8]) {
    let _ = codec::decode::<Sample>(bytes);
    let _ = codec::decode_versioned::<Sample>(bytes);
    let _ = codec::decode_versioned::<Manifest>(bytes);
    let _ = codec::decode_versioned::<Meta>(bytes);
    let _ = codec::decode_versioned::<ChatHeader>(bytes);
    let _ = codec::decode_versioned::<Member>(bytes);
    let _ = codec::decode_versioned::<MessageRecord>(bytes);
    let _ = codec::decode_versioned::<StorePos>(bytes);
    let _ = codec::decode::<String>(bytes);
    let _ = codec::decode::<Vec<Vec<u8>>>(bytes);
    let _ = codec::decode::<Bytes>(bytes);
    let _ = codec::decode_versioned_borrowed::<MessageView<'_>>(bytes);
    let _ = MessageBytes::from_bytes(Bytes::copy_from_slice(bytes)).view();
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary bytes decode to a value or an error, as every type; never a panic or an abort.
    #[test]
    fn fuzz_codec_arbitrary_bytes(bytes in arbitrary_bytes(256)) {
        decode_as_everything(&bytes);
        // The same behind a valid version byte, so the decoders get past the version check.
        let mut versioned = vec![FORMAT_VERSION];
        versioned.extend_from_slice(&bytes);
        decode_as_everything(&versioned);
    }

    /// A versioned encoding round-trips; damaged, it decodes to an error or some value, and a
    /// truncated one is always an error.
    #[test]
    fn fuzz_codec_round_trip_and_damage(s in sample(), m in mutation()) {
        let bytes = codec::encode_versioned(&s).expect("encode");
        prop_assert_eq!(&codec::decode_versioned::<Sample>(&bytes).expect("decode"), &s);
        let mut damaged = bytes.clone();
        let changed = m.apply(&mut damaged);
        let back = codec::decode_versioned::<Sample>(&damaged);
        if damaged.len() < bytes.len() {
            prop_assert!(back.is_err(), "a truncated encoding decoded: {:?}", back);
        }
        if changed.is_none() {
            prop_assert_eq!(back.expect("undamaged"), s);
        }
        decode_as_everything(&damaged);
    }

    /// A length prefix (of a string, a byte string or a sequence) far beyond the input is an
    /// error, wherever it sits, and is not allocated first.
    #[test]
    fn fuzz_codec_huge_length_prefix(s in sample(), at in any::<Index>(), width in 0..3usize, len in any::<u64>()) {
        let bytes = codec::encode_versioned(&s).expect("encode");
        let at = at.index(bytes.len());
        let mut damaged = bytes[..at].to_vec();
        match width {
            0 => damaged.push(0xfb),
            1 => damaged.push(0xfc),
            _ => damaged.push(0xfd),
        }
        let len = len.max(1 << 20);
        damaged.extend_from_slice(&[&len.to_le_bytes()[..2 << width.min(2)], &bytes[at..]].concat());
        decode_as_everything(&damaged);
    }
}

// ---- WAL ----

fn wal_record() -> impl Strategy<Value = wal::Record> {
    let group = 1..4u32;
    let blob = || arbitrary_bytes(24);
    prop_oneof![
        4 => (group.clone(), 0..40u64, prop::collection::vec(blob(), 0..4))
            .prop_map(|(group, first_index, entries)| wal::Record::Entries { group, first_index, entries }),
        1 => (group.clone(), blob()).prop_map(|(group, vote)| wal::Record::Vote { group, vote }),
        1 => (group.clone(), blob()).prop_map(|(group, committed)| wal::Record::Committed { group, committed }),
        1 => (group.clone(), 0..40u64, blob())
            .prop_map(|(group, upto, log_id)| wal::Record::Purged { group, upto, log_id }),
        1 => (group.clone(), 0..40u64).prop_map(|(group, from)| wal::Record::Truncate { group, from }),
        1 => group.prop_map(|group| wal::Record::DropGroup { group }),
    ]
}

/// A WAL segment file holding `records`, and the offset where each record ends (the first is
/// where the header ends).
fn wal_segment(records: &[wal::Record]) -> (Vec<u8>, Vec<usize>) {
    let mut buf = wal::segment_header().to_vec();
    let mut ends = vec![buf.len()];
    for r in records {
        r.encode_into(&mut buf);
        ends.push(buf.len());
    }
    (buf, ends)
}

type GroupView = (u32, Option<Vec<u8>>, Option<Vec<u8>>, Option<(u64, Vec<u8>)>, Option<(u64, u64)>, Vec<Vec<u8>>);

/// Everything a log engine answers about its groups.
fn wal_view(e: &LogEngine) -> Vec<GroupView> {
    e.groups()
        .into_iter()
        .map(|g| {
            let st = e.group_state(g);
            let entries = e.read(g, 0, u64::MAX).expect("read");
            (g, st.vote, st.committed, st.purged, st.bounds, entries)
        })
        .collect()
}

fn wal_dir_with(segment: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(format!("{:016}.wal", 1)), segment).expect("write segment");
    dir
}

/// What a clean log holding exactly `records` answers.
fn wal_reference(records: &[wal::Record]) -> Vec<GroupView> {
    let dir = wal_dir_with(&wal_segment(records).0);
    let e = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).expect("open a clean log");
    let view = wal_view(&e);
    e.close();
    view
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary payload bytes decode to a record or an error; a record re-encodes to them.
    #[test]
    fn fuzz_wal_record_arbitrary_payload(payload in arbitrary_bytes(128), head in any::<(u8, u32)>()) {
        for p in [payload.clone(), [&[FORMAT_VERSION, head.0 % 8][..], &head.1.to_le_bytes(), &payload].concat()] {
            if let Ok((rec, offsets)) = wal::Record::decode(&p) {
                let mut buf = Vec::new();
                rec.encode_into(&mut buf);
                // What was decoded is what the payload starts with (bytes after an Entries,
                // Truncate or DropGroup record's fields are not read; the CRC covers them).
                prop_assert!(p.starts_with(&buf[wal::RECORD_HEADER_LEN..]));
                for (off, len) in offsets {
                    prop_assert!(off as usize + len as usize <= p.len());
                }
            }
        }
    }

    /// Every record round-trips through its frame; a truncated payload is an error.
    #[test]
    fn fuzz_wal_record_round_trip(rec in wal_record(), cut in any::<Index>()) {
        let mut buf = Vec::new();
        rec.encode_into(&mut buf);
        let payload = &buf[wal::RECORD_HEADER_LEN..];
        prop_assert_eq!(crc32fast::hash(payload).to_le_bytes(), [buf[0], buf[1], buf[2], buf[3]]);
        let (back, _) = wal::Record::decode(payload).expect("decode");
        prop_assert_eq!(&back, &rec);
        let short = &payload[..cut.index(payload.len())];
        // Vote, Committed and Purged end in an unframed blob: a shorter one is still a record.
        if matches!(rec, wal::Record::Entries { .. } | wal::Record::Truncate { .. } | wal::Record::DropGroup { .. }) {
            prop_assert!(wal::Record::decode(short).is_err());
        } else {
            let _ = wal::Record::decode(short);
        }
    }

    /// A segment with one damage replays to an error or to exactly a prefix of its records
    /// (what a clean log of that prefix answers); never to a record that was not written.
    #[test]
    fn fuzz_wal_replay_damaged_segment(
        records in prop::collection::vec(wal_record(), 0..12),
        m in mutation(),
        repair in any::<bool>(),
    ) {
        let (mut bytes, ends) = wal_segment(&records);
        m.apply(&mut bytes);
        let dir = wal_dir_with(&bytes);
        let Ok(e) = LogEngine::open_with(dir.path(), SEGMENT_BYTES_DEFAULT, repair) else { return Ok(()) };
        let seen = wal_view(&e);
        e.close();
        let kept = std::fs::metadata(dir.path().join(format!("{:016}.wal", 1))).expect("segment").len() as usize;
        let Some(k) = ends.iter().position(|&end| end == kept) else {
            return Err(TestCaseError::fail(format!("replay kept {kept} bytes, not a record boundary of {ends:?}")));
        };
        prop_assert_eq!(seen, wal_reference(&records[..k]), "kept {} of {} records", k, records.len());
    }

    /// A torn tail after intact records (a cut record, garbage, or zeros: a file extended by a
    /// crash before its data reached the disk) is cut, and every record before it is kept.
    #[test]
    fn fuzz_wal_torn_tail_is_cut(
        records in prop::collection::vec(wal_record(), 0..8),
        tail in prop_oneof![
            prop::collection::vec(any::<u8>(), 1..64),
            (1..64usize).prop_map(|n| vec![0; n]),
            (wal_record(), any::<Index>()).prop_map(|(r, cut)| {
                let mut b = Vec::new();
                r.encode_into(&mut b);
                b.truncate(cut.index(b.len()));
                b
            }),
        ],
    ) {
        let (mut bytes, _) = wal_segment(&records);
        bytes.extend_from_slice(&tail);
        let dir = wal_dir_with(&bytes);
        let e = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).expect("a torn tail opens");
        let seen = wal_view(&e);
        e.close();
        prop_assert_eq!(seen, wal_reference(&records));
    }
}

// ---- Message store segments ----

fn message_view() -> impl Strategy<Value = (u128, u128, u64, String, String, String)> {
    (any::<u128>(), any::<u128>(), any::<u64>(), ".{0,12}", "text|image|system|.{0,6}", ".{0,60}")
}

fn message_bytes((sender, id, ts, cmid, kind, body): &(u128, u128, u64, String, String, String)) -> MessageBytes {
    MessageBytes::encode(&MessageView {
        sender: Uuid::from_u128(*sender),
        message_id: Uuid::from_u128(*id),
        ts_ms: *ts,
        client_msg_id: cmid,
        kind,
        body,
    })
    .expect("encode message")
}

/// Messages of up to three chats, each chat's seqs consecutive from 1 (as apply assigns them).
fn messages_of() -> impl Strategy<Value = Vec<(Uuid, u64, u64, MessageBytes)>> {
    prop::collection::vec((0..3u128, message_view()), 0..10).prop_map(|ms| {
        let mut next: BTreeMap<u128, u64> = BTreeMap::new();
        ms.iter()
            .enumerate()
            .map(|(i, (chat, v))| {
                let seq = next.entry(*chat).or_insert(0);
                *seq += 1;
                (Uuid::from_u128(chat + 1), *seq, i as u64 + 1, message_bytes(v))
            })
            .collect()
    })
}

fn message_segment(msgs: &[(Uuid, u64, u64, MessageBytes)]) -> Vec<u8> {
    let mut buf = seg::segment_header().to_vec();
    for (chat, seq, log_index, body) in msgs {
        seg::encode_message(&mut buf, *log_index, chat, *seq, body);
    }
    buf
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary bytes scan as short, bad, or a record whose encoding is exactly what was read.
    #[test]
    fn fuzz_segment_record_arbitrary_bytes(bytes in arbitrary_bytes(160), fix_crc in any::<bool>()) {
        let mut bytes = bytes;
        // Half the cases get a matching length and checksum, to reach the decoding behind them.
        if fix_crc && bytes.len() >= seg::RECORD_HEADER_LEN {
            let len = (bytes.len() - seg::RECORD_HEADER_LEN) as u32;
            let crc = crc32fast::hash(&bytes[seg::RECORD_HEADER_LEN..]);
            bytes[..4].copy_from_slice(&crc.to_le_bytes());
            bytes[4..8].copy_from_slice(&len.to_le_bytes());
        }
        if let seg::Scan::Record(r, len) = seg::decode(&Bytes::from(bytes.clone())) {
            prop_assert!(len as usize <= bytes.len());
            let mut again = Vec::new();
            seg::encode_message(&mut again, r.log_index, &r.chat, r.seq, &r.body);
            prop_assert_eq!(&again[..], &bytes[..len as usize]);
            let _ = r.body.view();
        }
    }

    /// A record round-trips; cut short it scans as short; damaged, it never scans as a record
    /// other than the one written.
    #[test]
    fn fuzz_segment_record_round_trip(
        log_index in any::<u64>(),
        chat in any::<u128>(),
        seq in any::<u64>(),
        v in message_view(),
        m in mutation(),
    ) {
        let (chat, body) = (Uuid::from_u128(chat), message_bytes(&v));
        let mut buf = Vec::new();
        let n = seg::encode_message(&mut buf, log_index, &chat, seq, &body);
        let seg::Scan::Record(r, len) = seg::decode(&Bytes::from(buf.clone())) else {
            return Err(TestCaseError::fail("a valid record did not scan"));
        };
        prop_assert_eq!((r.log_index, r.chat, r.seq, &r.body, len), (log_index, chat, seq, &body, n));
        let mut damaged = buf.clone();
        m.apply(&mut damaged);
        match seg::decode(&Bytes::from(damaged.clone())) {
            seg::Scan::Record(r, len) => {
                prop_assert_eq!((r.log_index, r.chat, r.seq, &r.body, len), (log_index, chat, seq, &body, n));
            }
            seg::Scan::Short => {}
            seg::Scan::Bad(_) => prop_assert!(damaged.len() >= buf.len(), "a cut record is short, not bad"),
        }
    }

    /// A damaged segment file fails its check, or opens with exactly the messages written
    /// before the damage; never with a message that was not written.
    #[test]
    fn fuzz_segment_file_damaged(msgs in messages_of(), m in mutation()) {
        let mut bytes = message_segment(&msgs);
        let changed = m.apply(&mut bytes);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(messages::snapshot::file_name(1, "seg"));
        std::fs::write(&path, &bytes).expect("write");
        let verified = messages::snapshot::verify_segment(&path);
        if changed.is_none() {
            prop_assert!(verified.is_ok(), "{:?}", verified);
        }
        let checkpoint = StorePos { segment: 1, offset: bytes.len() as u64 };
        let Ok(store) = MessageStore::open(dir.path(), checkpoint, messages::SEGMENT_BYTES_DEFAULT) else {
            return Ok(());
        };
        prop_assert!(verified.is_ok(), "the store opened a segment that fails its check");
        for chat in 1..=3u128 {
            let chat = Uuid::from_u128(chat);
            let got = store.read(&chat, 0, u64::MAX, usize::MAX, false).expect("read");
            let written: Vec<(u64, MessageBytes)> =
                msgs.iter().filter(|m| m.0 == chat).map(|m| (m.1, m.3.clone())).collect();
            prop_assert!(written.starts_with(&got), "read {:?}, wrote {:?}", got, written);
        }
    }
}

// ---- Snapshots ----

/// The bytes of a state file holding `records` (the layout of `crate::snapshot`).
fn state_file(meta: &Meta, records: &[RawRecord]) -> Vec<u8> {
    let m = codec::encode_versioned(meta).expect("encode meta");
    let mut b = b"RCSNAP\0\0".to_vec();
    b.extend_from_slice(&u32::from(FORMAT_VERSION).to_le_bytes());
    b.extend_from_slice(&(m.len() as u32).to_le_bytes());
    b.extend_from_slice(&m);
    let mut crc = crc32fast::Hasher::new();
    for (k, v) in records {
        for part in [&(k.len() as u32).to_le_bytes()[..], &(v.len() as u32).to_le_bytes(), k, v] {
            crc.update(part);
            b.extend_from_slice(part);
        }
    }
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    b.extend_from_slice(&(records.len() as u64).to_le_bytes());
    b.extend_from_slice(&crc.finalize().to_le_bytes());
    b
}

/// A snapshot stream (format 2) of a state file and one segment file; the offset where the
/// manifest ends.
fn snapshot_stream(state: &[u8], segment: &[u8], seg_name: &str, meta: &Meta) -> (Vec<u8>, usize) {
    let manifest = Manifest {
        meta: meta.clone(),
        store: StorePos { segment: 1, offset: segment.len() as u64 },
        files: vec![("state".into(), state.len() as u64), (seg_name.into(), segment.len() as u64)],
    };
    let m = codec::encode_versioned(&manifest).expect("encode manifest");
    let mut b = b"RCSNAPS2".to_vec();
    b.extend_from_slice(&(m.len() as u32).to_le_bytes());
    b.extend_from_slice(&m);
    let manifest_end = b.len();
    b.extend_from_slice(state);
    b.extend_from_slice(segment);
    (b, manifest_end)
}

fn read_state(bytes: &[u8]) -> Result<(Meta, Vec<RawRecord>), crate::StorageError> {
    let mut r = RecordReader::new(Cursor::new(bytes), Path::new("fuzz-state"))?;
    let mut out = Vec::new();
    while let Some(pair) = r.next_record()? {
        out.push(pair);
    }
    Ok((r.meta.clone(), out))
}

fn read_stream(bytes: &[u8]) -> Result<(Meta, Vec<StreamItem>), crate::StorageError> {
    let mut r = StreamReader::new(Box::new(Cursor::new(bytes)), Path::new("fuzz-stream"))?;
    let mut out = Vec::new();
    while let Some(item) = r.next_item()? {
        out.push(item);
    }
    Ok((r.meta.clone(), out))
}

fn raw_records() -> impl Strategy<Value = Vec<RawRecord>> {
    prop::collection::vec((arbitrary_bytes(12), arbitrary_bytes(24)), 0..6)
}

fn is_subsequence<T: PartialEq>(part: &[T], whole: &[T]) -> bool {
    let mut it = whole.iter();
    part.iter().all(|p| it.any(|w| w == p))
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary bytes, bare or behind either snapshot magic, read as an error or as records;
    /// never a panic, never an allocation of what a length claims.
    #[test]
    fn fuzz_snapshot_arbitrary_bytes(bytes in arbitrary_bytes(256), lead in 0..3usize) {
        let lead: &[u8] = [&b""[..], b"RCSNAP\0\0", b"RCSNAPS2"][lead];
        let bytes = [lead, &bytes].concat();
        let _ = read_state(&bytes);
        let _ = read_stream(&bytes);
    }

    /// A state file reads back exactly; damaged, it is an error or (read to its trailer) the
    /// records written: a changed record never gets past the trailer's checksum.
    #[test]
    fn fuzz_snapshot_state_file(records in raw_records(), index in 0..1000u64, id in "[a-z0-9-]{0,16}", m in mutation()) {
        let meta = snapshot_meta(index, &id);
        let bytes = state_file(&meta, &records);
        prop_assert_eq!(read_state(&bytes).expect("read"), (meta, records.clone()));
        let mut damaged = bytes.clone();
        m.apply(&mut damaged);
        if let Ok((_, got)) = read_state(&damaged) {
            prop_assert_eq!(got, records);
        }
    }

    /// A snapshot stream reads back exactly; damaged, it is an error or a subsequence of what
    /// was written, and exactly what was written when the damage is past the manifest (the
    /// manifest carries no checksum: a flipped file length may drop a file's tail records).
    #[test]
    fn fuzz_snapshot_stream(
        records in raw_records(),
        msgs in messages_of(),
        index in 0..1000u64,
        m in mutation(),
    ) {
        let meta = snapshot_meta(index, "snap-1");
        let state = state_file(&meta, &records);
        let segment = message_segment(&msgs);
        let (bytes, manifest_end) = snapshot_stream(&state, &segment, &messages::snapshot::file_name(1, "seg"), &meta);
        let want: Vec<StreamItem> = records
            .iter()
            .cloned()
            .map(StreamItem::Pair)
            .chain(msgs.iter().map(|(chat, seq, _, body)| StreamItem::Message { chat: *chat, seq: *seq, body: body.clone() }))
            .collect();
        prop_assert_eq!(read_stream(&bytes).expect("read"), (meta, want.clone()));
        let mut damaged = bytes.clone();
        let at = m.apply(&mut damaged);
        if let Ok((_, got)) = read_stream(&damaged) {
            prop_assert!(is_subsequence(&got, &want), "read {:?}, wrote {:?}", got, want);
            if at.is_some_and(|at| at >= manifest_end) {
                prop_assert_eq!(got, want);
            }
        }
    }
}

// ---- Regressions: each crash a property found, with its exact input ----

/// `fuzz_codec_huge_length_prefix` aborted the test process with "memory allocation of
/// 3326541015353768828 bytes failed": bincode allocated a string at the length its prefix
/// claimed before reading it, so one corrupt prefix (in a WAL entry, a peer frame, a snapshot
/// manifest) killed the node. Fixed in `codec::decode_borrowed` (a byte limit in proportion to
/// the input, so the claim is refused before anything is allocated).
#[test]
fn regression_codec_huge_length_prefix_is_an_error_not_an_abort() {
    let claimed: u64 = 3_326_541_015_353_768_828;
    let mut bytes = vec![0xfd];
    bytes.extend_from_slice(&claimed.to_le_bytes());
    bytes.extend_from_slice(b"abc");
    assert!(codec::decode::<String>(&bytes).is_err());
    assert!(codec::decode::<Bytes>(&bytes).is_err());
    // u64::MAX (a capacity overflow panic before the fix), u32::MAX (4 GiB allocated, then refused).
    assert!(codec::decode::<String>(&[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(codec::decode::<Vec<u8>>(&[0xfc, 0xff, 0xff, 0xff, 0xff]).is_err());
    // The same claim as a snapshot id, the last field of a snapshot's metadata.
    let mut meta = codec::encode_versioned(&Meta::default()).unwrap();
    assert_eq!(meta.pop(), Some(0), "the empty snapshot id's length");
    meta.push(0xfd);
    meta.extend_from_slice(&claimed.to_le_bytes());
    assert!(codec::decode_versioned::<Meta>(&meta).is_err());
}

/// The limit of that fix never refuses a valid encoding, even the densest one (a u128 of one
/// byte is charged 16) at the edge of each input size class.
#[test]
fn codec_limit_never_refuses_a_valid_encoding() {
    for n in [0, 1, 4093, 4094, 16_000, 262_000, 1_100_000] {
        let v = vec![0u128; n];
        let bytes = codec::encode(&v).unwrap();
        assert_eq!(codec::decode::<Vec<u128>>(&bytes).unwrap().len(), n, "{n} values in {} bytes", bytes.len());
    }
    let s = "x".repeat(20 << 20);
    assert_eq!(codec::decode::<String>(&codec::encode(&s).unwrap()).unwrap(), s);
}

/// `fuzz_wal_torn_tail_is_cut`, minimal failing input `records = [], tail = [0; 8]`: eight zero
/// bytes are a zero CRC over an empty payload, which matched, so replay took them for a record,
/// failed to decode it and refused to open ("record too short at offset 16") instead of cutting
/// the torn tail, as a file extended by a crash before its data reached the disk looks. Fixed in
/// `wal::replay` (a payload shorter than `PAYLOAD_LEN_MIN` is never a record).
#[test]
fn regression_wal_zero_filled_tail_is_cut() {
    for records in [vec![], vec![wal::Record::Vote { group: 1, vote: b"v".to_vec() }]] {
        for zeros in [8, 9, 4096] {
            let (mut bytes, _) = wal_segment(&records);
            bytes.extend_from_slice(&vec![0; zeros]);
            let dir = wal_dir_with(&bytes);
            let e = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).expect("a zero-filled tail is cut");
            assert_eq!(wal_view(&e), wal_reference(&records));
            e.close();
        }
    }
    // Zeros with an intact record after them are damage, not a torn tail: still refused.
    let (mut bytes, _) = wal_segment(&[]);
    bytes.extend_from_slice(&[0; 8]);
    wal::Record::DropGroup { group: 1 }.encode_into(&mut bytes);
    let dir = wal_dir_with(&bytes);
    assert!(LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).is_err());
}
