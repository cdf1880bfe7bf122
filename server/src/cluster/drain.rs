//! Draining a node: moving every zone it holds to the other nodes with live handoffs,
//! a few at a time, so the node can be stopped (for a deploy) without a player
//! noticing. `zonemesh-ctl drain` starts it, and so does SIGTERM on `zonemesh serve`
//! (within its grace period, before the node stops).
//!
//! While draining, the node publishes `draining` with its load, so no node places a
//! new zone on it; zones it still holds keep serving (and admitting) players until
//! their move. Each zone goes to the live member with the least published load,
//! counting what this drain already sent there. A move that fails leaves the zone
//! here; it is tried again after [`DRAIN_RETRY`]. The node is *drained* once it
//! holds no zone and no move is under way; `/status` says so.

use std::collections::HashMap;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use zonemesh_cluster::handoff::StartError;
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

use super::handoff::MoveError;
use super::runtime::ClusterRuntime;

/// Zones moved away at once while draining.
pub const DRAIN_MOVES_AT_ONCE: usize = 2;
/// How long a zone whose move failed waits before it is tried again.
pub const DRAIN_RETRY: Duration = Duration::from_secs(1);
/// How often the drain looks at what is left.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// A node's drain, once started.
#[derive(Debug, Default)]
pub struct DrainState {
    draining: AtomicBool,
    drained: AtomicBool,
}

impl ClusterRuntime {
    /// Starts moving every zone away from this node (once; asking again changes
    /// nothing). Fails outside a cluster.
    pub fn drain(&self) -> Result<(), MoveError> {
        if self.cluster().is_none() {
            return Err(MoveError::NotClustered);
        }
        if self.drain_state().draining.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        tracing::info!("draining: moving every zone to other nodes");
        if let Some(handle) = self.tokio() {
            handle.spawn(run_drain(self.weak()));
        }
        Ok(())
    }

    /// Whether a drain was started.
    pub fn is_draining(&self) -> bool {
        self.drain_state().draining.load(Ordering::Acquire)
    }

    /// Whether the drain is over: no zone is held here and no move is under way.
    pub fn is_drained(&self) -> bool {
        self.drain_state().drained.load(Ordering::Acquire)
    }

    /// Waits until the node is drained, at most `within`; whether it is.
    pub async fn wait_drained(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while !self.is_drained() && Instant::now() < until {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        self.is_drained()
    }

    /// One look at what is left; true once drained.
    fn drain_step(&self, plan: &mut DrainPlan) -> bool {
        let Some(cluster) = self.cluster() else {
            return false;
        };
        let held: Vec<ZoneId> = cluster.active_zones().into_iter().map(|(z, _)| z).collect();
        let in_flight = self.handoffs_in_flight();
        if held.is_empty() && in_flight == 0 {
            return true;
        }
        let mut room = DRAIN_MOVES_AT_ONCE.saturating_sub(in_flight);
        let now = Instant::now();
        for zone in held {
            if room == 0 {
                break;
            }
            if plan.retry_at.get(&zone).is_some_and(|at| now < *at) {
                continue;
            }
            let Some(target) = plan.target(self, cluster.me()) else {
                plan.warn_alone();
                return false;
            };
            match self.move_zone(zone, &target.to_string(), "drain") {
                Ok(_) => {
                    room -= 1;
                    *plan.sent.entry(target).or_default() += 1;
                }
                Err(MoveError::Refused(StartError::ZoneMoving)) => {}
                Err(e) => {
                    tracing::warn!(zone = zone.0, "drain: {e}; trying again shortly");
                    plan.retry_at.insert(zone, now + DRAIN_RETRY);
                }
            }
        }
        false
    }
}

/// What a drain remembers between its looks.
#[derive(Debug, Default)]
struct DrainPlan {
    /// Zones sent to each node by this drain (placement counts them on top of the
    /// node's published load).
    sent: HashMap<NodeRef, u64>,
    /// Zones whose move failed, and when to try again.
    retry_at: HashMap<ZoneId, Instant>,
    warned_alone: bool,
}

impl DrainPlan {
    /// The live member to send the next zone to: the least loaded that is not
    /// draining itself, counting what this drain sent it.
    fn target(&self, runtime: &ClusterRuntime, me: NodeRef) -> Option<NodeRef> {
        runtime
            .member_loads()
            .into_iter()
            .filter(|(node, load)| *node != me && !load.draining)
            .min_by_key(|(node, load)| {
                let sent = self.sent.get(node).copied().unwrap_or(0);
                (load.units() + 4 * sent, node.id)
            })
            .map(|(node, _)| node)
    }

    fn warn_alone(&mut self) {
        if !self.warned_alone {
            self.warned_alone = true;
            tracing::warn!("drain: no other live node takes zones; waiting for one");
        }
    }
}

async fn run_drain(runtime: Weak<ClusterRuntime>) {
    let mut plan = DrainPlan::default();
    loop {
        let Some(this) = runtime.upgrade() else {
            return;
        };
        if this.drain_step(&mut plan) {
            this.drain_state().drained.store(true, Ordering::Release);
            tracing::info!("drained: this node holds no zone and can be stopped");
            return;
        }
        drop(this);
        tokio::time::sleep(DRAIN_POLL).await;
    }
}
