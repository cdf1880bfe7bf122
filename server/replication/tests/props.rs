//! Property tests: random movement, component changes, loss, reordering and
//! acknowledgement patterns never break the datagram contract (the strict model client
//! panics on any breach), never exceed MTU or budget, and always converge once the
//! link is clean.

mod sim;

use proptest::prelude::*;
use sim::{Harness, LinkConditions, Rng, comps, entity, set_components};
use zonemesh_replication::{ClientView, ReplicatedState, ViewConfig};
use zonemesh_shared::datagram::EntityRecord;
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::{QPos, Vec2};

/// Link and view settings drawn for one case.
#[derive(Debug, Clone)]
struct Setup {
    seed: u64,
    link: LinkConditions,
    budget: usize,
    mtu: usize,
    first_seq: u32,
    move_chance: f64,
    change_chance: f64,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        any::<u64>(),
        (0.0f64..0.9, 0u64..4, 0.0f64..0.9, 0u64..4),
        60usize..3000,
        60usize..1300,
        any::<u32>(),
        0.0f64..1.0,
        0.0f64..0.3,
    )
        .prop_map(
            |(
                seed,
                (loss, jitter, ack_loss, ack_delay),
                budget,
                mtu,
                first_seq,
                move_chance,
                change_chance,
            )| Setup {
                seed,
                link: LinkConditions {
                    loss,
                    jitter_ticks: jitter,
                    ack_loss,
                    ack_delay_ticks: ack_delay,
                },
                budget,
                mtu,
                first_seq,
                move_chance,
                change_chance,
            },
        )
}

/// Random walk (sometimes a long jump) and random component changes.
fn churn(states: &mut [ReplicatedState], rng: &mut Rng, setup: &Setup, bound: i32) {
    for i in 0..states.len() {
        if rng.chance(setup.move_chance) {
            let jump = if rng.chance(0.05) { 400 } else { 20 };
            let p = &mut states[i].pos;
            p.x = (p.x + rng.below(2 * jump + 1) as i32 - jump as i32).clamp(-bound, bound);
            p.y = (p.y + rng.below(2 * jump + 1) as i32 - jump as i32).clamp(-bound, bound);
        }
        if rng.chance(setup.change_chance) {
            let len = 1 + rng.below(20) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
            set_components(states, i, comps(&bytes));
        }
    }
}

fn harness(config: ViewConfig, states: Vec<ReplicatedState>, setup: &Setup) -> Harness {
    let view = ClientView::with_first_seq(config, setup.first_seq);
    let mut h = Harness::with_view(view, states, setup.seed);
    h.link = setup.link;
    h.mtu = setup.mtu;
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Everything stays visible, so each entity has one life: once any update of it is
    /// known acknowledged, no spawn record may follow, and the view converges.
    #[test]
    fn always_visible_entities_converge_and_spawn_once_acknowledged(
        setup in setup(),
        n in 1usize..40,
        ticks in 5usize..80,
    ) {
        let config = ViewConfig { aoi_radius: 1e6, budget_bytes_per_tick: setup.budget, ..ViewConfig::default() };
        let states = (0..n).map(|i| entity(i as u64 + 1, i as f32, 0.0, &[1])).collect();
        let mut h = harness(config, states, &setup);
        let mut rng = Rng::new(setup.seed ^ 0x5eed);
        for _ in 0..ticks {
            churn(&mut h.states, &mut rng, &setup, 4000);
            let acknowledged = h.acknowledged.clone();
            let report = h.step();
            for rec in report.sent.iter().flat_map(|s| &s.records) {
                if let EntityRecord::Update { id, spawn_kind: Some(_), .. } = rec {
                    prop_assert!(!acknowledged.contains(id), "spawn of {} after an acknowledged update", id);
                }
            }
        }
        h.settle(400);
    }

    /// Entities wander in and out of a small area of interest, vanish and come back,
    /// change kind or lose all components, under a small tracking limit.
    #[test]
    fn churning_worlds_converge(
        setup in setup(),
        n in 1usize..50,
        ticks in 5usize..80,
        max_tracked in 1usize..30,
    ) {
        let config = ViewConfig {
            aoi_radius: 20.0,
            budget_bytes_per_tick: setup.budget,
            max_tracked_entities: max_tracked,
            ..ViewConfig::default()
        };
        let all: Vec<ReplicatedState> = (0..n)
            .map(|i| entity(i as u64 + 1, (i % 7) as f32 * 6.0 - 20.0, (i / 7) as f32 * 6.0 - 20.0, &[1]))
            .collect();
        let mut h = harness(config, all.clone(), &setup);
        let mut rng = Rng::new(setup.seed ^ 0xc0ffee);
        let mut absent: Vec<ReplicatedState> = Vec::new();
        for _ in 0..ticks {
            churn(&mut h.states, &mut rng, &setup, 800);
            world_events(&mut h, &mut absent, &mut rng);
            h.step();
        }
        h.settle(400);
    }
}

/// Occasional vanishing, returning, kind changes, emptied components, viewer moves.
fn world_events(h: &mut Harness, absent: &mut Vec<ReplicatedState>, rng: &mut Rng) {
    if !h.states.is_empty() && rng.chance(0.1) {
        let i = rng.below(h.states.len() as u64) as usize;
        absent.push(h.states.swap_remove(i));
    }
    if !absent.is_empty() && rng.chance(0.1) {
        let i = rng.below(absent.len() as u64) as usize;
        h.states.push(absent.swap_remove(i));
    }
    if !h.states.is_empty() && rng.chance(0.03) {
        let i = rng.below(h.states.len() as u64) as usize;
        h.states[i].kind = h.states[i].kind.wrapping_add(1);
    }
    if !h.states.is_empty() && rng.chance(0.03) {
        let i = rng.below(h.states.len() as u64) as usize;
        set_components(&mut h.states, i, Vec::new());
    }
    if rng.chance(0.1) {
        let x = rng.below(41) as f32 - 20.0;
        let y = rng.below(41) as f32 - 20.0;
        h.viewer = Vec2::new(x, y);
    }
}

#[test]
fn duplicate_ids_in_a_frame_are_shown_once() {
    let mut states: Vec<ReplicatedState> =
        (0..4).map(|i| entity(i + 1, i as f32, 0.0, &[1])).collect();
    // A ghost copy of entity 2 further away (e.g. from a neighbour's stale batch).
    let mut copy = states[1].clone();
    copy.pos = QPos::from_world(Vec2::new(9.0, 0.0));
    states.push(copy);
    let mut h = Harness::new(ViewConfig::default(), states, 1);
    h.step();
    let shown = h.client.shown();
    assert_eq!(shown.len(), 4);
    assert_eq!(shown[&NetId(2)].pos, QPos::from_world(Vec2::new(1.0, 0.0)));
}
