//! A fast hash map keyed by [`NetId`]. Ids are allocated by zones, never chosen by
//! clients, so a keyed (DoS-resistant) hasher buys nothing and SipHash would dominate
//! the per-entity cost of building snapshots.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use zonemesh_shared::ids::NetId;

/// Map from network id to per-entity data.
pub(crate) type IdMap<V> = HashMap<NetId, V, BuildHasherDefault<IdHasher>>;

/// Hashes a `u64` with the splitmix64 finaliser: every input bit affects the low bits
/// (bucket index) and the high bits (control bytes), and equal ids hash equally in
/// every process, which keeps iteration order and so the tests deterministic.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher {
    state: u64,
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-u64 keys; fold the bytes in so it stays a hash.
        for b in bytes {
            self.state = (self.state.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.state = self.state.rotate_left(32) ^ v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_buckets() {
        let mut low = std::collections::HashSet::new();
        for i in 0..1024u64 {
            let mut h = IdHasher::default();
            h.write_u64((5 << 32) | i);
            low.insert(h.finish() & 1023);
        }
        // A decent hash fills about 63% of 1024 buckets with 1024 keys.
        assert!(low.len() > 550, "only {} buckets used", low.len());
    }
}
