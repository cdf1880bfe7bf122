//! A running zone's complete state as a live handoff ships it from one node to
//! another ([`ZoneImage`]): every replicated entity with all its registered
//! components, the zone's players with their sessions and clients' views, the tick
//! it was frozen at, the next network id and the zone's running counters, so the zone
//! carries on elsewhere as if it had never stopped. Plain data with a wire encoding; the server crate captures
//! it from a zone's world and restores it into a new one.
//!
//! What is not in it: ghosts (the neighbours send them again every tick) and game
//! state the game did not register (components that are neither replicated nor
//! persistent are unknown to the framework and start afresh, as after a restart).
//!
//! Every decode is bounded (entity, component and byte counts) and checks floats are
//! finite, so a corrupt image is an error, never a panic or a poisoned world.

use zonemesh_shared::codec::{DecodeError, Reader, Writer};
use zonemesh_shared::datagram::{ComponentValue, decode_components, encode_components};
use zonemesh_shared::ids::NetId;

use crate::crossing::{CarriedPlayer, decode_player, encode_player, finite};

/// Entities one image holds at most.
pub const IMAGE_ENTITIES_MAX: usize = 1 << 20;
/// Players one image holds at most.
pub const IMAGE_PLAYERS_MAX: usize = 65_536;
/// Persistent components per entity at most.
pub const PERSISTED_PER_ENTITY_MAX: usize = 64;
/// Largest encoded persistent component.
pub const PERSISTED_BYTES_MAX: usize = 64 * 1024;

const FORMAT_VERSION: u8 = 2;

/// One non-player entity of a zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEntity {
    /// Its network id (kept: clients' replicas carry on).
    pub net_id: NetId,
    /// Its kind.
    pub kind: u16,
    /// Position, world units.
    pub position: [f32; 2],
    /// Velocity, world units per second.
    pub velocity: [f32; 2],
    /// Whether it is saved with the zone's checkpoints.
    pub persistent: bool,
    /// Its replicated components, as the game's registry encoded them.
    pub replicated: Vec<ComponentValue>,
    /// Its persistent components (registry id and encoding).
    pub persisted: Vec<(u16, Vec<u8>)>,
}

/// A zone's running counters since it was first activated, carried so its figures
/// go on where it goes (and, for inputs, so every input is counted once over all the
/// nodes that held the zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImageCounters {
    /// Inputs applied (the newest of each batch that advanced a player's input).
    pub inputs_applied: u64,
    /// Inputs passed over because a newer one of the same player was applied.
    pub inputs_superseded: u64,
    /// Inputs clamped to the player's max speed.
    pub inputs_clamped: u64,
    /// Inputs with non-finite values.
    pub inputs_invalid: u64,
    /// Components too large to replicate.
    pub components_oversized: u64,
}

impl ImageCounters {
    fn encode(&self, w: &mut Writer) {
        for v in [
            self.inputs_applied,
            self.inputs_superseded,
            self.inputs_clamped,
            self.inputs_invalid,
            self.components_oversized,
        ] {
            w.varint(v);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            inputs_applied: r.varint()?,
            inputs_superseded: r.varint()?,
            inputs_clamped: r.varint()?,
            inputs_invalid: r.varint()?,
            components_oversized: r.varint()?,
        })
    }
}

/// A zone's complete state at a tick boundary.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ZoneImage {
    /// The tick the zone had completed when it was frozen.
    pub tick: u64,
    /// The zone's next network id sequence number.
    pub next_net_id: u32,
    /// Its entities other than players.
    pub entities: Vec<ImageEntity>,
    /// Its players, each with its session and its client's view.
    pub players: Vec<CarriedPlayer>,
    /// Its running counters.
    pub counters: ImageCounters,
}

impl ZoneImage {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + self.entities.len() * 48);
        w.u8(FORMAT_VERSION);
        w.varint(self.tick);
        w.u32(self.next_net_id);
        w.varint(self.entities.len() as u64);
        for e in &self.entities {
            encode_entity(e, &mut w);
        }
        w.varint(self.players.len() as u64);
        for p in &self.players {
            encode_player(p, &mut w);
        }
        self.counters.encode(&mut w);
        w.into_vec()
    }

    /// Reads an image written by [`Self::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::InvalidValue("zone image version"));
        }
        let tick = r.varint()?;
        let next_net_id = r.u32()?;
        let n = r.count("entities", IMAGE_ENTITIES_MAX)?;
        let mut entities = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            entities.push(decode_entity(&mut r)?);
        }
        let n = r.count("players", IMAGE_PLAYERS_MAX)?;
        let mut players = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            players.push(decode_player(&mut r)?);
        }
        let counters = ImageCounters::decode(&mut r)?;
        r.finish()?;
        Ok(Self {
            tick,
            next_net_id,
            entities,
            players,
            counters,
        })
    }
}

fn encode_entity(e: &ImageEntity, w: &mut Writer) {
    w.varint(e.net_id.0);
    w.u16(e.kind);
    for v in e.position.iter().chain(&e.velocity) {
        w.u32(v.to_bits());
    }
    w.u8(u8::from(e.persistent));
    encode_components(&e.replicated, w);
    w.varint(e.persisted.len() as u64);
    for (id, bytes) in &e.persisted {
        w.u16(*id);
        w.bytes(bytes);
    }
}

fn decode_entity(r: &mut Reader<'_>) -> Result<ImageEntity, DecodeError> {
    let net_id = NetId(r.varint()?);
    let kind = r.u16()?;
    let position = [finite(r)?, finite(r)?];
    let velocity = [finite(r)?, finite(r)?];
    let persistent = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::InvalidValue("persistent flag")),
    };
    let replicated = decode_components(r)?;
    let n = r.count("persisted components", PERSISTED_PER_ENTITY_MAX)?;
    let mut persisted = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.u16()?;
        persisted.push((
            id,
            r.bytes("persisted component", PERSISTED_BYTES_MAX)?
                .to_vec(),
        ));
    }
    Ok(ImageEntity {
        net_id,
        kind,
        position,
        velocity,
        persistent,
        replicated,
        persisted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn image() -> ZoneImage {
        ZoneImage {
            tick: 12_345,
            next_net_id: 77,
            entities: vec![ImageEntity {
                net_id: NetId(9),
                kind: 3,
                position: [1.5, -2.0],
                velocity: [0.25, 4.0],
                persistent: true,
                replicated: vec![ComponentValue {
                    id: 2,
                    bytes: vec![1, 2, 3],
                }],
                persisted: vec![(5, vec![7; 300])],
            }],
            players: vec![CarriedPlayer {
                session: 4,
                name: "ada".into(),
                net_id: NetId(10),
                position: [3.0, 4.0],
                velocity: [0.0, 1.0],
                max_speed: 6.0,
                last_input_seq: 41,
                components: Vec::new(),
                next_record_version: (2 << 32) | 5,
                view: vec![1, 2, 3, 4],
            }],
            counters: ImageCounters {
                inputs_applied: 300,
                inputs_superseded: 12,
                inputs_clamped: 1,
                inputs_invalid: 0,
                components_oversized: 2,
            },
        }
    }

    #[test]
    fn an_image_roundtrips() {
        let image = image();
        assert_eq!(ZoneImage::decode(&image.encode()).unwrap(), image);
        let empty = ZoneImage::default();
        assert_eq!(ZoneImage::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn corrupt_images_are_errors() {
        let bytes = image().encode();
        for cut in 0..bytes.len() {
            assert!(ZoneImage::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert!(ZoneImage::decode(&wrong_version).is_err());
        let mut trailing = bytes;
        trailing.push(0);
        assert!(ZoneImage::decode(&trailing).is_err());
        let mut nan = image();
        nan.entities[0].position[0] = f32::NAN;
        assert!(ZoneImage::decode(&nan.encode()).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ZoneImage::decode(&bytes);
        }
    }
}
