//! Network faults without root: userspace proxies.

pub mod proxy;
