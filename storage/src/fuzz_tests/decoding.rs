//! The codec: arbitrary bytes as every type, round trips, damage, huge length prefixes.

use super::*;

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

pub(super) fn snapshot_meta(index: u64, id: &str) -> Meta {
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
