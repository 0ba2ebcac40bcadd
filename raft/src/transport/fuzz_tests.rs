//! Property-based fuzz tests of what a node decodes from its peers: the transport's length-prefixed
//! frames ([`super::frame`]: the handshake's hello, welcome and refusal, RPC requests and
//! responses), the hello check ([`super::listener::check_hello`]), and what rides in a Raft
//! entry (log entries, command batches and encoded commands of [`crate::batch`], the metadata
//! records of [`crate::meta`]).
//!
//! Each property feeds a decoder arbitrary bytes, or a valid frame cut short, damaged or
//! followed by garbage, and checks that it never panics and never allocates what a length claims
//! (frames over their limit are refused before their body is read); a valid frame round-trips
//! and a truncated one is an error.
//!
//! Bound: proptest's default of 256 cases per property (about a second in a debug build), so
//! they run with every `cargo test`. For a longer local run:
//!
//! ```text
//! PROPTEST_CASES=100000 cargo test -p raftchat-raft --lib fuzz
//! ```
//!
//! A length prefix that claimed far more than its frame aborted the process in the codec; that
//! was fixed (and is pinned by a regression test) in `raftchat_storage::codec`; the test at the
//! end of this file pins it for the handshake, where an unauthenticated peer could send it.

use bytes::Bytes;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use openraft::CommittedLeaderId;
use openraft::EntryPayload;
use openraft::LogId;
use openraft::Vote;
use proptest::prelude::*;
use proptest::sample::Index;
use raftchat_storage::codec;
use uuid::Uuid;

use super::frame;
use super::frame::Frame;
use super::frame::FrameError;
use super::frame::Hello;
use super::frame::Welcome;
use super::listener::check_hello;
use crate::batch::CommandBatch;
use crate::batch::EncodedCommand;
use crate::rpc::AppError;
use crate::rpc::ReadQuery;
use crate::rpc::RpcRequest;
use crate::rpc::RpcResponse;
use crate::types::Entry;
use crate::types::Request;

/// Proptest's configuration: `PROPTEST_CASES` when set, else `cases`; failures are not persisted
/// to files (a crash becomes a regression test below instead).
fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c.failure_persistence = None;
    c
}

fn arbitrary_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// Reads one frame from `bytes` (a slice never waits, so no runtime is needed).
fn read(bytes: &[u8], max: usize) -> Result<Frame, FrameError> {
    futures::executor::block_on(frame::read_max(&mut &bytes[..], max))
}

fn log_id((term, node, index): (u64, u64, u64)) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn hello() -> impl Strategy<Value = Hello> {
    (any::<u8>(), ".{0,16}", any::<(u64, u64)>(), ".{0,24}", ".{0,24}", any::<(bool, bool, u64)>()).prop_map(
        |(
            format_version,
            cluster_id,
            (from, to),
            from_api_addr,
            from_raft_addr,
            (pristine, you_are_member, layout_epoch),
        )| {
            Hello {
                format_version,
                cluster_id,
                from,
                to,
                from_api_addr,
                from_raft_addr,
                pristine,
                you_are_member,
                layout_epoch,
            }
        },
    )
}

/// A command batch holding `bytes` as they are (built through its serde form: its field is the
/// crate's own).
fn batch_of(bytes: Vec<u8>) -> CommandBatch {
    codec::decode(&codec::encode(&Bytes::from(bytes)).expect("encode")).expect("a batch is its bytes")
}

fn entry() -> impl Strategy<Value = Entry> {
    let payload = prop_oneof![
        Just(EntryPayload::Blank),
        arbitrary_bytes(48).prop_map(|b| EntryPayload::Normal(Request::Chat(batch_of(b)))),
    ];
    (any::<(u64, u64, u64)>(), payload).prop_map(|(id, payload)| Entry { log_id: log_id(id), payload })
}

fn read_query() -> impl Strategy<Value = ReadQuery> {
    prop_oneof![
        (any::<u128>(), any::<(u64, u64, u32, bool)>()).prop_map(|(chat, (after, before, limit, newest_first))| {
            ReadQuery::History { chat: Uuid::from_u128(chat), after, before, limit, newest_first }
        }),
        arbitrary_bytes(24).prop_map(|key| ReadQuery::Key { key }),
        (arbitrary_bytes(24), any::<u32>()).prop_map(|(prefix, limit)| ReadQuery::KeyPrefix { prefix, limit }),
    ]
}

fn rpc_request() -> impl Strategy<Value = RpcRequest> {
    prop_oneof![
        (
            any::<(u64, u64)>(),
            any::<Option<(u64, u64, u64)>>(),
            prop::collection::vec(entry(), 0..4),
            any::<Option<(u64, u64, u64)>>()
        )
            .prop_map(|((term, node), prev, entries, commit)| RpcRequest::Append(AppendEntriesRequest {
                vote: Vote::new(term, node),
                prev_log_id: prev.map(log_id),
                entries,
                leader_commit: commit.map(log_id),
            })),
        (any::<(u64, u64)>(), any::<Option<(u64, u64, u64)>>()).prop_map(|((term, node), last)| RpcRequest::Vote(
            VoteRequest::new(Vote::new(term, node), last.map(log_id))
        )),
        (read_query(), any::<bool>()).prop_map(|(query, linearizable)| RpcRequest::Read { query, linearizable }),
        any::<(u64, Option<u64>, u32)>().prop_map(|(epoch, after, wait_ms)| RpcRequest::PollEvents {
            epoch,
            after,
            wait_ms
        }),
        (any::<u16>(), arbitrary_bytes(64)).prop_map(|(topic, body)| RpcRequest::App { topic, body }),
        any::<u64>().prop_map(|epoch| RpcRequest::Removed { epoch }),
    ]
}

fn rpc_response() -> impl Strategy<Value = RpcResponse> {
    prop_oneof![
        (any::<(u64, u64, bool)>(), any::<Option<(u64, u64, u64)>>()).prop_map(|((term, node, granted), last)| {
            RpcResponse::Vote(Ok(VoteResponse {
                vote: Vote::new(term, node),
                vote_granted: granted,
                last_log_id: last.map(log_id),
            }))
        }),
        arbitrary_bytes(64).prop_map(RpcResponse::App),
        Just(()).prop_map(|()| RpcResponse::GroupNotHosted),
        ".{0,24}".prop_map(|why| RpcResponse::MetaWrite(Err(AppError::Unavailable(why)))),
        any::<Option<u64>>().prop_map(|leader| RpcResponse::Changed(Err(AppError::NotLeader { leader }))),
    ]
}

fn frame_strategy() -> impl Strategy<Value = Frame> {
    prop_oneof![
        hello().prop_map(Frame::Hello),
        (any::<u64>(), ".{0,24}", any::<(bool, bool, u64)>()).prop_map(
            |(node, api_addr, (pristine, you_are_member, layout_epoch))| {
                Frame::Welcome(Welcome { node, api_addr, pristine, you_are_member, layout_epoch })
            }
        ),
        ".{0,48}".prop_map(Frame::Refused),
        (any::<u64>(), any::<u32>(), rpc_request()).prop_map(|(id, group, body)| Frame::Request { id, group, body }),
        (any::<u64>(), rpc_response()).prop_map(|(id, body)| Frame::Response { id, body }),
    ]
}

/// One damage done to a valid frame.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Truncate(Index),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        1 => arbitrary_bytes(32).prop_map(Mutation::Append),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary bytes read as a frame (with a length prefix of their own, or one that matches
    /// them) are a frame or an error, under either limit; never a panic or an abort.
    #[test]
    fn fuzz_frame_arbitrary_bytes(bytes in arbitrary_bytes(256)) {
        let _ = read(&bytes, frame::FRAME_BYTES_MAX);
        let _ = read(&bytes, frame::HANDSHAKE_FRAME_BYTES_MAX);
        let _ = codec::decode::<Frame>(&bytes);
        let framed = [&(bytes.len() as u32).to_be_bytes()[..], &bytes].concat();
        let _ = read(&framed, frame::FRAME_BYTES_MAX);
        let _ = read(&framed, frame::HANDSHAKE_FRAME_BYTES_MAX);
    }

    /// A frame round-trips (its re-encoding is the same bytes); every truncation of it is an
    /// error, and so is every truncation of its body.
    #[test]
    fn fuzz_frame_round_trip_and_truncation(f in frame_strategy(), cut in any::<Index>()) {
        let bytes = frame::encode(&f).expect("encode");
        let back = read(&bytes, frame::FRAME_BYTES_MAX).expect("read");
        prop_assert_eq!(&frame::encode(&back).expect("encode again"), &bytes);
        let cut = cut.index(bytes.len());
        prop_assert!(read(&bytes[..cut], frame::FRAME_BYTES_MAX).is_err());
        let body = &bytes[4..];
        prop_assert!(codec::decode::<Frame>(&body[..cut.min(body.len() - 1)]).is_err());
    }

    /// A damaged frame is a frame or an error; bytes after a frame are not part of it.
    #[test]
    fn fuzz_frame_damaged(f in frame_strategy(), m in mutation()) {
        let bytes = frame::encode(&f).expect("encode");
        let mut damaged = bytes.clone();
        match &m {
            Mutation::Flip(i, x) => {
                let at = i.index(damaged.len());
                damaged[at] ^= x;
            }
            Mutation::Truncate(i) => damaged.truncate(i.index(bytes.len())),
            Mutation::Append(extra) => damaged.extend_from_slice(extra),
        }
        let got = read(&damaged, frame::FRAME_BYTES_MAX);
        let _ = read(&damaged, frame::HANDSHAKE_FRAME_BYTES_MAX);
        match m {
            Mutation::Append(_) => prop_assert_eq!(frame::encode(&got.expect("read")).expect("encode"), bytes),
            Mutation::Truncate(_) => prop_assert!(got.is_err()),
            Mutation::Flip(..) => {}
        }
    }

    /// A hello, read under the handshake limit, is checked without a panic; an acceptable one
    /// is exactly one of this build's version, cluster and node, dialed by a lower id.
    #[test]
    fn fuzz_handshake_hello(h in hello(), cluster in ".{0,16}", me in any::<u64>(), aim in any::<bool>()) {
        let mut h = h;
        if aim {
            // Half the hellos are aimed at this node, to reach the checks past the first.
            (h.format_version, h.cluster_id, h.to) = (codec::FORMAT_VERSION, cluster.clone(), me);
        }
        let bytes = frame::encode(&Frame::Hello(h.clone())).expect("encode");
        let read_back = match read(&bytes, frame::HANDSHAKE_FRAME_BYTES_MAX) {
            Ok(Frame::Hello(back)) => back,
            Ok(other) => return Err(TestCaseError::fail(format!("read {other:?}"))),
            // Long strings may exceed the handshake limit; that is a refusal, not a hello.
            Err(FrameError::TooLarge(n)) => {
                prop_assert!(n > frame::HANDSHAKE_FRAME_BYTES_MAX);
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        };
        let accepted = check_hello(&read_back, &cluster, me).is_none();
        let acceptable = h.format_version == codec::FORMAT_VERSION && h.cluster_id == cluster && h.to == me && h.from < me;
        prop_assert_eq!(accepted, acceptable);
    }

    /// What a Raft entry carries, from arbitrary bytes: log entries, command batches (framed
    /// or not), encoded commands and metadata records decode to a value or an error.
    #[test]
    fn fuzz_entry_payloads_arbitrary_bytes(bytes in arbitrary_bytes(256), tag in 0..4u8) {
        let _ = codec::decode_versioned::<Entry>(&bytes);
        let _ = codec::decode::<Entry>(&bytes);
        let _ = codec::decode::<RpcRequest>(&bytes);
        let _ = codec::decode::<RpcResponse>(&bytes);
        let _ = crate::meta::read_layout(&bytes);
        let _ = crate::meta::read_retention(&bytes);
        let _ = batch_of(bytes.clone()).commands();
        // One command framed as the batcher frames it, with each tag, to reach its decoding.
        let mut command = vec![tag];
        command.extend_from_slice(&bytes);
        let framed = [&(command.len() as u32).to_le_bytes()[..], &command].concat();
        let _ = batch_of(framed).commands();
        let encoded: Result<EncodedCommand, _> = codec::decode(&codec::encode(&Bytes::from(command)).expect("encode"));
        let _ = encoded.expect("a command is its bytes").decode();
    }

    /// A batch whose framing lies (a length past its end, a length of u32::MAX) is an error.
    #[test]
    fn fuzz_command_batch_bad_lengths(bytes in arbitrary_bytes(64), extra in 1..=u32::MAX) {
        let claimed = (bytes.len() as u32).saturating_add(extra);
        let framed = [&claimed.to_le_bytes()[..], &bytes].concat();
        prop_assert!(batch_of(framed).commands().is_err());
    }
}

/// The abort `raftchat_storage`'s `fuzz_codec_huge_length_prefix` found, where a peer reaches it
/// before it is authenticated: a 19-byte hello whose cluster id claims 2^61 bytes. Before the
/// fix in `codec::decode_borrowed` this allocation failed and aborted the node.
#[test]
fn regression_hello_with_a_huge_string_length_is_refused() {
    let mut body = vec![0u8, codec::FORMAT_VERSION, 0xfd]; // Frame::Hello, format version, cluster id length
    body.extend_from_slice(&(1u64 << 61).to_le_bytes());
    body.extend_from_slice(b"clusterX");
    let framed = [&(body.len() as u32).to_be_bytes()[..], &body].concat();
    assert!(matches!(read(&framed, frame::HANDSHAKE_FRAME_BYTES_MAX), Err(FrameError::Codec(_))));
}
