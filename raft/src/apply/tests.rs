use raftchat_storage::chat_store::GroupState;
use raftchat_storage::chat_store::StateDb;
use raftchat_storage::message::MessageBytes;
use raftchat_storage::message::MessageView;
use uuid::Uuid;

use super::*;
use crate::command::DEDUP_WINDOW_DEFAULT_MS;

fn group() -> (tempfile::TempDir, GroupState) {
    let d = tempfile::tempdir().unwrap();
    let db = StateDb::open(&d.path().join("state"), &d.path().join("messages"), 1 << 20, 1 << 20).unwrap();
    let g = db.open_group(1).unwrap();
    (d, g)
}

fn run(g: &GroupState, cmds: &[ChatCommand]) -> Vec<CommandOutcome> {
    let mut w = g.writer().unwrap();
    let out = cmds.iter().map(|c| apply(&mut w, c).unwrap().0).collect();
    let mut applied = g.applied().unwrap();
    w.commit(&mut applied).unwrap();
    out
}

fn append(chat: Uuid, sender: Uuid, cmid: &str) -> ChatCommand {
    let body = format!("body {cmid}");
    let view =
        MessageView { sender, message_id: Uuid::new_v4(), ts_ms: 1000, client_msg_id: cmid, kind: "text", body: &body };
    ChatCommand::Append {
        chat,
        message: MessageBytes::encode(&view).unwrap(),
        dedup_window_ms: DEDUP_WINDOW_DEFAULT_MS,
    }
}

fn create(chat: Uuid, kind: ChatKind, creator: Uuid, members: Vec<Uuid>) -> ChatCommand {
    ChatCommand::CreateChat { chat, kind, name: "n".into(), creator, members, ts_ms: 1 }
}

#[test]
fn seqs_are_gapless_and_dedup_returns_the_original() {
    let (_d, g) = group();
    let (chat, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let out = run(
        &g,
        &[create(chat, ChatKind::Direct, a, vec![b]), append(chat, a, "1"), append(chat, b, "1"), append(chat, a, "1")],
    );
    let seqs: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            CommandOutcome::Appended { seq, duplicate, .. } => Some((*seq, *duplicate)),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, vec![(1, false), (2, false), (1, true)]);
    // A retry in a later apply call, with a fresh message id, still returns the original id.
    let first_id = match &out[1] {
        CommandOutcome::Appended { message_id, .. } => *message_id,
        _ => unreachable!(),
    };
    match &run(&g, &[append(chat, a, "1")])[0] {
        CommandOutcome::Appended { seq: 1, duplicate: true, message_id, .. } => assert_eq!(*message_id, first_id),
        o => panic!("{o:?}"),
    }
    assert_eq!(g.messages(&chat, 1, 100, 100, false).unwrap().len(), 2);
}

#[test]
fn membership_rules() {
    let (_d, g) = group();
    let (chat, admin, m, outsider) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let out = run(
        &g,
        &[
            create(chat, ChatKind::Group, admin, vec![m]),
            append(chat, outsider, "x"),
            ChatCommand::AddMember { chat, by: m, user: outsider, ts_ms: 2 },
            ChatCommand::AddMember { chat, by: admin, user: outsider, ts_ms: 2 },
            append(chat, outsider, "y"),
            ChatCommand::RemoveMember { chat, by: outsider, user: m, ts_ms: 3 },
            ChatCommand::RemoveMember { chat, by: outsider, user: outsider, ts_ms: 3 },
            append(chat, outsider, "z"),
            append(Uuid::new_v4(), admin, "w"),
        ],
    );
    assert_eq!(out[1], CommandOutcome::Rejected(Rejection::NotMember));
    assert_eq!(out[2], CommandOutcome::Rejected(Rejection::NotAdmin));
    assert!(matches!(out[3], CommandOutcome::MembersChanged { member_count: 3, .. }));
    assert!(matches!(out[4], CommandOutcome::Appended { seq: 1, .. }));
    assert_eq!(out[5], CommandOutcome::Rejected(Rejection::NotAdmin));
    assert!(matches!(out[6], CommandOutcome::MembersChanged { member_count: 2, .. }));
    assert_eq!(out[7], CommandOutcome::Rejected(Rejection::NotMember));
    assert_eq!(out[8], CommandOutcome::Rejected(Rejection::NoSuchChat));
}

#[test]
fn a_sender_has_read_what_they_sent() {
    let (_d, g) = group();
    let (chat, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    run(&g, &[create(chat, ChatKind::Direct, a, vec![b]), append(chat, a, "1"), append(chat, a, "2")]);
    let ma = g.member(&chat, &a).unwrap().unwrap();
    // Read moves; delivered (where a's other devices resume) does not.
    assert_eq!((ma.delivered, ma.read), (0, 2));
    let mb = g.member(&chat, &b).unwrap().unwrap();
    assert_eq!((mb.delivered, mb.read), (0, 0));
}

#[test]
fn receipts_only_rise_and_stay_below_the_head() {
    let (_d, g) = group();
    let (chat, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    run(&g, &[create(chat, ChatKind::Direct, a, vec![b]), append(chat, a, "1"), append(chat, a, "2")]);
    let out = run(
        &g,
        &[
            ChatCommand::Receipt { chat, user: b, delivered: 9, read: 1 },
            ChatCommand::Receipt { chat, user: b, delivered: 1, read: 0 },
        ],
    );
    assert_eq!(out[0], CommandOutcome::Receipt { chat, user: b, delivered: 2, read: 1 });
    assert_eq!(out[1], CommandOutcome::Receipt { chat, user: b, delivered: 2, read: 1 });
}

#[test]
fn sending_does_not_move_delivery_past_unreceived_messages() {
    let (_d, g) = group();
    let (chat, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    // b received up to 1, then a wrote 2 and 3, then b sent 4 (from another device, say).
    run(&g, &[create(chat, ChatKind::Direct, a, vec![b]), append(chat, a, "1"), append(chat, a, "2")]);
    run(&g, &[append(chat, a, "3"), append(chat, b, "4")]);
    let out = run(&g, &[ChatCommand::Receipt { chat, user: b, delivered: 1, read: 0 }]);
    // b's read is 4 (its own send), but its devices resume after 1: 2 and 3 never reached them.
    assert_eq!(out[0], CommandOutcome::Receipt { chat, user: b, delivered: 1, read: 4 });
    let out = run(&g, &[ChatCommand::Receipt { chat, user: b, delivered: 0, read: 3 }]);
    assert_eq!(out[0], CommandOutcome::Receipt { chat, user: b, delivered: 3, read: 4 });
}

#[test]
fn same_commands_same_state() {
    let cmds = {
        let (chat, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut v = vec![create(chat, ChatKind::Group, a, vec![b])];
        for i in 0..50 {
            v.push(append(chat, if i % 2 == 0 { a } else { b }, &format!("{}", i % 7)));
        }
        v
    };
    let (_d1, g1) = group();
    let (_d2, g2) = group();
    assert_eq!(run(&g1, &cmds), run(&g2, &cmds));
    let dump = |g: &GroupState| {
        g.flush_pending().unwrap();
        let tree: Vec<_> = g.flushed_tree().iter().map(|kv| kv.unwrap()).collect();
        let chats: Vec<_> = g.chats_after(None, 100).unwrap();
        let messages: Vec<_> = chats.iter().map(|(c, _)| g.messages(c, 0, u64::MAX, 1000, false).unwrap()).collect();
        (tree, messages)
    };
    assert_eq!(dump(&g1), dump(&g2));
}

#[test]
fn a_retry_outside_the_dedup_window_is_a_new_message() {
    let (_d, g) = group();
    let (chat, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let at = |ts: u64, window: u64| {
        let view = MessageView {
            sender: a,
            message_id: Uuid::new_v4(),
            ts_ms: ts,
            client_msg_id: "same",
            kind: "text",
            body: "b",
        };
        ChatCommand::Append { chat, message: MessageBytes::encode(&view).unwrap(), dedup_window_ms: window }
    };
    let out = run(&g, &[create(chat, ChatKind::Direct, a, vec![b]), at(1_000, 500), at(1_400, 500)]);
    assert!(matches!(out[2], CommandOutcome::Appended { seq: 1, duplicate: true, .. }), "{out:?}");
    // The group's clock moved past the window: the same id is a new message.
    let out = run(&g, &[at(1_600, 500)]);
    assert!(matches!(out[0], CommandOutcome::Appended { seq: 2, duplicate: false, .. }), "{out:?}");
    // The clock never goes back: a command stamped earlier does not reopen the first window.
    let out = run(&g, &[at(1_100, 500)]);
    assert!(matches!(out[0], CommandOutcome::Appended { seq: 2, duplicate: true, .. }), "{out:?}");
}

/// Every record of a group except the applied state, as a restore carries them.
fn records_of(g: &GroupState) -> Vec<(Vec<u8>, Vec<u8>)> {
    g.flush_pending().unwrap();
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = g
        .flushed_tree()
        .iter()
        .map(|kv| kv.unwrap())
        .filter(|(k, _)| k.as_ref() != raftchat_storage::chat_store::KEY_APPLIED)
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    for (chat, _) in g.chats_after(None, 100).unwrap() {
        for m in g.messages(&chat, 0, u64::MAX, 1000, false).unwrap() {
            let v = raftchat_storage::codec::encode_versioned(&m).unwrap();
            out.push((raftchat_storage::chat_store::message_key(&chat, m.seq), v));
        }
    }
    out
}

#[test]
fn restore_copies_a_group_and_never_overwrites() {
    let (_d, src) = group();
    let (chat, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    run(&src, &[create(chat, ChatKind::Direct, a, vec![b]), append(chat, a, "x"), append(chat, b, "y")]);
    run(&src, &[ChatCommand::Put { key: b"user/alice".to_vec(), value: Some(b"1".to_vec()), only_if_absent: false }]);
    let records = records_of(&src);

    let (_d2, dst) = group();
    let out = run(&dst, &[ChatCommand::Restore { records: records.clone(), require_empty: true }]);
    assert_eq!(out, vec![CommandOutcome::Restored { written: records.len() as u32, present: 0 }]);
    assert_eq!(records_of(&dst), records);
    // The copy behaves like the original: the next seq follows, and a retry is deduplicated.
    let out = run(&dst, &[append(chat, a, "x"), append(chat, a, "z")]);
    assert!(matches!(out[0], CommandOutcome::Appended { seq: 1, duplicate: true, .. }), "{out:?}");
    assert!(matches!(out[1], CommandOutcome::Appended { seq: 3, duplicate: false, .. }), "{out:?}");

    // Not empty any more: refused with require_empty; without it, nothing present is overwritten.
    let out = run(&dst, &[ChatCommand::Restore { records: records.clone(), require_empty: true }]);
    assert!(matches!(out[0], CommandOutcome::Rejected(Rejection::Invalid(_))), "{out:?}");
    let out = run(&dst, &[ChatCommand::Restore { records: records.clone(), require_empty: false }]);
    assert!(matches!(out[0], CommandOutcome::Restored { written: 0, .. }), "{out:?}");

    // One undecodable record refuses the whole batch.
    let (_d3, other) = group();
    let mut bad = records.clone();
    bad.push((vec![b'm'; 25], vec![1, 2, 3]));
    let out = run(&other, &[ChatCommand::Restore { records: bad, require_empty: true }]);
    assert!(matches!(out[0], CommandOutcome::Rejected(Rejection::Invalid(_))), "{out:?}");
    assert!(records_of(&other).is_empty());
}

#[test]
fn trim_deletes_old_messages_and_never_reuses_a_seq() {
    let (_d, g) = group();
    let (chat, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut cmds = vec![create(chat, ChatKind::Direct, a, vec![b])];
    cmds.extend((0..10).map(|i| append(chat, a, &format!("m{i}"))));
    run(&g, &cmds);
    let out = run(&g, &[ChatCommand::Trim { chat, through_seq: 4 }]);
    assert_eq!(out, vec![CommandOutcome::Trimmed { chat, removed: 4 }]);
    let left: Vec<u64> = g.messages(&chat, 0, u64::MAX, 100, false).unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(left, (5..=10).collect::<Vec<_>>());
    // Trimming past the end removes what is stored, and the next message still gets seq 11.
    let out = run(&g, &[ChatCommand::Trim { chat, through_seq: 1_000 }, append(chat, b, "late")]);
    assert_eq!(out[0], CommandOutcome::Trimmed { chat, removed: 6 });
    assert!(matches!(out[1], CommandOutcome::Appended { seq: 11, .. }), "{out:?}");
    // A retry of a trimmed message is still recognised.
    let out = run(&g, &[append(chat, a, "m0")]);
    assert!(matches!(out[0], CommandOutcome::Appended { seq: 1, duplicate: true, .. }), "{out:?}");
    let out = run(&g, &[ChatCommand::Trim { chat: Uuid::new_v4(), through_seq: 1 }]);
    assert_eq!(out, vec![CommandOutcome::Rejected(Rejection::NoSuchChat)]);
}

#[test]
fn a_blocked_member_reads_but_cannot_send_until_unblocked() {
    let (_d, g) = group();
    let (chat, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let block = |blocked| ChatCommand::SetBlocked { chat, by: a, user: b, blocked };
    let out = run(
        &g,
        &[
            create(chat, ChatKind::Direct, a, vec![b]),
            block(true),
            append(chat, b, "1"),
            append(chat, a, "2"),
            block(false),
            append(chat, b, "3"),
        ],
    );
    assert_eq!(out[2], CommandOutcome::Rejected(Rejection::Blocked));
    assert!(matches!(out[3], CommandOutcome::Appended { seq: 1, .. }));
    assert!(matches!(out[5], CommandOutcome::Appended { seq: 2, .. }));
    // Only in a direct chat, and only between its two members.
    let (group_chat, stranger) = (Uuid::new_v4(), Uuid::new_v4());
    let out = run(
        &g,
        &[
            create(group_chat, ChatKind::Group, a, vec![b]),
            ChatCommand::SetBlocked { chat: group_chat, by: a, user: b, blocked: true },
            ChatCommand::SetBlocked { chat, by: stranger, user: b, blocked: true },
            ChatCommand::SetBlocked { chat: Uuid::new_v4(), by: a, user: b, blocked: true },
        ],
    );
    assert!(matches!(out[1], CommandOutcome::Rejected(Rejection::Invalid(_))));
    assert_eq!(out[2], CommandOutcome::Rejected(Rejection::NotMember));
    assert_eq!(out[3], CommandOutcome::Rejected(Rejection::NoSuchChat));
}

#[test]
fn an_invite_becomes_membership_only_when_accepted() {
    let (_d, g) = group();
    let (chat, admin, member, guest, other) =
        (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let invite = |by, user| ChatCommand::Invite { chat, by, user, ts_ms: 5 };
    let join = |user| ChatCommand::Join { chat, user, ts_ms: 6 };
    let out = run(
        &g,
        &[
            create(chat, ChatKind::Group, admin, vec![member]),
            join(guest),
            invite(member, guest),
            invite(admin, guest),
            append(chat, guest, "early"),
            join(guest),
            join(guest),
            append(chat, guest, "now"),
            invite(admin, other),
            ChatCommand::Decline { chat, by: other, user: other },
            join(other),
            ChatCommand::Decline { chat, by: member, user: guest },
        ],
    );
    assert_eq!(out[1], CommandOutcome::Rejected(Rejection::NotInvited));
    assert_eq!(out[2], CommandOutcome::Rejected(Rejection::NotAdmin));
    assert_eq!(out[3], CommandOutcome::Put);
    assert_eq!(out[4], CommandOutcome::Rejected(Rejection::NotMember));
    assert_eq!(out[5], CommandOutcome::MembersChanged { chat, member_count: 3 });
    assert_eq!(out[6], CommandOutcome::MembersChanged { chat, member_count: 3 });
    assert!(matches!(out[7], CommandOutcome::Appended { seq: 1, .. }));
    assert_eq!(out[9], CommandOutcome::Put);
    assert_eq!(out[10], CommandOutcome::Rejected(Rejection::NotInvited));
    assert_eq!(out[11], CommandOutcome::Rejected(Rejection::NotAdmin));
    // Invites exist in groups only.
    let direct = Uuid::new_v4();
    let out = run(
        &g,
        &[
            create(direct, ChatKind::Direct, admin, vec![member]),
            ChatCommand::Invite { chat: direct, by: admin, user: guest, ts_ms: 1 },
        ],
    );
    assert_eq!(out[1], CommandOutcome::Rejected(Rejection::DirectChatFixed));
}
