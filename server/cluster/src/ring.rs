//! The consistent-hash ring: a pure function of the membership view that maps each
//! zone to its *directory owner*, the node that keeps the zone's directory entry.
//!
//! Each node contributes [`RingConfig::vnodes`] points, hashed from its [`NodeId`] (not
//! its incarnation, so a restarted node gets its old ranges back). A zone belongs to the
//! first point at or after its own hash, wrapping around. When a node joins or leaves,
//! only the zones in the ranges next to its points change owner: about 1/N of them.

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::{NodeId, NodeRef};

/// How the ring is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Points per node. More points spread zones more evenly across nodes; 30 keeps the
    /// largest node's share within about 25% of the mean for small clusters (the
    /// Orleans directory uses the same number of ranges per node).
    pub vnodes: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self { vnodes: 30 }
    }
}

/// The ring over one set of members. Cheap to rebuild; rebuilt on every view change.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    /// `(point hash, owner)`, sorted by hash.
    points: Vec<(u64, NodeRef)>,
}

impl Ring {
    /// The ring over `members` (at most one entry per node id is expected; the view
    /// guarantees it).
    pub fn new(members: impl IntoIterator<Item = NodeRef>, config: RingConfig) -> Self {
        let mut points: Vec<(u64, NodeRef)> = members
            .into_iter()
            .flat_map(|node| (0..config.vnodes).map(move |i| (point_hash(node.id, i), node)))
            .collect();
        // Ties between two nodes' points are broken by node, so every node computes the
        // same ring from the same members.
        points.sort_unstable_by_key(|&(hash, node)| (hash, node.id));
        Self { points }
    }

    /// The directory owner of `zone`, `None` for an empty ring.
    pub fn owner(&self, zone: ZoneId) -> Option<NodeRef> {
        self.owner_of_hash(zone_hash(zone))
    }

    /// The owner of the range holding `hash`.
    pub fn owner_of_hash(&self, hash: u64) -> Option<NodeRef> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|&(point, _)| point < hash);
        Some(self.points[i % self.points.len()].1)
    }

    /// The first `n` distinct nodes clockwise from `zone`: its owner, then the nodes
    /// that would own it if the ones before them left.
    pub fn successors(&self, zone: ZoneId, n: usize) -> Vec<NodeRef> {
        let mut found: Vec<NodeRef> = Vec::with_capacity(n);
        if self.points.is_empty() {
            return found;
        }
        let start = self
            .points
            .partition_point(|&(point, _)| point < zone_hash(zone));
        for k in 0..self.points.len() {
            let node = self.points[(start + k) % self.points.len()].1;
            if !found.contains(&node) {
                found.push(node);
                if found.len() == n {
                    break;
                }
            }
        }
        found
    }

    /// Whether the ring has no members.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// The position of a zone on the ring.
pub fn zone_hash(zone: ZoneId) -> u64 {
    splitmix64(u64::from(zone.0) ^ 0x5a4f_4e45_4d45_5348)
}

fn point_hash(node: NodeId, i: u32) -> u64 {
    splitmix64(node.0.rotate_left(17) ^ splitmix64(u64::from(i)))
}

/// A fixed, well-mixed 64-bit hash (SplitMix64's finaliser). Fixed so that every node,
/// every build and every platform computes the same ring.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn nodes(n: u64) -> Vec<NodeRef> {
        (1..=n).map(|i| NodeRef::new(i * 7919, 1)).collect()
    }

    fn owners(ring: &Ring, n_zones: u32) -> Vec<NodeRef> {
        (0..n_zones)
            .map(|z| ring.owner(ZoneId(z)).expect("ring has members"))
            .collect()
    }

    #[test]
    fn empty_ring_has_no_owner() {
        assert_eq!(Ring::default().owner(ZoneId(1)), None);
    }

    #[test]
    fn owner_is_independent_of_member_order() {
        let mut members = nodes(5);
        let a = Ring::new(members.clone(), RingConfig::default());
        members.reverse();
        let b = Ring::new(members, RingConfig::default());
        assert_eq!(owners(&a, 2000), owners(&b, 2000));
    }

    #[test]
    fn a_restarted_node_keeps_its_ranges() {
        let before = Ring::new(nodes(4), RingConfig::default());
        let mut restarted = nodes(4);
        restarted[2].incarnation.0 += 1;
        let after = Ring::new(restarted, RingConfig::default());
        let same_id = |a: &[NodeRef], b: &[NodeRef]| a.iter().zip(b).all(|(x, y)| x.id == y.id);
        assert!(same_id(&owners(&before, 2000), &owners(&after, 2000)));
    }

    #[test]
    fn a_join_moves_about_one_nth_and_only_to_the_joiner() {
        let n_zones = 20_000;
        let before = owners(&Ring::new(nodes(9), RingConfig::default()), n_zones);
        let after = owners(&Ring::new(nodes(10), RingConfig::default()), n_zones);
        let joiner = nodes(10)[9];
        let moved: Vec<_> = before.iter().zip(&after).filter(|(a, b)| a != b).collect();
        assert!(
            moved.iter().all(|(_, to)| **to == joiner),
            "zones moved between old members"
        );
        let share = moved.len() as f64 / f64::from(n_zones);
        assert!((0.05..0.16).contains(&share), "moved share {share}");
    }

    #[test]
    fn successors_start_with_the_owner_and_are_distinct() {
        let ring = Ring::new(nodes(5), RingConfig::default());
        for z in 0..500 {
            let next = ring.successors(ZoneId(z), 3);
            assert_eq!(next.len(), 3);
            assert_eq!(Some(next[0]), ring.owner(ZoneId(z)));
            assert!(next[0] != next[1] && next[1] != next[2] && next[0] != next[2]);
        }
        assert_eq!(
            ring.successors(ZoneId(1), 9).len(),
            5,
            "no more than the members"
        );
    }

    #[test]
    fn zones_spread_over_all_members() {
        let n_zones = 30_000;
        let ring = Ring::new(nodes(6), RingConfig::default());
        let mut counts: HashMap<NodeRef, u32> = HashMap::new();
        for owner in owners(&ring, n_zones) {
            *counts.entry(owner).or_default() += 1;
        }
        assert_eq!(counts.len(), 6);
        let mean = f64::from(n_zones) / 6.0;
        for (node, n) in counts {
            let ratio = f64::from(n) / mean;
            assert!(
                (0.6..1.5).contains(&ratio),
                "{node} holds {ratio:.2} of the mean"
            );
        }
    }
}
