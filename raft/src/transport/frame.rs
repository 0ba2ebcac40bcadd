//! Frames on a node-to-node connection: `u32` big-endian length, then the codec's bytes.

use serde::Deserialize;
use serde::Serialize;
use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;

use crate::rpc::RpcRequest;
use crate::rpc::RpcResponse;
use crate::types::GroupId;
use crate::types::NodeId;

/// No frame may be larger; a snapshot chunk is far smaller, and a larger append is split.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Handshake frames (hello, welcome, refusal) are read with this limit: nothing large is
/// allocated for a peer that has not authenticated.
pub const HANDSHAKE_FRAME_BYTES_MAX: usize = 16 * 1024;

/// The first frame on a connection, sent by the dialing node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub format_version: u8,
    pub cluster_id: String,
    pub from: NodeId,
    pub to: NodeId,
    pub from_api_addr: String,
    pub from_raft_addr: String,
    /// The sender has no Raft state at all (a never-started node).
    pub pristine: bool,
    /// The sender's cluster layout lists the receiver as a member.
    pub you_are_member: bool,
    /// Epoch of the sender's cluster layout (0: none yet).
    pub layout_epoch: u64,
}

/// The accepting node's answer to a valid [`Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Welcome {
    pub node: NodeId,
    pub api_addr: String,
    pub pristine: bool,
    /// The accepting node's cluster layout lists the dialer as a member.
    pub you_are_member: bool,
    /// Epoch of the accepting node's cluster layout (0: none yet).
    pub layout_epoch: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Frame {
    Hello(Hello),
    Welcome(Welcome),
    /// The handshake failed; the reason names both sides.
    Refused(String),
    Request {
        id: u64,
        group: GroupId,
        body: RpcRequest,
    },
    Response {
        id: u64,
        body: RpcResponse,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("undecodable frame: {0}")]
    Codec(#[from] raftchat_storage::codec::CodecError),
}

/// Encodes a frame with its length prefix.
pub fn encode(frame: &Frame) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    raftchat_storage::codec::encode_into(frame, &mut buf)?;
    let len = buf.len() - 4;
    if len > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge(len));
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Reads one frame.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, FrameError> {
    read_max(r, FRAME_BYTES_MAX).await
}

/// Reads one frame of at most `max` bytes.
pub async fn read_max<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Frame, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(raftchat_storage::codec::decode(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let f = Frame::Hello(Hello {
            format_version: 1,
            cluster_id: "c".into(),
            from: 1,
            to: 2,
            from_api_addr: "a".into(),
            from_raft_addr: "r".into(),
            pristine: true,
            you_are_member: false,
            layout_epoch: 0,
        });
        let bytes = encode(&f).unwrap();
        let back = read(&mut &bytes[..]).await.unwrap();
        assert!(matches!(back, Frame::Hello(h) if h.to == 2 && h.pristine));
        let mut huge = (FRAME_BYTES_MAX as u32 + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert!(matches!(read(&mut &huge[..]).await, Err(FrameError::TooLarge(_))));
        let mut big = (HANDSHAKE_FRAME_BYTES_MAX as u32 + 1).to_be_bytes().to_vec();
        big.extend_from_slice(&[0; 16]);
        assert!(matches!(read_max(&mut &big[..], HANDSHAKE_FRAME_BYTES_MAX).await, Err(FrameError::TooLarge(_))));
        let garbage = [0u8, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(matches!(read(&mut &garbage[..]).await, Err(FrameError::Codec(_))));
        assert!(matches!(read(&mut &[][..]).await, Err(FrameError::Closed)));
    }
}
