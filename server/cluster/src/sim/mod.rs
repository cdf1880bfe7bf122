//! The seeded simulation of the cluster cores (after TigerBeetle's VOPR and turmoil):
//! N nodes, each a real [`NodeCore`](crate::node::NodeCore) and a real SWIM core
//! (foca), a store model ([`SimStore`]), a network that delays, reorders and loses packets
//! and is partitioned on purpose ([`NetFaults`]), node crashes and restarts, and players
//! that ask any node for their zone and follow the answers. One seed drives every
//! choice, so a failing seed replays exactly.
//!
//! After every step the checker verifies the safety invariant: a node that accepts
//! inputs for a zone is the store's holder of that zone at the epoch it believes, so
//! at most one node accepts inputs for a zone at any moment. After the fault phase
//! (partitions healed, crashed nodes restarted, no loss) the liveness invariant: within
//! the settle time every player is served by the zone's holder.

mod check;
mod net;
mod rng;
pub mod scale;
mod store;
mod world;

pub use check::Violation;
pub use net::NetFaults;
pub use rng::SimRng;
pub use store::SimStore;
pub use world::{SimConfig, SimFailure, SimReport, World, run};
