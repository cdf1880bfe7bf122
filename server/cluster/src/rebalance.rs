//! The rebalancer's decisions, without IO: given what every node costs to run (the
//! tick time of each of its zones, per second of wall time) it picks which zones to
//! move from hot nodes to cool ones. The driver feeds it the published loads, carries
//! out the moves it returns (live handoff) and reports when each one finished. It asks
//! for no plan until the loads show every finished move (the zone on its new node):
//! a plan made from loads older than a move piles zones onto the node that just
//! received one, and they then move back and forth every cooldown (the seeded
//! simulation in `rebalance_sim.rs` finds it without that pause).
//!
//! Rules, so zones never flap:
//! - **Hysteresis.** Balancing starts when the hottest node costs more than
//!   [`RebalanceConfig::start_ratio`] times the cluster's mean and stops once it is
//!   within [`RebalanceConfig::stop_ratio`] (lower) of it; nodes cheaper than
//!   [`RebalanceConfig::floor_us_per_s`] are never hot (an idle cluster is balanced).
//! - **Only strict improvements.** A zone moves only if, after the move, the target
//!   costs less than the source did before it, so a move can never make the pair
//!   worse than it was, and the same zone moving back would not be an improvement.
//! - **Bounds.** At most [`RebalanceConfig::max_concurrent_moves`] moves at once, one
//!   move at a time off a node, and a zone moves again only after
//!   [`RebalanceConfig::zone_cooldown_ms`].
//!
//! Every move carries a reason naming the figures it was decided from, for the log.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

use crate::Millis;

/// How eagerly the rebalancer moves zones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RebalanceConfig {
    /// Balancing starts when the hottest node costs more than this times the mean.
    pub start_ratio: f64,
    /// Balancing stops when the hottest node costs at most this times the mean.
    pub stop_ratio: f64,
    /// Nodes costing less than this (tick microseconds per second) are never hot.
    pub floor_us_per_s: u64,
    /// Moves in progress at once, cluster-wide.
    pub max_concurrent_moves: usize,
    /// Least time between two moves of one zone.
    pub zone_cooldown_ms: u64,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        Self {
            start_ratio: 1.25,
            stop_ratio: 1.10,
            // 50 ms of ticking per second: 5 % of a core.
            floor_us_per_s: 50_000,
            max_concurrent_moves: 2,
            zone_cooldown_ms: 60_000,
        }
    }
}

/// One zone's cost on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneCost {
    /// The zone.
    pub zone: ZoneId,
    /// Microseconds of tick time per second of wall time.
    pub us_per_s: u64,
}

/// One node as the rebalancer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCost {
    /// The node.
    pub node: NodeRef,
    /// Its zones and what each costs.
    pub zones: Vec<ZoneCost>,
}

impl NodeCost {
    /// The node's total cost.
    pub fn total(&self) -> u64 {
        self.zones.iter().map(|z| z.us_per_s).sum()
    }
}

/// A move the rebalancer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The zone to move.
    pub zone: ZoneId,
    /// Its node now.
    pub from: NodeRef,
    /// The node to move it to.
    pub to: NodeRef,
    /// Why, with the figures.
    pub reason: MoveReason,
}

/// The figures a move was decided from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveReason {
    /// The source node's cost (µs/s).
    pub from_cost: u64,
    /// The target node's cost (µs/s).
    pub to_cost: u64,
    /// The cluster's mean cost per node (µs/s).
    pub mean_cost: u64,
    /// The zone's cost (µs/s).
    pub zone_cost: u64,
}

impl fmt::Display for MoveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "source costs {} µs/s (mean {}), target {}; the zone {} µs/s",
            self.from_cost, self.mean_cost, self.to_cost, self.zone_cost
        )
    }
}

/// The rebalancer's memory between decisions.
#[derive(Debug)]
pub struct Rebalancer {
    config: RebalanceConfig,
    /// Whether the cluster is being balanced (between the start and the stop ratio).
    balancing: bool,
    /// Moves in progress: zone → source node.
    in_flight: BTreeMap<ZoneId, NodeRef>,
    /// When each zone last moved (or a move of it ended).
    last_moved: BTreeMap<ZoneId, Millis>,
}

impl Rebalancer {
    /// A rebalancer with `config`, balancing nothing yet.
    pub fn new(config: RebalanceConfig) -> Self {
        Self {
            config,
            balancing: false,
            in_flight: BTreeMap::new(),
            last_moved: BTreeMap::new(),
        }
    }

    /// Moves in progress.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the last decision found the cluster out of balance.
    pub fn is_balancing(&self) -> bool {
        self.balancing
    }

    /// The move of `zone` ended (done, or given up): its slot is free and its
    /// cooldown starts now.
    pub fn move_finished(&mut self, now: Millis, zone: ZoneId) {
        self.in_flight.remove(&zone);
        self.last_moved.insert(zone, now);
    }

    /// Decides the moves to start now from every live node's costs. Moves returned are
    /// counted in progress until [`Self::move_finished`].
    pub fn plan(&mut self, now: Millis, nodes: &[NodeCost]) -> Vec<Move> {
        self.forget_gone(nodes);
        let Some(mean) = mean_cost(nodes) else {
            self.balancing = false;
            return Vec::new();
        };
        let mut totals: BTreeMap<NodeRef, u64> =
            nodes.iter().map(|n| (n.node, n.total())).collect();
        self.balancing = self.out_of_balance(&totals, mean);
        let mut moves = Vec::new();
        while self.balancing && self.in_flight.len() < self.config.max_concurrent_moves {
            let Some(m) = self.next_move(now, nodes, &totals, mean) else {
                break;
            };
            *totals.entry(m.from).or_default() -= m.reason.zone_cost;
            *totals.entry(m.to).or_default() += m.reason.zone_cost;
            self.in_flight.insert(m.zone, m.from);
            moves.push(m);
        }
        moves
    }

    fn out_of_balance(&self, totals: &BTreeMap<NodeRef, u64>, mean: u64) -> bool {
        let hottest = totals.values().copied().max().unwrap_or(0);
        if hottest < self.config.floor_us_per_s {
            return false;
        }
        let ratio = if self.balancing {
            self.config.stop_ratio
        } else {
            self.config.start_ratio
        };
        hottest as f64 > ratio * mean as f64
    }

    /// The best move off the hottest node that has none in progress, if any helps.
    fn next_move(
        &self,
        now: Millis,
        nodes: &[NodeCost],
        totals: &BTreeMap<NodeRef, u64>,
        mean: u64,
    ) -> Option<Move> {
        let busy: BTreeSet<NodeRef> = self.in_flight.values().copied().collect();
        let moving: BTreeSet<ZoneId> = self.in_flight.keys().copied().collect();
        let (from, from_cost) = totals
            .iter()
            .filter(|(node, _)| !busy.contains(node))
            .max_by_key(|(node, cost)| (**cost, std::cmp::Reverse(node.id)))
            .map(|(n, c)| (*n, *c))?;
        let (to, to_cost) = totals
            .iter()
            .filter(|(node, _)| **node != from)
            .min_by_key(|(node, cost)| (**cost, node.id))
            .map(|(n, c)| (*n, *c))?;
        let zones = &nodes.iter().find(|n| n.node == from)?.zones;
        let zone = zones
            .iter()
            .filter(|z| !moving.contains(&z.zone) && !self.cooling_down(now, z.zone))
            // Strictly better: the target after the move costs less than the source
            // did before it.
            .filter(|z| z.us_per_s > 0 && to_cost + z.us_per_s < from_cost)
            // The zone that leaves the pair closest to even.
            .min_by_key(|z| {
                let after_from = from_cost - z.us_per_s;
                let after_to = to_cost + z.us_per_s;
                (after_from.max(after_to), z.zone.0)
            })?;
        Some(Move {
            zone: zone.zone,
            from,
            to,
            reason: MoveReason {
                from_cost,
                to_cost,
                mean_cost: mean,
                zone_cost: zone.us_per_s,
            },
        })
    }

    fn cooling_down(&self, now: Millis, zone: ZoneId) -> bool {
        self.last_moved
            .get(&zone)
            .is_some_and(|at| now.since(*at).as_millis() < u128::from(self.config.zone_cooldown_ms))
    }

    /// Drops moves whose source left the cluster (the zone comes back through
    /// failover instead) and cooldowns of zones no node reports any more.
    fn forget_gone(&mut self, nodes: &[NodeCost]) {
        let live: BTreeSet<NodeRef> = nodes.iter().map(|n| n.node).collect();
        self.in_flight.retain(|_, from| live.contains(from));
        if self.last_moved.len() > 4 * nodes.iter().map(|n| n.zones.len()).sum::<usize>() + 64 {
            let known: BTreeSet<ZoneId> = nodes
                .iter()
                .flat_map(|n| n.zones.iter().map(|z| z.zone))
                .collect();
            self.last_moved.retain(|zone, _| known.contains(zone));
        }
    }
}

fn mean_cost(nodes: &[NodeCost]) -> Option<u64> {
    let n = u64::try_from(nodes.len()).ok().filter(|n| *n > 1)?;
    Some(nodes.iter().map(NodeCost::total).sum::<u64>() / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, costs: &[(u32, u64)]) -> NodeCost {
        NodeCost {
            node: NodeRef::new(id, 1),
            zones: costs
                .iter()
                .map(|(z, c)| ZoneCost {
                    zone: ZoneId(*z),
                    us_per_s: *c,
                })
                .collect(),
        }
    }

    /// A small seeded generator (the crate's cores never use a global RNG).
    struct XorShift(u64);

    impl XorShift {
        fn next_u32(&mut self) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 32) as u32
        }
    }

    /// Carries `m` out on the model cluster at once.
    fn apply(nodes: &mut [NodeCost], m: &Move) {
        let from = nodes.iter_mut().find(|n| n.node == m.from).expect("source");
        let i = from
            .zones
            .iter()
            .position(|z| z.zone == m.zone)
            .expect("zone");
        let zone = from.zones.remove(i);
        nodes
            .iter_mut()
            .find(|n| n.node == m.to)
            .expect("target")
            .zones
            .push(zone);
    }

    fn ratio(nodes: &[NodeCost]) -> f64 {
        let max = nodes.iter().map(NodeCost::total).max().unwrap_or(0) as f64;
        let mean = mean_cost(nodes).unwrap_or(1).max(1) as f64;
        max / mean
    }

    #[test]
    fn a_balanced_or_idle_cluster_moves_nothing() {
        let mut r = Rebalancer::new(RebalanceConfig::default());
        let even = [
            node(1, &[(0, 300_000)]),
            node(2, &[(1, 290_000)]),
            node(3, &[(2, 310_000)]),
        ];
        assert!(r.plan(Millis(0), &even).is_empty());
        let idle = [node(1, &[(0, 40_000), (1, 5_000)]), node(2, &[])];
        assert!(r.plan(Millis(0), &idle).is_empty(), "below the floor");
    }

    #[test]
    fn a_skewed_cluster_converges_and_then_stops_moving() {
        // Most of the load in a few zones of node 1.
        let mut nodes = vec![
            node(
                1,
                &[
                    (0, 400_000),
                    (1, 300_000),
                    (2, 200_000),
                    (3, 50_000),
                    (4, 50_000),
                ],
            ),
            node(2, &[(5, 60_000), (6, 40_000)]),
            node(3, &[(7, 30_000)]),
        ];
        let mut r = Rebalancer::new(RebalanceConfig::default());
        let mut moved: BTreeMap<ZoneId, u32> = BTreeMap::new();
        let mut quiet_rounds = 0;
        for round in 0..50u64 {
            let now = Millis(round * 1_000);
            let moves = r.plan(now, &nodes);
            for m in &moves {
                assert!(
                    m.reason.to_cost + m.reason.zone_cost < m.reason.from_cost,
                    "{m:?}"
                );
                apply(&mut nodes, m);
                *moved.entry(m.zone).or_default() += 1;
                r.move_finished(now, m.zone);
            }
            quiet_rounds = if moves.is_empty() {
                quiet_rounds + 1
            } else {
                0
            };
        }
        assert!(quiet_rounds >= 40, "it stopped moving");
        assert!(ratio(&nodes) <= 1.25, "balanced: {:.2}", ratio(&nodes));
        assert!(
            moved.values().all(|n| *n == 1),
            "no zone moved twice: {moved:?}"
        );
    }

    #[test]
    fn random_skews_settle_without_flapping() {
        for seed in 0..300u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let n_nodes = 2 + rng.next_u32() % 6;
            let mut nodes: Vec<NodeCost> =
                (0..n_nodes).map(|i| node(u64::from(i) + 1, &[])).collect();
            for z in 0..(4 + rng.next_u32() % 40) {
                // Heavy-tailed: a few zones cost much more than the rest.
                let cost = u64::from(rng.next_u32() % 20_000) * u64::from(1 + z % 7).pow(2);
                let on = (rng.next_u32() % n_nodes.min(2)) as usize;
                nodes[on].zones.push(ZoneCost {
                    zone: ZoneId(z),
                    us_per_s: cost,
                });
            }
            let mut r = Rebalancer::new(RebalanceConfig::default());
            let mut moved: BTreeMap<ZoneId, u32> = BTreeMap::new();
            let mut last_move = 0;
            for round in 0..200u64 {
                let now = Millis(round * 1_000);
                for m in r.plan(now, &nodes) {
                    apply(&mut nodes, &m);
                    *moved.entry(m.zone).or_default() += 1;
                    r.move_finished(now, m.zone);
                    last_move = round;
                }
            }
            assert!(
                last_move < 150,
                "seed {seed}: still moving at round {last_move}"
            );
            let flaps = moved.values().filter(|n| **n > 2).count();
            assert_eq!(
                flaps, 0,
                "seed {seed}: zones moved more than twice: {moved:?}"
            );
        }
    }

    #[test]
    fn moves_are_capped_one_per_source_and_zones_cool_down() {
        let config = RebalanceConfig {
            max_concurrent_moves: 2,
            zone_cooldown_ms: 10_000,
            ..RebalanceConfig::default()
        };
        let mut r = Rebalancer::new(config);
        let nodes = [
            node(1, &[(0, 300_000), (1, 300_000), (2, 300_000)]),
            node(2, &[(3, 300_000), (4, 300_000), (5, 300_000)]),
            node(3, &[]),
            node(4, &[]),
        ];
        let first = r.plan(Millis(0), &nodes);
        assert_eq!(first.len(), 2, "{first:?}");
        assert_ne!(
            first[0].from, first[1].from,
            "one move per source at a time"
        );
        assert!(r.plan(Millis(1), &nodes).is_empty(), "the cap holds");
        // The first move ends, but the moved zone is still reported on its old node
        // (the load report lags): it must not be picked again while cooling down.
        r.move_finished(Millis(2), first[0].zone);
        let next = r.plan(Millis(3), &nodes);
        assert!(next.iter().all(|m| m.zone != first[0].zone), "{next:?}");
    }

    #[test]
    fn hysteresis_keeps_balancing_until_the_stop_ratio() {
        let mut r = Rebalancer::new(RebalanceConfig::default());
        // 1.30 × mean: starts.
        let hot = [
            node(1, &[(0, 100_000), (1, 100_000), (2, 60_000)]),
            node(2, &[(3, 140_000)]),
        ];
        assert!(!r.plan(Millis(0), &hot).is_empty());
        assert!(r.is_balancing());
        r.move_finished(Millis(1), ZoneId(2));
        // 1.15 × mean: below the start ratio but above the stop ratio: still balancing.
        let warm = [
            node(1, &[(0, 115_000), (1, 115_000)]),
            node(2, &[(3, 170_000)]),
        ];
        r.plan(Millis(2), &warm);
        assert!(r.is_balancing());
        // A fresh rebalancer would not start at 1.15.
        let mut fresh = Rebalancer::new(RebalanceConfig::default());
        assert!(fresh.plan(Millis(2), &warm).is_empty());
        assert!(!fresh.is_balancing());
    }

    #[test]
    fn a_move_whose_source_left_frees_its_slot() {
        let config = RebalanceConfig {
            max_concurrent_moves: 1,
            ..RebalanceConfig::default()
        };
        let mut r = Rebalancer::new(config);
        let nodes = [
            node(1, &[(0, 400_000), (1, 400_000)]),
            node(2, &[]),
            node(3, &[]),
        ];
        assert_eq!(r.plan(Millis(0), &nodes).len(), 1);
        assert_eq!(r.in_flight(), 1);
        let without_1 = [node(2, &[(5, 400_000), (6, 400_000)]), node(3, &[])];
        let moves = r.plan(Millis(1), &without_1);
        assert_eq!(r.in_flight(), moves.len());
        assert_eq!(moves.len(), 1, "the slot was freed: {moves:?}");
    }
}
