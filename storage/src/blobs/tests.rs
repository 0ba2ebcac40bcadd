use std::sync::Arc;

use super::*;

fn store() -> (tempfile::TempDir, Arc<BlobStore>) {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(BlobStore::open(dir.path()).unwrap());
    (dir, s)
}

fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn read_all(s: &BlobStore, m: &BlobManifest) -> Vec<u8> {
    (0..m.chunks.len()).flat_map(|i| s.read_chunk(m, i).unwrap().unwrap()).collect()
}

#[test]
fn write_in_odd_pieces_then_read_back() {
    let (_d, s) = store();
    let data = content(2 * CHUNK_BYTES + 12_345);
    let mut w = BlobWriter::new(s.clone()).unwrap();
    for piece in data.chunks(70_001) {
        w.write(piece).unwrap();
    }
    let m = w.finish().unwrap();
    assert_eq!(m.sha256, sha256(&data));
    assert_eq!((m.size, m.chunks.len()), (data.len() as u64, 3));
    assert_eq!(s.manifest(&m.sha256).unwrap().unwrap(), m);
    assert_eq!(read_all(&s, &m), data);
    assert_eq!(s.incoming_count(), 0);
    assert_eq!(parse_hex(&to_hex(&m.sha256)), Some(m.sha256));
    let listed = s.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, data.len() as u64);
}

#[test]
fn empty_blob_and_same_content_twice() {
    let (_d, s) = store();
    let m = BlobWriter::new(s.clone()).unwrap().finish().unwrap();
    assert_eq!((m.size, m.chunks.len()), (0, 1));
    assert_eq!(read_all(&s, &m), Vec::<u8>::new());
    let mut w = BlobWriter::new(s.clone()).unwrap();
    w.write(b"").unwrap();
    assert_eq!(w.finish().unwrap(), m);
    assert_eq!(s.list().unwrap().len(), 1);
    assert_eq!(s.incoming_count(), 0);
}

#[test]
fn an_abandoned_upload_leaves_nothing() {
    let (_d, s) = store();
    let mut w = BlobWriter::new(s.clone()).unwrap();
    w.write(&content(CHUNK_BYTES + 10)).unwrap();
    assert_eq!(s.incoming_count(), 1);
    drop(w);
    assert_eq!(s.incoming_count(), 0);
    assert!(s.list().unwrap().is_empty());
}

#[test]
fn damage_is_detected_and_repaired() {
    let (_d, s) = store();
    let data = content(CHUNK_BYTES + 5);
    let mut w = BlobWriter::new(s.clone()).unwrap();
    w.write(&data).unwrap();
    let m = w.finish().unwrap();
    let path = s.dir(&m.sha256).join(chunk_name(1));
    std::fs::write(&path, b"xxxxx").unwrap();
    assert!(matches!(s.read_chunk(&m, 1), Err(StorageError::Corrupt { .. })));
    assert!(s.replace_chunk(&m, 1, b"yyyyy").is_err());
    s.replace_chunk(&m, 1, &data[CHUNK_BYTES..]).unwrap();
    assert_eq!(read_all(&s, &m), data);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(s.read_chunk(&m, 1).unwrap(), None);
    std::fs::write(s.dir(&m.sha256).join("MANIFEST"), b"\x01garbage").unwrap();
    assert!(s.manifest(&m.sha256).is_err());
}

#[test]
fn copies_are_checked_before_they_count() {
    let (_d, src) = store();
    let (_d2, dst) = store();
    let data = content(CHUNK_BYTES * 2 + 1);
    let mut w = BlobWriter::new(src.clone()).unwrap();
    w.write(&data).unwrap();
    let m = w.finish().unwrap();
    let t = uuid::Uuid::new_v4();
    let c0 = src.read_chunk(&m, 0).unwrap().unwrap();
    assert!(dst.receive_chunk(t, 0, &m.chunks[1], &c0).is_err(), "a chunk under the wrong checksum");
    for i in 0..m.chunks.len() {
        let c = src.read_chunk(&m, i).unwrap().unwrap();
        if i < 2 {
            dst.receive_chunk(t, i, &m.chunks[i], &c).unwrap();
        }
    }
    assert!(dst.receive_commit(t, &m).is_err(), "a missing chunk");
    assert!(!dst.contains(&m.sha256));
    let t = uuid::Uuid::new_v4();
    for i in 0..m.chunks.len() {
        dst.receive_chunk(t, i, &m.chunks[i], &src.read_chunk(&m, i).unwrap().unwrap()).unwrap();
    }
    dst.receive_commit(t, &m).unwrap();
    assert_eq!(read_all(&dst, &m), data);
    assert_eq!(dst.incoming_count(), 0);
    assert!(dst.remove(&m.sha256).unwrap());
    assert!(!dst.contains(&m.sha256));
    assert_eq!(dst.incoming_count(), 0);
}

#[test]
fn interrupted_transfers_are_cleared_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(BlobStore::open(dir.path()).unwrap());
    let mut w = BlobWriter::new(s.clone()).unwrap();
    w.write(b"partial").unwrap();
    std::mem::forget(w);
    assert_eq!(s.incoming_count(), 1);
    let s = BlobStore::open(dir.path()).unwrap();
    assert_eq!(s.incoming_count(), 0);
}
