//! The seeded simulation of the cluster cores (after TigerBeetle's VOPR and turmoil):
//! N nodes, each a real [`NodeCore`](crate::node::NodeCore) and a real SWIM core
//! (foca), a store model ([`SimStore`]), a network that delays, duplicates, reorders
//! and loses packets and is partitioned on purpose ([`NetFaults`]), node crashes and
//! restarts, and players that ask any node for their zone and follow the answers.
//! Players move: they log in anew for another zone (their old session stays open until
//! the new node asks its holder to end it), walk into another zone of their node, or
//! cross into a zone held by another node by the runtime's transfer protocol
//! (`server/src/cluster/crossing.rs`, modelled in `world/crossing.rs`): offers and
//! answers in the real wire form ([`crate::crossing::CrossingMsg`]) over the faulty
//! network, repeated every 250 ms and deduplicated by the host's bounded answer
//! memory; the host's claim taken over from the source; a client that follows its
//! redirect after a random delay, late, or never; the host letting an unclaimed copy
//! go after 11 s; and the source's take-back (a re-claim taken over from the host) on
//! a refusal, a host gone from its view, or silence. Playing clients send durable
//! actions (`server/src/net/actions.rs`, modelled in `world/actions.rs`): the node
//! commits each to the store under its zone's epoch over the faulty network and
//! answers `ActionCommitted` only once the store confirmed it, `Busy` when it cannot;
//! clients resend unacknowledged ids (same id) after `Busy`, silence, or on a new
//! session or node. One seed drives every choice, so a failing seed replays exactly
//! (the actions draw from their own generator, derived from the seed).
//!
//! After every step the checker verifies the safety invariants:
//! - a node that accepts inputs for a zone is the store's holder of that zone at the
//!   epoch it believes, so at most one node accepts inputs for a zone at any moment;
//! - no player has two live entities: an entity counts while its node accepts inputs
//!   for its zone, and so does a player waiting there for its client;
//! - no player is lost while its node lives: a client connected to a live node finds
//!   its player there in a zone (playing) or in exactly one transfer (crossing), never
//!   both; a player that could not be kept was saved and its client sent away;
//! - no acknowledged durable action is lost: every id a client holds as acknowledged
//!   is committed in the store at that moment (crashes, restarts, cuts and lost
//!   packets never lose one), and no id's record was created twice (the store's
//!   commits per id are at most 1).
//!
//! After the fault phase (partitions healed, crashed nodes restarted, no loss) the
//! liveness invariants: within the settle time every player is served by the zone's
//! holder, and every durable action a client sent has been acknowledged (clients
//! start no new ones once the faults stop; resends get the pending ones committed).
//!
//! The crossing protocol keeps these invariants through three rules this simulation
//! found were needed; the runtime follows them, and a [`CrossingConfig`] flag turns
//! each off, which the tests show the checker catching: a waiting arrival must end when its
//! player's session is ended or the player logs in anew on its node
//! ([`CrossingConfig::sessions_end_arrivals`]); an old session's transfer must not
//! take the claim of a newer session of the player, since claims name runs, not
//! sessions ([`CrossingConfig::guards_stale_sessions`]); and a source that gives up
//! must not take the player back until any copy the host made from its last offer
//! has stopped waiting ([`CrossingConfig::take_back_at_once`]).
//!
//! Two [`SimConfig`] flags break the durable actions' rules, and the tests show the
//! checker catching each: a node that answers `ActionCommitted` before the store
//! confirmed the commit ([`SimConfig::acknowledges_before_commit`], caught as
//! [`Violation::LostAction`]) and a store that commits a resent id anew
//! ([`SimConfig::store_dedupes_actions`] off, caught as
//! [`Violation::ActionCommittedTwice`]).

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
pub use world::{CrossingConfig, SimConfig, SimFailure, SimReport, World, run};
