//! What the chat state costs per message on one replica: the state machine's write path
//! (chat head, sender, idempotency check, the message into the message store, write-back of the
//! heads to sled), one apply call per message and one per full Raft entry.
//!
//! `cargo run --release -p raftchat-storage --example bench_store -- [messages] [per-entry]`
//!
//! Every replica pays this for every message; a 3-node cluster pays it three times. Before the
//! message store (format 1) the same path on sled measured 23.5-27.2 us per message
//! (docs/BENCHMARKS.md, "Issue 2: the state machine's sled floor").

use std::time::Instant;

use raftchat_storage::chat_store::AppliedState;
use raftchat_storage::chat_store::ChatHeader;
use raftchat_storage::chat_store::ChatKind;
use raftchat_storage::chat_store::GroupState;
use raftchat_storage::chat_store::Member;
use raftchat_storage::chat_store::Role;
use raftchat_storage::chat_store::StateDb;
use raftchat_storage::message::MessageBytes;
use raftchat_storage::message::MessageView;
use raftchat_storage::messages::DEDUP_WINDOW_DEFAULT_MS;
use raftchat_storage::messages::SEGMENT_BYTES_DEFAULT;
use uuid::Uuid;

/// The node's allocator, so that these figures are a node's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHATS: u64 = 1_000;
const BODY_BYTES: usize = 200;

fn setup(group: &GroupState, chats: &[(Uuid, Uuid)]) -> anyhow::Result<AppliedState> {
    let mut w = group.writer()?;
    for (chat, sender) in chats {
        let header = ChatHeader {
            kind: ChatKind::Direct,
            name: String::new(),
            next_seq: 1,
            created_at_ms: 0,
            created_by: *sender,
            member_count: 1,
            first_seq: 1,
        };
        w.put_chat(*chat, header);
        w.put_member(*chat, *sender, Some(Member { role: Role::Admin, delivered: 0, read: 0, joined_at_ms: 0 }));
    }
    let mut applied = AppliedState::default();
    w.commit(&mut applied)?;
    group.flush_pending()?;
    Ok(applied)
}

/// Applies `messages` messages, `per_entry` per apply call; returns microseconds per message.
fn run(messages: usize, per_entry: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let db = StateDb::open(&dir.path().join("state"), &dir.path().join("messages"), 1 << 30, SEGMENT_BYTES_DEFAULT)?;
    let group = db.open_group(1)?;
    let chats: Vec<(Uuid, Uuid)> = (0..CHATS).map(|i| (Uuid::from_u64_pair(i, 1), Uuid::from_u64_pair(i, 2))).collect();
    let mut applied = setup(&group, &chats)?;
    let body = "x".repeat(BODY_BYTES);
    // Encoded once, as the gateway does; apply only reads them.
    let encoded: Vec<(MessageBytes, String)> = (0..messages)
        .map(|i| {
            let (_, sender) = chats[i * 7 % chats.len()];
            let cmid = format!("c{i}");
            let v = MessageView {
                sender,
                message_id: Uuid::from_u64_pair(i as u64, 3),
                ts_ms: i as u64,
                client_msg_id: &cmid,
                kind: "text",
                body: &body,
            };
            Ok((MessageBytes::encode(&v)?, cmid))
        })
        .collect::<anyhow::Result<_>>()?;
    let start = Instant::now();
    for (e, entry) in encoded.chunks(per_entry.max(1)).enumerate() {
        let mut w = group.writer()?;
        w.set_log_index(e as u64 + 2);
        for (i, (bytes, cmid)) in entry.iter().enumerate() {
            let (chat, sender) = chats[(e * per_entry + i) * 7 % chats.len()];
            let v = bytes.view()?;
            let Some(mut head) = w.chat(&chat)? else { anyhow::bail!("chat vanished") };
            let Some(mut member) = w.member(&chat, &sender)? else { anyhow::bail!("member vanished") };
            if w.find_original(&chat, &sender, cmid, v.ts_ms, DEDUP_WINDOW_DEFAULT_MS)?.is_some() {
                anyhow::bail!("a new client message id was found");
            }
            let seq = head.next_seq;
            head.next_seq += 1;
            w.put_message(&chat, seq, bytes, &v, DEDUP_WINDOW_DEFAULT_MS);
            w.put_chat(chat, head);
            member.read = seq;
            w.put_member(chat, sender, Some(member));
        }
        w.commit(&mut applied)?;
    }
    group.flush_pending()?;
    group.messages_store().wait_sealed()?;
    Ok(start.elapsed().as_secs_f64() * 1e6 / messages as f64)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(400_000);
    let per_entry: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(32);
    println!("{messages} messages of {BODY_BYTES} bytes over {CHATS} chats");
    for n in [1, per_entry] {
        let us = run(messages, n)?;
        println!(
            "state machine write path, {n:>3} per apply: {us:6.2} us per message; x 3 replicas = {:.1} us: \
             at most {:.0} messages/s on 2 cores",
            us * 3.0,
            2e6 / (us * 3.0)
        );
    }
    Ok(())
}
