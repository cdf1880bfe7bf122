//! Zone tick cost at 10k and 100k wandering entities (the demo game), with 50 players
//! connected so area-of-interest upkeep and snapshot building run as in production;
//! next to a hand-written bevy_ecs loop doing only the movement over the same number of
//! entities (the floor the framework's overhead is measured against).
//!
//! A zone with no players measures the simulation plus area-of-interest upkeep
//! (replication state collection and the spatial grid), against the bare loop that
//! also maintains a hand-written grid.
//!
//! Run: `cargo bench -p zonemesh-benches --bench zone_tick`

use bevy_ecs::prelude::*;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::Duration;
use zonemesh_server::demo::{DemoConfig, demo_game};
use zonemesh_server::game::SessionId;
use zonemesh_server::link::ClientLink;
use zonemesh_server::persist::RecordVersions;
use zonemesh_server::zone::{WorldLayout, Zone, ZoneConfig, ZoneMessage};
use zonemesh_shared::quant::Vec2;

const PLAYERS: usize = 50;
const ZONE_SIZE: f32 = 1024.0;

/// One zone of the demo world holding `entities` NPCs and `players` players.
fn demo_zone(entities: usize, players: usize) -> (Zone, Vec<Arc<ClientLink>>) {
    let layout = WorldLayout {
        zones_x: 1,
        zones_y: 1,
        zone_size: ZONE_SIZE,
    };
    let game = demo_game(DemoConfig {
        npcs: entities,
        zones: 1,
        world_size: Vec2::new(ZONE_SIZE, ZONE_SIZE),
    });
    let (mut zone, ctx) = Zone::standalone(&game, layout, ZoneConfig::default());
    let id = zone.id();
    let links = (0..players)
        .map(|i| {
            let link = Arc::new(ClientLink::new(
                SessionId(i as u64 + 1),
                format!("bench-{i}"),
                id,
                1200,
            ));
            let spawn = Vec2::new(
                ZONE_SIZE * (i as f32 + 0.5) / players as f32,
                ZONE_SIZE / 2.0,
            );
            let join = ZoneMessage::Join {
                link: Arc::clone(&link),
                spawn,
                saved: None,
                versions: RecordVersions::after(None),
            };
            ctx.router.send(id, join).expect("inbox has room");
            link
        })
        .collect();
    zone.tick();
    (zone, links)
}

fn bench_zone_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("zone_tick");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for entities in [10_000usize, 100_000] {
        let (mut zone, _) = demo_zone(entities, 0);
        group.bench_with_input(
            BenchmarkId::new("demo_zone_no_players", entities),
            &entities,
            |b, _| b.iter(|| zone.tick()),
        );
        let (mut zone, links) = demo_zone(entities, PLAYERS);
        group.bench_with_input(
            BenchmarkId::new("demo_zone_50_players", entities),
            &entities,
            |b, _| {
                b.iter(|| {
                    zone.tick();
                    // Drain what a connection task would send, as the network shell does.
                    for l in &links {
                        let _ = l.take_snapshot();
                        let _ = l.drain_control();
                    }
                });
            },
        );
    }
    group.finish();
}

#[derive(Component, Clone, Copy)]
struct Pos(Vec2);
#[derive(Component, Clone, Copy)]
struct Vel(Vec2);

/// The baseline: a bare bevy_ecs world moving the same number of entities, alone
/// (`move`) and followed by a hand-written area-of-interest index over the new
/// positions (`move_and_grid`: a counting sort of entity indices into 64-unit cells,
/// the upkeep a zone without players pays).
fn bench_bare_query_loop(c: &mut Criterion) {
    let mut group = c.benchmark_group("bare_bevy_loop");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for entities in [10_000usize, 100_000] {
        let mut world = bare_world(entities);
        let mut query = world.query::<(&mut Pos, &Vel)>();
        group.bench_with_input(BenchmarkId::new("move", entities), &entities, |b, _| {
            b.iter(|| {
                for (mut p, v) in query.iter_mut(&mut world) {
                    p.0 = step(p.0, v.0);
                }
            });
        });
        let mut grid = BareGrid::default();
        group.bench_with_input(
            BenchmarkId::new("move_and_grid", entities),
            &entities,
            |b, _| {
                b.iter(|| {
                    grid.positions.clear();
                    for (mut p, v) in query.iter_mut(&mut world) {
                        p.0 = step(p.0, v.0);
                        grid.positions.push(p.0);
                    }
                    grid.rebuild();
                });
            },
        );
    }
    group.finish();
}

fn bare_world(entities: usize) -> World {
    let mut world = World::new();
    for i in 0..entities {
        let f = i as f32;
        world.spawn((
            Pos(Vec2::new(f % ZONE_SIZE, (f * 0.37) % ZONE_SIZE)),
            Vel(Vec2::new(1.0, 0.5)),
        ));
    }
    world
}

fn step(p: Vec2, v: Vec2) -> Vec2 {
    let next = p + v * 0.05;
    Vec2::new(next.x.rem_euclid(ZONE_SIZE), next.y.rem_euclid(ZONE_SIZE))
}

/// The simplest uniform grid: entity indices sorted by cell.
#[derive(Default)]
struct BareGrid {
    positions: Vec<Vec2>,
    cell_start: Vec<u32>,
    entries: Vec<u32>,
}

impl BareGrid {
    const CELL: f32 = 64.0;
    const SIDE: usize = (ZONE_SIZE / Self::CELL) as usize;

    fn cell(p: Vec2) -> usize {
        let x = ((p.x / Self::CELL) as usize).min(Self::SIDE - 1);
        let y = ((p.y / Self::CELL) as usize).min(Self::SIDE - 1);
        y * Self::SIDE + x
    }

    fn rebuild(&mut self) {
        self.cell_start.clear();
        self.cell_start.resize(Self::SIDE * Self::SIDE + 1, 0);
        for p in &self.positions {
            self.cell_start[Self::cell(*p) + 1] += 1;
        }
        for i in 1..self.cell_start.len() {
            self.cell_start[i] += self.cell_start[i - 1];
        }
        self.entries.clear();
        self.entries.resize(self.positions.len(), 0);
        let mut next = self.cell_start.clone();
        for (i, p) in self.positions.iter().enumerate() {
            let c = Self::cell(*p);
            self.entries[next[c] as usize] = i as u32;
            next[c] += 1;
        }
    }
}

criterion_group!(benches, bench_zone_tick, bench_bare_query_loop);
criterion_main!(benches);
