//! The simulated network: packets in flight with random delay (so they reorder), loss,
//! and partitions as data (pairs of nodes that cannot talk, nodes cut off from the
//! store). Delivery order is fixed by `(time, sequence)`, so a seed replays exactly.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

use super::rng::SimRng;
use super::store::ActionCommit;
use crate::Millis;
use crate::msg::{StoreCall, StoreReply};

/// One end of a link: node slot `i`, or the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Endpoint {
    /// The node in slot `i` (whatever run occupies it).
    Node(usize),
    /// The store.
    Store,
}

/// What travels.
#[derive(Debug, Clone)]
pub(super) enum Packet {
    /// A SWIM packet for the node in slot `to`.
    Gossip {
        /// Receiving slot.
        to: usize,
        /// foca's bytes.
        bytes: Bytes,
    },
    /// An encoded [`Envelope`](crate::msg::Envelope) for slot `to`.
    Node {
        /// Receiving slot.
        to: usize,
        /// The wire bytes.
        bytes: Vec<u8>,
    },
    /// An encoded [`CrossingMsg`](crate::crossing::CrossingMsg) from run `from` for
    /// slot `to` (the real transport authenticates the sender; so does this one).
    Crossing {
        /// Receiving slot.
        to: usize,
        /// The sending run.
        from: NodeRef,
        /// The wire bytes.
        bytes: Vec<u8>,
    },
    /// A store call from run `node` in slot `from`.
    Call {
        /// Sending slot.
        from: usize,
        /// The run that made the call.
        node: NodeRef,
        /// The call.
        call: StoreCall,
    },
    /// A durable action run `node` in slot `from` commits to the store.
    Action {
        /// Sending slot.
        from: usize,
        /// The run that commits it.
        node: NodeRef,
        /// The action.
        action: ActionCall,
    },
    /// The store's answer to an [`Packet::Action`] for run `node` in slot `to`.
    ActionDone {
        /// Receiving slot.
        to: usize,
        /// The run that committed it; an answer to a dead run is dropped.
        node: NodeRef,
        /// The action.
        action: ActionCall,
        /// What the store did.
        commit: ActionCommit,
    },
    /// The store's reply to run `node` in slot `to`.
    Reply {
        /// Receiving slot.
        to: usize,
        /// The run that made the call; a reply to a dead run is dropped.
        node: NodeRef,
        /// The reply.
        reply: StoreReply,
    },
}

impl Packet {
    fn destination(&self) -> Endpoint {
        match self {
            Packet::Gossip { to, .. }
            | Packet::Node { to, .. }
            | Packet::Crossing { to, .. }
            | Packet::Reply { to, .. }
            | Packet::ActionDone { to, .. } => Endpoint::Node(*to),
            Packet::Call { .. } | Packet::Action { .. } => Endpoint::Store,
        }
    }
}

/// A durable action on its way to the store and back: whose session sent it, its
/// id, and the zone and epoch it is committed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ActionCall {
    /// The player (its index in the run).
    pub(super) player: usize,
    /// The session that sent it.
    pub(super) session: u64,
    /// The action's id.
    pub(super) id: u64,
    /// The player's zone.
    pub(super) zone: ZoneId,
    /// The epoch the run holds that zone at.
    pub(super) epoch: u64,
}

/// Fault settings of the network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetFaults {
    /// Probability a packet is lost.
    pub loss: f64,
    /// Shortest one-way delay.
    pub min_delay_ms: u64,
    /// Longest one-way delay (a spread reorders packets).
    pub max_delay_ms: u64,
    /// Probability a packet is delivered twice (with independent delays).
    pub duplicate: f64,
}

/// The network.
#[derive(Debug, Default)]
pub(super) struct Net {
    in_flight: BTreeMap<(Millis, u64), Packet>,
    next_seq: u64,
    cut: BTreeSet<(Endpoint, Endpoint)>,
    /// Bytes of gossip sent, for the scaling figures.
    pub(super) n_gossip_bytes: u64,
    /// Node messages sent.
    pub(super) n_node_messages: u64,
    /// Crossing messages (offers and answers) sent.
    pub(super) n_crossing_messages: u64,
}

impl Net {
    /// Sends `packet` from `from` at `now`.
    pub(super) fn send(
        &mut self,
        now: Millis,
        from: Endpoint,
        packet: Packet,
        faults: NetFaults,
        rng: &mut SimRng,
    ) {
        match &packet {
            Packet::Gossip { bytes, .. } => self.n_gossip_bytes += bytes.len() as u64,
            Packet::Node { .. } => self.n_node_messages += 1,
            Packet::Crossing { .. } => self.n_crossing_messages += 1,
            Packet::Call { .. }
            | Packet::Reply { .. }
            | Packet::Action { .. }
            | Packet::ActionDone { .. } => {}
        }
        if self.is_cut(from, packet.destination()) || rng.chance(faults.loss) {
            return;
        }
        if rng.chance(faults.duplicate) {
            self.put_in_flight(now, packet.clone(), faults, rng);
        }
        self.put_in_flight(now, packet, faults, rng);
    }

    fn put_in_flight(&mut self, now: Millis, packet: Packet, faults: NetFaults, rng: &mut SimRng) {
        let at = now + rng.range(faults.min_delay_ms, faults.max_delay_ms);
        self.in_flight.insert((at, self.next_seq), packet);
        self.next_seq += 1;
    }

    /// When the next packet arrives.
    pub(super) fn next_arrival(&self) -> Option<Millis> {
        self.in_flight.keys().next().map(|(at, _)| *at)
    }

    /// The next packet due at or before `now`.
    pub(super) fn pop_due(&mut self, now: Millis) -> Option<Packet> {
        let first = *self.in_flight.keys().next()?;
        if first.0 > now {
            return None;
        }
        self.in_flight.remove(&first)
    }

    /// Cuts the link between `a` and `b` both ways.
    pub(super) fn cut(&mut self, a: Endpoint, b: Endpoint) {
        self.cut.insert((a.min(b), a.max(b)));
    }

    /// Heals every cut.
    pub(super) fn heal_all(&mut self) {
        self.cut.clear();
    }

    /// Heals one random cut.
    pub(super) fn heal_one(&mut self, rng: &mut SimRng) {
        if self.cut.is_empty() {
            return;
        }
        let i = rng.index(self.cut.len());
        if let Some(link) = self.cut.iter().nth(i).copied() {
            self.cut.remove(&link);
        }
    }

    /// Whether `a` and `b` cannot talk.
    pub(super) fn is_cut(&self, a: Endpoint, b: Endpoint) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }
}
