//! Where a blob's copies live: rendezvous (highest random weight) hashing of the blob's name
//! over the cluster's nodes. Each node gets a score from SHA-256(blob || node id); the copies go
//! to the three best-scoring nodes that are up. Adding or losing a node moves only the copies
//! that rank it among their three, and every node computes the same answer without asking.

use raftchat_raft::types::NodeId;
use raftchat_storage::blobs::Sha;
use sha2::Digest;
use sha2::Sha256;

/// Copies kept of every blob.
pub const COPIES: usize = 3;

fn score(sha: &Sha, node: NodeId) -> u64 {
    let mut h = Sha256::new();
    h.update(sha);
    h.update(node.to_be_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
}

/// Every node, best first.
pub fn ranked(sha: &Sha, nodes: impl IntoIterator<Item = NodeId>) -> Vec<NodeId> {
    let mut v: Vec<(u64, NodeId)> = nodes.into_iter().map(|n| (score(sha, n), n)).collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v.into_iter().map(|(_, n)| n).collect()
}

/// The nodes that should hold a blob: the best [`COPIES`] among those `up`.
pub fn holders(sha: &Sha, nodes: impl IntoIterator<Item = NodeId>, up: impl Fn(NodeId) -> bool) -> Vec<NodeId> {
    ranked(sha, nodes).into_iter().filter(|n| up(*n)).take(COPIES).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(i: u32) -> Sha {
        raftchat_storage::blobs::sha256(&i.to_be_bytes())
    }

    #[test]
    fn stable_and_spread() {
        let mut counts = [0usize; 6];
        for i in 0..3000 {
            let h = holders(&sha(i), 1..=6, |_| true);
            assert_eq!(h, holders(&sha(i), [6, 5, 4, 3, 2, 1], |_| true), "order of the node list matters not");
            assert_eq!(h.len(), 3);
            for n in h {
                counts[n as usize - 1] += 1;
            }
        }
        // 1,500 each on average.
        assert!(counts.iter().all(|c| (1300..1700).contains(c)), "{counts:?}");
    }

    #[test]
    fn a_down_node_is_replaced_and_nothing_else_moves() {
        let mut moved = 0;
        for i in 0..1000 {
            let all = holders(&sha(i), 1..=5, |_| true);
            let without_3 = holders(&sha(i), 1..=5, |n| n != 3);
            if all.contains(&3) {
                assert_eq!(all.iter().filter(|n| without_3.contains(n)).count(), 2);
                moved += 1;
            } else {
                assert_eq!(all, without_3);
            }
        }
        assert!((450..750).contains(&moved), "{moved}");
        assert_eq!(holders(&sha(1), [1, 2], |_| true).len(), 2);
    }
}
