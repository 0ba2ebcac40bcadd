//! Delivery of committed events to the connections on this node.
//!
//! - [`hub`]: which connection wants which chat; one feed per interesting group; fan-out.
//! - [`feed`]: follows one group's committed events, from this node's replica or another's.

pub mod feed;
pub mod hub;

pub use hub::Delivery;
pub use hub::Hub;
