use std::collections::BTreeMap;

use super::*;
use crate::message::MessageView;

/// A small deterministic generator, so a failure repeats.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn chat(i: u64) -> ChatId {
    uuid::Uuid::from_u128(u128::from(i) + 1)
}

fn sender() -> uuid::Uuid {
    uuid::Uuid::from_u128(99)
}

fn msg(c: ChatId, seq: u64, ts: u64, pad: usize) -> NewMessage {
    let cmid = format!("m{seq}");
    let text = format!("{c} {seq} {}", "x".repeat(pad));
    let id = uuid::Uuid::from_u128(u128::from(seq) << 64 | c.as_u128() & 0xffff);
    let view =
        MessageView { sender: sender(), message_id: id, ts_ms: ts, client_msg_id: &cmid, kind: "text", body: &text };
    NewMessage {
        chat: c,
        seq,
        log_index: seq,
        body: MessageBytes::encode(&view).unwrap(),
        fp: Some(dedup::fingerprint(&c, &sender(), &cmid)),
        original: Original { seq, message_id: id, ts_ms: ts },
    }
}

fn text_of(b: &MessageBytes) -> String {
    b.view().unwrap().body.to_string()
}

/// Every seq of `want` (a model: chat -> seq -> text) reads back from the chat's floor, in both
/// directions and in pages.
fn check(
    store: &MessageStore,
    want: &BTreeMap<ChatId, BTreeMap<u64, String>>,
    floors: &BTreeMap<ChatId, u64>,
    r: &mut XorShift,
) {
    for (c, msgs) in want {
        let floor = floors.get(c).copied().unwrap_or(0);
        let all = store.read(c, floor, u64::MAX, usize::MAX, false).unwrap();
        let got: Vec<(u64, String)> = all.iter().map(|(s, b)| (*s, text_of(b))).collect();
        let expect: Vec<(u64, String)> = msgs.iter().map(|(s, t)| (*s, t.clone())).collect();
        assert_eq!(got, expect, "chat {c}");
        let last = msgs.keys().last().copied().unwrap_or(0);
        for _ in 0..5 {
            let from = r.below(last + 2).max(floor);
            let to = from + r.below(last + 2);
            let limit = 1 + r.below(20) as usize;
            let reverse = r.below(2) == 0;
            let got: Vec<u64> = store.read(c, from, to, limit, reverse).unwrap().into_iter().map(|(s, _)| s).collect();
            let mut expect: Vec<u64> = msgs.range(from..to.max(from)).map(|(s, _)| *s).collect();
            if reverse {
                expect.reverse();
            }
            expect.truncate(limit);
            assert_eq!(got, expect, "chat {c} from {from} to {to} limit {limit} reverse {reverse}");
        }
    }
}

#[test]
fn reads_match_a_plain_map_across_seals_trims_and_reopens() {
    for seed in [0x9e37_79b9_7f4a_7c15u64, 0x2545_f491_4f6c_dd1d, 3] {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("s");
        let mut store = MessageStore::open(&dir, StorePos::default(), 64 * 1024).unwrap();
        let mut model: BTreeMap<ChatId, BTreeMap<u64, String>> = BTreeMap::new();
        let mut next: BTreeMap<ChatId, u64> = BTreeMap::new();
        let mut r = XorShift(seed);
        let mut pos = StorePos::default();
        // Retention floors: reads start there; collect drops what lies wholly below them.
        let mut floors: BTreeMap<ChatId, u64> = BTreeMap::new();
        for step in 0..400 {
            match r.below(12) {
                10 | 11 => {
                    let c = chat(r.below(7));
                    let top = next.get(&c).copied().unwrap_or(1);
                    let f = floors.entry(c).or_insert(1);
                    *f = (*f).max(1 + r.below(top));
                    let floor = *f;
                    if let Some(m) = model.get_mut(&c) {
                        m.retain(|seq, _| *seq >= floor);
                    }
                    store.wait_sealed().unwrap();
                    let fl = floors.clone();
                    store.collect(&|c| fl.get(c).copied().unwrap_or(1), 0).unwrap();
                }
                0..=7 => {
                    let batch: Vec<NewMessage> = (0..1 + r.below(20))
                        .map(|_| {
                            let c = chat(r.below(7));
                            let seq = next.entry(c).or_insert(1);
                            let m = msg(c, *seq, step, r.below(400) as usize);
                            *seq += 1;
                            model.entry(c).or_default().insert(m.seq, text_of(&m.body));
                            m
                        })
                        .collect();
                    pos = store.append(&batch).unwrap();
                }
                8 => check(&store, &model, &floors, &mut r),
                _ => {
                    // A clean restart at the last position.
                    store.wait_sealed().unwrap();
                    store.sync().unwrap();
                    drop(store);
                    store = MessageStore::open(&dir, pos, 64 * 1024).unwrap();
                }
            }
        }
        store.wait_sealed().unwrap();
        assert!(list(&dir).unwrap().len() > 3, "the model run should seal several segments");
        check(&store, &model, &floors, &mut r);
    }
}

#[test]
fn open_cuts_back_to_the_checkpoint_and_a_torn_tail() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    let c = chat(1);
    let store = MessageStore::open(&dir, StorePos::default(), 1 << 20).unwrap();
    let p1 = store.append(&[msg(c, 1, 1, 10), msg(c, 2, 1, 10)]).unwrap();
    store.sync().unwrap();
    store.append(&[msg(c, 3, 1, 10)]).unwrap();
    // A torn write after it.
    let f = OpenOptions::new().append(true).open(seg_path(&dir, p1.segment)).unwrap();
    std::io::Write::write_all(&mut &f, &[7u8; 5]).unwrap();
    drop((store, f));
    let store = MessageStore::open(&dir, p1, 1 << 20).unwrap();
    let seqs: Vec<u64> = store.read(&c, 0, 10, 10, false).unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(store.position(), p1);
    // Applied again from the log, the same message lands at the same place.
    assert_eq!(store.append(&[msg(c, 3, 1, 10)]).unwrap().offset, fs::metadata(seg_path(&dir, 1)).unwrap().len());
    assert!(store.find_original(&c, dedup::fingerprint(&c, &sender(), "m3"), 0).unwrap().is_some());
}

#[test]
fn a_bad_record_before_the_checkpoint_refuses_to_open() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    let c = chat(2);
    let store = MessageStore::open(&dir, StorePos::default(), 1 << 20).unwrap();
    let p = store.append(&(1..20).map(|s| msg(c, s, 1, 50)).collect::<Vec<_>>()).unwrap();
    store.sync().unwrap();
    drop(store);
    let path = seg_path(&dir, 1);
    let mut bytes = fs::read(&path).unwrap();
    bytes[400] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let err = MessageStore::open(&dir, p, 1 << 20).err().expect("a flipped byte is corruption");
    let text = err.to_string();
    assert!(text.contains("0000000000000001.seg") && text.contains("offset"), "{text}");
    // A checkpoint past what the file holds is lost durable data, not a torn tail.
    bytes[400] ^= 0x40;
    fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    assert!(MessageStore::open(&dir, p, 1 << 20).is_err());
}

#[test]
fn dedup_finds_originals_in_live_and_sealed_segments_inside_the_window() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    let c = chat(3);
    let store = MessageStore::open(&dir, StorePos::default(), 64 * 1024).unwrap();
    let mut pos = StorePos::default();
    for s in 1..2000u64 {
        pos = store.append(&[msg(c, s, s * 10, 100)]).unwrap();
    }
    store.wait_sealed().unwrap();
    assert!(list(&dir).unwrap().len() > 2, "sealed segments expected");
    for s in [1u64, 500, 1999] {
        let o = store.find_original(&c, dedup::fingerprint(&c, &sender(), &format!("m{s}")), 0).unwrap();
        assert_eq!(o.map(|o| o.seq), Some(s), "m{s}");
        // Outside the window (older than `since`): not an original any more.
        let late = store.find_original(&c, dedup::fingerprint(&c, &sender(), &format!("m{s}")), s * 10 + 1).unwrap();
        assert!(late.is_none(), "m{s} past its window");
    }
    assert!(store.find_original(&c, dedup::fingerprint(&c, &sender(), "m5000"), 0).unwrap().is_none());
    assert!(store.find_original(&chat(4), dedup::fingerprint(&chat(4), &sender(), "m1"), 0).unwrap().is_none());
    // The same after a restart, from the index files.
    store.sync().unwrap();
    drop(store);
    let store = MessageStore::open(&dir, pos, 64 * 1024).unwrap();
    let o = store.find_original(&c, dedup::fingerprint(&c, &sender(), "m7"), 0).unwrap();
    assert_eq!(o.map(|o| (o.seq, o.ts_ms)), Some((7, 70)));
}

#[test]
fn a_segment_frozen_but_not_sealed_at_a_crash_is_sealed_on_open() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    let c = chat(5);
    let store = MessageStore::open(&dir, StorePos::default(), 64 * 1024).unwrap();
    let mut pos = StorePos::default();
    for s in 1..800u64 {
        pos = store.append(&[msg(c, s, 1, 100)]).unwrap();
    }
    store.wait_sealed().unwrap();
    store.sync().unwrap();
    drop(store);
    // The index files of the sealed segments are lost (the crash came before they were written).
    for (id, (_, has_idx)) in list(&dir).unwrap() {
        if has_idx {
            fs::remove_file(idx_path(&dir, id)).unwrap();
        }
    }
    let store = MessageStore::open(&dir, pos, 64 * 1024).unwrap();
    assert_eq!(store.read(&c, 0, u64::MAX, usize::MAX, false).unwrap().len(), 799);
    assert!(list(&dir).unwrap().values().filter(|(_, i)| *i).count() > 1, "index files written again");
}

#[test]
fn a_checkpoint_inside_a_sealed_segment_unseals_and_cuts_it() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    let c = chat(6);
    let store = MessageStore::open(&dir, StorePos::default(), 64 * 1024).unwrap();
    let early = store.append(&[msg(c, 1, 1, 10)]).unwrap();
    store.sync().unwrap();
    for s in 2..800u64 {
        store.append(&[msg(c, s, 1, 100)]).unwrap();
    }
    store.wait_sealed().unwrap();
    drop(store);
    let store = MessageStore::open(&dir, early, 64 * 1024).unwrap();
    assert_eq!(store.read(&c, 0, u64::MAX, usize::MAX, false).unwrap().len(), 1);
    assert_eq!(store.position(), early);
    assert_eq!(list(&dir).unwrap().len(), 1, "later segments are gone");
}

#[test]
fn collect_drops_trimmed_segments_but_keeps_their_keys_for_the_window() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    let (a, b) = (chat(7), chat(8));
    let store = MessageStore::open(&dir, StorePos::default(), 64 * 1024).unwrap();
    for s in 1..1500u64 {
        store.append(&[msg(a, s, s, 100), msg(b, s, s, 100)]).unwrap();
    }
    store.wait_sealed().unwrap();
    let before = store.disk_bytes();
    // Chat a keeps only its newest 10; chat b everything from 1400 on.
    let floor = |c: &ChatId| if *c == a { 1490 } else { 1400 };
    let dropped = store.collect(&floor, 0).unwrap();
    assert!(dropped > 2, "dropped {dropped}");
    assert!(store.disk_bytes() * 2 < before, "{} -> {}", before, store.disk_bytes());
    let kept: Vec<u64> =
        store.read(&b, 1400, u64::MAX, usize::MAX, false).unwrap().into_iter().map(|(s, _)| s).collect();
    assert_eq!(kept, (1400..1500).collect::<Vec<_>>());
    // A retry of a trimmed message still finds its original.
    let o = store.find_original(&a, dedup::fingerprint(&a, &sender(), "m3"), 0).unwrap();
    assert_eq!(o.map(|o| o.seq), Some(3));
    // Past the dedup window, the index files go too.
    store.collect(&floor, 1_000_000).unwrap();
    assert!(store.find_original(&a, dedup::fingerprint(&a, &sender(), "m3"), 0).unwrap().is_none());
    assert!(store.read(&b, 1400, u64::MAX, usize::MAX, false).unwrap().len() == 100);
}

#[test]
fn segments_outside_the_dedup_window_drop_their_filters_but_still_answer() {
    let d = tempfile::tempdir().unwrap();
    let store = MessageStore::open(&d.path().join("s"), StorePos::default(), 64 * 1024).unwrap();
    let a = chat(7);
    for s in 1..1500u64 {
        store.append(&[msg(a, s, s, 100)]).unwrap();
    }
    store.wait_sealed().unwrap();
    let filters = |s: &MessageStore| -> (usize, usize) {
        let inner = s.read_inner();
        let sealed: Vec<bool> = inner
            .segments
            .values()
            .filter_map(|seg| match &seg.index {
                SegIndex::Sealed(x) => Some(x.has_filter()),
                SegIndex::Live(_) => None,
            })
            .collect();
        (sealed.iter().filter(|h| **h).count(), sealed.len())
    };
    let (held, sealed) = filters(&store);
    assert!(sealed > 3 && held == sealed, "{held} of {sealed}");
    // Every message is kept; the window now starts at time 1000.
    assert_eq!(store.collect(&|_| 1, 1000).unwrap(), 0);
    let (held, sealed_after) = filters(&store);
    assert_eq!(sealed_after, sealed, "kept messages keep their segments");
    assert!(held < sealed && held > 0, "{held} of {sealed} filters held");
    // Without its filter a segment is looked up on disk: a wider window still finds the original.
    let o = store.find_original(&a, dedup::fingerprint(&a, &sender(), "m3"), 0).unwrap();
    assert_eq!(o.map(|o| o.seq), Some(3));
    let kept = store.read(&a, 1, u64::MAX, usize::MAX, false).unwrap();
    assert_eq!(kept.len(), 1499);
}
