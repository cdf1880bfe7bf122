//! Writes records straight from a [`ReplicatedState`] and a pre-encoded component
//! section, byte for byte what `zonemesh_shared::datagram::EntityRecord::encode`
//! writes (a property test holds the two together). Going through `EntityRecord`
//! would need an owned copy of every component, and reading the components costs a
//! cache miss or two per entity; a view keeps each entity's encoded section instead
//! (`Tracked::section`) and reads the components only when they change.

use super::entity::Plan;
use crate::state::ReplicatedState;
use zonemesh_shared::codec::Writer;
use zonemesh_shared::datagram::{
    COMPONENT_BYTES_MAX, COMPONENTS_PER_RECORD_MAX, ComponentValue, PosField,
};
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::QPos;

// Record flags, as `zonemesh_shared::datagram` defines them (private there).
const FLAG_SPAWN: u8 = 1;
const FLAG_DESPAWN: u8 = 2;
const FLAG_POS_ABS: u8 = 4;
const FLAG_POS_DELTA: u8 = 8;
const FLAG_COMPONENTS: u8 = 16;

/// Writes a despawn record for `id` (after clearing `w`).
pub(crate) fn write_despawn(id: NetId, w: &mut Writer) {
    w.truncate(0);
    w.varint(id.0);
    w.u8(FLAG_DESPAWN);
}

/// Writes the record `plan` describes for `s`, placed in snapshot `seq`, after
/// clearing `w`, except for the component section, which follows it on the wire.
/// `with_section` says whether the caller appends a section (see [`write_components`]):
/// when the plan sends components and there are any (an empty list is sent as
/// "unchanged", without section or flag).
pub(crate) fn write_update_head(
    s: &ReplicatedState,
    plan: Plan,
    seq: u64,
    with_section: bool,
    w: &mut Writer,
) {
    w.truncate(0);
    let (spawn_kind, pos) = match plan {
        Plan::Full => (Some(s.kind), PosField::Absolute(s.pos)),
        Plan::Update {
            pos_unchanged,
            delta_from,
            ..
        } => (None, pos_field(s.pos, pos_unchanged, delta_from, seq)),
    };
    w.varint(s.id.0);
    w.u8(flags(spawn_kind.is_some(), pos, with_section));
    if let Some(kind) = spawn_kind {
        w.u16(kind);
    }
    write_pos(pos, w);
}

/// True when the record `plan` describes carries the component section.
pub(crate) fn sends_components(plan: Plan) -> bool {
    match plan {
        Plan::Full => true,
        Plan::Update { components, .. } => components,
    }
}

fn flags(spawn: bool, pos: PosField, components: bool) -> u8 {
    let pos = match pos {
        PosField::Unchanged => 0,
        PosField::Absolute(_) => FLAG_POS_ABS,
        PosField::Delta { .. } => FLAG_POS_DELTA,
    };
    let spawn = if spawn { FLAG_SPAWN } else { 0 };
    let components = if components { FLAG_COMPONENTS } else { 0 };
    spawn | pos | components
}

fn write_pos(pos: PosField, w: &mut Writer) {
    match pos {
        PosField::Unchanged => {}
        PosField::Absolute(q) => {
            w.zigzag(q.x.into());
            w.zigzag(q.y.into());
        }
        PosField::Delta {
            baseline_back,
            dx,
            dy,
        } => {
            w.varint(baseline_back.into());
            w.zigzag(dx.into());
            w.zigzag(dy.into());
        }
    }
}

/// Appends the component section of a record carrying `components`: the count, then
/// each id and length-prefixed bytes; nothing for an empty list.
pub(crate) fn write_components(components: &[ComponentValue], w: &mut Writer) {
    if components.is_empty() {
        return;
    }
    w.varint(components.len() as u64);
    for c in components {
        w.varint(c.id.into());
        w.bytes(&c.bytes);
    }
}

/// True when the client's decoder accepts `components` in one record; a record
/// breaking the limits would make it reject the whole datagram.
pub(crate) fn components_sendable(components: &[ComponentValue]) -> bool {
    components.len() <= COMPONENTS_PER_RECORD_MAX
        && components
            .iter()
            .all(|c| c.bytes.len() <= COMPONENT_BYTES_MAX)
}

/// The position field for `pos` in snapshot `seq`.
fn pos_field(pos: QPos, unchanged: bool, delta_from: Option<(u64, QPos)>, seq: u64) -> PosField {
    if unchanged {
        return PosField::Unchanged;
    }
    let delta = delta_from.and_then(|(base_seq, base)| {
        let back = u32::try_from(seq.checked_sub(base_seq)?).ok()?;
        let dx = i32::try_from(i64::from(pos.x) - i64::from(base.x)).ok()?;
        let dy = i32::try_from(i64::from(pos.y) - i64::from(base.y)).ok()?;
        (back > 0).then_some(PosField::Delta {
            baseline_back: back,
            dx,
            dy,
        })
    });
    delta.unwrap_or(PosField::Absolute(pos))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use zonemesh_shared::datagram::{EntityRecord, Snapshot, SnapshotHeader};

    /// The record the view sends, as the shared type.
    fn expected_record(s: &ReplicatedState, plan: Plan, seq: u64) -> EntityRecord {
        match plan {
            Plan::Full => EntityRecord::Update {
                id: s.id,
                spawn_kind: Some(s.kind),
                pos: PosField::Absolute(s.pos),
                components: s.components.to_vec(),
            },
            Plan::Update {
                pos_unchanged,
                delta_from,
                components,
            } => EntityRecord::Update {
                id: s.id,
                spawn_kind: None,
                pos: pos_field(s.pos, pos_unchanged, delta_from, seq),
                components: if components {
                    s.components.to_vec()
                } else {
                    Vec::new()
                },
            },
        }
    }

    /// The whole record as the view sends it: head, then the component section.
    pub(crate) fn encode(s: &ReplicatedState, plan: Plan, seq: u64) -> Vec<u8> {
        let mut section = Writer::default();
        write_components(&s.components, &mut section);
        let with_section = sends_components(plan) && !section.is_empty();
        let mut w = Writer::default();
        write_update_head(s, plan, seq, with_section, &mut w);
        let mut bytes = w.into_vec();
        if with_section {
            bytes.extend_from_slice(section.as_slice());
        }
        bytes
    }

    fn decode_one(bytes: &[u8]) -> EntityRecord {
        let mut w = Writer::default();
        SnapshotHeader {
            seq: 9,
            tick: 1,
            input_ack: 0,
        }
        .encode(&mut w);
        let mut all = w.into_vec();
        all.extend_from_slice(bytes);
        let mut snap = Snapshot::decode(&all).expect("valid snapshot");
        assert_eq!(snap.records.len(), 1);
        snap.records.remove(0)
    }

    fn state() -> ReplicatedState {
        let c = vec![ComponentValue {
            id: 3,
            bytes: vec![1, 2, 3],
        }];
        ReplicatedState::new(NetId(42), 7, QPos { x: 10, y: -4 }, c)
    }

    #[test]
    fn full_records_carry_kind_position_and_components() {
        let s = state();
        let expected = EntityRecord::Update {
            id: s.id,
            spawn_kind: Some(7),
            pos: PosField::Absolute(s.pos),
            components: s.components.to_vec(),
        };
        assert_eq!(decode_one(&encode(&s, Plan::Full, 9)), expected);
    }

    #[test]
    fn deltas_count_back_from_the_record_snapshot() {
        let s = state();
        let plan = Plan::Update {
            pos_unchanged: false,
            delta_from: Some((5, QPos { x: 8, y: -4 })),
            components: false,
        };
        let expected = EntityRecord::Update {
            id: s.id,
            spawn_kind: None,
            pos: PosField::Delta {
                baseline_back: 4,
                dx: 2,
                dy: 0,
            },
            components: vec![],
        };
        assert_eq!(decode_one(&encode(&s, plan, 9)), expected);
    }

    #[test]
    fn despawns_match_the_shared_encoder() {
        for id in [0, 1, 300, u64::MAX] {
            let mut ours = Writer::default();
            write_despawn(NetId(id), &mut ours);
            let mut theirs = Writer::default();
            EntityRecord::Despawn { id: NetId(id) }.encode(&mut theirs);
            assert_eq!(ours.as_slice(), theirs.as_slice());
        }
    }

    #[test]
    fn unrepresentable_deltas_fall_back_to_absolute() {
        let far = QPos { x: i32::MIN, y: 0 };
        let pos = QPos { x: i32::MAX, y: 0 };
        assert_eq!(
            pos_field(pos, false, Some((1, far)), 2),
            PosField::Absolute(pos)
        );
        assert_eq!(
            pos_field(pos, false, Some((2, pos)), 2),
            PosField::Absolute(pos)
        );
        assert_eq!(pos_field(pos, true, None, 2), PosField::Unchanged);
    }

    #[test]
    fn component_limits_are_checked() {
        let ok = vec![ComponentValue {
            id: 1,
            bytes: vec![0; COMPONENT_BYTES_MAX],
        }];
        assert!(components_sendable(&ok));
        let big = vec![ComponentValue {
            id: 1,
            bytes: vec![0; COMPONENT_BYTES_MAX + 1],
        }];
        assert!(!components_sendable(&big));
        let many = vec![
            ComponentValue {
                id: 1,
                bytes: vec![]
            };
            COMPONENTS_PER_RECORD_MAX + 1
        ];
        assert!(!components_sendable(&many));
    }

    pub(crate) fn plan_strategy() -> impl Strategy<Value = Plan> {
        prop_oneof![
            Just(Plan::Full),
            (
                any::<bool>(),
                proptest::option::of((0u64..1000, any::<i32>(), any::<i32>())),
                any::<bool>()
            )
                .prop_map(|(pos_unchanged, base, components)| Plan::Update {
                    pos_unchanged,
                    delta_from: base.map(|(seq, x, y)| (seq, QPos { x, y })),
                    components,
                }),
        ]
    }

    pub(crate) fn state_strategy() -> impl Strategy<Value = ReplicatedState> {
        let component = (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..300));
        (
            any::<u64>(),
            any::<u16>(),
            any::<i32>(),
            any::<i32>(),
            proptest::collection::vec(component, 0..5),
        )
            .prop_map(|(id, kind, x, y, comps)| {
                let comps = comps
                    .into_iter()
                    .map(|(id, bytes)| ComponentValue { id, bytes })
                    .collect();
                ReplicatedState::new(NetId(id), kind, QPos { x, y }, comps)
            })
    }

    proptest! {
        /// The wire format is the shared encoder's, byte for byte.
        #[test]
        fn records_match_the_shared_encoder(
            s in state_strategy(),
            plan in plan_strategy(),
            seq in 0u64..2000,
        ) {
            let mut theirs = Writer::default();
            expected_record(&s, plan, seq).encode(&mut theirs);
            prop_assert_eq!(encode(&s, plan, seq), theirs.into_vec());
        }
    }
}
