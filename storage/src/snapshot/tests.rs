use tokio::io::AsyncReadExt;

use super::*;
use crate::chat_store::ChatKind;
use crate::chat_store::StateDb;
use crate::message::MessageBytes;
use crate::message::MessageView;

fn header(next_seq: u64) -> ChatHeader {
    ChatHeader {
        kind: ChatKind::Group,
        name: "g".into(),
        next_seq,
        created_at_ms: 1,
        created_by: uuid::Uuid::nil(),
        member_count: 0,
        first_seq: 1,
    }
}

fn db(root: &Path, segment_bytes: u64) -> StateDb {
    StateDb::open(&root.join("state"), &root.join("messages"), 1 << 20, segment_bytes).unwrap()
}

fn append(state: &GroupState, chat: ChatId, seqs: std::ops::Range<u64>, applied_index: u64) {
    let mut w = state.writer().unwrap();
    w.set_log_index(applied_index);
    for s in seqs.clone() {
        let (cmid, text) = (format!("c{s}"), format!("m{s} {}", "x".repeat(300)));
        let view = MessageView {
            sender: uuid::Uuid::nil(),
            message_id: uuid::Uuid::new_v4(),
            ts_ms: s,
            client_msg_id: &cmid,
            kind: "text",
            body: &text,
        };
        w.put_message(&chat, s, &MessageBytes::encode(&view).unwrap(), &view, 1_000_000);
    }
    w.put_chat(chat, header(seqs.end));
    let mut applied = state.applied().unwrap();
    applied.last_applied = Some(openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), applied_index));
    w.commit(&mut applied).unwrap();
}

fn seqs(state: &GroupState, chat: &ChatId) -> Vec<u64> {
    state.messages(chat, 1, 100_000, 100_000, false).unwrap().iter().map(|m| m.seq).collect()
}

/// The current snapshot of `group` under `root`, as the stream a follower receives.
async fn stream_to_file(root: &Path, group: u32, into: &Path) -> File {
    let (mut data, _, len) = open_stream(root, group).unwrap().unwrap();
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).await.unwrap();
    assert_eq!(bytes.len() as u64, len);
    fs::write(into, &bytes).unwrap();
    File::open(into).unwrap()
}

#[tokio::test]
async fn snapshot_is_the_captured_cut_and_installs_elsewhere() {
    let d1 = tempfile::tempdir().unwrap();
    // Small segments, so the snapshot links sealed ones and copies the active prefix.
    let db1 = db(d1.path(), 64 * 1024);
    let state = db1.open_group(3).unwrap();
    let chat = uuid::Uuid::new_v4();
    for i in 0..5 {
        append(&state, chat, (1 + i * 200)..(1 + (i + 1) * 200), 1 + i);
    }
    let cap = capture(&state).unwrap();
    // Written after the cut: must not be in the snapshot.
    append(&state, chat, 1001..1011, 6);
    let sdir = SnapshotDir::open(&d1.path().join("snapshots"), 3).unwrap();
    let meta = build(cap, "s1".into(), &sdir).unwrap();
    assert_eq!(meta.last_log_id.unwrap().index, 5);
    assert_eq!(sdir.current_meta().unwrap().unwrap(), meta);
    assert_eq!(seqs(&state, &chat), (1..1011).collect::<Vec<_>>(), "the source keeps everything");

    let d2 = tempfile::tempdir().unwrap();
    let db2 = db(d2.path(), 64 * 1024);
    let state2 = db2.open_group(3).unwrap();
    let other = uuid::Uuid::new_v4();
    append(&state2, other, 1..3, 1);
    let sdir2 = SnapshotDir::open(&d2.path().join("snapshots"), 3).unwrap();
    let mut f = stream_to_file(&d1.path().join("snapshots"), 3, &d2.path().join("recv")).await;
    let meta2 = install_stream(&state2, &sdir2, &mut f).unwrap();
    assert_eq!(meta2, meta);
    assert_eq!(state2.applied().unwrap().last_applied.unwrap().index, 5);
    assert_eq!(seqs(&state2, &chat), (1..1001).collect::<Vec<_>>());
    assert!(seqs(&state2, &other).is_empty(), "the install replaced the group's state");
    assert_eq!(state2.dedup(&chat, &uuid::Uuid::nil(), "c4").unwrap(), Some(4));
    assert_eq!(state2.dedup(&chat, &uuid::Uuid::nil(), "c1005").unwrap(), None);
    assert_eq!(sdir2.current_meta().unwrap().unwrap(), meta);
    // The installed store goes on from the snapshot's position, and survives a restart.
    append(&state2, chat, 1001..1003, 6);
    state2.flush_pending().unwrap();
    drop(state2);
    let state2 = db2.open_group(3).unwrap();
    assert_eq!(seqs(&state2, &chat), (1..1003).collect::<Vec<_>>());
}

#[tokio::test]
async fn corrupt_snapshot_leaves_state_intact() {
    let d1 = tempfile::tempdir().unwrap();
    let db1 = db(d1.path(), 1 << 20);
    let state = db1.open_group(1).unwrap();
    let chat = uuid::Uuid::new_v4();
    append(&state, chat, 1..50, 9);
    let sdir = SnapshotDir::open(&d1.path().join("snapshots"), 1).unwrap();
    build(capture(&state).unwrap(), "s".into(), &sdir).unwrap();
    let bad = d1.path().join("bad.snap");
    stream_to_file(&d1.path().join("snapshots"), 1, &bad).await;
    let mut bytes = fs::read(&bad).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x55;
    fs::write(&bad, &bytes).unwrap();

    let d2 = tempfile::tempdir().unwrap();
    let db2 = db(d2.path(), 1 << 20);
    let state2 = db2.open_group(1).unwrap();
    let other = uuid::Uuid::new_v4();
    append(&state2, other, 1..4, 2);
    let sdir2 = SnapshotDir::open(&d2.path().join("snapshots"), 1).unwrap();
    assert!(install_stream(&state2, &sdir2, &mut File::open(&bad).unwrap()).is_err());
    assert_eq!(state2.applied().unwrap().last_applied.unwrap().index, 2);
    assert_eq!(seqs(&state2, &other).len(), 3);
    assert!(sdir2.current_meta().unwrap().is_none());
    // The half-written install is dropped on the next open.
    state2.flush_pending().unwrap();
    drop(state2);
    let state3 = db2.open_group(1).unwrap();
    assert_eq!(seqs(&state3, &other).len(), 3);
    assert!(SnapshotDir::open(&d2.path().join("snapshots"), 1).unwrap().current_meta().unwrap().is_none());
}

#[test]
fn state_behind_snapshot_is_restored() {
    let d = tempfile::tempdir().unwrap();
    let db1 = db(d.path(), 64 * 1024);
    let state = db1.open_group(2).unwrap();
    let chat = uuid::Uuid::new_v4();
    append(&state, chat, 1..400, 7);
    let sdir = SnapshotDir::open(&d.path().join("snapshots"), 2).unwrap();
    build(capture(&state).unwrap(), "s".into(), &sdir).unwrap();
    // Simulate lost sled writes: wipe the group state.
    db1.drop_group(2).unwrap();
    let state = db1.open_group(2).unwrap();
    assert!(state.applied().unwrap().last_applied.is_none());
    assert!(restore_if_behind(&state, &sdir).unwrap());
    assert_eq!(seqs(&state, &chat), (1..400).collect::<Vec<_>>());
    assert!(!restore_if_behind(&state, &sdir).unwrap());
}

#[test]
fn a_snapshot_after_a_trim_leaves_the_trimmed_segments_behind() {
    let d = tempfile::tempdir().unwrap();
    let db1 = db(d.path(), 64 * 1024);
    let state = db1.open_group(4).unwrap();
    let chat = uuid::Uuid::new_v4();
    for i in 0..10 {
        append(&state, chat, (1 + i * 200)..(1 + (i + 1) * 200), 1 + i);
    }
    let mut w = state.writer().unwrap();
    assert_eq!(w.trim_messages(&chat, 1990, 100_000).unwrap(), 1990);
    let mut applied = state.applied().unwrap();
    applied.last_applied = Some(openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 11));
    w.commit(&mut applied).unwrap();
    assert_eq!(seqs(&state, &chat), (1991..2001).collect::<Vec<_>>());
    let before = state.messages_store().disk_bytes();
    let sdir = SnapshotDir::open(&d.path().join("snapshots"), 4).unwrap();
    build(capture(&state).unwrap(), "s".into(), &sdir).unwrap();
    let after = state.messages_store().disk_bytes();
    assert!(after * 4 < before, "store {before} -> {after}");
    let snap = crate::compact::dir_bytes(&d.path().join("snapshots"));
    assert!(snap < before / 4, "the snapshot holds {snap} bytes");
    // Retries of trimmed messages still find their originals.
    assert_eq!(state.dedup(&chat, &uuid::Uuid::nil(), "c5").unwrap(), Some(5));
}
