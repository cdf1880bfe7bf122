//! Tests of the replica: spawn, update, delta, despawn, reordering, missing baselines,
//! sequence wraparound and interpolation.

use super::*;
use zonemesh_shared::datagram::SnapshotHeader;

fn snap(seq: u32, tick: u64, records: Vec<EntityRecord>) -> Snapshot {
    Snapshot {
        header: SnapshotHeader {
            seq,
            tick,
            input_ack: 0,
        },
        records,
    }
}

fn spawn(id: u64, kind: u16, x: i32, y: i32) -> EntityRecord {
    EntityRecord::Update {
        id: NetId(id),
        spawn_kind: Some(kind),
        pos: PosField::Absolute(QPos { x, y }),
        components: vec![],
    }
}

fn update(id: u64, pos: PosField) -> EntityRecord {
    EntityRecord::Update {
        id: NetId(id),
        spawn_kind: None,
        pos,
        components: vec![],
    }
}

fn delta(baseline_back: u32, dx: i32, dy: i32) -> PosField {
    PosField::Delta {
        baseline_back,
        dx,
        dy,
    }
}

fn despawn(id: u64) -> EntityRecord {
    EntityRecord::Despawn { id: NetId(id) }
}

/// A replica plus the events it produced.
struct Fixture {
    replica: Replica,
    events: EventQueue,
}

impl Fixture {
    fn new() -> Self {
        Self {
            replica: Replica::default(),
            events: EventQueue::new(1024),
        }
    }

    fn apply(&mut self, s: Snapshot) -> ApplyReport {
        self.replica.apply(&s, &mut self.events)
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.events.pop()).collect()
    }

    fn qpos(&self, id: u64) -> Option<QPos> {
        self.replica.get(NetId(id)).map(|e| e.quantised_position())
    }
}

#[test]
fn spawn_update_delta_despawn() {
    let mut f = Fixture::new();
    let r = f.apply(snap(1, 100, vec![spawn(7, 3, 16, 32)]));
    assert!(r.accepted && r.newest && r.complete && r.errors == 0);
    assert_eq!(
        f.events(),
        vec![Event::Spawned {
            id: NetId(7),
            kind: 3
        }]
    );
    let e = f.replica.get(NetId(7)).expect("spawned");
    assert_eq!((e.kind, e.position), (3, Vec2::new(1.0, 2.0)));
    assert_eq!((e.last_snapshot_seq, e.last_tick), (1, 100));

    f.apply(snap(2, 101, vec![update(7, delta(1, 16, -16))]));
    assert_eq!(f.qpos(7), Some(QPos { x: 32, y: 16 }));
    assert_eq!(f.events(), vec![Event::Updated { id: NetId(7) }]);

    // Delta against an older baseline (seq 1), not the latest.
    f.apply(snap(3, 102, vec![update(7, delta(2, 1, 1))]));
    assert_eq!(f.qpos(7), Some(QPos { x: 17, y: 33 }));
    assert_eq!(f.events(), vec![Event::Updated { id: NetId(7) }]);

    // Unchanged keeps the position and emits nothing.
    f.apply(snap(4, 103, vec![update(7, PosField::Unchanged)]));
    assert_eq!(f.qpos(7), Some(QPos { x: 17, y: 33 }));
    assert_eq!(f.events(), vec![]);
    assert_eq!(f.replica.get(NetId(7)).map(|e| e.last_tick), Some(103));

    f.apply(snap(5, 104, vec![despawn(7)]));
    assert!(f.replica.is_empty());
    assert_eq!(f.events(), vec![Event::Despawned { id: NetId(7) }]);
    assert_eq!(f.replica.latest_seq(), Some(5));
    assert_eq!(f.replica.latest_tick(), Some(104));
}

#[test]
fn unchanged_record_is_a_valid_later_baseline() {
    let mut f = Fixture::new();
    f.apply(snap(1, 1, vec![spawn(1, 0, 5, 5)]));
    f.apply(snap(2, 2, vec![update(1, PosField::Unchanged)]));
    f.apply(snap(3, 3, vec![update(1, delta(1, 1, 0))]));
    assert_eq!(f.qpos(1), Some(QPos { x: 6, y: 5 }));
}

#[test]
fn stale_reordered_records_are_ignored() {
    let mut f = Fixture::new();
    f.apply(snap(10, 10, vec![spawn(1, 0, 0, 0)]));
    f.apply(snap(
        12,
        12,
        vec![update(1, PosField::Absolute(QPos { x: 20, y: 0 }))],
    ));
    f.events();
    let r = f.apply(snap(
        11,
        11,
        vec![update(1, PosField::Absolute(QPos { x: 10, y: 0 }))],
    ));
    assert!(r.accepted && !r.newest && r.complete);
    assert_eq!(f.qpos(1), Some(QPos { x: 20, y: 0 }));
    assert_eq!(f.events(), vec![]);
    assert_eq!(f.replica.latest_seq(), Some(12));
    // Duplicate datagram: nothing happens either.
    f.apply(snap(
        12,
        12,
        vec![update(1, PosField::Absolute(QPos { x: 99, y: 0 }))],
    ));
    assert_eq!(f.qpos(1), Some(QPos { x: 20, y: 0 }));
}

#[test]
fn late_record_still_serves_as_baseline() {
    let mut f = Fixture::new();
    f.apply(snap(10, 10, vec![spawn(1, 0, 0, 0)]));
    f.apply(snap(12, 12, vec![update(1, delta(2, 20, 0))]));
    // 11 arrives late; the client acknowledges it, so the server may delta against it.
    f.apply(snap(11, 11, vec![update(1, delta(1, 10, 0))]));
    f.apply(snap(13, 13, vec![update(1, delta(2, 5, 0))]));
    assert_eq!(f.qpos(1), Some(QPos { x: 15, y: 0 }));
}

#[test]
fn missing_baseline_counts_an_error_and_skips_only_that_record() {
    let mut f = Fixture::new();
    f.apply(snap(1, 1, vec![spawn(1, 0, 0, 0), spawn(2, 0, 0, 0)]));
    f.events();
    let r = f.apply(snap(
        30,
        30,
        vec![update(1, delta(5, 1, 1)), update(2, delta(29, 3, 0))],
    ));
    assert_eq!(r.errors, 1);
    assert!(
        !r.complete,
        "a snapshot with a skipped record must not be acknowledged"
    );
    assert_eq!(f.qpos(1), Some(QPos { x: 0, y: 0 }));
    assert_eq!(f.qpos(2), Some(QPos { x: 3, y: 0 }));
    assert_eq!(f.events(), vec![Event::Updated { id: NetId(2) }]);
}

#[test]
fn unknown_entities_and_positionless_spawns_are_errors() {
    let mut f = Fixture::new();
    let r = f.apply(snap(
        1,
        1,
        vec![
            update(5, PosField::Absolute(QPos::default())),
            EntityRecord::Update {
                id: NetId(6),
                spawn_kind: Some(1),
                pos: delta(1, 0, 0),
                components: vec![],
            },
        ],
    ));
    assert_eq!(r.errors, 2);
    assert!(f.replica.is_empty());
}

#[test]
fn despawn_tombstone_blocks_late_spawn_but_not_a_newer_one() {
    let mut f = Fixture::new();
    f.apply(snap(1, 1, vec![spawn(1, 2, 0, 0)]));
    f.apply(snap(3, 3, vec![despawn(1)]));
    f.events();
    f.apply(snap(2, 2, vec![spawn(1, 2, 4, 4)]));
    assert!(f.replica.is_empty());
    assert_eq!(f.events(), vec![]);
    f.apply(snap(4, 4, vec![spawn(1, 2, 8, 8)]));
    assert_eq!(f.qpos(1), Some(QPos { x: 8, y: 8 }));
    assert_eq!(
        f.events(),
        vec![Event::Spawned {
            id: NetId(1),
            kind: 2
        }]
    );
    // A late despawn (older than the respawn) is ignored.
    f.apply(snap(3, 3, vec![despawn(1)]));
    assert!(f.replica.contains(NetId(1)));
}

#[test]
fn sequence_wraparound_is_handled() {
    let mut f = Fixture::new();
    f.apply(snap(u32::MAX - 1, 1, vec![spawn(1, 0, 0, 0)]));
    f.apply(snap(u32::MAX, 2, vec![update(1, delta(1, 1, 0))]));
    let r = f.apply(snap(1, 3, vec![update(1, delta(3, 5, 0))]));
    assert!(r.newest && r.complete);
    assert_eq!(f.qpos(1), Some(QPos { x: 5, y: 0 }));
    assert_eq!(f.replica.latest_seq(), Some(1));
    // Pre-wrap snapshot arriving now is stale, not "newest".
    let late = f.apply(snap(u32::MAX - 2, 0, vec![]));
    assert!(late.accepted && !late.newest);
    assert_eq!(f.replica.latest_seq(), Some(1));
}

#[test]
fn very_old_snapshots_are_rejected_whole() {
    let mut f = Fixture::new();
    f.apply(snap(5000, 1, vec![]));
    let r = f.apply(snap(
        5000 - STALE_SNAPSHOT_WINDOW - 1,
        1,
        vec![spawn(1, 0, 0, 0)],
    ));
    assert!(!r.accepted);
    assert!(f.replica.is_empty());
}

fn comp(id: u16, value: u32) -> ComponentValue {
    ComponentValue {
        id,
        bytes: postcard::to_allocvec(&value).expect("encode"),
    }
}

fn with_components(spawn_kind: Option<u16>, components: Vec<ComponentValue>) -> EntityRecord {
    EntityRecord::Update {
        id: NetId(1),
        spawn_kind,
        pos: match spawn_kind {
            Some(_) => PosField::Absolute(QPos::default()),
            None => PosField::Unchanged,
        },
        components,
    }
}

fn component_ids(f: &Fixture) -> Vec<u16> {
    let e = f.replica.get(NetId(1)).expect("entity");
    e.components.iter().map(|c| c.id).collect()
}

#[test]
fn component_list_replaces_the_set_and_decodes_with_postcard() {
    let mut f = Fixture::new();
    f.apply(snap(
        1,
        1,
        vec![with_components(Some(0), vec![comp(5, 50), comp(2, 20)])],
    ));
    assert_eq!(component_ids(&f), vec![2, 5]);
    f.events();
    // The list is the whole set: component 2 is gone, 9 is new.
    f.apply(snap(
        2,
        2,
        vec![with_components(None, vec![comp(9, 90), comp(5, 51)])],
    ));
    assert_eq!(f.events(), vec![Event::Updated { id: NetId(1) }]);
    assert_eq!(component_ids(&f), vec![5, 9]);
    let e = f.replica.get(NetId(1)).expect("entity");
    assert_eq!(e.component::<u32>(5).map(Result::ok), Some(Some(51)));
    assert!(e.component::<u32>(2).is_none());
    assert!(
        e.component::<String>(9).is_some_and(|r| r.is_err()),
        "wrong type is an error"
    );
    // An empty list in an update means unchanged; the same set again changes nothing.
    f.apply(snap(3, 3, vec![with_components(None, vec![])]));
    f.apply(snap(
        4,
        4,
        vec![with_components(None, vec![comp(5, 51), comp(9, 90)])],
    ));
    assert_eq!(f.events(), vec![]);
    assert_eq!(component_ids(&f), vec![5, 9]);
}

#[test]
fn spawn_record_with_no_components_clears_them() {
    let mut f = Fixture::new();
    f.apply(snap(1, 1, vec![with_components(Some(0), vec![comp(1, 1)])]));
    f.events();
    // The server restarts an entity whose components were all removed with a spawn.
    f.apply(snap(2, 2, vec![with_components(Some(0), vec![])]));
    assert!(component_ids(&f).is_empty());
    assert_eq!(f.events(), vec![Event::Updated { id: NetId(1) }]);
}

#[test]
fn respawn_with_another_kind_reports_despawn_then_spawn() {
    let mut f = Fixture::new();
    f.apply(snap(1, 1, vec![spawn(1, 2, 0, 0)]));
    f.events();
    f.apply(snap(2, 2, vec![spawn(1, 3, 0, 0)]));
    assert_eq!(
        f.events(),
        vec![
            Event::Despawned { id: NetId(1) },
            Event::Spawned {
                id: NetId(1),
                kind: 3
            }
        ]
    );
    assert_eq!(f.replica.get(NetId(1)).map(|e| e.kind), Some(3));
}

#[test]
fn interpolation_between_ticks_and_render_tick() {
    let mut f = Fixture::new();
    f.apply(snap(1, 10, vec![spawn(1, 0, 0, 0)]));
    f.apply(snap(
        2,
        11,
        vec![update(1, PosField::Absolute(QPos { x: 16, y: 0 }))],
    ));
    f.apply(snap(
        3,
        12,
        vec![update(1, PosField::Absolute(QPos { x: 48, y: 0 }))],
    ));
    let r = &f.replica;
    assert_eq!(r.render_tick(), Some(10.0));
    assert_eq!(r.interpolated(NetId(1), 10.5), Some(Vec2::new(0.5, 0.0)));
    assert_eq!(r.interpolated(NetId(1), 11.5), Some(Vec2::new(2.0, 0.0)));
    assert_eq!(r.interpolated(NetId(1), 0.0), Some(Vec2::new(0.0, 0.0)));
    assert_eq!(r.interpolated(NetId(1), 50.0), Some(Vec2::new(3.0, 0.0)));
    assert_eq!(r.interpolated(NetId(2), 11.0), None);
    let half_tick = Duration::from_millis(25);
    assert_eq!(r.render_tick_after(half_tick, 20), Some(10.5));
    assert_eq!(r.render_tick_after(Duration::from_secs(9), 20), Some(12.0));
}

#[test]
fn empty_replica_has_no_render_tick() {
    let mut r = Replica::new(f64::NAN);
    assert_eq!(r.render_tick(), None);
    assert_eq!(r.interpolation_delay_ticks(), 0.0);
    r.set_interpolation_delay_ticks(3.0);
    assert_eq!(r.interpolation_delay_ticks(), 3.0);
}
