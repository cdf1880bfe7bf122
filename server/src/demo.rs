//! The demo world, written exactly as a game built on ZoneMesh would be: a plugin with
//! replicated components, systems, spawn rules and an event handler.
//!
//! A square world split into a grid of zones (default 4x4 of 256 units), a few thousand
//! wandering NPCs spread over the zones, and players that move by input (the framework
//! clamps any input faster than [`PLAYER_MAX_SPEED`]). A player's buttons pick an emote
//! that everyone around sees; sending the [`EVENT_WAVE`] event gets back how many
//! players share the zone. NPCs are persistent (saved with their zone), and so are the
//! players' [`Coins`], which change through the durable [`ACTION_PICK_UP_COIN`] or the
//! plain [`EVENT_ADD_COIN`] (a read-modify-write of zone state, saved by checkpoints).

use crate::game::{
    DurableActionEvent, Game, GamePlugin, NetIdAllocator, OutgoingEvents, Persistent, Player,
    PlayerEvents, PlayerInput, Position, Replicated, Velocity, WorldRules, ZoneApp, ZoneInfo,
};
use bevy_ecs::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use zonemesh_shared::quant::Vec2;

/// Entity kind of players.
pub const KIND_PLAYER: u16 = 1;
/// Entity kind of wandering NPCs.
pub const KIND_NPC: u16 = 2;
/// Players' max speed, world units per second.
pub const PLAYER_MAX_SPEED: f32 = 8.0;
/// Client → server: wave. Server → client: the answer, a little-endian `u32` count of
/// players in the zone.
pub const EVENT_WAVE: u16 = 1;
/// Client → server: add one coin to the player's [`Coins`] (empty payload). Server →
/// client: the answer, the new count as a little-endian `u32`, sent as soon as the
/// request arrives (a request handler, not a tick system). Not durable: the new count is
/// saved with the zone's next checkpoint (the thesis benchmark's action).
pub const EVENT_ADD_COIN: u16 = 2;

/// Durable action: the player picks up a coin (empty payload). Stored before it counts.
pub const ACTION_PICK_UP_COIN: u16 = 1;

/// Replication ids of the demo's components.
pub mod component_ids {
    /// [`super::Hue`].
    pub const HUE: u16 = 1;
    /// [`super::Nameplate`].
    pub const NAMEPLATE: u16 = 2;
    /// [`super::Emote`].
    pub const EMOTE: u16 = 3;
    /// [`super::Coins`].
    pub const COINS: u16 = 4;
}

/// Persistence ids of the demo's components (stable: they name saved data).
pub mod persist_ids {
    /// [`super::Hue`].
    pub const HUE: u16 = 1;
    /// [`super::Wanderer`].
    pub const WANDERER: u16 = 2;
    /// [`super::Coins`].
    pub const COINS: u16 = 3;
}

/// Coins a player holds (replicated and persistent).
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Coins(pub u32);

/// An NPC's colour (replicated).
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hue(pub u8);

/// A player's displayed name (replicated).
#[derive(Component, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nameplate(pub String);

/// The emote a player shows, chosen with the low four input buttons (replicated).
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Emote(pub u8);

/// Where an NPC is walking to, and how fast (persistent).
#[derive(Component, Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Wanderer {
    target: (f32, f32),
    speed: f32,
}

/// The zone's random source (seeded per zone: reproducible runs).
#[derive(Resource, Debug)]
struct DemoRng(SmallRng);

/// Demo settings.
#[derive(Debug, Clone, Copy)]
pub struct DemoConfig {
    /// NPCs in the whole world, spread evenly over the zones.
    pub npcs: usize,
    /// Zones in the world (to split the NPCs).
    pub zones: usize,
    /// The world's side length, for player spawn points.
    pub world_size: Vec2,
}

/// The demo as a plugin.
#[derive(Debug, Clone, Copy)]
pub struct DemoPlugin {
    npcs_per_zone: usize,
}

/// The demo game: its plugin and world rules.
pub fn demo_game(config: DemoConfig) -> Game {
    let per_zone = config.npcs / config.zones.max(1);
    let size = config.world_size;
    Game::new()
        .with_plugin(DemoPlugin {
            npcs_per_zone: per_zone,
        })
        .with_rules(WorldRules {
            player_kind: KIND_PLAYER,
            player_max_speed: PLAYER_MAX_SPEED,
            spawn_point: Arc::new(move |name| spawn_point(name, size)),
        })
}

/// A stable spawn point from the player's name, so a player comes back where it first
/// appeared (until persistence remembers where it left).
pub fn spawn_point(name: &str, world: Vec2) -> Vec2 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    let bits = h.finish();
    let fx = (bits & 0xffff) as f32 / 65535.0;
    let fy = ((bits >> 16) & 0xffff) as f32 / 65535.0;
    Vec2::new(fx * world.x, fy * world.y)
}

impl GamePlugin for DemoPlugin {
    fn build(&self, zone: &mut ZoneApp) {
        let npcs = self.npcs_per_zone;
        zone.replicate::<Hue>(component_ids::HUE)
            .replicate::<Nameplate>(component_ids::NAMEPLATE)
            .replicate::<Emote>(component_ids::EMOTE)
            .replicate::<Coins>(component_ids::COINS)
            .persist::<Hue>(persist_ids::HUE)
            .persist::<Wanderer>(persist_ids::WANDERER)
            .persist::<Coins>(persist_ids::COINS)
            // Replaced by a per-zone seed when a zone starts fresh.
            .insert_resource(DemoRng(SmallRng::seed_from_u64(0)))
            .add_systems((wander, emote_from_buttons, answer_waves))
            .on_request(EVENT_ADD_COIN, add_coin)
            .on_zone_start(move |world| spawn_npcs(world, npcs))
            .on_player_spawn(|player| {
                let name = player.get::<Player>().map(|p| p.name.clone());
                player.insert((
                    Nameplate(name.unwrap_or_default()),
                    Emote::default(),
                    Coins::default(),
                ));
            })
            .on_durable_action(ACTION_PICK_UP_COIN, pick_up_coin);
    }
}

fn spawn_npcs(world: &mut World, count: usize) {
    let info = world.resource::<ZoneInfo>().clone();
    let mut rng = SmallRng::seed_from_u64(u64::from(info.id.0));
    for _ in 0..count {
        let id = world.resource_mut::<NetIdAllocator>().allocate();
        let pos = random_point(&mut rng, &info);
        let target = random_point(&mut rng, &info);
        let wanderer = Wanderer {
            target: (target.x, target.y),
            speed: rng.random_range(1.0..4.0),
        };
        let hue = Hue(rng.random());
        world.spawn((
            Replicated::new(id, KIND_NPC, pos),
            wanderer,
            hue,
            Persistent,
        ));
    }
    world.insert_resource(DemoRng(rng));
}

fn random_point(rng: &mut SmallRng, info: &ZoneInfo) -> Vec2 {
    let b = info.bounds;
    Vec2::new(
        rng.random_range(b.min.x..b.max.x - 0.01),
        rng.random_range(b.min.y..b.max.y - 0.01),
    )
}

/// NPCs walk towards a random point of their zone, then pick another.
fn wander(
    info: Res<'_, ZoneInfo>,
    mut rng: ResMut<'_, DemoRng>,
    mut npcs: Query<'_, '_, (&Position, &mut Velocity, &mut Wanderer)>,
) {
    for (pos, mut vel, mut w) in &mut npcs {
        let to_target = Vec2::new(w.target.0, w.target.1) - pos.0;
        if to_target.length() < 1.0 {
            let next = random_point(&mut rng.0, &info);
            w.target = (next.x, next.y);
            continue;
        }
        let v = to_target.clamp_length(w.speed);
        vel.set_if_neq(Velocity(v));
    }
}

/// Applies a committed coin pickup (runs once per action id).
fn pick_up_coin(world: &mut World, action: &DurableActionEvent) {
    if let Some(mut coins) = world.get_mut::<Coins>(action.player) {
        coins.0 = coins.0.saturating_add(1);
    }
}

fn emote_from_buttons(
    mut players: Query<'_, '_, (&PlayerInput, &mut Emote), Changed<PlayerInput>>,
) {
    for (input, mut emote) in &mut players {
        emote.set_if_neq(Emote(input.buttons & 0x0f));
    }
}

fn answer_waves(
    events: Res<'_, PlayerEvents>,
    mut out: ResMut<'_, OutgoingEvents>,
    players: Query<'_, '_, (), With<Player>>,
) {
    let count = u32::try_from(players.iter().count()).unwrap_or(u32::MAX);
    for e in events.iter().filter(|e| e.kind == EVENT_WAVE) {
        out.send(e.player, EVENT_WAVE, count.to_le_bytes().to_vec());
    }
}

/// Answers an [`EVENT_ADD_COIN`] request with the player's coin count after adding one.
fn add_coin(world: &mut World, player: Entity, _payload: &[u8]) -> Option<Vec<u8>> {
    let mut coins = world.get_mut::<Coins>(player)?;
    coins.0 = coins.0.saturating_add(1);
    Some(coins.0.to_le_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_points_are_inside_the_world_and_stable() {
        let world = Vec2::new(1024.0, 1024.0);
        for name in ["a", "bob", "player-123", "zz"] {
            let p = spawn_point(name, world);
            assert!(p.x >= 0.0 && p.x <= 1024.0 && p.y >= 0.0 && p.y <= 1024.0);
            assert_eq!(p, spawn_point(name, world));
        }
    }

    #[test]
    fn add_coin_increments_and_answers_with_the_new_count() {
        let mut world = World::new();
        let player = world.spawn(Coins(5)).id();
        assert_eq!(
            add_coin(&mut world, player, &[]),
            Some(6u32.to_le_bytes().to_vec())
        );
        assert_eq!(
            add_coin(&mut world, player, &[]),
            Some(7u32.to_le_bytes().to_vec())
        );
        assert_eq!(world.get::<Coins>(player), Some(&Coins(7)));
        let coinless = world.spawn_empty().id();
        assert_eq!(add_coin(&mut world, coinless, &[]), None);
    }
}
