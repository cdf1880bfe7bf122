//! Where a zone's first activation goes. Chosen by the zone's directory owner from the
//! live members of its view.
//!
//! Co-location rule: with [`PlacementPolicy::Hash`] zones are hashed by *block*, a
//! `block × block` square of grid zones, so zones in one block share a node and only
//! block edges cross nodes (with 4×4 blocks, 12 of a block's 16 zones have all their
//! neighbours inside or on one other node). The other policies place zone by zone:
//! bordering zones land together only when the same node is chosen.

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

use crate::ring::{Ring, RingConfig};

/// How the directory owner chooses a node for a zone no one holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlacementPolicy {
    /// The node whose player asked, so the first player needs no redirect (default).
    #[default]
    PreferRequester,
    /// The node with the least published load (ties: lowest id).
    LeastLoaded,
    /// A hash of the zone's block over the live members: stable and spread evenly.
    Hash {
        /// Side of a block in grid zones (1 = zone by zone).
        block: u16,
    },
}

/// A node that may receive a zone, with the load it published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The node.
    pub node: NodeRef,
    /// Its load in placement units ([`crate::load::NodeLoad::units`] as it last
    /// published them, plus zones placed there since); lower is better.
    pub load: u64,
}

/// Picks the node for `zone`; `None` only when there are no candidates.
pub fn place(
    policy: PlacementPolicy,
    zone: ZoneId,
    requester: Option<NodeRef>,
    candidates: &[Candidate],
) -> Option<NodeRef> {
    match policy {
        PlacementPolicy::PreferRequester => requester
            .filter(|r| candidates.iter().any(|c| c.node == *r))
            .or_else(|| least_loaded(candidates)),
        PlacementPolicy::LeastLoaded => least_loaded(candidates),
        PlacementPolicy::Hash { block } => {
            let ring = Ring::new(candidates.iter().map(|c| c.node), RingConfig::default());
            ring.owner(block_of(zone, block.max(1)))
        }
    }
}

fn least_loaded(candidates: &[Candidate]) -> Option<NodeRef> {
    candidates
        .iter()
        .min_by_key(|c| (c.load, c.node.id))
        .map(|c| c.node)
}

/// The zone standing for `zone`'s block (its top-left zone).
fn block_of(zone: ZoneId, block: u16) -> ZoneId {
    ZoneId::grid(zone.x() / block * block, zone.y() / block * block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates() -> Vec<Candidate> {
        (1..=4)
            .map(|i| Candidate {
                node: NodeRef::new(i, 1),
                load: 10 - i,
            })
            .collect()
    }

    #[test]
    fn prefer_requester_takes_a_live_requester() {
        let c = candidates();
        let r = Some(NodeRef::new(2, 1));
        assert_eq!(place(PlacementPolicy::PreferRequester, ZoneId(1), r, &c), r);
        let gone = Some(NodeRef::new(9, 1));
        assert_eq!(
            place(PlacementPolicy::PreferRequester, ZoneId(1), gone, &c),
            Some(NodeRef::new(4, 1)),
            "an unknown requester falls back to least loaded"
        );
    }

    #[test]
    fn hash_keeps_a_block_together() {
        let c = candidates();
        let policy = PlacementPolicy::Hash { block: 4 };
        let home = place(policy, ZoneId::grid(4, 8), None, &c);
        for (x, y) in [(5, 8), (7, 11), (4, 10)] {
            assert_eq!(place(policy, ZoneId::grid(x, y), None, &c), home);
        }
    }

    #[test]
    fn no_candidates_no_placement() {
        assert_eq!(
            place(PlacementPolicy::LeastLoaded, ZoneId(0), None, &[]),
            None
        );
    }
}
