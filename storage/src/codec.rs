//! The one place where raftchat turns values into bytes and back.
//!
//! Everything that is written to disk or sent between nodes goes through [`encode`] and
//! [`decode`] (bincode 2, serde mode, standard config). Every on-disk record and the node
//! handshake also carry [`FORMAT_VERSION`], so the encoding can change later: a reader that meets
//! a version it does not know refuses it with [`CodecError::UnknownVersion`] instead of
//! misreading bytes.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Version of every on-disk record layout and of the node-to-node wire format.
pub const FORMAT_VERSION: u8 = 1;

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
    let bytes = bincode::serde::encode_to_vec(value, config())?;
    buf.extend_from_slice(&bytes);
    Ok(())
}

/// Decodes a value written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, _read) = bincode::serde::decode_from_slice(bytes, config())?;
    Ok(value)
}

/// Encodes `value` behind a [`FORMAT_VERSION`] byte: the form of every stand-alone record.
pub fn encode_versioned<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = vec![FORMAT_VERSION];
    encode_into(value, &mut buf)?;
    Ok(buf)
}

/// Decodes a record written by [`encode_versioned`], refusing unknown versions.
pub fn decode_versioned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
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
