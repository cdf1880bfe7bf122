//! The game API: a game is a set of [`GamePlugin`]s. Each zone builds its own ECS world
//! and schedule from them, so game code is written once and runs in every zone.
//!
//! A plugin registers replicated components ([`ZoneApp::replicate`]), systems in the
//! [`ZoneSet::Simulate`] set, the kind and components of player entities
//! ([`ZoneApp::on_player_spawn`]), and the entities a zone starts with
//! ([`ZoneApp::on_zone_start`]). Inputs arrive already validated and clamped in
//! [`PlayerInput`] and the player's [`Velocity`].

pub mod components;
pub mod events;
pub(crate) mod movement;
pub(crate) mod persist;
pub(crate) mod replicate;

pub use components::*;
pub use events::{OutgoingEvents, PlayerEvent, PlayerEvents};
pub use persist::{DurableActionEvent, DurableActionFn, PersistRegistry};
pub use replicate::ReplicationRegistry;

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleConfigs;
use bevy_ecs::system::ScheduleSystem;
use bevy_ecs::world::EntityWorldMut;
use replicate::ReplicatedType;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use zonemesh_shared::quant::Vec2;

/// Ordered phases of a zone tick; game systems go in `Simulate`.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum ZoneSet {
    /// Game logic: AI, combat, spawning, reacting to [`PlayerInput`].
    Simulate,
    /// Framework: velocities integrated into positions.
    Integrate,
    /// Framework: replicated components re-encoded where they changed.
    Replicate,
}

/// Called when a zone starts fresh: spawn its initial entities.
pub type ZoneStartFn = Arc<dyn Fn(&mut World) + Send + Sync>;
/// Called when a player entity is created: add the game's components to it.
pub type PlayerSpawnFn = Arc<dyn Fn(&mut EntityWorldMut<'_>) + Send + Sync>;
/// Answers a request event at once: the acting player's entity and the payload in,
/// the answer's payload out (`None`: no answer).
pub type RequestFn = Arc<dyn Fn(&mut World, Entity, &[u8]) -> Option<Vec<u8>> + Send + Sync>;
/// Chooses where a new player appears, from its name.
pub type SpawnPointFn = Arc<dyn Fn(&str) -> Vec2 + Send + Sync>;

/// A piece of game: systems, replicated components, spawn rules.
pub trait GamePlugin: Send + Sync + 'static {
    /// Adds this plugin's parts to a zone being built. Runs once per zone.
    fn build(&self, zone: &mut ZoneApp);
}

/// Rules that apply to the whole world rather than one zone.
#[derive(Clone)]
pub struct WorldRules {
    /// Entity kind of player entities.
    pub player_kind: u16,
    /// Default max speed of players, world units per second.
    pub player_max_speed: f32,
    /// Where a player without a saved position appears.
    pub spawn_point: SpawnPointFn,
}

impl fmt::Debug for WorldRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorldRules")
            .field("player_kind", &self.player_kind)
            .field("player_max_speed", &self.player_max_speed)
            .finish_non_exhaustive()
    }
}

/// A game: its plugins and world rules. Cheap to clone; shared by every zone.
#[derive(Clone)]
pub struct Game {
    plugins: Vec<Arc<dyn GamePlugin>>,
    rules: WorldRules,
}

impl fmt::Debug for Game {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Game")
            .field("plugins", &self.plugins.len())
            .field("rules", &self.rules)
            .finish()
    }
}

impl Game {
    /// A game with no plugins: players of kind 0 appear at the origin, max speed 8.
    pub fn new() -> Self {
        Self {
            plugins: Vec::new(),
            rules: WorldRules {
                player_kind: 0,
                player_max_speed: 8.0,
                spawn_point: Arc::new(|_| Vec2::ZERO),
            },
        }
    }

    /// Adds a plugin.
    pub fn with_plugin(mut self, plugin: impl GamePlugin) -> Self {
        self.plugins.push(Arc::new(plugin));
        self
    }

    /// Sets the world rules.
    pub fn with_rules(mut self, rules: WorldRules) -> Self {
        self.rules = rules;
        self
    }

    /// The world rules.
    pub fn rules(&self) -> &WorldRules {
        &self.rules
    }

    /// The durable action kinds some plugin handles (others are refused unstored).
    pub fn durable_action_kinds(&self) -> std::collections::HashSet<u16> {
        self.build_zone().durable_actions.keys().copied().collect()
    }

    /// Runs every plugin against a fresh zone builder.
    pub(crate) fn build_zone(&self) -> ZoneApp {
        let mut app = ZoneApp::new();
        for p in &self.plugins {
            p.build(&mut app);
        }
        app
    }
}

impl Default for Game {
    fn default() -> Self {
        Self::new()
    }
}

/// What a zone is made of; filled in by plugins, then turned into a world + schedule.
pub struct ZoneApp {
    pub(crate) world: World,
    pub(crate) schedule: Schedule,
    pub(crate) on_zone_start: Vec<ZoneStartFn>,
    pub(crate) on_player_spawn: Vec<PlayerSpawnFn>,
    pub(crate) durable_actions: std::collections::HashMap<u16, DurableActionFn>,
    pub(crate) requests: std::collections::HashMap<u16, RequestFn>,
    registry: ReplicationRegistry,
    persisted: PersistRegistry,
}

impl fmt::Debug for ZoneApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneApp")
            .field("replicated", &self.registry.types.len())
            .finish_non_exhaustive()
    }
}

impl ZoneApp {
    fn new() -> Self {
        let mut schedule = Schedule::default();
        schedule
            .configure_sets((ZoneSet::Simulate, ZoneSet::Integrate, ZoneSet::Replicate).chain());
        schedule.add_systems(movement::integrate_velocity.in_set(ZoneSet::Integrate));
        schedule.add_systems(
            replicate::publish_changed
                .in_set(ZoneSet::Replicate)
                .after(ReplicateEncode),
        );
        let mut world = World::new();
        world.init_resource::<ZoneCounters>();
        world.init_resource::<PlayerEvents>();
        world.init_resource::<OutgoingEvents>();
        Self {
            world,
            schedule,
            on_zone_start: Vec::new(),
            on_player_spawn: Vec::new(),
            durable_actions: std::collections::HashMap::new(),
            requests: std::collections::HashMap::new(),
            registry: ReplicationRegistry::default(),
            persisted: PersistRegistry::default(),
        }
    }

    /// Adds game systems to the `Simulate` phase.
    pub fn add_systems<M>(
        &mut self,
        systems: impl IntoScheduleConfigs<ScheduleSystem, M>,
    ) -> &mut Self {
        let configs: ScheduleConfigs<ScheduleSystem> = systems.into_configs();
        self.schedule.add_systems(configs.in_set(ZoneSet::Simulate));
        self
    }

    /// Inserts a resource into every zone's world.
    pub fn insert_resource<R: Resource>(&mut self, resource: R) -> &mut Self {
        self.world.insert_resource(resource);
        self
    }

    /// Marks `C` as replicated under wire id `id`: clients receive it (postcard-encoded)
    /// whenever it changes, and it travels with a player that changes zone.
    ///
    /// # Panics
    /// If `id` is already taken: a programming error in the game, caught at start-up.
    pub fn replicate<C>(&mut self, id: u16) -> &mut Self
    where
        C: Component<Mutability = bevy_ecs::component::Mutable> + Serialize + DeserializeOwned,
    {
        assert!(
            self.registry.types.iter().all(|t| t.id != id),
            "replicated component id {id} registered twice"
        );
        self.registry.types.push(ReplicatedType {
            id,
            name: std::any::type_name::<C>(),
            insert: replicate::insert_decoded::<C>,
        });
        self.schedule.add_systems(
            replicate::encode_changed::<C>(id)
                .in_set(ZoneSet::Replicate)
                .in_set(ReplicateEncode),
        );
        self
    }

    /// Marks `C` as persistent under id `id` (stable across releases: it names the
    /// component in saved data). It is saved with [`Persistent`] entities in zone
    /// checkpoints and with player entities in player records, and restored on load.
    ///
    /// # Panics
    /// If `id` is already taken: a programming error in the game, caught at start-up.
    pub fn persist<C>(&mut self, id: u16) -> &mut Self
    where
        C: Component<Mutability = bevy_ecs::component::Mutable> + Serialize + DeserializeOwned,
    {
        assert!(
            self.persisted.types.iter().all(|t| t.id != id),
            "persistent component id {id} registered twice"
        );
        self.persisted.types.push(persist::PersistedType {
            id,
            name: std::any::type_name::<C>(),
            capture: persist::capture::<C>,
            insert: replicate::insert_decoded::<C>,
        });
        self
    }

    /// Applies committed durable actions of `kind` with `f`. The framework commits a
    /// client's action to the store first and calls `f` only for an id it commits for
    /// the first time, so `f` runs once per action even if the client sends it again;
    /// the client is told the action is committed once the store says so. Actions of a
    /// kind with no handler are rejected before anything is stored.
    ///
    /// # Panics
    /// If `kind` already has a handler.
    pub fn on_durable_action(
        &mut self,
        kind: u16,
        f: impl Fn(&mut World, &DurableActionEvent) + Send + Sync + 'static,
    ) -> &mut Self {
        let previous = self.durable_actions.insert(kind, Arc::new(f));
        assert!(
            previous.is_none(),
            "durable action kind {kind} has two handlers"
        );
        self
    }

    /// Handles reliable game events of `kind` as requests: the zone runs `f` as soon as
    /// the event arrives (between ticks if need be, never during one) and sends its
    /// answer back under the same kind at once, instead of at the next tick. For quick
    /// reads and writes of zone state a player waits on (an inventory change, a shop
    /// query); anything that must happen in step with the simulation belongs in a
    /// system reading [`PlayerEvents`].
    ///
    /// # Panics
    /// If `kind` already has a request handler.
    pub fn on_request(
        &mut self,
        kind: u16,
        f: impl Fn(&mut World, Entity, &[u8]) -> Option<Vec<u8>> + Send + Sync + 'static,
    ) -> &mut Self {
        let previous = self.requests.insert(kind, Arc::new(f));
        assert!(previous.is_none(), "request kind {kind} has two handlers");
        self
    }

    /// Runs `f` when a zone starts without saved state, to spawn its initial entities.
    pub fn on_zone_start(&mut self, f: impl Fn(&mut World) + Send + Sync + 'static) -> &mut Self {
        self.on_zone_start.push(Arc::new(f));
        self
    }

    /// Runs `f` on every new player entity, to add the game's components.
    pub fn on_player_spawn(
        &mut self,
        f: impl Fn(&mut EntityWorldMut<'_>) + Send + Sync + 'static,
    ) -> &mut Self {
        self.on_player_spawn.push(Arc::new(f));
        self
    }

    /// Finishes building: the registry becomes a resource of the world.
    pub(crate) fn finish(mut self) -> Self {
        let registry = self.registry.clone();
        self.world.insert_resource(registry);
        self.world.insert_resource(self.persisted.clone());
        self
    }
}

/// Orders the per-type encode systems before publishing.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
struct ReplicateEncode;
