//! Marking components as replicated: each registered type gets a wire id and a system
//! that re-encodes it (postcard) only when it changes, into [`ReplicaComponents`].

use super::components::{ReplicaComponents, ZoneCounters};
use bevy_ecs::prelude::*;
use bevy_ecs::world::EntityWorldMut;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use zonemesh_shared::datagram::{COMPONENT_BYTES_MAX, ComponentValue};

/// Inserts a decoded component into an entity (a player moving between zones, or a
/// component restored from saved state).
type InsertFn = fn(&mut EntityWorldMut<'_>, &[u8]) -> Result<(), postcard::Error>;

/// One replicated component type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplicatedType {
    pub(crate) id: u16,
    pub(crate) name: &'static str,
    pub(crate) insert: InsertFn,
}

/// The replicated component types of a game, by wire id.
#[derive(Resource, Debug, Default, Clone)]
pub struct ReplicationRegistry {
    pub(crate) types: Vec<ReplicatedType>,
}

impl ReplicationRegistry {
    /// Restores components captured by [`ReplicaComponents`] onto an entity; unknown ids
    /// and undecodable bytes are skipped and reported.
    pub(crate) fn restore(&self, entity: &mut EntityWorldMut<'_>, values: &[ComponentValue]) {
        for v in values {
            let Some(t) = self.types.iter().find(|t| t.id == v.id) else {
                tracing::warn!(id = v.id, "unknown replicated component id on restore");
                continue;
            };
            if let Err(e) = (t.insert)(entity, &v.bytes) {
                tracing::warn!(component = t.name, error = %e, "could not restore component");
            }
        }
    }
}

/// Decodes a postcard-encoded `C` and inserts it into `entity`.
pub(crate) fn insert_decoded<C>(
    entity: &mut EntityWorldMut<'_>,
    bytes: &[u8],
) -> Result<(), postcard::Error>
where
    C: Component<Mutability = bevy_ecs::component::Mutable> + DeserializeOwned,
{
    let value: C = postcard::from_bytes(bytes)?;
    entity.insert(value);
    Ok(())
}

/// Entities whose component `C` changed since the encoder last ran.
type ChangedReplicas<'w, 's, C> =
    Query<'w, 's, (&'static C, &'static mut ReplicaComponents), Changed<C>>;

/// Re-encodes component `C` for every entity where it changed.
pub(crate) fn encode_changed<C: Component + Serialize>(
    id: u16,
) -> impl FnMut(ChangedReplicas<C>, ResMut<ZoneCounters>) {
    move |mut query, mut counters| {
        for (component, mut cache) in &mut query {
            match postcard::to_allocvec(component) {
                Ok(bytes) if bytes.len() <= COMPONENT_BYTES_MAX => cache.set(id, bytes),
                Ok(_) | Err(_) => counters.components_oversized += 1,
            }
        }
    }
}

/// Publishes the refreshed encodings (one shared allocation per changed entity).
pub(crate) fn publish_changed(mut query: Query<&mut ReplicaComponents>) {
    for mut cache in &mut query {
        if cache.dirty {
            cache.publish();
        }
    }
}

impl ReplicaComponents {
    fn set(&mut self, id: u16, bytes: Vec<u8>) {
        match self.values.binary_search_by_key(&id, |v| v.id) {
            Ok(i) if self.values[i].bytes == bytes => return,
            Ok(i) => self.values[i].bytes = bytes,
            Err(i) => self.values.insert(i, ComponentValue { id, bytes }),
        }
        self.dirty = true;
    }

    /// A cache already holding `values` (a player arriving from another zone keeps
    /// showing its components without a gap of one tick).
    pub(crate) fn from_values(mut values: Vec<ComponentValue>) -> Self {
        values.sort_by_key(|v| v.id);
        let mut cache = Self {
            values,
            ..Self::default()
        };
        cache.publish();
        cache
    }

    fn publish(&mut self) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for v in &self.values {
            v.id.hash(&mut hasher);
            v.bytes.hash(&mut hasher);
        }
        self.hash = hasher.finish();
        self.shared = Arc::from(self.values.clone());
        self.dirty = false;
    }

    /// The encoded components, shared with every client view this tick.
    pub fn shared(&self) -> &Arc<[ComponentValue]> {
        &self.shared
    }

    /// Hash of the encoded components (equal hash = unchanged).
    pub fn hash(&self) -> u64 {
        self.hash
    }
}
