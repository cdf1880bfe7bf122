//! Zones on other nodes, as a zone sees them: where a neighbour lives, and how a
//! player or a ghost batch gets there. The cluster runtime implements it; a zone
//! without a cluster has none and sees only its own node.
//!
//! Every call is short and non-blocking: zones call them from a tick.

use super::messages::PlayerTransfer;
use zonemesh_replication::ReplicatedState;
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

/// Where a ghost batch comes from, so the receiver can tell a stale one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GhostOrigin {
    /// The sending zone.
    pub zone: ZoneId,
    /// Its activation epoch.
    pub epoch: u64,
    /// Its tick when it sent the batch.
    pub tick: u64,
}

/// The other nodes of the cluster, for a zone.
pub trait OtherNodes: Send + Sync + std::fmt::Debug {
    /// The node run holding `zone`, if it is held by another node and this node
    /// knows it. Never activates the zone anywhere: a zone unknown now is learned
    /// within a round trip and the caller asks again next tick.
    fn host_elsewhere(&self, zone: ZoneId) -> Option<NodeRef>;

    /// Takes a player leaving its zone for `zone` on node `host`. The player is then
    /// the cluster's: moved there exactly once, or handed back to the zone it left.
    /// Gives the transfer back when it cannot take it now (too many on the way, or
    /// the player was refused a moment ago); the zone keeps the player at the border.
    fn send_player(
        &self,
        zone: ZoneId,
        host: NodeRef,
        transfer: PlayerTransfer,
    ) -> Result<(), Box<PlayerTransfer>>;

    /// Sends the entities of `origin` near its border with `zone` on node `host`
    /// (best effort: the next tick's batch replaces a lost one).
    fn send_ghosts(
        &self,
        host: NodeRef,
        origin: GhostOrigin,
        zone: ZoneId,
        states: &[ReplicatedState],
    );
}
