//! Reading a snapshot stream item by item, outside a node: what `raftchat admin` does with a
//! backup (a backup section is a group's snapshot stream).
//!
//! Both formats read: a format-2 stream (manifest, state file, segment files) and a format-1
//! snapshot (one state file holding every record, messages included). Every item is checked:
//! the state file's trailer when it ends, every segment record's CRC.

use std::io::Read;
use std::path::Path;
use std::path::PathBuf;

use bytes::Bytes;

use super::corrupt;
use super::io;
use super::read_u32;
use super::Manifest;
use super::Meta;
use super::RawRecord;
use super::RecordReader;
use super::MANIFEST_MAX;
use super::STREAM_MAGIC;
use crate::chat_store::message_key;
use crate::chat_store::ChatId;
use crate::codec;
use crate::error::StorageError;
use crate::message::MessageBytes;
use crate::messages::record;
use crate::messages::record::Scan;
use crate::messages::record::SEGMENT_HEADER_LEN;

/// One item of a snapshot stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// A sled pair of the state (format 1: every record, messages and dedup keys included).
    Pair(RawRecord),
    /// A message of the message store.
    Message { chat: ChatId, seq: u64, body: MessageBytes },
}

impl StreamItem {
    /// The item as a restore record pair (`crate::restore::RestoreRecord::parse` reads it).
    pub fn into_restore_pair(self) -> Result<RawRecord, StorageError> {
        match self {
            StreamItem::Pair(p) => Ok(p),
            StreamItem::Message { chat, seq, body } => {
                let record = body.record(seq).map_err(|e| StorageError::codec("message", e))?;
                let value = codec::encode_versioned(&record).map_err(|e| StorageError::codec("message", e))?;
                Ok((message_key(&chat, seq), value))
            }
        }
    }
}

/// Reads a snapshot stream of either format.
pub struct StreamReader<'a> {
    /// The state file (format 1: the whole snapshot), until it ends.
    state: Option<RecordReader<std::io::Take<Box<dyn Read + 'a>>>>,
    /// The stream after the state file (format 2).
    rest: Option<Box<dyn Read + 'a>>,
    files: std::vec::IntoIter<(String, u64)>,
    /// Messages of the segment file read last.
    pending: std::vec::IntoIter<StreamItem>,
    path: PathBuf,
    pub meta: Meta,
    /// 1 for a format-1 snapshot, else this build's format.
    pub version: u32,
}

impl<'a> StreamReader<'a> {
    /// Reads the stream's head. `path` only names the source in errors.
    pub fn new(mut r: Box<dyn Read + 'a>, path: &Path) -> Result<Self, StorageError> {
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(io(path))?;
        let (state_len, files, r): (u64, Vec<(String, u64)>, Box<dyn Read + 'a>) = if &magic == STREAM_MAGIC {
            let mlen = read_u32(&mut r, path)?;
            if mlen > MANIFEST_MAX {
                return Err(corrupt(path, "snapshot manifest too large"));
            }
            let mut m = vec![0u8; mlen as usize];
            r.read_exact(&mut m).map_err(io(path))?;
            let manifest: Manifest =
                codec::decode_versioned(&m).map_err(|e| StorageError::codec("snapshot manifest", e))?;
            let mut files = manifest.files.into_iter();
            let state_len = files.next().map_or(0, |(_, l)| l);
            (state_len, files.collect(), r)
        } else {
            // Format 1: one state file with every record; its magic was just read.
            (u64::MAX, Vec::new(), Box::new(std::io::Cursor::new(magic.to_vec()).chain(r)))
        };
        let state = RecordReader::new(r.take(state_len), path)?;
        let (meta, version) = (state.meta.clone(), state.version);
        Ok(StreamReader {
            state: Some(state),
            rest: None,
            files: files.into_iter(),
            pending: Vec::new().into_iter(),
            path: path.to_path_buf(),
            meta,
            version,
        })
    }

    /// The next item; `None` at the end of the stream (after every check passed).
    pub fn next_item(&mut self) -> Result<Option<StreamItem>, StorageError> {
        if let Some(st) = &mut self.state {
            if let Some(pair) = st.next_record()? {
                return Ok(Some(StreamItem::Pair(pair)));
            }
            let done = self.state.take().map(|s| s.into_inner().into_inner());
            if self.version != 1 {
                self.rest = done;
            }
        }
        loop {
            if let Some(item) = self.pending.next() {
                return Ok(Some(item));
            }
            let Some((name, len)) = self.files.next() else { return Ok(None) };
            let Some(r) = self.rest.as_mut() else { return Ok(None) };
            let mut buf = Vec::new();
            let got = r.take(len).read_to_end(&mut buf).map_err(io(&self.path))? as u64;
            if got != len {
                return Err(corrupt(&self.path, format!("{name}: cut short at {got} of {len} bytes")));
            }
            if name.ends_with(".seg") {
                self.pending = segment_messages(&Bytes::from(buf), &self.path.join(&name))?.into_iter();
            }
        }
    }
}

/// Every message of a segment file's bytes, each record checked.
fn segment_messages(data: &Bytes, path: &Path) -> Result<Vec<StreamItem>, StorageError> {
    record::check_segment_header(data).map_err(|r| corrupt(path, r))?;
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN as usize;
    while pos < data.len() {
        match record::decode(&data.slice(pos..)) {
            Scan::Record(r, len) => {
                out.push(StreamItem::Message { chat: r.chat, seq: r.seq, body: r.body });
                pos += len as usize;
            }
            Scan::Short => return Err(corrupt(path, format!("record at offset {pos} is cut short"))),
            Scan::Bad(why) => return Err(corrupt(path, format!("{why} at offset {pos}"))),
        }
    }
    Ok(out)
}
