//! ZoneMesh's sans-IO replication core: which entities each client sees, and the
//! prioritised, delta-compressed snapshot datagrams that show them.
//!
//! Nothing here does IO, spawns tasks or knows about the ECS. A zone drives it once per
//! tick:
//! 1. collect every entity a client may see as a [`ReplicatedState`] (own entities and
//!    neighbours' ghosts) and [`SpatialGrid::rebuild`] the grid over them;
//! 2. for each client, [`SpatialGrid::query`] the area of interest around the player
//!    and call [`ClientView::build_snapshot`] with a [`SnapshotFrame`], then hand the
//!    datagrams to the connection;
//! 3. whenever an input datagram arrives, pass its acknowledgement to
//!    [`ClientView::handle_ack`].
//!
//! A player moving to another node takes its view along as a [`ViewHandover`]
//! ([`ClientView::handover`], encoded and decoded for the trip) and the new node
//! continues it with [`ClientView::resume`]: the client keeps its replica.
//!
//! The datagrams follow the contract in `zonemesh_shared::datagram` (self-contained
//! records, deltas only against acknowledged baselines the client still holds).
//! Everything is bounded: tracked entities per client, sent-record log, bytes per tick.

mod grid;
mod idmap;
mod state;
mod view;

pub use grid::SpatialGrid;
pub use state::{ReplicatedState, components_hash};
pub use view::{BuildStats, ClientView, SnapshotFrame, ViewConfig, ViewHandover};
