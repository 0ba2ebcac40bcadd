//! The state file's records: written with a running CRC and count, read back and checked
//! against the trailer.

use std::fs::File;
use std::io::BufWriter;
use std::io::Read;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use crate::codec;
use crate::codec::FORMAT_VERSION;
use crate::error::StorageError;

use super::*;

/// One raw (key, value) pair of a state file.
pub type RawRecord = (Vec<u8>, Vec<u8>);

/// Reads a state file (or a format-1 snapshot, which had the same framing) record by record;
/// the trailer's count and CRC are checked when the last record has been read, so a caller must
/// read to the end before trusting the records.
pub struct RecordReader<R: Read> {
    r: R,
    path: PathBuf,
    hasher: crc32fast::Hasher,
    count: u64,
    done: bool,
    pub meta: Meta,
    /// The format version the file was written with (1: a format-1 snapshot).
    pub version: u32,
}

impl<R: Read> RecordReader<R> {
    /// Reads and checks the header. `path` only names the source in errors.
    pub fn new(mut r: R, path: &Path) -> Result<Self, StorageError> {
        let (meta, version) = read_header(&mut r, path)?;
        Ok(RecordReader {
            r,
            path: path.to_path_buf(),
            hasher: crc32fast::Hasher::new(),
            count: 0,
            done: false,
            meta,
            version,
        })
    }

    /// The next (key, value), or `None` after a trailer that matched everything read.
    pub fn next_record(&mut self) -> Result<Option<RawRecord>, StorageError> {
        if self.done {
            return Ok(None);
        }
        let path = &self.path;
        let klen = read_u32(&mut self.r, path)?;
        if klen == TRAILER_MARK {
            let n = read_u64(&mut self.r, path)?;
            let crc = read_u32(&mut self.r, path)?;
            if n != self.count || crc != self.hasher.clone().finalize() {
                return Err(corrupt(path, format!("snapshot trailer mismatch: {n} records, read {}", self.count)));
            }
            self.done = true;
            return Ok(None);
        }
        let vlen = read_u32(&mut self.r, path)?;
        if klen > FIELD_LEN_MAX || vlen > FIELD_LEN_MAX {
            return Err(corrupt(path, format!("snapshot record too large ({klen}, {vlen})")));
        }
        let mut k = vec![0u8; klen as usize];
        let mut v = vec![0u8; vlen as usize];
        self.r.read_exact(&mut k).map_err(io(path))?;
        self.r.read_exact(&mut v).map_err(io(path))?;
        hash_record(&mut self.hasher, &k, &v);
        self.count += 1;
        Ok(Some((k, v)))
    }

    /// The reader, positioned after the trailer once [`RecordReader::next_record`] returned `None`.
    pub fn into_inner(self) -> R {
        self.r
    }
}

pub(super) fn hash_record(h: &mut crc32fast::Hasher, k: &[u8], v: &[u8]) {
    h.update(&(k.len() as u32).to_le_bytes());
    h.update(&(v.len() as u32).to_le_bytes());
    h.update(k);
    h.update(v);
}

pub(super) struct RecordWriter<'p> {
    w: BufWriter<File>,
    path: &'p Path,
    hasher: crc32fast::Hasher,
    count: u64,
}

impl<'p> RecordWriter<'p> {
    pub(super) fn new(w: BufWriter<File>, path: &'p Path) -> Self {
        RecordWriter { w, path, hasher: crc32fast::Hasher::new(), count: 0 }
    }

    pub(super) fn put(&mut self, b: &[u8]) -> Result<(), StorageError> {
        self.w.write_all(b).map_err(io(self.path))
    }

    pub(super) fn header(&mut self, meta: &Meta) -> Result<(), StorageError> {
        let m = codec::encode_versioned(meta).map_err(|e| StorageError::codec("snapshot meta", e))?;
        self.put(MAGIC)?;
        self.put(&u32::from(FORMAT_VERSION).to_le_bytes())?;
        self.put(&(m.len() as u32).to_le_bytes())?;
        self.put(&m)
    }

    pub(super) fn record(&mut self, k: &[u8], v: &[u8]) -> Result<(), StorageError> {
        hash_record(&mut self.hasher, k, v);
        self.count += 1;
        self.put(&(k.len() as u32).to_le_bytes())?;
        self.put(&(v.len() as u32).to_le_bytes())?;
        self.put(k)?;
        self.put(v)
    }

    pub(super) fn finish(mut self) -> Result<File, StorageError> {
        self.put(&TRAILER_MARK.to_le_bytes())?;
        self.put(&self.count.to_le_bytes())?;
        let crc = self.hasher.clone().finalize();
        self.put(&crc.to_le_bytes())?;
        self.w.into_inner().map_err(|e| StorageError::io(self.path, e.into_error()))
    }
}

pub(crate) fn read_u32(r: &mut impl Read, path: &Path) -> Result<u32, StorageError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(io(path))?;
    Ok(u32::from_le_bytes(b))
}

pub(super) fn read_u64(r: &mut impl Read, path: &Path) -> Result<u64, StorageError> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).map_err(io(path))?;
    Ok(u64::from_le_bytes(b))
}

/// Reads a state file's header: its metadata and format version (1 or this build's).
pub(super) fn read_header(r: &mut impl Read, path: &Path) -> Result<(Meta, u32), StorageError> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(io(path))?;
    if &magic != MAGIC {
        return Err(corrupt(path, "not a raftchat snapshot (bad magic)"));
    }
    let version = read_u32(r, path)?;
    if version != u32::from(FORMAT_VERSION) && version != 1 {
        return Err(corrupt(path, format!("unknown snapshot format version {version}")));
    }
    let len = read_u32(r, path)?;
    if len > FIELD_LEN_MAX {
        return Err(corrupt(path, "snapshot meta too large"));
    }
    let mut m = vec![0u8; len as usize];
    r.read_exact(&mut m).map_err(io(path))?;
    let meta = codec::decode_versioned(&m).map_err(|e| StorageError::codec("snapshot meta", e))?;
    Ok((meta, version))
}
