//! Node-to-node transport: one multiplexed TCP connection per node pair.
//!
//! - [`frame`]: length-prefixed frames and the handshake messages.
//! - [`conn`]: one connection's reader and writer; control and bulk lanes; request ids.
//! - [`pool`]: all peers of the node; the lower id dials, with backoff.
//! - [`listener`]: accepts connections and checks the handshake.
//! - [`tls`]: mutual TLS between nodes; the names node and admin certificates carry.

pub mod conn;
pub mod frame;
pub mod listener;
pub mod pool;
pub mod tls;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tls_tests;

pub use conn::CallError;
pub use conn::Inbound;
pub use pool::LocalIdentity;
pub use pool::PeerPool;
