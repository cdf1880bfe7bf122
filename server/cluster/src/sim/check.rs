//! The invariants checked after every step of the simulation.

use std::collections::BTreeMap;
use std::fmt;

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

use super::store::SimStore;
use super::world::Entity;
use crate::Millis;
use crate::node::NodeCore;

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Two runs accepted inputs for one zone at the same moment.
    TwoOwners {
        /// The zone.
        zone: ZoneId,
        /// The runs.
        nodes: Vec<NodeRef>,
    },
    /// A run accepted inputs for a zone the store does not give it at that epoch.
    NotTheHolder {
        /// The zone.
        zone: ZoneId,
        /// The run.
        node: NodeRef,
        /// The epoch it believes it holds.
        epoch: u64,
        /// What the store says.
        store_epoch: u64,
        /// Who the store says holds it.
        store_holder: Option<NodeRef>,
    },
    /// One player had entities on two runs that both accept inputs for them.
    TwoEntities {
        /// The player (its index in the run).
        player: usize,
        /// The runs.
        nodes: Vec<NodeRef>,
        /// The entities' zones.
        zones: Vec<ZoneId>,
    },
    /// The run took more steps than allowed (a livelock, or a configuration far too
    /// large for the step budget).
    StepLimit,
    /// After the faults stopped, some players were still not served.
    Unserved {
        /// How many players.
        n_players: usize,
        /// A few of their zones.
        zones: Vec<ZoneId>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::TwoOwners { zone, nodes } => {
                write!(f, "{zone} accepted inputs on {nodes:?} at once")
            }
            Violation::NotTheHolder {
                zone,
                node,
                epoch,
                store_epoch,
                store_holder,
            } => write!(
                f,
                "{node} accepted inputs for {zone} at epoch {epoch}, store has epoch {store_epoch} held by {store_holder:?}"
            ),
            Violation::TwoEntities {
                player,
                nodes,
                zones,
            } => write!(
                f,
                "player {player} is live on {nodes:?} at once (zones {zones:?})"
            ),
            Violation::StepLimit => write!(f, "step limit reached"),
            Violation::Unserved { n_players, zones } => {
                write!(
                    f,
                    "{n_players} players unserved after faults stopped (zones {zones:?})"
                )
            }
        }
    }
}

/// Safety: every node accepting inputs for a zone is the store's holder at its epoch,
/// and no zone has two accepting nodes.
pub(super) fn check_owners<'a>(
    now: Millis,
    nodes: impl Iterator<Item = &'a NodeCore>,
    store: &SimStore,
) -> Result<(), Violation> {
    let mut accepting: BTreeMap<ZoneId, Vec<NodeRef>> = BTreeMap::new();
    for core in nodes {
        for (zone, epoch) in core.active_zones() {
            if !core.accepts_inputs(now, zone) {
                continue;
            }
            let row = store.zone(zone);
            if row.epoch != epoch || row.holder != Some(core.me()) {
                return Err(Violation::NotTheHolder {
                    zone,
                    node: core.me(),
                    epoch,
                    store_epoch: row.epoch,
                    store_holder: row.holder,
                });
            }
            accepting.entry(zone).or_default().push(core.me());
        }
    }
    match accepting.into_iter().find(|(_, nodes)| nodes.len() > 1) {
        Some((zone, nodes)) => Err(Violation::TwoOwners { zone, nodes }),
        None => Ok(()),
    }
}

/// Safety: no player has entities on two runs that accept inputs for their zones (an
/// entity in a zone its run no longer serves is inert: its zone sends it away).
pub(super) fn check_single_entity<'a>(
    now: Millis,
    runs: impl Iterator<Item = (&'a NodeCore, &'a BTreeMap<usize, Entity>)>,
) -> Result<(), Violation> {
    let mut live: BTreeMap<usize, Vec<(NodeRef, ZoneId)>> = BTreeMap::new();
    for (core, entities) in runs {
        for (player, entity) in entities {
            if core.accepts_inputs(now, entity.zone) {
                live.entry(*player)
                    .or_default()
                    .push((core.me(), entity.zone));
            }
        }
    }
    match live.into_iter().find(|(_, at)| at.len() > 1) {
        Some((player, at)) => Err(Violation::TwoEntities {
            player,
            nodes: at.iter().map(|(n, _)| *n).collect(),
            zones: at.iter().map(|(_, z)| *z).collect(),
        }),
        None => Ok(()),
    }
}
