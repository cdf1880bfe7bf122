//! What a zone and a player look like in the store: versioned postcard blobs of the
//! entities and components the game marks persistent, and the code that captures them
//! from a world and restores them into one.
//!
//! Format version 1: one version byte, then postcard. A blob with another version or
//! that does not decode is an error for that zone or player, never a panic.

use crate::game::{Kind, NetEntity, NetIdAllocator, Persistent, Position};
use crate::game::{PersistRegistry, Replicated, ZoneInfo};
use bevy_ecs::prelude::*;
use bevy_ecs::world::{EntityRef, EntityWorldMut};
use serde::{Deserialize, Serialize};
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::Vec2;

/// The blob format this build writes and reads.
const FORMAT_VERSION: u8 = 1;

/// Why a stored blob could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Written by a newer or unknown format.
    #[error("stored state has format version {0}; this server reads version {FORMAT_VERSION}")]
    UnknownVersion(u8),
    /// Empty or undecodable.
    #[error("stored state is corrupt: {0}")]
    Corrupt(String),
}

/// One encoded persistent component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedComponent {
    /// The id it was registered under with `ZoneApp::persist`.
    pub id: u16,
    /// Its postcard encoding.
    pub bytes: Vec<u8>,
}

/// One persistent entity of a zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedEntity {
    /// Its network id (kept, so clients never see an id reused).
    pub net_id: u64,
    /// Its kind.
    pub kind: u16,
    /// Position.
    pub x: f32,
    /// Position.
    pub y: f32,
    /// Persistent components.
    pub components: Vec<SavedComponent>,
}

/// A zone's saved state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneState {
    /// The zone's next network id sequence number.
    pub next_net_id: u32,
    /// Its persistent entities.
    pub entities: Vec<SavedEntity>,
}

/// A player's saved game data (position and zone travel in the record itself).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlayerData {
    /// Persistent components of the player entity.
    pub components: Vec<SavedComponent>,
}

/// Encodes any saved value with the version byte in front.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StateError> {
    let mut out = vec![FORMAT_VERSION];
    let body = postcard::to_allocvec(value).map_err(|e| StateError::Corrupt(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a blob written by [`encode`].
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StateError> {
    match bytes.split_first() {
        None => Err(StateError::Corrupt("empty blob".into())),
        Some((&FORMAT_VERSION, body)) => {
            postcard::from_bytes(body).map_err(|e| StateError::Corrupt(e.to_string()))
        }
        Some((&v, _)) => Err(StateError::UnknownVersion(v)),
    }
}

/// Encodes the persistent components of one entity.
pub fn capture_components(
    entity: &EntityRef<'_>,
    registry: &PersistRegistry,
) -> Vec<SavedComponent> {
    registry
        .types
        .iter()
        .filter_map(|t| {
            let bytes = (t.capture)(entity)?;
            Some(SavedComponent { id: t.id, bytes })
        })
        .collect()
}

/// Inserts saved components into an entity; unknown ids and undecodable values are
/// skipped and logged (a game that dropped a component type can still load old saves).
pub fn restore_components(
    entity: &mut EntityWorldMut<'_>,
    registry: &PersistRegistry,
    saved: &[SavedComponent],
) {
    for s in saved {
        let Some(t) = registry.types.iter().find(|t| t.id == s.id) else {
            tracing::warn!(id = s.id, "unknown persistent component id in saved state");
            continue;
        };
        if let Err(e) = (t.insert)(entity, &s.bytes) {
            tracing::warn!(component = t.name, error = %e, "could not restore component");
        }
    }
}

/// Captures every [`Persistent`] entity of a zone's world.
pub fn capture_zone(world: &mut World) -> ZoneState {
    let registry = world.resource::<PersistRegistry>().clone();
    let next_net_id = world.resource::<NetIdAllocator>().next_sequence();
    let mut query =
        world.query_filtered::<(Entity, &NetEntity, &Kind, &Position), With<Persistent>>();
    let rows: Vec<_> = query
        .iter(world)
        .map(|(e, n, k, p)| (e, n.0, k.0, p.0))
        .collect();
    let entities = rows
        .into_iter()
        .map(|(e, net_id, kind, pos)| SavedEntity {
            net_id: net_id.0,
            kind,
            x: pos.x,
            y: pos.y,
            components: capture_components(&world.entity(e), &registry),
        })
        .collect();
    ZoneState {
        next_net_id,
        entities,
    }
}

/// Spawns a zone's saved entities into its (fresh) world and resumes its id sequence.
pub fn restore_zone(world: &mut World, state: &ZoneState) {
    let registry = world.resource::<PersistRegistry>().clone();
    let info = world.resource::<ZoneInfo>().clone();
    world.insert_resource(NetIdAllocator::resume(info.id, state.next_net_id));
    for saved in &state.entities {
        let pos = info.bounds.clamp(Vec2::new(saved.x, saved.y));
        let mut entity = world.spawn((
            Replicated::new(NetId(saved.net_id), saved.kind, pos),
            Persistent,
        ));
        restore_components(&mut entity, &registry, &saved.components);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_roundtrip_and_bad_blobs_are_errors() {
        let state = ZoneState {
            next_net_id: 42,
            entities: vec![SavedEntity {
                net_id: 7,
                kind: 2,
                x: 1.5,
                y: -3.0,
                components: vec![SavedComponent {
                    id: 1,
                    bytes: vec![9, 9],
                }],
            }],
        };
        let bytes = encode(&state).expect("encodes");
        assert_eq!(decode::<ZoneState>(&bytes).expect("decodes"), state);
        assert!(matches!(
            decode::<ZoneState>(&[]),
            Err(StateError::Corrupt(_))
        ));
        assert!(matches!(
            decode::<ZoneState>(&[9, 1, 2]),
            Err(StateError::UnknownVersion(9))
        ));
        assert!(matches!(
            decode::<ZoneState>(&[FORMAT_VERSION, 0xff, 0xff, 0xff]),
            Err(StateError::Corrupt(_))
        ));
    }
}
