//! The invariants checked after every step of the simulation.

use std::collections::BTreeMap;
use std::fmt;

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

use super::store::SimStore;
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
    /// A player's client is connected to a live run that holds the player neither
    /// where the client expects it (in a zone while playing, in a transfer while
    /// crossing) nor was it sent away: the player is lost.
    Lost {
        /// The player (its index in the run).
        player: usize,
        /// The run the client is connected to.
        node: NodeRef,
        /// What the client is doing.
        client: &'static str,
    },
    /// A live run holds a player's session in two places at once (a zone and a
    /// transfer, or two transfers).
    HeldTwice {
        /// The player (its index in the run).
        player: usize,
        /// The run.
        node: NodeRef,
    },
    /// A client holds a durable action as acknowledged that the store has not
    /// committed: a node answered before the store confirmed, and a crash, a cut or a
    /// lost call would lose the action.
    LostAction {
        /// The player (its index in the run).
        player: usize,
        /// The action's id.
        id: u64,
    },
    /// The store created the record of one durable action twice (a repeat was not
    /// recognised as one).
    ActionCommittedTwice {
        /// The player (its index in the run).
        player: usize,
        /// The action's id.
        id: u64,
    },
    /// After the faults stopped, some clients still held durable actions they sent
    /// and never saw acknowledged.
    ActionsPending {
        /// How many actions.
        n_actions: usize,
        /// The first player holding one.
        player: usize,
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
            Violation::Lost {
                player,
                node,
                client,
            } => write!(
                f,
                "player {player} is lost: its client is {client} on {node}, which holds it nowhere"
            ),
            Violation::HeldTwice { player, node } => {
                write!(f, "player {player} is held twice on {node}")
            }
            Violation::LostAction { player, id } => write!(
                f,
                "player {player} holds durable action {id:#x} as acknowledged, but the store has not committed it"
            ),
            Violation::ActionCommittedTwice { player, id } => {
                write!(
                    f,
                    "durable action {id:#x} of player {player} was committed twice"
                )
            }
            Violation::ActionsPending { n_actions, player } => write!(
                f,
                "{n_actions} durable actions unacknowledged after faults stopped (player {player} holds one)"
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

/// An entity of a player in a run's world that could take inputs now: its run
/// accepts inputs for its zone (an entity in a zone its run no longer serves is
/// inert: its zone sends it away). Players waiting for their clients count too.
#[derive(Debug, Clone, Copy)]
pub(super) struct LiveEntity {
    /// The player (its index in the run).
    pub(super) player: usize,
    /// The run.
    pub(super) node: NodeRef,
    /// The zone.
    pub(super) zone: ZoneId,
}

/// Safety: no player has two live entities (on two runs, or twice on one).
pub(super) fn check_single_entity(live: impl Iterator<Item = LiveEntity>) -> Result<(), Violation> {
    let mut by_player: BTreeMap<usize, Vec<(NodeRef, ZoneId)>> = BTreeMap::new();
    for e in live {
        by_player
            .entry(e.player)
            .or_default()
            .push((e.node, e.zone));
    }
    match by_player.into_iter().find(|(_, at)| at.len() > 1) {
        Some((player, at)) => Err(Violation::TwoEntities {
            player,
            nodes: at.iter().map(|(n, _)| *n).collect(),
            zones: at.iter().map(|(_, z)| *z).collect(),
        }),
        None => Ok(()),
    }
}

/// What a live run holds of the session a player's client is connected to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Attachment {
    /// The player (its index in the run).
    pub(super) player: usize,
    /// The run the client is connected to.
    pub(super) node: NodeRef,
    /// Whether the client waits for a transfer (else it plays in a zone).
    pub(super) crossing: bool,
    /// Entities of the session in the run's zones (0 or 1).
    pub(super) n_in_zone: usize,
    /// Transfers of the session the run drives.
    pub(super) n_in_transfer: usize,
}

/// The player is never lost while its node lives: a client connected to a live run
/// finds its player there in a zone (playing) or in exactly one transfer (crossing),
/// and never in both; a player the run let go has had its client sent away.
pub(super) fn check_players(attached: impl Iterator<Item = Attachment>) -> Result<(), Violation> {
    for a in attached {
        if a.n_in_zone + a.n_in_transfer > 1 {
            return Err(Violation::HeldTwice {
                player: a.player,
                node: a.node,
            });
        }
        let found = if a.crossing {
            a.n_in_transfer
        } else {
            a.n_in_zone
        };
        if found == 0 {
            return Err(Violation::Lost {
                player: a.player,
                node: a.node,
                client: if a.crossing { "crossing" } else { "playing" },
            });
        }
    }
    Ok(())
}

/// Durability: every durable action a client holds as acknowledged is committed, and
/// no action was committed twice. The store never forgets a record, so `acked` need
/// only name the acknowledgements made since the last check (the end of a run checks
/// them all again).
pub(super) fn check_actions(
    acked: impl Iterator<Item = (usize, u64)>,
    store: &SimStore,
) -> Result<(), Violation> {
    if let Some((id, player)) = store.action_committed_twice() {
        return Err(Violation::ActionCommittedTwice { player, id });
    }
    for (player, id) in acked {
        if !store.has_action(id) {
            return Err(Violation::LostAction { player, id });
        }
    }
    Ok(())
}
