//! ZoneMesh's cluster cores, without IO: who is in the cluster ([`membership`]), which
//! node keeps the directory entry of a zone ([`ring`]), where a zone lives
//! ([`directory`]), where a new activation goes ([`placement`]), how long a node may
//! accept inputs without hearing from the store ([`lease`]), and what a node answers a
//! player who asks for a zone ([`node`], [`admission`]).
//!
//! Driving contract (the same for every core here, after quinn-proto and foca):
//! - time is passed in as [`Millis`], a monotonic clock the driver owns; nothing here
//!   reads a clock, spawns a task, owns a socket or draws from a global RNG;
//! - inputs arrive through `handle_*` methods, outputs are drained with `poll_*`
//!   methods until they return `None`, after every input;
//! - timers are data: [`node::NodeCore::poll_timeout`] says when to call
//!   `handle_timeout` next, and a timer that fires late or twice does no harm.
//!
//! The [`sim`] module drives many nodes, a store and a faulty network from one seed and
//! checks the cluster's invariants after every step.

pub mod admission;
pub mod crossing;
pub mod directory;
pub mod handoff;
#[cfg(test)]
mod handoff_sim;
pub mod lease;
pub mod load;
pub mod membership;
pub mod msg;
pub mod node;
pub mod placement;
pub mod rebalance;
#[cfg(test)]
mod rebalance_sim;
pub mod ring;
pub mod session_msg;
pub mod sim;
mod time;
pub mod zone_image;

pub use time::Millis;
pub use zonemesh_shared::ids::ZoneId;
pub use zonemesh_shared::node::{Incarnation, NodeId, NodeRef};
