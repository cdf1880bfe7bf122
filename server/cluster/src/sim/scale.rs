//! Figures for clusters larger than this machine can run, from the simulation: gossip
//! bytes per node per second, directory messages per player join and per node death,
//! zones moved when a node joins or leaves, and the time to detect a dead node and to
//! serve its zones again.

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

use super::world::{SimConfig, SimFailure, World};
use crate::Millis;
use crate::ring::{Ring, RingConfig};

/// One scaling measurement.
#[derive(Debug, Clone, Copy)]
pub struct ScaleConfig {
    /// Drives every choice.
    pub seed: u64,
    /// Nodes in the cluster.
    pub n_nodes: usize,
    /// Zones, all kept active.
    pub n_zones: u32,
    /// Players joining after the warm-up (for messages per join).
    pub n_joins: usize,
}

/// What a scaling run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleReport {
    /// Nodes.
    pub n_nodes: usize,
    /// Zones.
    pub n_zones: u32,
    /// Gossip bytes each node sent per second in steady state.
    pub gossip_bytes_per_node_s: f64,
    /// Directory messages (lookups, answers, registrations) per player join.
    pub messages_per_join: f64,
    /// Directory messages from a node's death until its zones serve again.
    pub messages_per_death: u64,
    /// Share of zones whose directory owner moves when a node joins.
    pub moved_on_join: f64,
    /// Share of zones whose directory owner moves when a node leaves.
    pub moved_on_leave: f64,
    /// From the kill until the first live node's view drops the dead node.
    pub detect_first_ms: u64,
    /// From the kill until every live node's view dropped it.
    pub detect_all_ms: u64,
    /// From the kill until every zone the dead node held is served by a live node.
    pub failover_ms: u64,
    /// Zones the dead node held.
    pub n_zones_failed_over: usize,
}

/// Warm-up before measuring (all zones active, membership settled).
const WARMUP_MS: u64 = 20_000;
/// Window over which steady-state gossip is measured.
const GOSSIP_WINDOW_MS: u64 = 20_000;
/// Time the joining players get.
const JOIN_WINDOW_MS: u64 = 10_000;
/// Longest failover waited for.
const FAILOVER_LIMIT_MS: u64 = 60_000;
/// Resolution of the failover measurement.
const POLL_MS: u64 = 10;

/// Runs the measurement.
pub fn measure(config: ScaleConfig) -> Result<ScaleReport, SimFailure> {
    let join_start = WARMUP_MS + GOSSIP_WINDOW_MS;
    let sim = SimConfig {
        players_start_ms: (join_start, join_start + JOIN_WINDOW_MS / 2),
        settle_ms: 0,
        bootstrap: true,
        warm_zones: true,
        check_every_step: false,
        max_steps: u64::MAX,
        // As many as the real stores list per read (`MAX_ZONES_PER_HOLDER_READ`).
        store_zones_per_read: 10_000,
        ..SimConfig::calm(config.seed, config.n_nodes, config.n_zones, config.n_joins)
    };
    let mut world = World::new(sim);
    world.run_until(Millis(WARMUP_MS))?;
    let gossip_before = world.report().n_gossip_bytes;
    world.run_until(Millis(join_start))?;
    let gossip = world.report().n_gossip_bytes - gossip_before;
    let gossip_bytes_per_node_s =
        gossip as f64 / config.n_nodes as f64 / (GOSSIP_WINDOW_MS as f64 / 1e3);

    let messages_before_joins = world.report().n_node_messages;
    world.run_until(Millis(join_start + JOIN_WINDOW_MS))?;
    let join_messages = world.report().n_node_messages - messages_before_joins;
    let messages_per_join = join_messages as f64 / config.n_joins.max(1) as f64;

    let death = fail_one_node(&mut world)?;
    let (moved_on_join, moved_on_leave) = ring_moves(config.n_nodes, config.n_zones);
    Ok(ScaleReport {
        n_nodes: config.n_nodes,
        n_zones: config.n_zones,
        gossip_bytes_per_node_s,
        messages_per_join,
        moved_on_join,
        moved_on_leave,
        ..death
    })
}

/// Kills the node in slot 1 and measures detection and failover.
fn fail_one_node(world: &mut World) -> Result<ScaleReport, SimFailure> {
    let victim_slot = 1;
    let victim = world.kill(victim_slot);
    let zones = world.zones_held_by(victim);
    let killed_at = world.now();
    let messages_before = world.report().n_node_messages;
    let (mut detect_first, mut detect_all, mut failover) = (None, None, None);
    while failover.is_none() || detect_all.is_none() {
        let now = world.now();
        if now.since(killed_at).as_millis() > u128::from(FAILOVER_LIMIT_MS) {
            break;
        }
        world.run_until(now + POLL_MS)?;
        let elapsed = world.now().since(killed_at).as_millis() as u64;
        let (n_views_without, n_live) = world.views_without(victim);
        if detect_first.is_none() && n_views_without > 0 {
            detect_first = Some(elapsed);
        }
        if detect_all.is_none() && n_views_without == n_live {
            detect_all = Some(elapsed);
        }
        if failover.is_none() && world.all_served(&zones) {
            failover = Some(elapsed);
        }
    }
    let never = u64::MAX;
    Ok(ScaleReport {
        n_nodes: 0,
        n_zones: 0,
        gossip_bytes_per_node_s: 0.0,
        messages_per_join: 0.0,
        messages_per_death: world.report().n_node_messages - messages_before,
        moved_on_join: 0.0,
        moved_on_leave: 0.0,
        detect_first_ms: detect_first.unwrap_or(never),
        detect_all_ms: detect_all.unwrap_or(never),
        failover_ms: failover.unwrap_or(never),
        n_zones_failed_over: zones.len(),
    })
}

/// Shares of `n_zones` zones whose owner changes when one node joins `n_nodes`, and
/// when one of them leaves.
pub fn ring_moves(n_nodes: usize, n_zones: u32) -> (f64, f64) {
    let nodes: Vec<NodeRef> = (1..=n_nodes as u64 + 1)
        .map(|i| NodeRef::new(i.wrapping_mul(0x9e37_79b9), 1))
        .collect();
    let config = RingConfig::default();
    let base = Ring::new(nodes[..n_nodes].iter().copied(), config);
    let joined = Ring::new(nodes.iter().copied(), config);
    let left = Ring::new(nodes[1..n_nodes].iter().copied(), config);
    let share = |other: &Ring| {
        let moved = (0..n_zones)
            .filter(|z| base.owner(ZoneId(*z)) != other.owner(ZoneId(*z)))
            .count();
        moved as f64 / f64::from(n_zones)
    };
    (share(&joined), share(&left))
}
