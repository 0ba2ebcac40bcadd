use super::*;
use crate::chat_store::ChatKind;
use crate::chat_store::MessageRecord;
use crate::chat_store::StateDb;

fn header(next_seq: u64) -> ChatHeader {
    ChatHeader {
        kind: ChatKind::Group,
        name: "g".into(),
        next_seq,
        created_at_ms: 1,
        created_by: uuid::Uuid::nil(),
        member_count: 0,
    }
}

fn msg(seq: u64) -> MessageRecord {
    MessageRecord {
        seq,
        message_id: uuid::Uuid::new_v4(),
        sender: uuid::Uuid::nil(),
        client_msg_id: format!("c{seq}"),
        ts_ms: seq,
        kind: "text".into(),
        body: format!("m{seq}"),
    }
}

fn append(state: &GroupState, chat: ChatId, seqs: std::ops::Range<u64>, applied_index: u64) {
    let mut w = state.writer();
    for s in seqs.clone() {
        w.put_message(&chat, &msg(s)).unwrap();
    }
    w.put_chat(chat, header(seqs.end));
    let applied = AppliedState {
        last_applied: Some(openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), applied_index)),
        ..Default::default()
    };
    w.commit(&applied).unwrap();
}

#[test]
fn snapshot_is_the_captured_cut_and_installs_elsewhere() {
    let d1 = tempfile::tempdir().unwrap();
    let db = StateDb::open(&d1.path().join("state"), 1 << 20).unwrap();
    let state = db.open_group(3).unwrap();
    let chat = uuid::Uuid::new_v4();
    append(&state, chat, 1..11, 5);
    let cap = capture(&state).unwrap();
    // Written after the cut: must not be in the snapshot.
    append(&state, chat, 11..21, 6);
    let sdir = SnapshotDir::open(&d1.path().join("snapshots"), 3).unwrap();
    let meta = build(cap, "s1".into(), &sdir).unwrap();
    assert_eq!(meta.last_log_id.unwrap().index, 5);
    assert_eq!(sdir.current_meta().unwrap().unwrap(), meta);

    let d2 = tempfile::tempdir().unwrap();
    let db2 = StateDb::open(&d2.path().join("state"), 1 << 20).unwrap();
    let state2 = db2.open_group(3).unwrap();
    append(&state2, uuid::Uuid::new_v4(), 1..3, 1);
    let sdir2 = SnapshotDir::open(&d2.path().join("snapshots"), 3).unwrap();
    let mut f = File::open(sdir.current_path()).unwrap();
    let meta2 = install(&state2, &sdir2, &mut f, true).unwrap();
    assert_eq!(meta2, meta);
    assert_eq!(state2.applied().unwrap().last_applied.unwrap().index, 5);
    let msgs = state2.messages(&chat, 1, 100, 100, false).unwrap();
    assert_eq!(msgs.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..11).collect::<Vec<_>>());
    assert_eq!(state2.dedup(&chat, &uuid::Uuid::nil(), "c4").unwrap(), Some(4));
    assert_eq!(state2.dedup(&chat, &uuid::Uuid::nil(), "c15").unwrap(), None);
    assert_eq!(sdir2.current_meta().unwrap().unwrap(), meta);
}

#[test]
fn corrupt_snapshot_leaves_state_intact() {
    let d1 = tempfile::tempdir().unwrap();
    let db = StateDb::open(&d1.path().join("state"), 1 << 20).unwrap();
    let state = db.open_group(1).unwrap();
    let chat = uuid::Uuid::new_v4();
    append(&state, chat, 1..50, 9);
    let sdir = SnapshotDir::open(&d1.path().join("snapshots"), 1).unwrap();
    build(capture(&state).unwrap(), "s".into(), &sdir).unwrap();
    let mut bytes = fs::read(sdir.current_path()).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x55;
    let bad = d1.path().join("bad.snap");
    fs::write(&bad, &bytes).unwrap();

    let d2 = tempfile::tempdir().unwrap();
    let db2 = StateDb::open(&d2.path().join("state"), 1 << 20).unwrap();
    let state2 = db2.open_group(1).unwrap();
    let other = uuid::Uuid::new_v4();
    append(&state2, other, 1..4, 2);
    let sdir2 = SnapshotDir::open(&d2.path().join("snapshots"), 1).unwrap();
    assert!(install(&state2, &sdir2, &mut File::open(&bad).unwrap(), true).is_err());
    assert_eq!(state2.applied().unwrap().last_applied.unwrap().index, 2);
    assert_eq!(state2.messages(&other, 1, 10, 10, false).unwrap().len(), 3);
    assert!(sdir2.current_meta().unwrap().is_none());
    // The half-written generation is dropped on the next open.
    state2.flush_pending().unwrap();
    drop(state2);
    let state3 = db2.open_group(1).unwrap();
    assert_eq!(state3.messages(&other, 1, 10, 10, false).unwrap().len(), 3);
}

#[test]
fn state_behind_snapshot_is_restored() {
    let d = tempfile::tempdir().unwrap();
    let db = StateDb::open(&d.path().join("state"), 1 << 20).unwrap();
    let state = db.open_group(2).unwrap();
    let chat = uuid::Uuid::new_v4();
    append(&state, chat, 1..6, 7);
    let sdir = SnapshotDir::open(&d.path().join("snapshots"), 2).unwrap();
    build(capture(&state).unwrap(), "s".into(), &sdir).unwrap();
    // Simulate lost sled writes: wipe the group state.
    db.drop_group(2).unwrap();
    let state = db.open_group(2).unwrap();
    assert!(state.applied().unwrap().last_applied.is_none());
    assert!(restore_if_behind(&state, &sdir).unwrap());
    assert_eq!(state.messages(&chat, 1, 10, 10, false).unwrap().len(), 5);
    assert!(!restore_if_behind(&state, &sdir).unwrap());
}
