//! Snapshot state files and streams.

use super::decoding::snapshot_meta;
use super::segment_files::message_segment;
use super::segment_files::messages_of;
use super::*;

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
