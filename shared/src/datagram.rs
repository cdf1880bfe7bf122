//! Unreliable datagram messages: client inputs (with snapshot acknowledgements) and
//! server snapshots made of per-entity records.
//!
//! # Snapshots and deltas
//! Every snapshot datagram has its own sequence number (per client, wrapping `u32`), and
//! is self-contained: each [`EntityRecord`] can be applied alone, so a snapshot split over
//! several datagrams survives the loss of any of them.
//!
//! A position is sent either absolute or as a delta from a *baseline*: the position the
//! same entity had in an earlier snapshot `baseline_back` sequence numbers before this
//! one, which the client has acknowledged. Clients keep the positions from the last
//! [`POSITION_HISTORY`] records of each entity; servers only delta against a baseline
//! within the last [`POSITION_HISTORY`] records they sent for that entity, so the client
//! always still holds it. Records for an entity apply only if their snapshot is newer
//! than the last one applied for that entity (late, reordered datagrams are ignored).

use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::NetId;
use crate::quant::{QPos, Vec2};

/// Largest datagram either side accepts, whatever the path MTU (QUIC datagrams never
/// exceed the path MTU, so this is a sanity bound, not the send size).
pub const DATAGRAM_MAX: usize = 1500;
/// Most inputs one datagram may carry (the newest plus redundant copies of older ones).
pub const INPUTS_PER_DATAGRAM_MAX: usize = 8;
/// Entity positions a client keeps per entity for delta decoding.
pub const POSITION_HISTORY: usize = 16;
/// Most replicated components in one record.
pub const COMPONENTS_PER_RECORD_MAX: usize = 32;
/// Largest encoded replicated component.
pub const COMPONENT_BYTES_MAX: usize = 1024;

/// Acknowledgement of received snapshots: the newest sequence number seen and a bitmask
/// of the 32 before it (bit `i` set = `latest - 1 - i` received).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack {
    /// Newest snapshot sequence number received; meaningless while `bits` and
    /// `any` say nothing was received.
    pub latest: u32,
    /// Receipt of the 32 snapshots before `latest`.
    pub bits: u32,
    /// False until the first snapshot arrives.
    pub any: bool,
}

impl Ack {
    /// Records receipt of snapshot `seq`.
    pub fn record(&mut self, seq: u32) {
        if !self.any {
            *self = Self {
                latest: seq,
                bits: 0,
                any: true,
            };
            return;
        }
        let ahead = seq.wrapping_sub(self.latest);
        if ahead == 0 {
            return;
        }
        if ahead < 0x8000_0000 {
            // Newer: shift the window forward.
            self.bits = if ahead > 32 {
                0
            } else {
                ((u64::from(self.bits) << ahead) | (1u64 << (ahead - 1))) as u32
            };
            self.latest = seq;
        } else {
            let behind = self.latest.wrapping_sub(seq);
            if (1..=32).contains(&behind) {
                self.bits |= 1 << (behind - 1);
            }
        }
    }

    /// True if this acknowledgement covers snapshot `seq`.
    pub fn covers(&self, seq: u32) -> bool {
        if !self.any {
            return false;
        }
        let behind = self.latest.wrapping_sub(seq);
        behind == 0 || ((1..=32).contains(&behind) && self.bits & (1 << (behind - 1)) != 0)
    }

    fn encode(&self, w: &mut Writer) {
        w.u8(u8::from(self.any));
        if self.any {
            w.u32(self.latest);
            w.u32(self.bits);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(Self::default()),
            1 => Ok(Self {
                latest: r.u32()?,
                bits: r.u32()?,
                any: true,
            }),
            _ => Err(DecodeError::InvalidValue("ack flag")),
        }
    }
}

/// One frame of player input.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct InputFrame {
    /// Increasing input sequence number (wrapping); the server applies each once.
    pub seq: u32,
    /// Desired velocity in world units per second (the server clamps it to max speed).
    pub velocity: Vec2,
    /// Game-defined button bits.
    pub buttons: u8,
}

impl InputFrame {
    fn encode(&self, w: &mut Writer) {
        let q = QPos::from_world(self.velocity);
        w.u32(self.seq);
        w.zigzag(q.x.into());
        w.zigzag(q.y.into());
        w.u8(self.buttons);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let seq = r.u32()?;
        let x = decode_i32(r, "velocity")?;
        let y = decode_i32(r, "velocity")?;
        Ok(Self {
            seq,
            velocity: QPos { x, y }.to_world(),
            buttons: r.u8()?,
        })
    }

    /// The velocity as the server will see it after quantisation.
    pub fn quantised_velocity(&self) -> Vec2 {
        QPos::from_world(self.velocity).to_world()
    }
}

fn decode_i32(r: &mut Reader<'_>, field: &'static str) -> Result<i32, DecodeError> {
    i32::try_from(r.zigzag()?).map_err(|_| DecodeError::InvalidValue(field))
}

/// Datagrams from client to server.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientDatagram {
    /// Inputs, newest first, with copies of recent older ones so a lost datagram costs
    /// nothing; plus the client's snapshot acknowledgement. May carry no inputs (ack only).
    Input {
        /// Snapshot acknowledgement.
        ack: Ack,
        /// Newest first; at most [`INPUTS_PER_DATAGRAM_MAX`].
        inputs: Vec<InputFrame>,
    },
}

impl ClientDatagram {
    /// Encodes the datagram.
    pub fn encode(&self) -> Vec<u8> {
        let Self::Input { ack, inputs } = self;
        let mut w = Writer::with_capacity(16 + inputs.len() * 12);
        w.u8(1);
        ack.encode(&mut w);
        w.varint(inputs.len() as u64);
        for i in inputs {
            i.encode(&mut w);
        }
        w.into_vec()
    }

    /// Decodes a datagram; any malformed input is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = datagram_reader(bytes, "client datagram")?;
        let ack = Ack::decode(&mut r)?;
        let n = r.count("inputs", INPUTS_PER_DATAGRAM_MAX)?;
        let inputs = (0..n)
            .map(|_| InputFrame::decode(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Ok(Self::Input { ack, inputs })
    }
}

/// Header of a snapshot datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Per-client snapshot sequence number (wrapping).
    pub seq: u32,
    /// Server tick the snapshot describes.
    pub tick: u64,
    /// Newest input sequence number the server has applied for this player (0 = none).
    pub input_ack: u32,
}

impl SnapshotHeader {
    /// Writes the datagram tag and header; records follow.
    pub fn encode(&self, w: &mut Writer) {
        w.u8(1);
        w.u32(self.seq);
        w.varint(self.tick);
        w.u32(self.input_ack);
    }
}

/// How a record carries an entity's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PosField {
    /// The position did not change from what the client holds.
    Unchanged,
    /// The full quantised position.
    Absolute(QPos),
    /// Offset from the entity's position in snapshot `seq - baseline_back`.
    Delta {
        /// How many sequence numbers back the baseline snapshot is (at least 1).
        baseline_back: u32,
        /// Quantised x offset.
        dx: i32,
        /// Quantised y offset.
        dy: i32,
    },
}

/// One replicated component's encoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentValue {
    /// The game's replication id for the component type.
    pub id: u16,
    /// The component, encoded by the game's serializer.
    pub bytes: Vec<u8>,
}

/// One entity's part of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityRecord {
    /// The entity left the client's view (or the world).
    Despawn {
        /// Which entity.
        id: NetId,
    },
    /// The entity's current state, relative to what the client holds.
    Update {
        /// Which entity.
        id: NetId,
        /// Present when the client has no baseline for the entity: create it.
        spawn_kind: Option<u16>,
        /// Its position.
        pos: PosField,
        /// The complete list of replicated components when any of them changed since the
        /// client's baseline (it replaces the client's list); empty means unchanged.
        components: Vec<ComponentValue>,
    },
}

const FLAG_SPAWN: u8 = 1;
const FLAG_DESPAWN: u8 = 2;
const FLAG_POS_ABS: u8 = 4;
const FLAG_POS_DELTA: u8 = 8;
const FLAG_COMPONENTS: u8 = 16;

impl EntityRecord {
    /// The entity the record is about.
    pub fn id(&self) -> NetId {
        match self {
            Self::Despawn { id } | Self::Update { id, .. } => *id,
        }
    }

    /// Appends the record to a snapshot being written.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Self::Despawn { id } => {
                w.varint(id.0);
                w.u8(FLAG_DESPAWN);
            }
            Self::Update {
                id,
                spawn_kind,
                pos,
                components,
            } => {
                w.varint(id.0);
                let mut flags = 0;
                flags |= if spawn_kind.is_some() { FLAG_SPAWN } else { 0 };
                flags |= match pos {
                    PosField::Unchanged => 0,
                    PosField::Absolute(_) => FLAG_POS_ABS,
                    PosField::Delta { .. } => FLAG_POS_DELTA,
                };
                flags |= if components.is_empty() {
                    0
                } else {
                    FLAG_COMPONENTS
                };
                w.u8(flags);
                if let Some(kind) = spawn_kind {
                    w.u16(*kind);
                }
                encode_pos(pos, w);
                if !components.is_empty() {
                    encode_components(components, w);
                }
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = NetId(r.varint()?);
        let flags = r.u8()?;
        if flags == FLAG_DESPAWN {
            return Ok(Self::Despawn { id });
        }
        if flags & (FLAG_DESPAWN | !0x1f) != 0
            || flags & (FLAG_POS_ABS | FLAG_POS_DELTA) == FLAG_POS_ABS | FLAG_POS_DELTA
        {
            return Err(DecodeError::InvalidValue("record flags"));
        }
        let spawn_kind = if flags & FLAG_SPAWN != 0 {
            Some(r.u16()?)
        } else {
            None
        };
        let pos = decode_pos(flags, r)?;
        let components = if flags & FLAG_COMPONENTS != 0 {
            decode_components(r)?
        } else {
            Vec::new()
        };
        Ok(Self::Update {
            id,
            spawn_kind,
            pos,
            components,
        })
    }
}

fn encode_pos(pos: &PosField, w: &mut Writer) {
    match pos {
        PosField::Unchanged => {}
        PosField::Absolute(q) => {
            w.zigzag(q.x.into());
            w.zigzag(q.y.into());
        }
        PosField::Delta {
            baseline_back,
            dx,
            dy,
        } => {
            w.varint((*baseline_back).into());
            w.zigzag((*dx).into());
            w.zigzag((*dy).into());
        }
    }
}

fn decode_pos(flags: u8, r: &mut Reader<'_>) -> Result<PosField, DecodeError> {
    if flags & FLAG_POS_ABS != 0 {
        let x = decode_i32(r, "position")?;
        let y = decode_i32(r, "position")?;
        return Ok(PosField::Absolute(QPos { x, y }));
    }
    if flags & FLAG_POS_DELTA != 0 {
        let baseline_back = r.varint_u32("baseline_back")?;
        if baseline_back == 0 {
            return Err(DecodeError::InvalidValue("baseline_back"));
        }
        let dx = decode_i32(r, "position delta")?;
        let dy = decode_i32(r, "position delta")?;
        return Ok(PosField::Delta {
            baseline_back,
            dx,
            dy,
        });
    }
    Ok(PosField::Unchanged)
}

/// Writes a component list as records carry it: a count, then each id and its bytes.
/// Used for anything that carries an entity's components (records, and player and
/// ghost messages between nodes), so there is one encoding.
pub fn encode_components(components: &[ComponentValue], w: &mut Writer) {
    w.varint(components.len() as u64);
    for c in components {
        w.varint(c.id.into());
        w.bytes(&c.bytes);
    }
}

/// Reads a list written by [`encode_components`], within
/// [`COMPONENTS_PER_RECORD_MAX`] components of [`COMPONENT_BYTES_MAX`] bytes each.
pub fn decode_components(r: &mut Reader<'_>) -> Result<Vec<ComponentValue>, DecodeError> {
    let n = r.count("components", COMPONENTS_PER_RECORD_MAX)?;
    (0..n)
        .map(|_| {
            let id = u16::try_from(r.varint()?)
                .map_err(|_| DecodeError::InvalidValue("component id"))?;
            let bytes = r.bytes("component", COMPONENT_BYTES_MAX)?.to_vec();
            Ok(ComponentValue { id, bytes })
        })
        .collect()
}

/// A decoded snapshot datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Sequence, tick and input acknowledgement.
    pub header: SnapshotHeader,
    /// Entity records, in the order the server prioritised them.
    pub records: Vec<EntityRecord>,
}

impl Snapshot {
    /// Decodes a snapshot datagram; any malformed input is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = datagram_reader(bytes, "server datagram")?;
        let header = SnapshotHeader {
            seq: r.u32()?,
            tick: r.varint()?,
            input_ack: r.u32()?,
        };
        // Each record consumes at least two bytes, so the loop is bounded by the
        // datagram size checked above.
        let mut records = Vec::new();
        while r.remaining() > 0 {
            records.push(EntityRecord::decode(&mut r)?);
        }
        Ok(Self { header, records })
    }

    /// Encodes the whole snapshot (servers usually stream records with a budget instead).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        self.header.encode(&mut w);
        for rec in &self.records {
            rec.encode(&mut w);
        }
        w.into_vec()
    }
}

/// A reader over a datagram of at most [`DATAGRAM_MAX`] bytes, past its version tag
/// (1, the only one); `what` names the datagram in errors.
fn datagram_reader<'a>(bytes: &'a [u8], what: &'static str) -> Result<Reader<'a>, DecodeError> {
    if bytes.len() > DATAGRAM_MAX {
        return Err(DecodeError::TooLong {
            field: "datagram",
            len: bytes.len() as u64,
            max: DATAGRAM_MAX as u64,
        });
    }
    let mut r = Reader::new(bytes);
    match r.u8()? {
        1 => Ok(r),
        tag => Err(DecodeError::UnknownTag {
            what,
            tag: tag.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ack_tracks_window_and_reordering() {
        let mut ack = Ack::default();
        assert!(!ack.covers(0));
        ack.record(10);
        ack.record(12);
        ack.record(11);
        assert!(ack.covers(10) && ack.covers(11) && ack.covers(12));
        assert!(!ack.covers(9) && !ack.covers(13));
        ack.record(100);
        assert!(!ack.covers(12));
        assert!(ack.covers(100));
    }

    #[test]
    fn ack_survives_sequence_wrap() {
        let mut ack = Ack::default();
        ack.record(u32::MAX);
        ack.record(0);
        assert!(ack.covers(u32::MAX) && ack.covers(0));
    }

    #[test]
    fn snapshot_roundtrips() {
        let snap = Snapshot {
            header: SnapshotHeader {
                seq: 5,
                tick: 99,
                input_ack: 4,
            },
            records: vec![
                EntityRecord::Update {
                    id: NetId(1),
                    spawn_kind: Some(2),
                    pos: PosField::Absolute(QPos { x: -5, y: 100 }),
                    components: vec![ComponentValue {
                        id: 1,
                        bytes: vec![9, 9],
                    }],
                },
                EntityRecord::Update {
                    id: NetId(2),
                    spawn_kind: None,
                    pos: PosField::Delta {
                        baseline_back: 3,
                        dx: 1,
                        dy: -1,
                    },
                    components: vec![],
                },
                EntityRecord::Despawn { id: NetId(3) },
            ],
        };
        assert_eq!(Snapshot::decode(&snap.encode()).unwrap(), snap);
    }

    #[test]
    fn input_roundtrips_with_quantisation() {
        let d = ClientDatagram::Input {
            ack: Ack {
                latest: 3,
                bits: 1,
                any: true,
            },
            inputs: vec![InputFrame {
                seq: 9,
                velocity: Vec2::new(1.5, -2.25),
                buttons: 1,
            }],
        };
        assert_eq!(ClientDatagram::decode(&d.encode()).unwrap(), d);
    }

    #[test]
    fn too_many_inputs_are_rejected() {
        let d = ClientDatagram::Input {
            ack: Ack::default(),
            inputs: vec![InputFrame::default(); INPUTS_PER_DATAGRAM_MAX + 1],
        };
        assert!(ClientDatagram::decode(&d.encode()).is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_datagrams_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = ClientDatagram::decode(&bytes);
            let _ = Snapshot::decode(&bytes);
        }

        #[test]
        fn delta_records_roundtrip(id in any::<u64>(), back in 1u32..1000, dx in any::<i32>(), dy in any::<i32>()) {
            let rec = EntityRecord::Update { id: NetId(id), spawn_kind: None, pos: PosField::Delta { baseline_back: back, dx, dy }, components: vec![] };
            let snap = Snapshot { header: SnapshotHeader { seq: 1, tick: 1, input_ack: 0 }, records: vec![rec] };
            prop_assert_eq!(Snapshot::decode(&snap.encode()).unwrap(), snap);
        }
    }
}
