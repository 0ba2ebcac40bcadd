//! Network faults: userspace proxies (no root needed: node-to-node links and client links), and
//! network namespaces with iptables (root: node-to-node links, as Jepsen cuts them).

pub mod netns;
pub mod proxy;
