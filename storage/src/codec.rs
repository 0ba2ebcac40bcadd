//! The one place where raftchat turns values into bytes and back.
//!
//! Everything that is written to disk or sent between nodes goes through [`encode`] and
//! [`decode`] (bincode 2, serde mode, standard config). Every on-disk record and the node
//! handshake also carry [`FORMAT_VERSION`], so the encoding can change later: a reader that meets
//! a version it does not know refuses it with [`CodecError::UnknownVersion`] instead of
//! misreading bytes.
//!
//! Version 2 (this build) moved message bodies and idempotency entries out of sled into the
//! message store (`crate::messages`), replicates commands as the bytes the gateway encoded
//! (`crate::message::MessageBytes`), and maps chats to groups through slots. A version-1 data
//! directory is refused at start-up; docs/OPERATIONS.md ("Upgrading from format 1") gives the
//! path: a backup taken with the old build restores into a new cluster.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;

/// Version of every on-disk record layout and of the node-to-node wire format.
pub const FORMAT_VERSION: u8 = 2;

/// Errors of the codec.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encoding failed: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decoding failed: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("unknown format version {found} (this build reads version {FORMAT_VERSION})")]
    UnknownVersion { found: u8 },
    #[error("empty record")]
    Empty,
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` without a version byte (for payloads nested inside a versioned record).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// Appends the encoding of `value` to `buf`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, buf, config())?;
    Ok(())
}

/// Decodes a value written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_borrowed(bytes)
}

/// Decodes a value that borrows its strings and byte slices from `bytes` (no copies).
///
/// bincode allocates an owned string or byte string at the length its prefix claims before it
/// reads the bytes, so one corrupt prefix (up to 2^64) would abort the process on a failed
/// allocation. Every decode therefore runs under a byte limit in proportion to the input:
/// bincode charges a decoded value at most [`CLAIM_PER_INPUT_BYTE`] bytes of the limit per input
/// byte (a u128 varint of one byte is charged 16), so a valid encoding never reaches its limit,
/// and a claim past it is an error before anything is allocated.
pub fn decode_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    fn limited<'a, T: Deserialize<'a>, const LIMIT: usize>(bytes: &'a [u8]) -> Result<T, CodecError> {
        let (value, _read) = bincode::serde::borrow_decode_from_slice(bytes, config().with_limit::<LIMIT>())?;
        Ok(value)
    }
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    const C: usize = CLAIM_PER_INPUT_BYTE;
    match bytes.len() {
        n if n <= 4 * KIB => limited::<T, { C * 4 * KIB }>(bytes),
        n if n <= 256 * KIB => limited::<T, { C * 256 * KIB }>(bytes),
        n if n <= 16 * MIB => limited::<T, { C * 16 * MIB }>(bytes),
        // The largest records (a WAL record, a peer frame) are at most 256 MiB.
        _ => limited::<T, { C * 256 * MIB }>(bytes),
    }
}

/// The most of its limit bincode charges a decoded value per byte of input (see
/// [`decode_borrowed`]).
const CLAIM_PER_INPUT_BYTE: usize = 16;

/// [`decode_borrowed`] of a record written by [`encode_versioned`].
pub fn decode_versioned_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    let (&version, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::UnknownVersion { found: version });
    }
    decode_borrowed(rest)
}

/// Encodes `value` behind a [`FORMAT_VERSION`] byte: the form of every stand-alone record.
pub fn encode_versioned<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = vec![FORMAT_VERSION];
    encode_into(value, &mut buf)?;
    Ok(buf)
}

/// The oldest version [`decode_versioned`] reads. Records of version 1 whose layout version 2
/// kept (users, sessions, media and push records, members, messages) read as they are, so a
/// backup taken by a format-1 build restores; the types version 2 changed are refused where
/// they could meet an old record (a format-1 data directory does not open at all, and restore
/// converts format-1 chat heads explicitly).
pub const MIN_READ_VERSION: u8 = 1;

/// Decodes a record written by [`encode_versioned`], refusing unknown versions.
pub fn decode_versioned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    if !(MIN_READ_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(CodecError::UnknownVersion { found: version });
    }
    decode(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        id: uuid::Uuid,
        text: String,
        seq: u64,
    }

    #[test]
    fn versioned_round_trip() {
        let s = Sample { id: uuid::Uuid::new_v4(), text: "héllo".into(), seq: 42 };
        let bytes = encode_versioned(&s).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        let back: Sample = decode_versioned(&bytes).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn unknown_version_is_refused() {
        let s = Sample { id: uuid::Uuid::nil(), text: String::new(), seq: 1 };
        let mut bytes = encode_versioned(&s).unwrap();
        bytes[0] = 99;
        let err = decode_versioned::<Sample>(&bytes).unwrap_err();
        assert!(matches!(err, CodecError::UnknownVersion { found: 99 }));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let err = decode_versioned::<Sample>(&[FORMAT_VERSION, 0xff, 0xff, 0xff]);
        assert!(err.is_err());
        assert!(matches!(decode_versioned::<Sample>(&[]), Err(CodecError::Empty)));
    }
}
