//! Messages that carry players and ghosts from one node's zone to a neighbour zone
//! on another node: plain data with a wire encoding (nothing here is an `Arc`, a
//! channel or a connection).
//!
//! A player crossing a border into a zone hosted elsewhere travels as an
//! [`CrossingMsg::Offer`]; the receiving node answers [`CrossingMsg::Answer`] with the
//! offer's id. The sender repeats an unanswered offer with the same id and the receiver
//! answers a repeat with its first answer, so a lost message or answer never moves a
//! player twice (see `server/src/cluster/crossing.rs` for the protocol).
//!
//! Ghosts (a zone's entities near a border, shown read-only by the neighbour) travel
//! as [`CrossingMsg::Ghosts`] every tick, each batch carrying the sending zone's epoch
//! and tick so a batch from a stale activation, or one overtaken by a newer batch, is
//! never shown.

use zonemesh_shared::codec::{DecodeError, Reader, Writer};
use zonemesh_shared::datagram::{ComponentValue, decode_components, encode_components};
use zonemesh_shared::ids::{NetId, PLAYER_NAME_MAX, ZoneId, validate_player_name};
use zonemesh_shared::node::NodeRef;
use zonemesh_shared::quant::QPos;

/// Largest encoded client view a player may carry (see
/// `zonemesh_replication::ViewHandover`).
pub const VIEW_BYTES_MAX: usize = 256 * 1024;
/// Most entities one ghost batch carries; a zone with more near a border sends the
/// first ones (the neighbour's clients see the rest once they cross).
pub const GHOSTS_PER_BATCH_MAX: usize = 4096;

const TAG_OFFER: u8 = 1;
const TAG_ANSWER: u8 = 2;
const TAG_GHOSTS: u8 = 3;

/// A player's entity and session on its way to another node.
#[derive(Debug, Clone, PartialEq)]
pub struct CarriedPlayer {
    /// The session (ids are unique cluster-wide; the session keeps it).
    pub session: u64,
    /// The player's name.
    pub name: String,
    /// The player entity's network id (kept: the client's replica carries on).
    pub net_id: NetId,
    /// Position at hand-over, world units.
    pub position: [f32; 2],
    /// Velocity at hand-over.
    pub velocity: [f32; 2],
    /// The player's max speed.
    pub max_speed: f32,
    /// The newest input applied: the receiver ignores inputs up to it.
    pub last_input_seq: u32,
    /// The player's replicated components.
    pub components: Vec<ComponentValue>,
    /// The version the player's next saved record gets (versions keep increasing
    /// across nodes, so the receiver's saves are newer than any the sender made).
    pub next_record_version: u64,
    /// What the client holds, encoded by the replication crate.
    pub view: Vec<u8>,
}

/// What a node answers an offered player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferOutcome {
    /// The player is in the zone here, waiting for its client.
    Accepted,
    /// The zone is not served here (any more).
    NotHere,
    /// The player's claim is held by a third node: it logged in elsewhere.
    Claimed,
    /// The node cannot take the player now (inbox full, store unreachable); the sender
    /// keeps the player at the border and offers it again later.
    Busy,
}

/// A zone's entities near its border with a zone on another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GhostBatch {
    /// The receiving node run (any other run drops the batch).
    pub to: NodeRef,
    /// The sending zone.
    pub from_zone: ZoneId,
    /// The receiving zone.
    pub zone: ZoneId,
    /// The sending zone's activation epoch.
    pub epoch: u64,
    /// The sending zone's tick.
    pub tick: u64,
    /// The entities.
    pub states: Vec<GhostState>,
}

/// One ghost entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GhostState {
    /// Its network id.
    pub id: NetId,
    /// Its kind.
    pub kind: u16,
    /// Its quantised position.
    pub pos: QPos,
    /// Its replicated components.
    pub components: Vec<ComponentValue>,
}

/// A message between nodes about crossing players and ghosts.
#[derive(Debug, Clone, PartialEq)]
pub enum CrossingMsg {
    /// Take this player into `zone`.
    Offer {
        /// Chosen by the sender, unique per sender run; repeats keep it.
        id: u64,
        /// The receiving node run.
        to: NodeRef,
        /// The zone the player leaves.
        from_zone: ZoneId,
        /// The zone the player enters.
        zone: ZoneId,
        /// The player.
        player: CarriedPlayer,
    },
    /// The answer to offer `id`.
    Answer {
        /// The offer's id.
        id: u64,
        /// The node run that made the offer.
        to: NodeRef,
        /// What became of the player.
        outcome: OfferOutcome,
    },
    /// Ghosts for a zone on the receiving node.
    Ghosts(GhostBatch),
}

impl CrossingMsg {
    /// The node run the message is for.
    pub fn to(&self) -> NodeRef {
        match self {
            CrossingMsg::Offer { to, .. } | CrossingMsg::Answer { to, .. } => *to,
            CrossingMsg::Ghosts(batch) => batch.to,
        }
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        match self {
            CrossingMsg::Offer {
                id,
                to,
                from_zone,
                zone,
                player,
            } => {
                w.u8(TAG_OFFER);
                w.varint(*id);
                to.encode(&mut w);
                w.u32(from_zone.0);
                w.u32(zone.0);
                encode_player(player, &mut w);
            }
            CrossingMsg::Answer { id, to, outcome } => {
                w.u8(TAG_ANSWER);
                w.varint(*id);
                to.encode(&mut w);
                w.u8(outcome_code(*outcome));
            }
            CrossingMsg::Ghosts(batch) => {
                w.u8(TAG_GHOSTS);
                encode_ghosts(batch, &mut w);
            }
        }
        w.into_vec()
    }

    /// Reads the wire form; any other byte string is an error (never a panic).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let msg = match r.u8()? {
            TAG_OFFER => CrossingMsg::Offer {
                id: r.varint()?,
                to: NodeRef::decode(&mut r)?,
                from_zone: ZoneId(r.u32()?),
                zone: ZoneId(r.u32()?),
                player: decode_player(&mut r)?,
            },
            TAG_ANSWER => CrossingMsg::Answer {
                id: r.varint()?,
                to: NodeRef::decode(&mut r)?,
                outcome: outcome_from(r.u8()?)?,
            },
            TAG_GHOSTS => CrossingMsg::Ghosts(decode_ghosts(&mut r)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "crossing message",
                    tag: u64::from(tag),
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

fn outcome_code(outcome: OfferOutcome) -> u8 {
    match outcome {
        OfferOutcome::Accepted => 1,
        OfferOutcome::NotHere => 2,
        OfferOutcome::Claimed => 3,
        OfferOutcome::Busy => 4,
    }
}

fn outcome_from(code: u8) -> Result<OfferOutcome, DecodeError> {
    Ok(match code {
        1 => OfferOutcome::Accepted,
        2 => OfferOutcome::NotHere,
        3 => OfferOutcome::Claimed,
        4 => OfferOutcome::Busy,
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "offer outcome",
                tag: u64::from(tag),
            });
        }
    })
}

pub(crate) fn encode_player(p: &CarriedPlayer, w: &mut Writer) {
    w.varint(p.session);
    w.str(&p.name);
    w.varint(p.net_id.0);
    for v in p.position.iter().chain(&p.velocity).chain([&p.max_speed]) {
        w.u32(v.to_bits());
    }
    w.u32(p.last_input_seq);
    encode_components(&p.components, w);
    w.varint(p.next_record_version);
    w.bytes(&p.view);
}

pub(crate) fn decode_player(r: &mut Reader<'_>) -> Result<CarriedPlayer, DecodeError> {
    let session = r.varint()?;
    let name = r.str("player", PLAYER_NAME_MAX)?.to_owned();
    validate_player_name(&name).map_err(|_| DecodeError::InvalidValue("player"))?;
    let net_id = NetId(r.varint()?);
    let position = [finite(r)?, finite(r)?];
    let velocity = [finite(r)?, finite(r)?];
    let max_speed = finite(r)?;
    Ok(CarriedPlayer {
        session,
        name,
        net_id,
        position,
        velocity,
        max_speed,
        last_input_seq: r.u32()?,
        components: decode_components(r)?,
        next_record_version: r.varint()?,
        view: r.bytes("view", VIEW_BYTES_MAX)?.to_vec(),
    })
}

/// A float that must be finite (a position or speed from another node is still
/// checked: a bad one would poison the zone's spatial index).
pub(crate) fn finite(r: &mut Reader<'_>) -> Result<f32, DecodeError> {
    let v = f32::from_bits(r.u32()?);
    if v.is_finite() {
        Ok(v)
    } else {
        Err(DecodeError::InvalidValue("float"))
    }
}

fn encode_ghosts(b: &GhostBatch, w: &mut Writer) {
    b.to.encode(w);
    w.u32(b.from_zone.0);
    w.u32(b.zone.0);
    w.varint(b.epoch);
    w.varint(b.tick);
    let states = &b.states[..b.states.len().min(GHOSTS_PER_BATCH_MAX)];
    w.varint(states.len() as u64);
    for s in states {
        w.varint(s.id.0);
        w.u16(s.kind);
        w.zigzag(i64::from(s.pos.x));
        w.zigzag(i64::from(s.pos.y));
        encode_components(&s.components, w);
    }
}

fn decode_ghosts(r: &mut Reader<'_>) -> Result<GhostBatch, DecodeError> {
    let to = NodeRef::decode(r)?;
    let from_zone = ZoneId(r.u32()?);
    let zone = ZoneId(r.u32()?);
    let epoch = r.varint()?;
    let tick = r.varint()?;
    let n = r.count("ghosts", GHOSTS_PER_BATCH_MAX)?;
    let states = (0..n)
        .map(|_| {
            Ok(GhostState {
                id: NetId(r.varint()?),
                kind: r.u16()?,
                pos: QPos {
                    x: coordinate(r)?,
                    y: coordinate(r)?,
                },
                components: decode_components(r)?,
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(GhostBatch {
        to,
        from_zone,
        zone,
        epoch,
        tick,
        states,
    })
}

fn coordinate(r: &mut Reader<'_>) -> Result<i32, DecodeError> {
    i32::try_from(r.zigzag()?).map_err(|_| DecodeError::InvalidValue("ghost position"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn player() -> CarriedPlayer {
        CarriedPlayer {
            session: u64::MAX - 3,
            name: "walker".into(),
            net_id: NetId(0x0001_0000_0000_0007),
            position: [31.9, -4.25],
            velocity: [3.0, 0.0],
            max_speed: 5.0,
            last_input_seq: 812,
            components: vec![ComponentValue {
                id: 3,
                bytes: vec![1, 2, 3],
            }],
            next_record_version: (7 << 32) | 12,
            view: vec![9; 300],
        }
    }

    fn messages() -> Vec<CrossingMsg> {
        let to = NodeRef::new(4, 2);
        vec![
            CrossingMsg::Offer {
                id: 77,
                to,
                from_zone: ZoneId(0),
                zone: ZoneId(1),
                player: player(),
            },
            CrossingMsg::Answer {
                id: 77,
                to,
                outcome: OfferOutcome::Accepted,
            },
            CrossingMsg::Answer {
                id: 1,
                to,
                outcome: OfferOutcome::Busy,
            },
            CrossingMsg::Ghosts(GhostBatch {
                to,
                from_zone: ZoneId(2),
                zone: ZoneId(1),
                epoch: 9,
                tick: 12_345,
                states: vec![GhostState {
                    id: NetId(5),
                    kind: 2,
                    pos: QPos { x: -7, y: 1 << 20 },
                    components: Vec::new(),
                }],
            }),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for msg in messages() {
            assert_eq!(CrossingMsg::decode(&msg.encode()).expect("decodes"), msg);
        }
    }

    #[test]
    fn truncated_and_extended_messages_are_errors() {
        for msg in messages() {
            let bytes = msg.encode();
            for cut in 0..bytes.len() {
                assert!(CrossingMsg::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(CrossingMsg::decode(&longer).is_err());
        }
    }

    #[test]
    fn non_finite_positions_and_bad_names_are_refused() {
        let mut p = player();
        p.position[0] = f32::NAN;
        let offer = |player| CrossingMsg::Offer {
            id: 1,
            to: NodeRef::new(1, 1),
            from_zone: ZoneId(0),
            zone: ZoneId(1),
            player,
        };
        assert!(CrossingMsg::decode(&offer(p).encode()).is_err());
        let mut p = player();
        p.name = "bad name!".into();
        assert!(CrossingMsg::decode(&offer(p).encode()).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let _ = CrossingMsg::decode(&bytes);
            for tag in 1..=3 {
                let mut tagged = vec![tag];
                tagged.extend_from_slice(&bytes);
                let _ = CrossingMsg::decode(&tagged);
            }
        }
    }
}
