//! Marking components as persistent, and durable actions: the game's side of the
//! store. Persistent components are saved with their entity (zone checkpoints for
//! [`Persistent`](super::Persistent) entities, player records for players); durable
//! actions are committed to the store before the game applies them.

use bevy_ecs::prelude::*;
use bevy_ecs::world::{EntityRef, EntityWorldMut};
use serde::Serialize;
use std::sync::Arc;

/// Encodes component `C` of an entity, if it has one.
type CaptureFn = fn(&EntityRef<'_>) -> Option<Vec<u8>>;
/// Decodes and inserts component `C`.
type InsertFn = fn(&mut EntityWorldMut<'_>, &[u8]) -> Result<(), postcard::Error>;

/// One persistent component type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PersistedType {
    pub(crate) id: u16,
    pub(crate) name: &'static str,
    pub(crate) capture: CaptureFn,
    pub(crate) insert: InsertFn,
}

/// The persistent component types of a game, by id.
#[derive(Resource, Debug, Default, Clone)]
pub struct PersistRegistry {
    pub(crate) types: Vec<PersistedType>,
}

pub(crate) fn capture<C: Component + Serialize>(entity: &EntityRef<'_>) -> Option<Vec<u8>> {
    let value = entity.get::<C>()?;
    match postcard::to_allocvec(value) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(component = std::any::type_name::<C>(), error = %e, "not saved");
            None
        }
    }
}

/// A durable action, already committed to the store, for the game to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableActionEvent {
    /// The action's id (unique; the store commits each id once).
    pub id: u128,
    /// The acting player's entity.
    pub player: Entity,
    /// Game-defined kind.
    pub kind: u16,
    /// Game-defined payload.
    pub payload: Vec<u8>,
}

/// Applies committed durable actions of one kind to the world.
pub type DurableActionFn = Arc<dyn Fn(&mut World, &DurableActionEvent) + Send + Sync>;
