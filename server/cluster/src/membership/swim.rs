//! SWIM membership: the glue between foca's sans-IO core and a [`View`](super::View).
//!
//! [`Swim`] owns a `foca::Foca` and an accumulating runtime; the driver (a tokio task on
//! a real node, the simulation in tests) feeds it packets and timeouts and drains
//! packets to send, membership events and the next deadline. foca's timers become
//! entries in a deadline queue, so the driver only ever sleeps until
//! [`Swim::poll_timeout`].
//!
//! Timing: [`SwimTiming`] (in `timing.rs`) is the failure detector's profile, and
//! [`lan_config`] the foca configuration every ZoneMesh node runs unless its
//! configuration file says otherwise.
//!
//! Identity: a member is `(NodeRef, address, rejoin)`. Two identities with the same
//! address are one member; the newer run (higher incarnation, then higher rejoin
//! counter) wins. A node wrongly declared down renews its identity (bumps `rejoin`) and
//! rejoins by itself instead of staying out.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};
use zonemesh_shared::node::NodeRef;

use super::{Member, MembershipEvent};
use crate::Millis;

pub use foca::Config as SwimConfig;
pub use timing::{SwimTiming, lan_config};

mod timing;

/// A member's identity on the gossip layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SwimId {
    /// Which run of which node.
    pub node: NodeRef,
    /// The node's node-to-node address; also foca's notion of "the same member".
    pub addr: SocketAddr,
    /// Where players connect to the node.
    pub client_addr: SocketAddr,
    /// Bumped when this run was declared down and rejoins.
    pub rejoin: u32,
}

impl SwimId {
    /// A placeholder for a seed known only by address: any real member at that address
    /// wins over it.
    pub fn seed(addr: SocketAddr) -> Self {
        Self {
            node: NodeRef::new(0, 0),
            addr,
            client_addr: addr,
            rejoin: 0,
        }
    }

    fn member(&self) -> Member {
        Member {
            node: self.node,
            addr: self.addr,
            client_addr: self.client_addr,
        }
    }
}

impl foca::Identity for SwimId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            rejoin: self.rejoin.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.node.incarnation, self.rejoin, self.node.id)
            > (
                adversary.node.incarnation,
                adversary.rejoin,
                adversary.node.id,
            )
    }
}

/// Why a packet or timer was not handled. The packet is dropped; the core stays
/// usable.
#[derive(Debug)]
pub struct SwimError(pub foca::Error);

impl std::fmt::Display for SwimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gossip: {}", self.0)
    }
}

impl std::error::Error for SwimError {}

type Timer = foca::Timer<SwimId>;

/// The SWIM core of one node.
pub struct Swim {
    foca: Foca<SwimId, PostcardCodec, Pcg64Mcg, NoCustomBroadcast>,
    runtime: AccumulatingRuntime<SwimId>,
    /// foca's timers by deadline; `seq` keeps equal deadlines in submission order.
    timers: BinaryHeap<Reverse<(Millis, u64, TimerSlot)>>,
    next_seq: u64,
    events: VecDeque<MembershipEvent>,
    now: Millis,
    n_bytes_sent: u64,
    /// Where to announce again and again: forgotten down members cannot be asked, so
    /// the seeds are what reunites two halves of a long partition.
    seeds: Vec<SocketAddr>,
    next_seed_announce: Option<Millis>,
}

/// How often a node announces itself to its seeds again.
const SEED_ANNOUNCE_MS: u64 = 10_000;

/// A foca timer in the deadline queue (ordered by deadline and sequence only).
#[derive(Debug)]
struct TimerSlot(Timer);

impl PartialEq for TimerSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for TimerSlot {}
impl PartialOrd for TimerSlot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerSlot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl std::fmt::Debug for Swim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swim")
            .field("identity", self.foca.identity())
            .field("n_members", &self.foca.num_members())
            .finish()
    }
}

impl Swim {
    /// A core for `me`, seeded so that a simulation replays exactly.
    pub fn new(me: Member, config: SwimConfig, seed: u64) -> Self {
        let identity = SwimId {
            node: me.node,
            addr: me.addr,
            client_addr: me.client_addr,
            rejoin: 0,
        };
        let rng = Pcg64Mcg::new(u128::from(seed) << 1 | 1);
        Self {
            foca: Foca::new(identity, config, rng, PostcardCodec),
            runtime: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            next_seq: 0,
            events: VecDeque::new(),
            now: Millis(0),
            n_bytes_sent: 0,
            seeds: Vec::new(),
            next_seed_announce: None,
        }
    }

    /// Asks the members at `seeds` to let this node in, and keeps asking them every
    /// 10 s (one small packet per seed) so that a partitioned cluster reunites.
    pub fn join(&mut self, now: Millis, seeds: &[SocketAddr]) -> Result<(), SwimError> {
        self.seeds = seeds.to_vec();
        self.announce_to_seeds(now)
    }

    fn announce_to_seeds(&mut self, now: Millis) -> Result<(), SwimError> {
        self.now = now;
        self.next_seed_announce = (!self.seeds.is_empty()).then(|| now + SEED_ANNOUNCE_MS);
        for &addr in &self.seeds {
            if addr != self.foca.identity().addr {
                self.foca
                    .announce(SwimId::seed(addr), &mut self.runtime)
                    .map_err(SwimError)?;
            }
        }
        self.collect();
        Ok(())
    }

    /// Starts from a known member list instead of learning it by gossip (a simulated
    /// cluster that has long been up; or a node restoring what it knew). The members
    /// are not re-broadcast: the cluster already knows them.
    pub fn bootstrap(&mut self, now: Millis, members: &[Member]) -> Result<(), SwimError> {
        self.now = now;
        let me = self.foca.identity().node;
        let known = members.iter().filter(|m| m.node != me).map(|m| {
            foca::Member::alive(SwimId {
                node: m.node,
                addr: m.addr,
                client_addr: m.client_addr,
                rejoin: 0,
            })
        });
        let result = self.foca.apply_many(known, false, &mut self.runtime);
        self.collect();
        result.map_err(SwimError)
    }

    /// Handles a packet from the gossip socket.
    pub fn handle_data(&mut self, now: Millis, data: &[u8]) -> Result<(), SwimError> {
        self.now = now;
        let result = self.foca.handle_data(data, &mut self.runtime);
        self.collect();
        result.map_err(SwimError)
    }

    /// Fires every foca timer due at `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.now = now;
        if self.next_seed_announce.is_some_and(|at| at <= now) {
            // Announcing fails only for an oversized packet, which an announce is not.
            let _ = self.announce_to_seeds(now);
        }
        while let Some(Reverse((due, _, _))) = self.timers.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((_, _, TimerSlot(timer)))) = self.timers.pop() else {
                break;
            };
            // A timer error is foca reporting a scheduling anomaly it recovers from;
            // the membership stays usable, so it is not fatal here.
            let _ = self.foca.handle_timer(timer, &mut self.runtime);
            self.collect();
        }
    }

    /// Announces that this node leaves, so others need not wait to detect it.
    pub fn leave(&mut self, now: Millis) -> Result<(), SwimError> {
        self.now = now;
        let result = self.foca.leave_cluster(&mut self.runtime);
        self.collect();
        result.map_err(SwimError)
    }

    /// The next packet to send and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        let (to, data) = self.runtime.to_send()?;
        self.n_bytes_sent += data.len() as u64;
        Some((to.addr, data))
    }

    /// The next change in who is alive.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let timer = self.timers.peek().map(|Reverse((due, _, _))| *due);
        timer.into_iter().chain(self.next_seed_announce).min()
    }

    /// Gossip bytes handed to the driver so far.
    pub fn n_bytes_sent(&self) -> u64 {
        self.n_bytes_sent
    }

    /// Members foca currently believes alive (the local node excluded).
    pub fn n_members(&self) -> usize {
        self.foca.num_members()
    }

    fn collect(&mut self) {
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let due = self.now.after(after);
            self.timers
                .push(Reverse((due, self.next_seq, TimerSlot(timer))));
            self.next_seq += 1;
        }
        while let Some(notification) = self.runtime.to_notify() {
            self.translate(notification);
        }
    }

    fn translate(&mut self, notification: OwnedNotification<SwimId>) {
        match notification {
            OwnedNotification::MemberUp(id) => {
                self.events.push_back(MembershipEvent::Up(id.member()))
            }
            OwnedNotification::MemberDown(id) => {
                self.events.push_back(MembershipEvent::Down(id.node))
            }
            OwnedNotification::Rename(before, after) => {
                // foca keeps `after` in place of `before` at the same address. If the
                // run changed, the old one is gone; whether the new one is alive is
                // told by the member list (a MemberUp follows only on a liveness change).
                if before.node != after.node {
                    self.events.push_back(MembershipEvent::Down(before.node));
                }
                if self.foca.iter_members().any(|m| m.id() == &after) {
                    self.events.push_back(MembershipEvent::Up(after.member()));
                }
            }
            OwnedNotification::Active
            | OwnedNotification::Idle
            | OwnedNotification::Defunct
            | OwnedNotification::Rejoin(_) => {}
        }
    }
}
