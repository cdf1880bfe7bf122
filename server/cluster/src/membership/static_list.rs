//! Static membership: a configured list of node addresses, each marked up or down by
//! health probes. For deployments that want a fixed set of nodes and no gossip.
//!
//! Every `probe_every_ms` the core asks each listed peer for a pong; a pong names the
//! peer's run and client address (the driver checks the run against the one the
//! transport authenticated). A peer that misses `down_after_misses` probes in a row is
//! reported down; its first pong after that reports it up again. A pong from a new run
//! at the same address reports the new run up (the view replaces the old one).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use zonemesh_shared::codec::{DecodeError, Reader, Writer};

use super::{Member, MembershipEvent};
use crate::Millis;

/// Probe timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticConfig {
    /// How often each peer is probed.
    pub probe_every_ms: u64,
    /// How long a probe waits for its pong.
    pub probe_timeout_ms: u64,
    /// Missed probes in a row before a peer is reported down.
    pub down_after_misses: u32,
}

impl Default for StaticConfig {
    fn default() -> Self {
        Self {
            probe_every_ms: 1_000,
            probe_timeout_ms: 800,
            down_after_misses: 3,
        }
    }
}

/// A probe on the wire (carried as its own packet kind by the node transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Are you there?
    Ping {
        /// Matches the pong to the ping.
        seq: u64,
    },
    /// Yes; here is where players reach me.
    Pong {
        /// The ping's number.
        seq: u64,
        /// The responder's client address.
        client_addr: SocketAddr,
    },
}

/// Longest text form of an address accepted in a pong.
const ADDR_TEXT_MAX: usize = 64;

impl Probe {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(32);
        match self {
            Probe::Ping { seq } => {
                w.u8(1);
                w.varint(*seq);
            }
            Probe::Pong { seq, client_addr } => {
                w.u8(2);
                w.varint(*seq);
                w.str(&client_addr.to_string());
            }
        }
        w.into_vec()
    }

    /// Reads the wire form; any other bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let probe = match r.u8()? {
            1 => Probe::Ping { seq: r.varint()? },
            2 => {
                let seq = r.varint()?;
                let text = r.str("client address", ADDR_TEXT_MAX)?;
                let client_addr = text.parse().map_err(|_| DecodeError::UnknownTag {
                    what: "client address",
                    tag: 0,
                })?;
                Probe::Pong { seq, client_addr }
            }
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "probe",
                    tag: u64::from(tag),
                });
            }
        };
        r.finish()?;
        Ok(probe)
    }
}

#[derive(Debug, Clone)]
struct Peer {
    /// The run last heard from, and whether it is reported up.
    member: Option<Member>,
    up: bool,
    misses: u32,
    next_probe: Millis,
    /// The probe in flight: its number and when it times out.
    waiting: Option<(u64, Millis)>,
}

/// The static membership core of one node.
#[derive(Debug, Clone)]
pub struct StaticMembership {
    config: StaticConfig,
    peers: BTreeMap<SocketAddr, Peer>,
    next_seq: u64,
    events: VecDeque<MembershipEvent>,
    pings: VecDeque<(SocketAddr, Probe)>,
}

impl StaticMembership {
    /// A core probing `peers` (this node's own address may be in the list; it is
    /// skipped).
    pub fn new(me: SocketAddr, peers: &[SocketAddr], config: StaticConfig) -> Self {
        let peers = peers
            .iter()
            .filter(|addr| **addr != me)
            .map(|addr| {
                let peer = Peer {
                    member: None,
                    up: false,
                    misses: 0,
                    next_probe: Millis(0),
                    waiting: None,
                };
                (*addr, peer)
            })
            .collect();
        Self {
            config,
            peers,
            next_seq: 1,
            events: VecDeque::new(),
            pings: VecDeque::new(),
        }
    }

    /// Sends due pings and counts probes that timed out.
    pub fn handle_timeout(&mut self, now: Millis) {
        let config = self.config;
        for (addr, peer) in &mut self.peers {
            if peer.waiting.is_some_and(|(_, deadline)| deadline <= now) {
                peer.waiting = None;
                peer.misses += 1;
                if peer.up && peer.misses >= config.down_after_misses {
                    peer.up = false;
                    if let Some(member) = peer.member {
                        self.events.push_back(MembershipEvent::Down(member.node));
                    }
                }
            }
            if peer.waiting.is_none() && peer.next_probe <= now {
                let seq = self.next_seq;
                self.next_seq += 1;
                peer.waiting = Some((seq, now + config.probe_timeout_ms));
                peer.next_probe = now + config.probe_every_ms;
                self.pings.push_back((*addr, Probe::Ping { seq }));
            }
        }
    }

    /// Folds in a pong from `member` (its run as authenticated, at `member.addr`).
    pub fn handle_pong(&mut self, seq: u64, member: Member) {
        let Some(peer) = self.peers.get_mut(&member.addr) else {
            return;
        };
        if peer.waiting.is_none_or(|(expected, _)| expected != seq) {
            return;
        }
        peer.waiting = None;
        peer.misses = 0;
        let new_run = peer.member.is_none_or(|known| known != member);
        if !peer.up || new_run {
            peer.up = true;
            peer.member = Some(member);
            self.events.push_back(MembershipEvent::Up(member));
        }
    }

    /// The next ping to send and where.
    pub fn poll_probe(&mut self) -> Option<(SocketAddr, Probe)> {
        self.pings.pop_front()
    }

    /// The next change in who is up.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.peers
            .values()
            .map(|p| {
                p.waiting
                    .map_or(p.next_probe, |(_, deadline)| deadline.min(p.next_probe))
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonemesh_shared::node::NodeRef;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn member(port: u16, incarnation: u64) -> Member {
        Member {
            node: NodeRef::new(u64::from(port), incarnation),
            addr: addr(port),
            client_addr: addr(port + 1000),
        }
    }

    fn ping_to(core: &mut StaticMembership, to: SocketAddr) -> u64 {
        let (at, probe) = core.poll_probe().expect("a ping");
        assert_eq!(at, to);
        match probe {
            Probe::Ping { seq } => seq,
            Probe::Pong { .. } => panic!("the core only pings"),
        }
    }

    #[test]
    fn a_pong_brings_a_peer_up_and_misses_take_it_down() {
        let mut core = StaticMembership::new(addr(1), &[addr(1), addr(2)], StaticConfig::default());
        core.handle_timeout(Millis(0));
        let seq = ping_to(&mut core, addr(2));
        assert!(core.poll_probe().is_none(), "no ping to itself");
        core.handle_pong(seq, member(2, 1));
        assert_eq!(core.poll_event(), Some(MembershipEvent::Up(member(2, 1))));
        for round in 1..=3 {
            let now = Millis(round * 1_000);
            core.handle_timeout(now);
            ping_to(&mut core, addr(2));
            core.handle_timeout(now + 800);
        }
        assert_eq!(
            core.poll_event(),
            Some(MembershipEvent::Down(NodeRef::new(2, 1)))
        );
        assert_eq!(core.poll_event(), None);
    }

    #[test]
    fn a_new_run_at_the_same_address_is_reported_and_stale_pongs_ignored() {
        let mut core = StaticMembership::new(addr(1), &[addr(2)], StaticConfig::default());
        core.handle_timeout(Millis(0));
        let first = ping_to(&mut core, addr(2));
        core.handle_pong(first, member(2, 1));
        core.poll_event();
        core.handle_pong(first, member(2, 1));
        assert_eq!(core.poll_event(), None, "a repeated pong changes nothing");
        core.handle_timeout(Millis(1_000));
        let second = ping_to(&mut core, addr(2));
        core.handle_pong(first, member(2, 2));
        assert_eq!(core.poll_event(), None, "a pong to an old ping is ignored");
        core.handle_pong(second, member(2, 2));
        assert_eq!(core.poll_event(), Some(MembershipEvent::Up(member(2, 2))));
    }

    #[test]
    fn probes_roundtrip_and_garbage_is_an_error() {
        for probe in [
            Probe::Ping { seq: 7 },
            Probe::Pong {
                seq: u64::MAX,
                client_addr: "[::1]:7000".parse().expect("addr"),
            },
        ] {
            assert_eq!(Probe::decode(&probe.encode()), Ok(probe));
        }
        assert!(Probe::decode(&[]).is_err());
        assert!(Probe::decode(&[9, 1]).is_err());
        let mut bad = Probe::Ping { seq: 1 }.encode();
        bad.push(0);
        assert!(Probe::decode(&bad).is_err());
    }
}
