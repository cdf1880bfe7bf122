//! Components and resources the framework gives every zone: network identity,
//! position, velocity, player control and zone facts. Games build on these.

use bevy_ecs::prelude::*;
use std::sync::Arc;
use zonemesh_shared::datagram::ComponentValue;
use zonemesh_shared::ids::{NetId, ZoneId};
use zonemesh_shared::quant::Vec2;

/// A session's identity: unique per connection and never reused on this node, and
/// unique across the cluster (each run starts its ids at a random 62-bit value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// Marks an entity as replicated to clients and gives it a stable network id.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetEntity(pub NetId);

/// Game-defined entity kind sent to clients on spawn (player, NPC type, item...).
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind(pub u16);

/// World-space position; replicated (quantised) for every [`NetEntity`].
#[derive(Component, Debug, Clone, Copy, PartialEq, Default)]
pub struct Position(pub Vec2);

/// Velocity in world units per second, integrated every tick.
#[derive(Component, Debug, Clone, Copy, PartialEq, Default)]
pub struct Velocity(pub Vec2);

/// The fastest a player may move, in world units per second; inputs asking for more
/// are clamped and counted.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct MaxSpeed(pub f32);

/// A connected player's entity.
#[derive(Component, Debug, Clone, PartialEq, Eq)]
pub struct Player {
    /// Authenticated player name (from the session token).
    pub name: String,
    /// The session currently controlling this player.
    pub session: SessionId,
}

/// The newest input applied to a player, for game systems that read buttons.
#[derive(Component, Debug, Clone, Copy, PartialEq, Default)]
pub struct PlayerInput {
    /// Desired velocity after the max-speed clamp.
    pub velocity: Vec2,
    /// Game-defined buttons of the newest input.
    pub buttons: u8,
    /// Sequence number of the newest input applied (0 = none yet).
    pub last_seq: u32,
}

/// The encoded replicated components of an entity, refreshed only when one changes, so
/// building per-tick replication state costs a pointer copy for unchanged entities.
#[derive(Component, Debug, Clone)]
pub struct ReplicaComponents {
    pub(crate) values: Vec<ComponentValue>,
    pub(crate) shared: Arc<[ComponentValue]>,
    pub(crate) hash: u64,
    pub(crate) dirty: bool,
}

impl Default for ReplicaComponents {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            shared: Arc::from(Vec::new()),
            hash: 0,
            dirty: false,
        }
    }
}

/// Everything a replicated entity needs: spawn it together with the game's components.
#[derive(Bundle, Debug)]
pub struct Replicated {
    net: NetEntity,
    kind: Kind,
    position: Position,
    velocity: Velocity,
    cache: ReplicaComponents,
}

impl Replicated {
    /// A replicated entity with network id `id`, `kind`, at `position`, at rest.
    pub fn new(id: NetId, kind: u16, position: Vec2) -> Self {
        Self {
            net: NetEntity(id),
            kind: Kind(kind),
            position: Position(position),
            velocity: Velocity::default(),
            cache: ReplicaComponents::default(),
        }
    }
}

/// Allocates network ids for entities a zone creates.
#[derive(Resource, Debug)]
pub struct NetIdAllocator {
    zone: ZoneId,
    next: u32,
}

impl NetIdAllocator {
    /// An allocator for `zone` starting at 1.
    pub fn new(zone: ZoneId) -> Self {
        Self { zone, next: 1 }
    }

    /// An allocator for `zone` continuing at `next` (a zone restored from the store
    /// keeps handing out ids it never used before).
    pub fn resume(zone: ZoneId, next: u32) -> Self {
        Self {
            zone,
            next: next.max(1),
        }
    }

    /// The next id's sequence number, for saving.
    pub fn next_sequence(&self) -> u32 {
        self.next
    }

    /// A fresh id. Wraps after 2^32 allocations in one zone activation, far beyond any
    /// zone's lifetime at realistic spawn rates.
    pub fn allocate(&mut self) -> NetId {
        let id = NetId::new(self.zone, self.next);
        self.next = self.next.wrapping_add(1).max(1);
        id
    }
}

/// Marks a non-player entity whose state is saved in its zone's checkpoints (its
/// position, kind and the components registered with
/// [`ZoneApp::persist`](crate::game::ZoneApp::persist)). A zone restored from the store
/// gets these entities back instead of running its zone-start hooks.
#[derive(Component, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Persistent;

/// An axis-aligned rectangle `[min, max)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Lower corner (inclusive).
    pub min: Vec2,
    /// Upper corner (exclusive).
    pub max: Vec2,
}

impl Rect {
    /// True when `p` lies inside.
    pub fn contains(&self, p: Vec2) -> bool {
        p.x >= self.min.x && p.x < self.max.x && p.y >= self.min.y && p.y < self.max.y
    }

    /// `p` moved to the nearest point inside (a hair inside the exclusive edge).
    pub fn clamp(&self, p: Vec2) -> Vec2 {
        const INSET: f32 = 1e-3;
        Vec2::new(
            p.x.clamp(self.min.x, self.max.x - INSET),
            p.y.clamp(self.min.y, self.max.y - INSET),
        )
    }

    /// Distance from `p` (inside) to the nearest edge.
    pub fn distance_to_edge(&self, p: Vec2) -> f32 {
        (p.x - self.min.x)
            .min(self.max.x - p.x)
            .min(p.y - self.min.y)
            .min(self.max.y - p.y)
    }
}

/// Facts about the zone a system runs in, refreshed every tick.
#[derive(Resource, Debug, Clone)]
pub struct ZoneInfo {
    /// This zone.
    pub id: ZoneId,
    /// The area this zone owns.
    pub bounds: Rect,
    /// The whole world's area.
    pub world_bounds: Rect,
    /// Current tick number.
    pub tick: u64,
    /// Fixed simulation step in seconds.
    pub dt: f32,
}

/// Per-zone counters that game and framework systems bump. They go with the zone
/// when it is handed over to another node, so they count over the zone's whole life.
#[derive(Resource, Debug, Default, Clone)]
pub struct ZoneCounters {
    /// Inputs applied: the newest of a player's batch, when newer than the last one.
    pub inputs_applied: u64,
    /// Inputs passed over because a newer input of the same player was applied
    /// (inputs are states: a newer one makes older ones moot). Applied plus
    /// superseded is each player's newest sequence number summed: every input is
    /// counted once, whichever node held the zone.
    pub inputs_superseded: u64,
    /// Inputs whose velocity exceeded the player's max speed and were clamped.
    pub inputs_clamped: u64,
    /// Inputs with non-finite values, treated as "stand still".
    pub inputs_invalid: u64,
    /// Components that encoded larger than the wire limit and were not replicated.
    pub components_oversized: u64,
}
