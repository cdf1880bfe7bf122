//! Snapshot encoding: the time to build one client's snapshot per tick at steady state
//! (acknowledgements flowing with a two-tick delay), for 50 and 200 visible entities,
//! moving and idle; the spatial grid's rebuild and query cost at zone scale; and, printed
//! once, bytes per entity per tick for the delta encoder against a full-state-each-tick
//! encoding with the same codec and against a naive fixed-width encoding.
//!
//! Run: `cargo bench -p zonemesh-benches --bench snapshot_encoding`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;
use zonemesh_replication::{
    BuildStats, ClientView, ReplicatedState, SnapshotFrame, SpatialGrid, ViewConfig,
};
use zonemesh_shared::codec::Writer;
use zonemesh_shared::datagram::{Ack, ComponentValue, EntityRecord, PosField, SnapshotHeader};
use zonemesh_shared::ids::{NetId, ZoneId};
use zonemesh_shared::quant::{QPos, Vec2};

const MTU: usize = 1200;
/// Ticks between a snapshot and its acknowledgement reaching the server (RTT).
const ACK_DELAY_TICKS: usize = 2;
/// Entities stay within this distance of the viewer (inside the default 64-unit AOI).
const SCENE_RADIUS: i32 = 60 * 16;
/// Chance per entity per tick that a component changes in a moving scene.
const COMPONENT_CHANGE_CHANCE: u64 = 2; // percent
const WARMUP_TICKS: usize = 50;
const MEASURED_TICKS: usize = 200;

/// Deterministic splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u64) as i32
    }
}

/// Typical replicated components: a small status (health, flags) and an appearance.
fn components(health: u8, look: u8) -> Vec<ComponentValue> {
    vec![
        ComponentValue {
            id: 1,
            bytes: vec![health, 0, 100, 1],
        },
        ComponentValue {
            id: 2,
            bytes: vec![look; 12],
        },
    ]
}

/// Entities around a viewer at the origin, all visible.
struct Scene {
    states: Vec<ReplicatedState>,
    /// Velocity per entity in position steps per tick (about 5 units/s at 20 Hz).
    velocity: Vec<(i32, i32)>,
    visible: Vec<u32>,
    moving: bool,
    tick: u64,
    rng: Rng,
}

impl Scene {
    fn new(n: usize, moving: bool) -> Self {
        let mut rng = Rng(n as u64 * 7 + u64::from(moving));
        let zone = ZoneId::grid(3, 4);
        let states = (0..n)
            .map(|i| {
                let pos = QPos {
                    x: rng.range(-SCENE_RADIUS / 2, SCENE_RADIUS / 2),
                    y: rng.range(-SCENE_RADIUS / 2, SCENE_RADIUS / 2),
                };
                ReplicatedState::new(
                    NetId::new(zone, i as u32 + 1),
                    1 + (i % 3) as u16,
                    pos,
                    components(100, i as u8),
                )
            })
            .collect();
        let velocity = (0..n)
            .map(|_| (rng.range(-4, 4), rng.range(-4, 4)))
            .collect();
        Self {
            states,
            velocity,
            visible: (0..n as u32).collect(),
            moving,
            tick: 0,
            rng,
        }
    }

    fn advance(&mut self) {
        self.tick += 1;
        if !self.moving {
            return;
        }
        for (s, v) in self.states.iter_mut().zip(&mut self.velocity) {
            if s.pos.x.abs() > SCENE_RADIUS / 2 {
                v.0 = -v.0;
            }
            if s.pos.y.abs() > SCENE_RADIUS / 2 {
                v.1 = -v.1;
            }
            s.pos.x += v.0;
            s.pos.y += v.1;
            if self.rng.next() % 100 < COMPONENT_CHANGE_CHANCE {
                let look = s.components[1].bytes[0];
                *s = ReplicatedState::new(
                    s.id,
                    s.kind,
                    s.pos,
                    components((self.rng.next() % 100) as u8, look),
                );
            }
        }
    }

    fn frame(&self) -> SnapshotFrame<'_> {
        SnapshotFrame {
            tick: self.tick,
            input_ack: self.tick as u32,
            viewer: Vec2::ZERO,
            states: &self.states,
            visible: &self.visible,
            mtu: MTU,
        }
    }
}

/// A client view plus the client side of acknowledgements, delayed by [`ACK_DELAY_TICKS`].
struct Client {
    view: ClientView,
    ack: Ack,
    in_flight: VecDeque<Ack>,
    out: Vec<Vec<u8>>,
}

impl Client {
    fn new() -> Self {
        Self {
            view: ClientView::new(ViewConfig::default()),
            ack: Ack::default(),
            in_flight: VecDeque::new(),
            out: Vec::new(),
        }
    }

    fn tick(&mut self, scene: &Scene) -> BuildStats {
        self.out.clear();
        let stats = self.view.build_snapshot(&scene.frame(), &mut self.out);
        for d in &self.out {
            // A snapshot starts with the tag byte, then the u32 sequence number.
            if let Some(seq) = d.get(1..5).and_then(|b| b.try_into().ok()) {
                self.ack.record(u32::from_le_bytes(seq));
            }
        }
        self.in_flight.push_back(self.ack);
        if self.in_flight.len() > ACK_DELAY_TICKS
            && let Some(ack) = self.in_flight.pop_front()
        {
            self.view.handle_ack(ack);
        }
        stats
    }
}

/// A scene and a client that has seen `WARMUP_TICKS` ticks of it.
fn steady(n: usize, moving: bool) -> (Scene, Client) {
    let (mut scene, mut client) = (Scene::new(n, moving), Client::new());
    for _ in 0..WARMUP_TICKS {
        scene.advance();
        client.tick(&scene);
    }
    (scene, client)
}

/// Bytes of `records` packed greedily into datagrams of at most [`MTU`], headers
/// included.
fn packed_bytes(records: impl Iterator<Item = usize>, header: usize) -> usize {
    let (mut total, mut current) = (0, 0);
    for r in records {
        if current == 0 || current + r > MTU {
            total += current;
            current = header;
        }
        current += r;
    }
    total + current
}

/// One tick sent as spawn records for every entity, with the same codec.
fn full_state_bytes(states: &[ReplicatedState], tick: u64) -> usize {
    let mut w = Writer::with_capacity(64);
    SnapshotHeader {
        seq: 0,
        tick,
        input_ack: 0,
    }
    .encode(&mut w);
    let header = w.len();
    let sizes = states.iter().map(|s| {
        let mut w = Writer::with_capacity(64);
        EntityRecord::Update {
            id: s.id,
            spawn_kind: Some(s.kind),
            pos: PosField::Absolute(s.pos),
            components: s.components.to_vec(),
        }
        .encode(&mut w);
        w.len()
    });
    packed_bytes(sizes, header)
}

/// One tick the naive way: per entity id u64, kind u16, x and y f32, a u16 component
/// count, then each component as u16 id, u16 length and bytes; packets of at most
/// [`MTU`] with a 12-byte header (u32 seq, u64 tick).
fn naive_bytes(states: &[ReplicatedState]) -> usize {
    let sizes = states.iter().map(|s| {
        8 + 2
            + 4
            + 4
            + 2
            + s.components
                .iter()
                .map(|c| 4 + c.bytes.len())
                .sum::<usize>()
    });
    packed_bytes(sizes, 12)
}

/// Prints bytes per entity per tick for each scene, measured after warm-up.
fn print_bytes_per_entity() {
    println!(
        "\nsnapshot bytes per entity per tick (MTU {MTU}, ack delay {ACK_DELAY_TICKS} ticks, {MEASURED_TICKS} ticks after {WARMUP_TICKS} warm-up):"
    );
    println!(
        "{:<12} {:>8} {:>8} {:>8} {:>12} {:>10} {:>9}",
        "scene", "delta", "full", "naive", "delta/naive", "full/naive", "deferred"
    );
    for (n, moving) in [(50, true), (200, true), (50, false), (200, false)] {
        let (mut scene, mut client) = steady(n, moving);
        let (mut delta, mut full, mut naive, mut deferred) = (0, 0, 0, 0);
        for _ in 0..MEASURED_TICKS {
            scene.advance();
            let stats = client.tick(&scene);
            delta += stats.bytes;
            deferred += stats.deferred;
            full += full_state_bytes(&scene.states, scene.tick);
            naive += naive_bytes(&scene.states);
        }
        let per = |b: usize| b as f64 / (n * MEASURED_TICKS) as f64;
        let name = format!("{} {n}", if moving { "moving" } else { "idle" });
        println!(
            "{name:<12} {:>8.2} {:>8.2} {:>8.2} {:>12.3} {:>10.3} {deferred:>9}",
            per(delta),
            per(full),
            per(naive),
            per(delta) / per(naive),
            per(full) / per(naive)
        );
    }
    println!();
}

fn bench_build_snapshot(c: &mut Criterion) {
    print_bytes_per_entity();
    let mut group = c.benchmark_group("build_snapshot_per_client_tick");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for moving in [true, false] {
        for n in [50usize, 200] {
            let (mut scene, mut client) = steady(n, moving);
            let name = if moving { "moving" } else { "idle" };
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    scene.advance();
                    black_box(client.tick(&scene))
                });
            });
        }
    }
    group.finish();
}

/// Entities spread uniformly over a 1024-unit square zone.
fn zone_states(n: usize) -> Vec<ReplicatedState> {
    let mut rng = Rng(n as u64);
    (0..n)
        .map(|i| {
            let pos = QPos {
                x: rng.range(0, 1024 * 16),
                y: rng.range(0, 1024 * 16),
            };
            ReplicatedState::new(NetId(i as u64), 1, pos, Vec::new())
        })
        .collect()
}

fn bench_spatial_grid(c: &mut Criterion) {
    let mut group = c.benchmark_group("spatial_grid");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [10_000usize, 100_000] {
        let states = zone_states(n);
        let mut grid = SpatialGrid::new(64.0);
        group.bench_with_input(BenchmarkId::new("rebuild", n), &n, |b, _| {
            b.iter(|| grid.rebuild(black_box(&states)))
        });
        let mut out = Vec::new();
        let viewers: Vec<Vec2> = (0..1000)
            .map(|i| Vec2::new((i * 37 % 1024) as f32, (i * 91 % 1024) as f32))
            .collect();
        group.bench_with_input(BenchmarkId::new("query_1000_clients_r64", n), &n, |b, _| {
            b.iter(|| {
                let mut found = 0;
                for v in &viewers {
                    grid.query(*v, 64.0, &mut out);
                    found += out.len();
                }
                black_box(found)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_build_snapshot, bench_spatial_grid);
criterion_main!(benches);
