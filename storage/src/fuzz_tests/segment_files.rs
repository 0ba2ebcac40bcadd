//! Message store records and segment files.

use super::*;

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
pub(super) fn messages_of() -> impl Strategy<Value = Vec<(Uuid, u64, u64, MessageBytes)>> {
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

pub(super) fn message_segment(msgs: &[(Uuid, u64, u64, MessageBytes)]) -> Vec<u8> {
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
