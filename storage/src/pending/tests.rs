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
    (dir, db, journal, Shared::new(1, tree))
}

#[test]
fn reads_see_pending_over_the_tree_through_flushes() {
    let (_dir, _db, journal, live) = open();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut r = XorShift(0x9e37_79b9_7f4a_7c15);
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
            6 => live.flush(&journal, 1).unwrap(),
            _ => {
                let k = key(&mut r);
                assert_eq!(live.get(&k).unwrap(), model.get(&k).cloned(), "get {k:?} at step {step}");
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
fn replacing_the_generation_drops_its_pending_writes() {
    let (_dir, db, journal, live) = open();
    let mut set = WriteSet::default();
    set.insert(b"k".to_vec(), b"old".to_vec());
    live.merge(set);
    let fresh = db.open_tree("g2").unwrap();
    fresh.insert(b"k", b"installed".as_slice()).unwrap();
    let old_gen = live.replace(2, fresh);
    assert_eq!(old_gen, 1);
    assert_eq!(live.get(b"k").unwrap(), Some(b"installed".to_vec()));
    live.flush(&journal, 1).unwrap();
    assert_eq!(live.get(b"k").unwrap(), Some(b"installed".to_vec()));
}

#[test]
fn prefix_end_bounds() {
    assert_eq!(prefix_end(b"ab"), Bound::Excluded(b"ac".to_vec()));
    assert_eq!(prefix_end(&[b'a', 0xff]), Bound::Excluded(b"b".to_vec()));
    assert_eq!(prefix_end(&[0xff, 0xff]), Bound::Unbounded);
}
