//! What nodes say to each other and to the store. Plain data: nothing here holds an
//! `Arc`, a channel or a socket, so every message can cross a process boundary.
//! Node messages have a wire encoding ([`Envelope::encode`], [`Envelope::decode`]);
//! store calls are carried out by the driver through the `Store` trait.

use crate::load::NodeLoad;
use zonemesh_shared::codec::{DecodeError, Reader, Writer};
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

/// A message from one node run to another. A message addressed to an older run of
/// the receiver is dropped: it was meant for a process that no longer exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Sender.
    pub from: NodeRef,
    /// Intended receiver.
    pub to: NodeRef,
    /// The message.
    pub msg: NodeMsg,
}

/// Node-to-node messages of the directory protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMsg {
    /// Where does `zone` live? Sent to the zone's directory owner.
    Lookup {
        /// The zone asked about.
        zone: ZoneId,
    },
    /// The directory owner's answer to `Lookup`.
    LookupReply {
        /// The zone asked about.
        zone: ZoneId,
        /// Where it lives, or why the owner cannot say.
        answer: LookupAnswer,
    },
    /// `host` holds `zone` at `epoch` (sent by the host to the directory owner after
    /// an activation and again whenever the ring gives the zone a new owner).
    Register {
        /// The zone.
        zone: ZoneId,
        /// The node holding it.
        host: NodeRef,
        /// The activation's epoch, from the store.
        epoch: u64,
    },
    /// `host` no longer holds `zone` at `epoch`.
    Unregister {
        /// The zone.
        zone: ZoneId,
        /// The node that held it.
        host: NodeRef,
        /// The epoch it held.
        epoch: u64,
    },
    /// The directory owner asks the receiver to activate `zone`: its host died.
    Activate {
        /// The zone to bring back.
        zone: ZoneId,
    },
    /// Where does `zone` live, if anywhere? Unlike `Lookup` the owner never places an
    /// unheld zone: asked for ghosts, which must not activate a neighbour.
    Peek {
        /// The zone asked about.
        zone: ZoneId,
    },
    /// The directory owner's answer to `Peek`: the zone's registered host and epoch,
    /// or `None` when no live node holds it (or the receiver does not own the range).
    PeekReply {
        /// The zone asked about.
        zone: ZoneId,
        /// Its host and epoch.
        host: Option<(NodeRef, u64)>,
    },
    /// The sender's load, published to every live member once a second.
    Load {
        /// The load.
        load: NodeLoad,
    },
    /// A deputy of the zone's directory owner saw `host` die while holding `zone`; the
    /// owner brings the zone back even if its own view has not caught up yet.
    HostDied {
        /// The zone.
        zone: ZoneId,
        /// The dead run.
        host: NodeRef,
    },
}

/// A directory owner's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupAnswer {
    /// `host` holds the zone (`epoch` > 0) or was chosen to activate it (`epoch` 0).
    Host {
        /// The node to send the player to.
        host: NodeRef,
        /// The registered epoch; 0 while the activation is under way.
        epoch: u64,
    },
    /// The receiver does not own the zone's range in its view: the asker's view
    /// differs; it asks again after its view changes or after a short wait.
    NotOwner,
    /// The owner has just gained the range and waits for hosts to re-register.
    Retry,
}

/// A request a node's driver carries out against the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCall {
    /// Renew this node run's lease.
    RenewLease {
        /// Matches the reply to the call.
        request: u64,
    },
    /// Take `zone` for this node run: granted only if no other run holds it with a
    /// live lease. Idempotent per attempt: the store answers a repeat of the attempt
    /// that made this run the holder with the same epoch instead of a new one (a call
    /// the driver retried, or the network delivered twice, must not move the epoch
    /// past the one the node is using).
    Activate {
        /// The zone.
        zone: ZoneId,
        /// Names this activation attempt; repeats of one attempt carry the same number.
        attempt: u64,
    },
    /// Give `zone` up (after its final checkpoint at `epoch`).
    Release {
        /// The zone.
        zone: ZoneId,
        /// The epoch held.
        epoch: u64,
    },
    /// List the zones the store says `node` holds (to bring them back after it died).
    ZonesHeldBy {
        /// The dead node run.
        node: NodeRef,
    },
}

/// The store's answer to a [`StoreCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreReply {
    /// Answer to `RenewLease`.
    Lease {
        /// The call's request number.
        request: u64,
        /// The lease, or `None` if a newer run of this node id exists (this run must
        /// stop).
        grant: Option<LeaseGrant>,
    },
    /// `zone` is this node's at `epoch`.
    Activated {
        /// The zone.
        zone: ZoneId,
        /// The new epoch.
        epoch: u64,
        /// The lease generation the activation was made under (see [`LeaseGrant`]).
        lease_generation: u64,
        /// The attempt this answers; an answer to an older attempt is not taken
        /// as the answer to the current one.
        attempt: u64,
    },
    /// Another run holds `zone` with a live lease.
    Held {
        /// The zone.
        zone: ZoneId,
        /// Who holds it.
        holder: NodeRef,
        /// The epoch it holds.
        epoch: u64,
        /// When the holder's lease runs out if it is not renewed (ms from the reply).
        lease_left_ms: u64,
    },
    /// The activation was refused because this node's own lease is not live.
    NoLease {
        /// The zone.
        zone: ZoneId,
    },
    /// `zone` was released, or was not held at that epoch any more.
    Released {
        /// The zone.
        zone: ZoneId,
    },
    /// Answer to `ZonesHeldBy`.
    ZonesHeld {
        /// The node asked about.
        node: NodeRef,
        /// Its zones (bounded by the store's read limit, lowest first).
        zones: Vec<ZoneId>,
        /// More zones are held than were listed; asking again (once the listed ones
        /// moved) lists the rest.
        truncated: bool,
    },
    /// The store could not be reached or failed; the call may be retried.
    Unavailable {
        /// The call that failed.
        call: StoreCall,
    },
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Lease length from the moment the store granted it.
    pub duration_ms: u64,
    /// Grows every time this run's lease lapsed before renewal. Zones activated under
    /// an older generation may have been taken by others meanwhile and are dropped.
    pub generation: u64,
}

const TAG_LOOKUP: u8 = 1;
const TAG_LOOKUP_REPLY: u8 = 2;
const TAG_REGISTER: u8 = 3;
const TAG_UNREGISTER: u8 = 4;
const TAG_ACTIVATE: u8 = 5;
const TAG_HOST_DIED: u8 = 6;
const TAG_PEEK: u8 = 7;
const TAG_PEEK_REPLY: u8 = 8;
const TAG_LOAD: u8 = 9;

const ANSWER_HOST: u8 = 1;
const ANSWER_NOT_OWNER: u8 = 2;
const ANSWER_RETRY: u8 = 3;

impl Envelope {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(40);
        self.from.encode(&mut w);
        self.to.encode(&mut w);
        match self.msg {
            NodeMsg::Lookup { zone } => {
                w.u8(TAG_LOOKUP);
                w.u32(zone.0);
            }
            NodeMsg::LookupReply { zone, answer } => {
                w.u8(TAG_LOOKUP_REPLY);
                w.u32(zone.0);
                encode_answer(&mut w, answer);
            }
            NodeMsg::Register { zone, host, epoch } => {
                encode_entry(&mut w, TAG_REGISTER, zone, host, epoch)
            }
            NodeMsg::Unregister { zone, host, epoch } => {
                encode_entry(&mut w, TAG_UNREGISTER, zone, host, epoch);
            }
            NodeMsg::Activate { zone } => {
                w.u8(TAG_ACTIVATE);
                w.u32(zone.0);
            }
            NodeMsg::HostDied { zone, host } => {
                w.u8(TAG_HOST_DIED);
                w.u32(zone.0);
                host.encode(&mut w);
            }
            NodeMsg::Load { ref load } => {
                w.u8(TAG_LOAD);
                load.encode(&mut w);
            }
            NodeMsg::Peek { zone } => {
                w.u8(TAG_PEEK);
                w.u32(zone.0);
            }
            NodeMsg::PeekReply { zone, host } => {
                w.u8(TAG_PEEK_REPLY);
                w.u32(zone.0);
                match host {
                    Some((host, epoch)) => {
                        w.u8(1);
                        host.encode(&mut w);
                        w.varint(epoch);
                    }
                    None => w.u8(0),
                }
            }
        }
        w.into_vec()
    }

    /// Reads the wire form; any other byte string is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let from = NodeRef::decode(&mut r)?;
        let to = NodeRef::decode(&mut r)?;
        let msg = match r.u8()? {
            TAG_LOOKUP => NodeMsg::Lookup {
                zone: ZoneId(r.u32()?),
            },
            TAG_LOOKUP_REPLY => NodeMsg::LookupReply {
                zone: ZoneId(r.u32()?),
                answer: decode_answer(&mut r)?,
            },
            TAG_REGISTER => {
                let (zone, host, epoch) = decode_entry(&mut r)?;
                NodeMsg::Register { zone, host, epoch }
            }
            TAG_UNREGISTER => {
                let (zone, host, epoch) = decode_entry(&mut r)?;
                NodeMsg::Unregister { zone, host, epoch }
            }
            TAG_ACTIVATE => NodeMsg::Activate {
                zone: ZoneId(r.u32()?),
            },
            TAG_HOST_DIED => NodeMsg::HostDied {
                zone: ZoneId(r.u32()?),
                host: NodeRef::decode(&mut r)?,
            },
            TAG_LOAD => NodeMsg::Load {
                load: NodeLoad::decode(&mut r)?,
            },
            TAG_PEEK => NodeMsg::Peek {
                zone: ZoneId(r.u32()?),
            },
            TAG_PEEK_REPLY => NodeMsg::PeekReply {
                zone: ZoneId(r.u32()?),
                host: match r.u8()? {
                    0 => None,
                    1 => Some((NodeRef::decode(&mut r)?, r.varint()?)),
                    tag => return Err(unknown("peek answer", tag)),
                },
            },
            tag => return Err(unknown("node message", tag)),
        };
        r.finish()?;
        Ok(Self { from, to, msg })
    }
}

fn unknown(what: &'static str, tag: u8) -> DecodeError {
    DecodeError::UnknownTag {
        what,
        tag: u64::from(tag),
    }
}

fn encode_entry(w: &mut Writer, tag: u8, zone: ZoneId, host: NodeRef, epoch: u64) {
    w.u8(tag);
    w.u32(zone.0);
    host.encode(w);
    w.varint(epoch);
}

fn decode_entry(r: &mut Reader<'_>) -> Result<(ZoneId, NodeRef, u64), DecodeError> {
    Ok((ZoneId(r.u32()?), NodeRef::decode(r)?, r.varint()?))
}

fn encode_answer(w: &mut Writer, answer: LookupAnswer) {
    match answer {
        LookupAnswer::Host { host, epoch } => {
            w.u8(ANSWER_HOST);
            host.encode(w);
            w.varint(epoch);
        }
        LookupAnswer::NotOwner => w.u8(ANSWER_NOT_OWNER),
        LookupAnswer::Retry => w.u8(ANSWER_RETRY),
    }
}

fn decode_answer(r: &mut Reader<'_>) -> Result<LookupAnswer, DecodeError> {
    Ok(match r.u8()? {
        ANSWER_HOST => LookupAnswer::Host {
            host: NodeRef::decode(r)?,
            epoch: r.varint()?,
        },
        ANSWER_NOT_OWNER => LookupAnswer::NotOwner,
        ANSWER_RETRY => LookupAnswer::Retry,
        tag => return Err(unknown("lookup answer", tag)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelopes() -> Vec<Envelope> {
        let a = NodeRef::new(1, 3);
        let b = NodeRef::new(u64::MAX, u64::MAX);
        let z = ZoneId::grid(4, 9);
        let msgs = [
            NodeMsg::Lookup { zone: z },
            NodeMsg::LookupReply {
                zone: z,
                answer: LookupAnswer::Host { host: b, epoch: 7 },
            },
            NodeMsg::LookupReply {
                zone: z,
                answer: LookupAnswer::NotOwner,
            },
            NodeMsg::LookupReply {
                zone: z,
                answer: LookupAnswer::Retry,
            },
            NodeMsg::Register {
                zone: z,
                host: a,
                epoch: u64::MAX,
            },
            NodeMsg::Unregister {
                zone: z,
                host: b,
                epoch: 0,
            },
            NodeMsg::Activate { zone: z },
            NodeMsg::HostDied { zone: z, host: a },
            NodeMsg::Peek { zone: z },
            NodeMsg::Load {
                load: NodeLoad {
                    zones: 2,
                    players: 40,
                    entities: 900,
                    tick_p99_us: 1_800,
                    tick_us_per_s: 70_000,
                    zone_costs: vec![(ZoneId(9), 50_000)],
                    draining: false,
                },
            },
            NodeMsg::PeekReply {
                zone: z,
                host: Some((b, 9)),
            },
            NodeMsg::PeekReply {
                zone: z,
                host: None,
            },
        ];
        msgs.into_iter()
            .map(|msg| Envelope {
                from: a,
                to: b,
                msg,
            })
            .collect()
    }

    #[test]
    fn every_message_roundtrips() {
        for envelope in envelopes() {
            assert_eq!(Envelope::decode(&envelope.encode()), Ok(envelope));
        }
    }

    #[test]
    fn truncated_and_padded_messages_are_errors() {
        for envelope in envelopes() {
            let bytes = envelope.encode();
            for len in 0..bytes.len() {
                assert!(
                    Envelope::decode(&bytes[..len]).is_err(),
                    "{envelope:?} cut at {len}"
                );
            }
            let mut padded = bytes.clone();
            padded.push(0);
            assert!(Envelope::decode(&padded).is_err());
        }
    }
}
