use super::*;

fn noop() -> Done {
    Box::new(|_| {})
}

fn entries(n: usize, tag: u8) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![tag; i + 1]).collect()
}

#[test]
fn append_read_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).unwrap();
        e.append(1, 0, entries(3, 1), noop()).unwrap();
        e.append(2, 5, entries(2, 2), noop()).unwrap();
        e.append(1, 3, entries(2, 3), noop()).unwrap();
        assert_eq!(e.read(1, 0, 10).unwrap().len(), 5);
        assert_eq!(e.read(1, 3, 4).unwrap(), vec![vec![3u8]]);
        e.close();
    }
    let e = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).unwrap();
    assert_eq!(e.group_state(1).bounds, Some((0, 4)));
    assert_eq!(e.group_state(2).bounds, Some((5, 6)));
    assert_eq!(e.read(2, 0, 100).unwrap(), vec![vec![2u8], vec![2u8, 2]]);
}

#[test]
fn gaps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).unwrap();
    e.append(1, 1, entries(2, 1), noop()).unwrap();
    assert!(matches!(e.append(1, 5, entries(1, 1), noop()), Err(StorageError::LogGap { expected: 3, got: 5, .. })));
}

#[tokio::test]
async fn truncate_purge_vote_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).unwrap();
        e.append(1, 1, entries(10, 1), noop()).unwrap();
        e.truncate(1, 8).unwrap().wait().await.unwrap();
        e.purge(1, 3, b"p3".to_vec()).unwrap().wait().await.unwrap();
        e.save_vote(1, b"v".to_vec()).unwrap().wait().await.unwrap();
        e.save_committed(1, b"c".to_vec()).unwrap();
        e.save_vote(1, b"v".to_vec()).unwrap().wait().await.unwrap();
    }
    let e = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).unwrap();
    let st = e.group_state(1);
    assert_eq!(st.bounds, Some((4, 7)));
    assert_eq!(st.vote.as_deref(), Some(&b"v"[..]));
    assert_eq!(st.committed.as_deref(), Some(&b"c"[..]));
    assert_eq!(st.purged, Some((3, b"p3".to_vec())));
    // Purging everything leaves an empty log whose next index follows the purge point.
    e.purge(1, 7, b"p7".to_vec()).unwrap().wait().await.unwrap();
    assert_eq!(e.group_state(1).bounds, None);
    assert!(e.append(1, 9, entries(1, 1), noop()).is_err());
    e.append(1, 8, entries(1, 1), noop()).unwrap();
}

#[tokio::test]
async fn rotation_and_gc_free_disk_and_keep_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let seg_bytes = 4096;
    {
        let e = LogEngine::open(dir.path(), seg_bytes).unwrap();
        e.save_vote(2, b"vote2".to_vec()).unwrap().wait().await.unwrap();
        for i in 0..200u64 {
            e.append(1, i, vec![vec![7u8; 100]], noop()).unwrap();
        }
        let segs_before = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(segs_before > 3, "{segs_before}");
        e.purge(1, 190, b"p".to_vec()).unwrap().wait().await.unwrap();
        e.gc();
        let segs_after = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(segs_after < segs_before, "{segs_after} < {segs_before}");
    }
    let e = LogEngine::open(dir.path(), seg_bytes).unwrap();
    assert_eq!(e.group_state(1).bounds, Some((191, 199)));
    assert_eq!(e.group_state(2).vote.as_deref(), Some(&b"vote2"[..]));
    assert_eq!(e.read(1, 191, 200).unwrap().len(), 9);
}

#[tokio::test]
async fn an_idle_group_does_not_pin_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let seg_bytes = 4096;
    {
        let e = LogEngine::open(dir.path(), seg_bytes).unwrap();
        // Group 0 writes three entries once and then stays idle (like the meta group).
        e.append(0, 1, entries(3, 9), noop()).unwrap();
        for i in 0..400u64 {
            e.append(1, i, vec![vec![7u8; 100]], noop()).unwrap();
        }
        e.purge(1, 390, b"p".to_vec()).unwrap().wait().await.unwrap();
        e.gc();
        let segs = std::fs::read_dir(dir.path()).unwrap().count();
        // 400 entries of ~100 bytes fill ~12 segments; only the last few stay.
        assert!(segs <= 3, "the idle group's old entries kept {segs} segments alive");
        assert_eq!(e.read(0, 1, 4).unwrap(), entries(3, 9));
    }
    let e = LogEngine::open(dir.path(), seg_bytes).unwrap();
    assert_eq!(e.group_state(0).bounds, Some((1, 3)));
    assert_eq!(e.read(0, 1, 4).unwrap(), entries(3, 9));
    assert_eq!(e.group_state(1).bounds, Some((391, 399)));
    assert_eq!(e.read(1, 391, 400).unwrap().len(), 9);
}

#[test]
fn torn_tail_is_cut_but_middle_corruption_refuses() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).unwrap();
        e.append(1, 1, entries(3, 1), noop()).unwrap();
        e.append(1, 4, entries(3, 2), noop()).unwrap();
    }
    let seg = seg_path(dir.path(), 1);
    let data = std::fs::read(&seg).unwrap();
    // A torn last record: cut 3 bytes off the end.
    std::fs::write(&seg, &data[..data.len() - 3]).unwrap();
    let e = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).unwrap();
    assert_eq!(e.group_state(1).bounds, Some((1, 3)));
    e.append(1, 4, entries(1, 9), noop()).unwrap();
    drop(e);
    // Corruption inside a segment that is not the last one refuses to open.
    let mut data = std::fs::read(&seg).unwrap();
    data[SEGMENT_HEADER_LEN as usize + 12] ^= 0xff;
    std::fs::write(&seg, &data).unwrap();
    std::fs::write(seg_path(dir.path(), 2), record::segment_header()).unwrap();
    let err = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).err().expect("must refuse");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

/// Where each record of a segment starts.
fn record_starts(data: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN as usize;
    while pos + record::RECORD_HEADER_LEN <= data.len() {
        starts.push(pos);
        let len = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]) as usize;
        pos += record::RECORD_HEADER_LEN + len;
    }
    starts
}

#[test]
fn a_damaged_record_with_intact_ones_after_it_refuses_unless_repaired() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).unwrap();
        e.append(1, 1, entries(3, 1), noop()).unwrap();
        e.append(1, 4, entries(3, 2), noop()).unwrap();
        e.append(1, 7, entries(3, 3), noop()).unwrap();
    }
    let seg = seg_path(dir.path(), 1);
    let mut data = std::fs::read(&seg).unwrap();
    let starts = record_starts(&data);
    // The record of entries 4..=6 is the second to last; flip a byte of its payload.
    let victim = starts[starts.len() - 2];
    data[victim + record::RECORD_HEADER_LEN + 2] ^= 0x40;
    std::fs::write(&seg, &data).unwrap();
    let err = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).err().expect("a damaged record must refuse");
    let text = err.to_string();
    assert!(text.contains(&format!("offset {victim}")) && text.contains("--repair-wal"), "{text}");
    assert_eq!(std::fs::read(&seg).unwrap(), data, "refusing changes nothing on disk");
    // Repair cuts at the damaged record and drops what follows.
    let e = LogEngine::open_with(dir.path(), SEGMENT_BYTES_DEFAULT, true).unwrap();
    assert_eq!(e.group_state(1).bounds, Some((1, 3)));
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), victim as u64);
}

#[test]
fn flush_callbacks_fire_after_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let e = LogEngine::open(dir.path(), SEGMENT_BYTES_DEFAULT).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..100u64 {
        let tx = tx.clone();
        e.append(1, i, vec![vec![1]], Box::new(move |r| tx.send(r.is_ok()).unwrap())).unwrap();
    }
    for _ in 0..100 {
        assert!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap());
    }
    let s = e.stats();
    assert!(s.fsyncs.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_eq!(s.entries.load(std::sync::atomic::Ordering::Relaxed), 100);
}
