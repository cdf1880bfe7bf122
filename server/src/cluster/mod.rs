//! The IO side of clustering: the node-to-node QUIC transport ([`transport`]) with its
//! cluster-secret handshake ([`auth`]). The decisions (membership, directory, leases,
//! admission) live in the sans-IO crate `zonemesh-cluster`; this module only moves
//! their bytes ([`driver`]) and connects them to the node's zones and sessions
//! ([`runtime`]), including players and ghosts crossing into zones on other nodes
//! ([`crossing`]), and whole zones handed from one node to another ([`handoff`]),
//! for instance to empty a node before it stops ([`drain`]) or to cool a hot node
//! ([`rebalance`]).

pub mod auth;
pub mod crossing;
pub mod drain;
pub mod driver;
pub mod handoff;
pub mod rebalance;
pub mod runtime;
pub mod store_calls;
pub mod transport;
