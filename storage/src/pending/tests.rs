use std::collections::BTreeMap;
use std::ops::Bound;

use super::*;

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

fn key(r: &mut XorShift) -> Vec<u8> {
    // Few distinct keys of 1-2 bytes, so writes, deletes and bounds collide often.
    let len = 1 + r.below(2) as usize;
    (0..len).map(|_| b'a' + r.below(4) as u8).collect()
}

fn bound(r: &mut XorShift) -> Bound<Vec<u8>> {
    match r.below(3) {
        0 => Bound::Unbounded,
        1 => Bound::Included(key(r)),
        _ => Bound::Excluded(key(r)),
    }
}

fn open() -> (tempfile::TempDir, sled::Db, sled::Tree, Shared) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).temporary(true).open().unwrap();
    let journal = db.open_tree("journal").unwrap();
    let tree = db.open_tree("g").unwrap();
    let store = MessageStore::open(&dir.path().join("messages"), Default::default(), 1 << 20).unwrap();
    (dir, db, journal, Shared::new(1, tree, store))
}

#[test]
fn reads_see_pending_over_flushing_over_the_tree_through_flushes() {
    for seed in [0x9e37_79b9_7f4a_7c15, 0x2545_f491_4f6c_dd1d, 0x1234_5678_9abc_def1, 7] {
        model_run(seed);
    }
}

fn model_run(seed: u64) {
    let (_dir, _db, journal, live) = open();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut r = XorShift(seed);
    for step in 0..3000 {
        match r.below(10) {
            // One apply: a few writes and deletes.
            0..=5 => {
                let mut set = WriteSet::default();
                for _ in 0..1 + r.below(3) {
                    let k = key(&mut r);
                    if r.below(4) == 0 {
                        model.remove(&k);
                        set.remove(k);
                    } else {
                        let v = step.to_string().into_bytes();
                        model.insert(k.clone(), v.clone());
                        set.insert(k, v);
                    }
                }
                live.merge(set);
            }
            // Flushes, most of them on a thread of their own while the steps go on.
            6 => {
                if r.below(4) == 0 {
                    live.flush(&journal, 1).unwrap()
                } else {
                    live.flush_in_background(&journal, 1).unwrap()
                }
            }
            _ => {
                let k = key(&mut r);
                assert_eq!(live.get(&k).unwrap(), model.get(&k).cloned(), "get {k:?} at step {step}");
                // The writer's reads fill `clean` with the `c...` keys; every later read must
                // still see each new write and flush.
                let w = key(&mut r);
                assert_eq!(live.get_for_writer(&w).unwrap(), model.get(&w).cloned(), "writer get {w:?} at step {step}");
                let (lo, hi) = (bound(&mut r), bound(&mut r));
                let reverse = r.below(2) == 0;
                let limit = 1 + r.below(6) as usize;
                let got = live.scan(lo.clone(), hi.clone(), reverse, limit).unwrap();
                let want: Vec<Pair> = if is_empty_range(&lo, &hi) {
                    Vec::new()
                } else if reverse {
                    model
                        .range((lo.clone(), hi.clone()))
                        .rev()
                        .take(limit)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                } else {
                    model.range((lo.clone(), hi.clone())).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect()
                };
                assert_eq!(got, want, "scan {lo:?}..{hi:?} reverse {reverse} limit {limit} at step {step}");
            }
        }
    }
    // After a last flush the tree alone holds the model.
    live.flush(&journal, 1).unwrap();
    assert_eq!(live.pending_len(), 0);
    let tree: BTreeMap<Vec<u8>, Vec<u8>> =
        live.read().tree.iter().map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
    assert_eq!(tree, model);
}

#[test]
fn merge_asks_for_a_flush_at_the_limits() {
    let (_dir, _db, journal, live) = open();
    let mut set = WriteSet::default();
    for i in 0..FLUSH_WRITES - 1 {
        set.insert((i as u64).to_be_bytes().to_vec(), vec![1]);
    }
    assert!(!live.merge(set), "under the key limit");
    let mut one = WriteSet::default();
    one.insert(b"last".to_vec(), vec![1]);
    assert!(live.merge(one), "at the key limit");
    live.flush(&journal, 1).unwrap();
    let mut big = WriteSet::default();
    big.insert(b"big".to_vec(), vec![0; FLUSH_BYTES]);
    assert!(live.merge(big), "at the byte limit");
}

#[test]
fn a_key_rewritten_by_every_apply_takes_its_room_once() {
    let (_dir, _db, _journal, live) = open();
    for i in 0..10_000u32 {
        let mut set = WriteSet::default();
        set.insert(b"A".to_vec(), vec![0; 200]);
        set.insert(b"c1".to_vec(), i.to_le_bytes().to_vec());
        assert!(!live.merge(set), "apply {i} asked for a flush");
    }
}

#[test]
fn replacing_the_generation_drops_its_pending_writes() {
    let (_dir, db, journal, live) = open();
    let mut set = WriteSet::default();
    set.insert(b"k".to_vec(), b"old".to_vec());
    live.merge(set);
    let fresh = db.open_tree("g2").unwrap();
    fresh.insert(b"k", b"installed".as_slice()).unwrap();
    live.wait_for_flush().unwrap();
    let store = live.read().store.clone();
    let old_gen = live.replace(2, fresh, store);
    assert_eq!(old_gen, 1);
    assert_eq!(live.get(b"k").unwrap(), Some(b"installed".to_vec()));
    live.flush(&journal, 1).unwrap();
    assert_eq!(live.get(b"k").unwrap(), Some(b"installed".to_vec()));
}

#[test]
fn the_clean_map_is_bounded_and_dropped_with_its_generation() {
    let (_dir, db, journal, live) = open();
    let mut set = WriteSet::default();
    for i in 0..CLEAN_MAX + 10 {
        set.insert(crate::chat_store::chat_key(&uuid::Uuid::from_u128(i as u128)), vec![1]);
    }
    set.insert(b"m-not-cached".to_vec(), vec![2]);
    live.merge(set);
    live.flush(&journal, 1).unwrap();
    assert!(live.clean_len() <= CLEAN_MAX, "clean holds {} keys", live.clean_len());
    assert!(live.clean_len() > 0, "flushed chat keys are remembered");
    let k = crate::chat_store::chat_key(&uuid::Uuid::from_u128(3));
    assert_eq!(live.get_for_writer(&k).unwrap(), Some(vec![1]));
    // A new generation holds other values: nothing of the old one may answer for it.
    let fresh = db.open_tree("g2").unwrap();
    fresh.insert(&k, b"installed".as_slice()).unwrap();
    let store = live.read().store.clone();
    live.replace(2, fresh, store);
    assert_eq!(live.clean_len(), 0);
    assert_eq!(live.get(&k).unwrap(), Some(b"installed".to_vec()));
    assert_eq!(live.get_for_writer(&k).unwrap(), Some(b"installed".to_vec()));
}

#[test]
fn prefix_end_bounds() {
    assert_eq!(prefix_end(b"ab"), Bound::Excluded(b"ac".to_vec()));
    assert_eq!(prefix_end(&[b'a', 0xff]), Bound::Excluded(b"b".to_vec()));
    assert_eq!(prefix_end(&[0xff, 0xff]), Bound::Unbounded);
}
