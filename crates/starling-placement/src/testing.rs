//! Deterministic random clusters for property tests and placement measurements (feature
//! `testing`).

use std::collections::BTreeSet;

use crate::NodeId;

/// A SplitMix64 stream: fixed seeds give reproducible clusters without a randomness
/// dependency.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next number of the stream.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `n` distinct random node ids, in order.
    pub fn cluster(&mut self, n: usize) -> Vec<NodeId> {
        let mut set = BTreeSet::new();
        while set.len() < n {
            set.insert(self.next_u64());
        }
        set.into_iter().map(NodeId).collect()
    }
}
