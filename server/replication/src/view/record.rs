//! Turns a planned record into bytes with the shared encoder ([`EntityRecord::encode`]),
//! reusing component buffers so steady-state encoding does not allocate.

use super::entity::Plan;
use crate::state::ReplicatedState;
use std::mem;
use zonemesh_shared::codec::Writer;
use zonemesh_shared::datagram::{
    COMPONENT_BYTES_MAX, COMPONENTS_PER_RECORD_MAX, ComponentValue, EntityRecord, PosField,
};
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::QPos;

/// Builds [`EntityRecord`]s and encodes them, recycling the component byte buffers the
/// record type owns.
#[derive(Debug, Default)]
pub(crate) struct RecordEncoder {
    /// Empty list with capacity, lent to each record.
    list: Vec<ComponentValue>,
    /// Spare byte buffers (at most [`COMPONENTS_PER_RECORD_MAX`]).
    spare: Vec<Vec<u8>>,
}

impl RecordEncoder {
    /// Writes a despawn record for `id` (after clearing `w`).
    pub(crate) fn despawn(&mut self, id: NetId, w: &mut Writer) {
        w.truncate(0);
        EntityRecord::Despawn { id }.encode(w);
    }

    /// Writes the record `plan` describes for `s`, placed in snapshot `seq` (after
    /// clearing `w`).
    pub(crate) fn update(&mut self, s: &ReplicatedState, plan: Plan, seq: u64, w: &mut Writer) {
        w.truncate(0);
        let record = match plan {
            Plan::Full => EntityRecord::Update {
                id: s.id,
                spawn_kind: Some(s.kind),
                pos: PosField::Absolute(s.pos),
                components: self.lend(&s.components),
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
                    self.lend(&s.components)
                } else {
                    Vec::new()
                },
            },
        };
        record.encode(w);
        self.recycle(record);
    }

    /// The components as an owned list, built from recycled buffers.
    fn lend(&mut self, components: &[ComponentValue]) -> Vec<ComponentValue> {
        let mut list = mem::take(&mut self.list);
        list.extend(components.iter().map(|c| {
            let mut bytes = self.spare.pop().unwrap_or_default();
            bytes.clear();
            bytes.extend_from_slice(&c.bytes);
            ComponentValue { id: c.id, bytes }
        }));
        list
    }

    /// Takes the record's buffers back.
    fn recycle(&mut self, record: EntityRecord) {
        let EntityRecord::Update { mut components, .. } = record else {
            return;
        };
        for c in components.drain(..) {
            if self.spare.len() < COMPONENTS_PER_RECORD_MAX {
                self.spare.push(c.bytes);
            }
        }
        if components.capacity() > self.list.capacity() {
            self.list = components;
        }
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
mod tests {
    use super::*;
    use zonemesh_shared::datagram::{Snapshot, SnapshotHeader};

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
        let (mut enc, mut w, s) = (RecordEncoder::default(), Writer::default(), state());
        enc.update(&s, Plan::Full, 9, &mut w);
        let expected = EntityRecord::Update {
            id: s.id,
            spawn_kind: Some(7),
            pos: PosField::Absolute(s.pos),
            components: s.components.to_vec(),
        };
        assert_eq!(decode_one(w.as_slice()), expected);
        // The recycled buffers produce the same bytes the second time.
        let first = w.as_slice().to_vec();
        enc.update(&s, Plan::Full, 9, &mut w);
        assert_eq!(w.as_slice(), first);
    }

    #[test]
    fn deltas_count_back_from_the_record_snapshot() {
        let (mut enc, mut w, s) = (RecordEncoder::default(), Writer::default(), state());
        let plan = Plan::Update {
            pos_unchanged: false,
            delta_from: Some((5, QPos { x: 8, y: -4 })),
            components: false,
        };
        enc.update(&s, plan, 9, &mut w);
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
        assert_eq!(decode_one(w.as_slice()), expected);
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
}
