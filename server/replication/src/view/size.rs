//! Record lengths worked out without encoding. The sender compares a candidate's
//! smallest possible length with what is left of the tick's budget and skips records
//! that cannot fit before touching their component bytes (a cache miss per entity,
//! which dominated the cost of building a snapshot when most candidates are deferred).
//!
//! The lengths mirror `EntityRecord::encode`; tests check them against it.

use super::entity::Plan;
use crate::state::ReplicatedState;
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::QPos;

/// Bytes of `v` as an unsigned LEB128 varint.
pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Bytes of `v` as a zigzag varint.
fn zigzag_len(v: i64) -> usize {
    varint_len(((v << 1) ^ (v >> 63)) as u64)
}

/// Bytes of a despawn record for `id`.
pub(crate) fn despawn_len(id: NetId) -> usize {
    varint_len(id.0) + 1
}

/// Fewest bytes `n` components can take: the count, and per component at least a
/// one-byte id and a one-byte length. Needs only the list's length, which the state
/// holds inline.
fn components_len_min(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    varint_len(n as u64) + 2 * n
}

/// A lower bound of the length of the record `plan` describes for `s`, placed in a
/// snapshot numbered `next_seq` or later. `components_len` is the length of
/// `s`'s component section when known (see `record::write_components`); without it
/// the bound assumes empty component bytes.
pub(crate) fn update_len_min(
    s: &ReplicatedState,
    plan: Plan,
    next_seq: u64,
    components_len: Option<usize>,
) -> usize {
    let components = components_len.unwrap_or_else(|| components_len_min(s.components.len()));
    let head = varint_len(s.id.0) + 1;
    match plan {
        Plan::Full => head + 2 + absolute_len(s.pos) + components,
        Plan::Update {
            pos_unchanged,
            delta_from,
            components: with_components,
        } => {
            let pos = if pos_unchanged {
                0
            } else {
                pos_len_min(s.pos, delta_from, next_seq)
            };
            head + pos + if with_components { components } else { 0 }
        }
    }
}

fn absolute_len(pos: QPos) -> usize {
    zigzag_len(pos.x.into()) + zigzag_len(pos.y.into())
}

/// A changed position goes out as a delta when representable, else absolute; the
/// delta's `baseline_back` only grows with the snapshot number, so `next_seq` gives
/// its shortest form. The smaller of both forms is a bound whichever is chosen.
fn pos_len_min(pos: QPos, delta_from: Option<(u64, QPos)>, next_seq: u64) -> usize {
    let absolute = absolute_len(pos);
    let Some((base_seq, base)) = delta_from else {
        return absolute;
    };
    let back = varint_len(next_seq.saturating_sub(base_seq).min(u64::from(u32::MAX)));
    let dx = i64::from(pos.x) - i64::from(base.x);
    let dy = i64::from(pos.y) - i64::from(base.y);
    absolute.min(back + zigzag_len(dx) + zigzag_len(dy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::record::tests::{encode, plan_strategy, state_strategy};
    use crate::view::record::{write_components, write_despawn};
    use proptest::prelude::*;
    use zonemesh_shared::codec::Writer;

    #[test]
    fn varint_lengths_match_the_encoder() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut w = Writer::default();
            w.varint(v);
            assert_eq!(varint_len(v), w.len(), "{v}");
        }
        for v in [0i64, -1, 63, -64, 64, -65, i64::from(i32::MIN), i64::MAX] {
            let mut w = Writer::default();
            w.zigzag(v);
            assert_eq!(zigzag_len(v), w.len(), "{v}");
        }
    }

    #[test]
    fn despawn_length_is_exact() {
        let mut w = Writer::default();
        for id in [0, 5, 300, u64::MAX] {
            write_despawn(NetId(id), &mut w);
            assert_eq!(despawn_len(NetId(id)), w.len());
        }
    }

    proptest! {
        #[test]
        fn lower_bound_never_exceeds_the_encoding(
            s in state_strategy(),
            plan in plan_strategy(),
            next_seq in 0u64..2000,
            later in 0u64..300,
        ) {
            let len = encode(&s, plan, next_seq + later).len();
            let mut section = Writer::default();
            write_components(&s.components, &mut section);
            let exact = section.len();
            prop_assert!(update_len_min(&s, plan, next_seq, None) <= len);
            prop_assert!(update_len_min(&s, plan, next_seq, Some(exact)) <= len);
            if matches!(plan, Plan::Full) {
                prop_assert_eq!(update_len_min(&s, plan, next_seq, Some(exact)), len);
            }
        }
    }
}
