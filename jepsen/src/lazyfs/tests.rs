use std::io::Read;
use std::io::Write;

use super::*;

#[test]
fn unsynced_writes_are_lost_and_synced_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, at) = (dir.path().join("backing"), dir.path().join("mnt"));
    let m = LazyFs::mount(&backing, &at).expect("FUSE mount (needs /dev/fuse; .ci/run installs fuse3)");
    std::fs::create_dir(at.join("d")).unwrap();
    let mut f = std::fs::File::create(at.join("d/a")).unwrap();
    f.write_all(b"durable").unwrap();
    f.sync_all().unwrap();
    f.write_all(b" and lost").unwrap();
    drop(f);
    // Readers see the unsynced bytes; the disk does not have them.
    assert_eq!(std::fs::read(at.join("d/a")).unwrap(), b"durable and lost");
    assert_eq!(std::fs::read(backing.join("d/a")).unwrap(), b"durable");
    std::fs::write(at.join("b"), b"never synced").unwrap();
    std::fs::rename(at.join("d/a"), at.join("d/c")).unwrap();
    assert!(m.fs.pending() > 0);
    let lost = m.fs.clear();
    assert_eq!(lost, (b" and lost".len() + b"never synced".len()) as u64);
    let mut s = String::new();
    std::fs::File::open(at.join("d/c")).unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "durable");
    assert_eq!(std::fs::read(at.join("b")).unwrap(), b"");
    // fsync through a read-only descriptor syncs too (sled's files are synced that way).
    std::fs::write(at.join("r"), b"synced read-only").unwrap();
    std::fs::File::open(at.join("r")).unwrap().sync_all().unwrap();
    m.fs.clear();
    assert_eq!(std::fs::read(at.join("r")).unwrap(), b"synced read-only");
    // A truncation is data too: lost unless synced.
    let f = std::fs::OpenOptions::new().write(true).open(at.join("d/c")).unwrap();
    f.set_len(3).unwrap();
    assert_eq!(std::fs::read(at.join("d/c")).unwrap(), b"dur");
    m.fs.clear();
    assert_eq!(std::fs::read(at.join("d/c")).unwrap(), b"durable");
    f.set_len(3).unwrap();
    f.sync_data().unwrap();
    m.fs.clear();
    assert_eq!(std::fs::read(at.join("d/c")).unwrap(), b"dur");
}
