//! The rebalancer's driver: every [`REBALANCE_INTERVAL`] each node feeds the sans-IO
//! core ([`zonemesh_cluster::rebalance`]) the costs every live member published (the
//! tick time of its costliest zones per second) and starts the moves it returns whose
//! source is this node, as live handoffs whose reason carries the figures.
//!
//! There is no leader: every node decides from the same published figures, and only
//! the node a move is from carries it out (moves off another node are left to it).
//! The core picks moves off the hottest node only, so in a steady state one node
//! acts; two nodes that both believe they are the hottest (their views a report
//! apart) each move one zone, still strict improvements. A zone that arrives here by
//! any handoff, and one whose move from here ended, starts the core's cooldown, so a
//! zone is not moved on again before [`RebalanceConfig::zone_cooldown_ms`], and the
//! node decides nothing for [`SETTLE_AFTER_MOVE`] after a move ended (until the load
//! reports show where the zone went). A draining node does not rebalance and is not a
//! target (it publishes `draining`).

use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use zonemesh_cluster::Millis;
use zonemesh_cluster::rebalance::{NodeCost, RebalanceConfig, Rebalancer, ZoneCost};
use zonemesh_shared::ids::ZoneId;

use super::runtime::ClusterRuntime;

/// How often a node looks at the cluster's costs.
pub const REBALANCE_INTERVAL: Duration = Duration::from_secs(2);
/// How long after a move ended (from here or to here) the node waits before the next
/// decision: a zone's cost on its new node shows only in the second load report after
/// it arrived (the first one has no earlier sample to subtract), and deciding from
/// the old figures would move more than needed.
pub const SETTLE_AFTER_MOVE: Duration = Duration::from_millis(2_500);

/// The rebalancer of one node, when enabled.
#[derive(Debug)]
pub struct RebalanceDriver {
    core: Mutex<Option<Rebalancer>>,
    epoch: Instant,
    /// When a move from or to this node last ended.
    last_moved: Mutex<Option<Instant>>,
}

impl Default for RebalanceDriver {
    fn default() -> Self {
        Self {
            core: Mutex::new(None),
            epoch: Instant::now(),
            last_moved: Mutex::new(None),
        }
    }
}

impl RebalanceDriver {
    fn now(&self) -> Millis {
        super::handoff::millis_since(self.epoch)
    }

    fn with_core<R>(&self, f: impl FnOnce(&mut Rebalancer, Millis) -> R) -> Option<R> {
        let now = self.now();
        self.core
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .map(|core| f(core, now))
    }
}

impl ClusterRuntime {
    /// Turns the rebalancer on with `config` (call before the cluster is attached;
    /// `None` leaves it off: zones move only by hand or by a drain).
    pub fn configure_rebalancer(&self, config: Option<RebalanceConfig>) {
        *self
            .rebalancer()
            .core
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = config.map(Rebalancer::new);
    }

    /// Starts the rebalancer's task if it is on.
    pub(super) fn start_rebalancer(&self) {
        let on = self.rebalancer().with_core(|_, _| ()).is_some();
        if let (true, Some(handle)) = (on, self.tokio()) {
            handle.spawn(run_rebalancer(self.weak()));
        }
    }

    /// A move of `zone` away from here ended, or `zone` arrived here by a handoff:
    /// its cooldown starts.
    pub(super) fn zone_moved(&self, zone: ZoneId) {
        let driver = self.rebalancer();
        driver.with_core(|core, now| core.move_finished(now, zone));
        *driver.last_moved.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Whether a move ended too recently for the load reports to show it.
    fn settling(&self) -> bool {
        let last = *self
            .rebalancer()
            .last_moved
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        last.is_some_and(|at| at.elapsed() < SETTLE_AFTER_MOVE)
    }

    /// One decision: starts the moves off this node the core asks for.
    fn rebalance_step(&self) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        if self.is_draining() || self.settling() || self.handoffs_in_flight() > 0 {
            return;
        }
        let me = cluster.me();
        let nodes: Vec<NodeCost> = self
            .member_loads()
            .into_iter()
            .filter(|(_, load)| !load.draining)
            .map(|(node, load)| NodeCost {
                node,
                zones: load
                    .zone_costs
                    .iter()
                    .map(|(zone, cost)| ZoneCost {
                        zone: *zone,
                        us_per_s: u64::from(*cost),
                    })
                    .collect(),
            })
            .collect();
        let Some(moves) = self
            .rebalancer()
            .with_core(|core, now| core.plan(now, &nodes))
        else {
            return;
        };
        // Only a plan's first move is carried out (by the node it is from). Each node
        // keeps its own view of whether the cluster is balancing; acting on a later
        // move of a plan whose first move another node does not make can keep zones
        // moving under a static load and exceed the cap on moves at once (the seeded
        // simulation in `zonemesh_cluster`'s `rebalance_sim` finds both).
        let mut moves = moves.into_iter();
        let first = moves.next();
        for m in moves {
            self.rebalancer()
                .with_core(|core, now| core.move_finished(now, m.zone));
        }
        let Some(m) = first else {
            return;
        };
        if m.from != me {
            // The node it is from decides the same and moves it.
            self.rebalancer()
                .with_core(|core, now| core.move_finished(now, m.zone));
            return;
        }
        let reason = format!("rebalance: {}", m.reason);
        tracing::info!(zone = m.zone.0, to = %m.to, %reason, "rebalancing");
        if let Err(e) = self.move_zone(m.zone, &m.to.to_string(), &reason) {
            tracing::debug!(zone = m.zone.0, "rebalancing move not started: {e}");
            self.rebalancer()
                .with_core(|core, now| core.move_finished(now, m.zone));
        }
    }
}

async fn run_rebalancer(runtime: Weak<ClusterRuntime>) {
    let mut every = tokio::time::interval(REBALANCE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(this) = runtime.upgrade() else {
            return;
        };
        this.rebalance_step();
    }
}
