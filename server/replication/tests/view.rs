//! Scenario tests of `ClientView` against a strict model client: spawns, deltas,
//! loss, budget, datagram size, despawns, priorities, heartbeats and bad input.

mod sim;

use sim::{Harness, LinkConditions, comps, entity, nudge, set_components};
use zonemesh_replication::{ClientView, ReplicatedState, SnapshotFrame, ViewConfig};
use zonemesh_shared::datagram::{Ack, ComponentValue, EntityRecord, PosField, Snapshot};
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::{QPos, Vec2};

fn line_of(n: usize, spacing: f32) -> Vec<ReplicatedState> {
    (0..n)
        .map(|i| entity(i as u64 + 1, spacing * (i as f32 + 1.0), 0.0, &[i as u8]))
        .collect()
}

fn updates(report: &sim::TickReport) -> impl Iterator<Item = &EntityRecord> {
    report.sent.iter().flat_map(|s| s.records.iter())
}

#[test]
fn spawns_first_then_deltas_once_acknowledged() {
    let mut h = Harness::new(ViewConfig::default(), line_of(3, 5.0), 1);
    let first = h.step();
    assert_eq!(first.stats.full_records, 3);
    for r in updates(&first) {
        let EntityRecord::Update {
            spawn_kind,
            pos,
            components,
            ..
        } = r
        else {
            panic!("unexpected {r:?}");
        };
        assert_eq!(*spawn_kind, Some(1));
        assert!(matches!(pos, PosField::Absolute(_)));
        assert_eq!(components.len(), 1);
    }
    assert!(h.converged());
    for i in 0..3 {
        nudge(&mut h.states, i, 3, -2);
    }
    let second = h.step();
    assert_eq!(second.stats.full_records, 0);
    assert_eq!(second.stats.delta_records, 3);
    for r in updates(&second) {
        let EntityRecord::Update {
            spawn_kind: None,
            pos,
            components,
            ..
        } = r
        else {
            panic!("unexpected {r:?}");
        };
        assert_eq!(
            *pos,
            PosField::Delta {
                baseline_back: 1,
                dx: 3,
                dy: -2
            }
        );
        assert!(components.is_empty(), "components did not change");
    }
    assert!(h.converged());
}

#[test]
fn full_records_repeat_only_until_a_baseline_is_acknowledged() {
    let mut h = Harness::new(ViewConfig::default(), line_of(4, 5.0), 2);
    h.link.ack_loss = 1.0;
    for _ in 0..6 {
        for i in 0..4 {
            nudge(&mut h.states, i, 1, 0);
        }
        let r = h.step();
        // Moving and never acknowledged: every change goes out as a spawn.
        assert_eq!(r.stats.full_records, 4);
        assert_eq!(r.stats.delta_records, 0);
    }
    h.link = LinkConditions::PERFECT;
    h.step();
    for _ in 0..5 {
        for i in 0..4 {
            nudge(&mut h.states, i, 1, 0);
        }
        let r = h.step();
        assert_eq!(r.stats.full_records, 0);
        assert_eq!(r.stats.delta_records, 4);
        assert!(updates(&r).all(|u| matches!(
            u,
            EntityRecord::Update {
                pos: PosField::Delta { .. },
                ..
            }
        )));
    }
    assert!(h.converged());
}

#[test]
fn components_are_sent_only_when_changed() {
    let mut h = Harness::new(ViewConfig::default(), line_of(2, 5.0), 3);
    h.step();
    set_components(&mut h.states, 0, comps(b"new"));
    let r = h.step();
    assert_eq!(r.stats.records, 1);
    let EntityRecord::Update {
        pos, components, ..
    } = updates(&r).next().expect("one record")
    else {
        panic!("not an update");
    };
    assert_eq!(*pos, PosField::Unchanged);
    assert_eq!(components, &comps(b"new"));
    assert!(h.converged());
}

#[test]
fn a_change_reverted_before_its_ack_is_still_corrected() {
    let mut h = Harness::new(ViewConfig::default(), line_of(1, 5.0), 4);
    h.step();
    // The change reaches the client but its acknowledgement is lost...
    h.link.ack_loss = 1.0;
    set_components(&mut h.states, 0, comps(b"b"));
    nudge(&mut h.states, 0, 5, 0);
    h.step();
    // ...then the entity returns to the acknowledged state: the client holds the
    // change, so "nothing changed since the baseline" would be wrong.
    set_components(&mut h.states, 0, comps(&[0]));
    nudge(&mut h.states, 0, -5, 0);
    h.link = LinkConditions::PERFECT;
    h.step();
    assert!(h.converged());
}

#[test]
fn converges_after_heavy_loss_and_reordering_stop() {
    let mut h = Harness::new(ViewConfig::default(), line_of(40, 1.5), 5);
    h.link = LinkConditions {
        loss: 0.5,
        jitter_ticks: 3,
        ack_loss: 0.3,
        ack_delay_ticks: 2,
    };
    for t in 0..150u64 {
        for i in 0..40 {
            let d = ((t as usize + i) % 5) as i32 - 2;
            nudge(&mut h.states, i, d, -d);
        }
        if t % 7 == 0 {
            set_components(&mut h.states, (t % 40) as usize, comps(&t.to_le_bytes()));
        }
        h.step();
    }
    h.settle(30);
}

#[test]
fn every_datagram_fits_the_mtu() {
    let mut states = line_of(60, 1.0);
    for (i, s) in states.iter_mut().enumerate() {
        *s = ReplicatedState::new(s.id, 1, s.pos, comps(&[i as u8; 90]));
    }
    let config = ViewConfig {
        budget_bytes_per_tick: 100_000,
        ..ViewConfig::default()
    };
    let mut h = Harness::new(config, states, 6);
    for mtu in [1200, 300, 150, 97] {
        h.mtu = mtu;
        for i in 0..60 {
            nudge(&mut h.states, i, 1, 1);
        }
        let r = h.step();
        assert!(r.stats.datagrams >= 1);
        assert_eq!(r.stats.oversized, 0);
    }
    h.mtu = 300;
    h.settle(20);
}

#[test]
fn records_larger_than_a_datagram_are_skipped_and_counted() {
    let mut states = line_of(3, 2.0);
    states[1] = ReplicatedState::new(NetId(2), 1, states[1].pos, comps(&[7; 1000]));
    // 33 components break the protocol limit: the client would reject the datagram.
    let many: Vec<ComponentValue> = (0..33)
        .map(|id| ComponentValue { id, bytes: vec![1] })
        .collect();
    states.push(ReplicatedState::new(NetId(9), 1, QPos::default(), many));
    let mut h = Harness::new(ViewConfig::default(), states, 7);
    h.mtu = 500;
    for _ in 0..5 {
        let r = h.step();
        assert!(r.stats.oversized >= 1);
        assert!(updates(&r).all(|u| u.id() != NetId(2) && u.id() != NetId(9)));
    }
    let shown = h.client.shown();
    assert!(shown.contains_key(&NetId(1)) && shown.contains_key(&NetId(3)));
    assert!(!shown.contains_key(&NetId(2)));
}

#[test]
fn budget_is_respected_and_deferred_entities_catch_up() {
    let config = ViewConfig {
        budget_bytes_per_tick: 300,
        ..ViewConfig::default()
    };
    let mut h = Harness::new(config, line_of(200, 0.3), 8);
    let first = h.step();
    assert!(first.stats.deferred > 0);
    assert!(first.stats.bytes <= 300);
    // Everything arrives within a bounded number of ticks (the harness checks the
    // budget every tick).
    h.settle(200);
    assert_eq!(h.client.shown().len(), 200);
}

#[test]
fn vanished_and_departed_entities_disappear_even_with_loss() {
    let mut h = Harness::new(ViewConfig::default(), line_of(5, 5.0), 9);
    h.step();
    h.link = LinkConditions {
        loss: 0.6,
        jitter_ticks: 1,
        ack_loss: 0.5,
        ack_delay_ticks: 1,
    };
    h.states.remove(2); // gone from the world
    h.states[0].pos = QPos::from_world(Vec2::new(500.0, 0.0)); // out of the area
    for _ in 0..30 {
        h.step();
    }
    h.settle(20);
    let shown = h.client.shown();
    assert!(!shown.contains_key(&NetId(1)) && !shown.contains_key(&NetId(3)));
    assert_eq!(shown.len(), 3);
    assert_eq!(h.view.tracked(), 3, "acknowledged despawns are forgotten");
}

#[test]
fn returning_before_the_despawn_is_acknowledged_respawns() {
    let mut h = Harness::new(ViewConfig::default(), line_of(2, 5.0), 10);
    h.step();
    let home = h.states[0].pos;
    h.link.ack_loss = 1.0;
    h.states[0].pos = QPos::from_world(Vec2::new(900.0, 0.0));
    let r = h.step();
    assert!(updates(&r).any(|u| matches!(u, EntityRecord::Despawn { id } if *id == NetId(1))));
    h.states[0].pos = home;
    let r = h.step();
    let spawn = updates(&r)
        .find(|u| u.id() == NetId(1))
        .expect("sent again");
    assert!(matches!(
        spawn,
        EntityRecord::Update {
            spawn_kind: Some(1),
            ..
        }
    ));
    h.settle(10);
    assert_eq!(h.view.tracked(), 2);
}

#[test]
fn nearest_first_under_a_tiny_budget() {
    // Room for one spawn record per tick.
    let config = ViewConfig {
        budget_bytes_per_tick: 24,
        ..ViewConfig::default()
    };
    let mut states = line_of(5, 4.0);
    states.reverse(); // listing order must not matter
    let mut h = Harness::new(config, states, 11);
    let mut order = Vec::new();
    for _ in 0..5 {
        let r = h.step();
        assert_eq!(r.stats.records, 1);
        order.extend(updates(&r).map(|u| u.id().0));
    }
    assert_eq!(order, vec![1, 2, 3, 4, 5]);
    assert!(h.converged());
}

#[test]
fn stalest_first_so_nothing_starves_under_a_tiny_budget() {
    let config = ViewConfig {
        budget_bytes_per_tick: 40,
        ..ViewConfig::default()
    };
    let mut h = Harness::new(config, line_of(12, 4.0), 12);
    h.settle(40);
    let mut last_update = [0u64; 12];
    for t in 1..=120u64 {
        for i in 0..12 {
            nudge(&mut h.states, i, 1, 0);
        }
        let r = h.step();
        assert!(r.stats.deferred > 0, "the budget must bind for this test");
        for u in updates(&r) {
            last_update[u.id().0 as usize - 1] = t;
        }
        if t > 40 {
            for (i, &seen) in last_update.iter().enumerate() {
                assert!(
                    t - seen <= 12,
                    "entity {} starved since tick {seen} (now {t})",
                    i + 1
                );
            }
        }
    }
    // The nearest entity is refreshed more often than the farthest.
    assert!(last_update.iter().all(|&t| t > 100));
}

#[test]
fn nothing_starves_when_most_candidates_are_deferred_every_tick() {
    // Hundreds of moving entities, room for a fraction of their updates: the sender
    // orders only what can go out, and the rest must still age into the budget.
    let config = ViewConfig {
        budget_bytes_per_tick: 600,
        ..ViewConfig::default()
    };
    let n = 300;
    let mut h = Harness::new(config, line_of(n, 0.2), 13);
    h.settle(200);
    let mut last_update = vec![0u64; n];
    for t in 1..=150u64 {
        // Out and back (3 units), so every entity stays inside the area of interest.
        let dx = if t % 100 < 50 { 1 } else { -1 };
        for i in 0..n {
            nudge(&mut h.states, i, dx, 0);
        }
        let r = h.step();
        assert!(
            r.stats.deferred > n / 4,
            "the budget must bind hard for this test"
        );
        for u in updates(&r) {
            last_update[u.id().0 as usize - 1] = t;
        }
        if t > 50 {
            let (i, seen) = last_update.iter().enumerate().min_by_key(|e| *e.1).unwrap();
            // About a third of the entities fit a tick; far ones age at half the rate.
            assert!(
                t - seen <= 8,
                "entity {} starved since tick {seen} (now {t})",
                i + 1
            );
        }
    }
}

#[test]
fn a_record_that_does_not_fit_leaves_room_for_smaller_ones() {
    // The nearest entity's spawn is too big for what is left of the budget; the
    // smaller spawns behind it in priority still go out this tick.
    let big = [7u8; 40];
    let states = vec![
        entity(1, 1.0, 0.0, &big),
        entity(2, 20.0, 0.0, &[1]),
        entity(3, 30.0, 0.0, &[2]),
    ];
    let config = ViewConfig {
        budget_bytes_per_tick: 50,
        ..ViewConfig::default()
    };
    let mut h = Harness::new(config, states, 14);
    let r = h.step();
    let ids: Vec<u64> = updates(&r).map(|u| u.id().0).collect();
    assert_eq!(ids, vec![2, 3]);
    assert_eq!(r.stats.deferred, 1);
}

#[test]
fn idle_scene_sends_only_heartbeats() {
    let config = ViewConfig {
        heartbeat_ticks: 10,
        ..ViewConfig::default()
    };
    let mut h = Harness::new(config, line_of(20, 2.0), 13);
    h.settle(5);
    let mut heartbeat_ticks = Vec::new();
    for _ in 0..40 {
        h.input_ack += 1;
        let r = h.step();
        assert_eq!(r.stats.records, 0);
        if r.stats.datagrams > 0 {
            assert_eq!(r.stats.datagrams, 1);
            assert!(r.sent[0].records.is_empty());
            heartbeat_ticks.push(h.tick);
            assert_eq!(h.client.last_header_input_ack, Some(h.input_ack));
        }
    }
    assert_eq!(heartbeat_ticks.len(), 4);
    assert!(heartbeat_ticks.windows(2).all(|w| w[1] - w[0] == 10));
}

#[test]
fn first_tick_with_nothing_visible_still_sends_a_heartbeat() {
    let mut h = Harness::new(ViewConfig::default(), Vec::new(), 14);
    let r = h.step();
    assert_eq!(r.stats.datagrams, 1);
    assert_eq!(r.stats.records, 0);
}

#[test]
fn lost_records_are_resent_after_the_resend_delay() {
    let config = ViewConfig {
        resend_after_ticks: 3,
        ..ViewConfig::default()
    };
    let mut h = Harness::new(config, line_of(1, 5.0), 15);
    h.step();
    h.link.loss = 1.0;
    nudge(&mut h.states, 0, 4, 0);
    assert_eq!(h.step().stats.records, 1);
    assert_eq!(h.step().stats.records, 0, "in flight");
    assert_eq!(h.step().stats.records, 0, "in flight");
    assert_eq!(h.step().stats.records, 1, "presumed lost");
    h.link = LinkConditions::PERFECT;
    h.settle(5);
}

#[test]
fn tracking_is_bounded_and_the_nearest_win() {
    let config = ViewConfig {
        max_tracked_entities: 10,
        ..ViewConfig::default()
    };
    let mut h = Harness::new(config, line_of(50, 1.0), 16);
    h.settle(10);
    assert_eq!(h.client.shown().len(), 10);
    assert!(h.client.shown().keys().all(|id| id.0 <= 10));
    // The viewer walks to the other end; the client never acknowledges the despawns
    // for a while, which must not let tracking grow.
    h.link.ack_loss = 1.0;
    h.viewer = Vec2::new(50.0, 0.0);
    for _ in 0..20 {
        h.step();
        assert!(h.view.tracked() <= 10);
    }
    h.settle(20);
    assert!(h.client.shown().keys().all(|id| id.0 > 40));
}

#[test]
fn sequence_numbers_wrap_without_harm() {
    let view = ClientView::with_first_seq(ViewConfig::default(), u32::MAX - 3);
    let mut h = Harness::with_view(view, line_of(30, 2.0), 17);
    h.link = LinkConditions {
        loss: 0.2,
        jitter_ticks: 1,
        ack_loss: 0.2,
        ack_delay_ticks: 1,
    };
    for t in 0..40 {
        for i in 0..30 {
            nudge(&mut h.states, i, (t % 3) - 1, 1);
        }
        h.step();
    }
    h.settle(20);
}

#[test]
fn kind_change_and_emptied_components_respawn_the_entity() {
    let mut h = Harness::new(ViewConfig::default(), line_of(2, 5.0), 18);
    h.step();
    h.states[0].kind = 9;
    set_components(&mut h.states, 1, Vec::new());
    let r = h.step();
    assert_eq!(r.stats.full_records, 2);
    assert!(h.converged());
}

#[test]
fn bogus_input_never_panics() {
    let states = line_of(5, 2.0);
    let mut view = ClientView::new(ViewConfig::default());
    let mut out = Vec::new();
    for ack in [
        Ack {
            latest: 77,
            bits: u32::MAX,
            any: true,
        },
        Ack {
            latest: u32::MAX,
            bits: 0,
            any: true,
        },
        Ack {
            latest: 0,
            bits: 0,
            any: false,
        },
    ] {
        view.handle_ack(ack);
    }
    let visible = [0, 1, 1, 4, 99, u32::MAX, 2];
    for (tick, mtu, viewer) in [
        (5, 1200, Vec2::ZERO),
        (3, 0, Vec2::new(f32::NAN, 1.0)),
        (3, 5, Vec2::new(f32::INFINITY, 0.0)),
        (u64::MAX, 1200, Vec2::ZERO),
        (0, usize::MAX, Vec2::ZERO),
    ] {
        let frame = SnapshotFrame {
            tick,
            input_ack: 1,
            viewer,
            states: &states,
            visible: &visible,
            mtu,
        };
        out.clear();
        let stats = view.build_snapshot(&frame, &mut out);
        assert!(out.iter().all(|d| d.len() <= mtu.min(1200)));
        assert!(out.iter().all(|d| Snapshot::decode(d).is_ok()));
        assert_eq!(stats.datagrams, out.len());
        view.handle_ack(Ack {
            latest: 3,
            bits: 0xffff,
            any: true,
        });
    }
    // Repeated ids and out-of-range indices were ignored: five distinct entities.
    assert_eq!(view.tracked(), 4);
    let empty = SnapshotFrame {
        tick: 9,
        input_ack: 0,
        viewer: Vec2::ZERO,
        states: &[],
        visible: &visible,
        mtu: 1200,
    };
    view.build_snapshot(&empty, &mut out);
}

#[test]
fn zero_budget_or_tracking_limit_sends_nothing() {
    for config in [
        ViewConfig {
            budget_bytes_per_tick: 0,
            ..ViewConfig::default()
        },
        ViewConfig {
            budget_bytes_per_tick: 12,
            ..ViewConfig::default()
        },
        ViewConfig {
            datagram_max_bytes: 0,
            ..ViewConfig::default()
        },
    ] {
        let mut h = Harness::new(config, line_of(3, 2.0), 19);
        for _ in 0..3 {
            let r = h.step();
            assert_eq!(r.stats.records, 0);
        }
    }
    let config = ViewConfig {
        max_tracked_entities: 0,
        ..ViewConfig::default()
    };
    let mut h = Harness::new(config, line_of(3, 2.0), 20);
    h.step();
    assert!(h.client.shown().is_empty());
    assert_eq!(h.view.tracked(), 0);
}
