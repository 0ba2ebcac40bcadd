//! What the chat state costs per message on one replica: sled's insert and lookup, and the
//! state machine's whole write path on top of it.
//!
//! `cargo run --release -p raftchat-storage --example bench_sled -- [messages]`
//!
//! 1. Raw sled 0.34: inserting 300-byte values under (chat, seq) keys over 1,000 chats, in
//!    batches of 4,096 keys, through one `apply_batch` (hash order) and through single inserts
//!    in key order; then looking up keys that are absent (a new message's dedup check).
//! 2. The state machine's write path (`StateWriter`: chat head, sender, dedup check, message,
//!    write-back and flush), as one apply per message, over 1,000 chats.
//!
//! Every replica pays (2) for every message; a 3-node cluster pays it three times. That bounds
//! what the cluster can commit per second of CPU whatever Raft, the network and HTTP cost.

use std::time::Instant;

use raftchat_storage::chat_store::AppliedState;
use raftchat_storage::chat_store::ChatHeader;
use raftchat_storage::chat_store::ChatKind;
use raftchat_storage::chat_store::Member;
use raftchat_storage::chat_store::MessageRecord;
use raftchat_storage::chat_store::Role;
use raftchat_storage::chat_store::StateDb;
use uuid::Uuid;

/// The node's allocator, so that these figures are a node's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHATS: u64 = 1_000;
const VALUE_BYTES: usize = 300;
const BATCH: usize = 4_096;

/// A (chat, seq) key as the state keeps messages, with a random-looking chat id.
fn message_key(chat: u64, seq: u64) -> Vec<u8> {
    let mut k = vec![b'm'];
    k.extend_from_slice(&Uuid::from_u64_pair(chat.wrapping_mul(0x9e37_79b9_7f4a_7c15), chat).into_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

struct Keys {
    seqs: Vec<u64>,
    rng: u64,
}

impl Keys {
    fn next_batch(&mut self) -> Vec<Vec<u8>> {
        (0..BATCH)
            .map(|_| {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                let chat = self.rng % CHATS;
                self.seqs[chat as usize] += 1;
                message_key(chat, self.seqs[chat as usize])
            })
            .collect()
    }
}

fn raw_sled(messages: usize, sorted: bool) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new().path(dir.path()).cache_capacity(1 << 30).flush_every_ms(Some(1000)).open()?;
    let tree = db.open_tree("g")?;
    let mut keys = Keys { seqs: vec![0; CHATS as usize], rng: 0x2545_f491_4f6c_dd1d };
    let value = vec![7u8; VALUE_BYTES];
    let start = Instant::now();
    for _ in 0..messages / BATCH {
        let mut batch_keys = keys.next_batch();
        if sorted {
            batch_keys.sort();
            for k in batch_keys {
                tree.insert(k, value.clone())?;
            }
        } else {
            let mut batch = sled::Batch::default();
            for k in batch_keys {
                batch.insert(k, value.clone());
            }
            tree.apply_batch(batch)?;
        }
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / (messages / BATCH * BATCH) as f64;
    if sorted {
        // Lookups of absent keys, as a new message's dedup check does.
        let start = Instant::now();
        let n = 100_000;
        for i in 0..n {
            let _ = tree.get(message_key(i % CHATS, 1 << 40))?;
        }
        println!(
            "sled get of an absent key:                   {:6.2} us",
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
    Ok(per)
}

fn state_machine(messages: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let db = StateDb::open(dir.path(), 1 << 30)?;
    let group = db.open_group(0)?;
    let chats: Vec<(Uuid, Uuid)> = (0..CHATS).map(|i| (Uuid::from_u64_pair(i, 1), Uuid::from_u64_pair(i, 2))).collect();
    let mut w = group.writer();
    for (chat, sender) in &chats {
        let header = ChatHeader {
            kind: ChatKind::Direct,
            name: String::new(),
            next_seq: 1,
            created_at_ms: 0,
            created_by: *sender,
            member_count: 1,
        };
        w.put_chat(*chat, header);
        w.put_member(*chat, *sender, Some(Member { role: Role::Admin, delivered: 0, read: 0, joined_at_ms: 0 }));
    }
    w.commit(&AppliedState::default())?;
    group.flush_pending()?;
    let body = "x".repeat(200);
    let start = Instant::now();
    for i in 0..messages {
        let (chat, sender) = chats[i * 7 % chats.len()];
        let mut w = group.writer();
        let Some(mut head) = w.chat(&chat)? else { anyhow::bail!("chat vanished") };
        let Some(mut member) = w.member(&chat, &sender)? else { anyhow::bail!("member vanished") };
        let cmid = format!("c{i}");
        if w.dedup(&chat, &sender, &cmid)?.is_some() {
            anyhow::bail!("a new client message id was found");
        }
        let seq = head.next_seq;
        head.next_seq += 1;
        let record = MessageRecord {
            seq,
            message_id: Uuid::from_u64_pair(i as u64, 3),
            sender,
            client_msg_id: cmid,
            ts_ms: i as u64,
            kind: "text".into(),
            body: body.clone(),
        };
        w.put_message(&chat, &record)?;
        w.put_chat(chat, head);
        member.read = seq;
        w.put_member(chat, sender, Some(member));
        w.commit(&AppliedState::default())?;
    }
    group.flush_pending()?;
    Ok(start.elapsed().as_secs_f64() * 1e6 / messages as f64)
}

fn main() -> anyhow::Result<()> {
    let messages: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(400_000);
    println!("{messages} messages, {VALUE_BYTES}-byte values, {CHATS} chats, batches of {BATCH}");
    let batch = raw_sled(messages, false)?;
    println!("sled insert, apply_batch (hash order):       {batch:6.2} us");
    let sorted = raw_sled(messages, true)?;
    println!("sled insert, one by one in key order:        {sorted:6.2} us");
    let sm = state_machine(messages)?;
    println!("state machine write path, per message:       {sm:6.2} us");
    println!(
        "  x 3 replicas = {:.0} us of CPU per committed message: at most {:.0} messages/s on 2 cores",
        sm * 3.0,
        2e6 / (sm * 3.0)
    );
    Ok(())
}
