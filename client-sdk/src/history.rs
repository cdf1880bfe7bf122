//! Small bounded histories behind the replica: per-entity positions by snapshot
//! sequence (delta baselines), per-entity `(tick, position)` samples (interpolation),
//! and tombstones of despawned entities (so late records cannot resurrect them).

use crate::seq;
use std::collections::{HashMap, VecDeque};
use zonemesh_shared::datagram::POSITION_HISTORY;
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::{QPos, Vec2};

/// Interpolation samples kept per entity (at 20 Hz, 1.6 s of motion).
pub const INTERPOLATION_SAMPLES: usize = 32;
/// Most tombstones kept; beyond this the oldest are forgotten early.
const TOMBSTONES_MAX: usize = 8192;

/// An entity's positions from its last [`POSITION_HISTORY`] records, oldest first in
/// serial order.
#[derive(Debug, Clone, Default)]
pub(crate) struct PositionHistory {
    entries: VecDeque<(u32, QPos)>,
}

impl PositionHistory {
    /// The position recorded for snapshot `seq`.
    pub(crate) fn at(&self, seq: u32) -> Option<QPos> {
        self.entries
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, q)| *q)
    }

    /// The newest position recorded before snapshot `seq`.
    pub(crate) fn before(&self, seq: u32) -> Option<QPos> {
        self.entries
            .iter()
            .rev()
            .find(|(s, _)| seq::newer(seq, *s))
            .map(|(_, q)| *q)
    }

    /// Records the position of a snapshot newer than every entry.
    pub(crate) fn push(&mut self, seq: u32, q: QPos) {
        debug_assert!(self.entries.back().is_none_or(|(s, _)| seq::newer(seq, *s)));
        if self.entries.len() == POSITION_HISTORY {
            self.entries.pop_front();
        }
        self.entries.push_back((seq, q));
    }

    /// Records the position of a snapshot that arrived out of order, keeping the order
    /// and the bound. A snapshot older than a full history is not kept: the server has
    /// sent [`POSITION_HISTORY`] newer records since, so it never uses it as a baseline.
    pub(crate) fn insert(&mut self, seq: u32, q: QPos) {
        if self.at(seq).is_some() {
            return;
        }
        let mut index = self
            .entries
            .iter()
            .position(|(s, _)| seq::newer(*s, seq))
            .unwrap_or(self.entries.len());
        if self.entries.len() == POSITION_HISTORY {
            if index == 0 {
                return;
            }
            self.entries.pop_front();
            index -= 1;
        }
        self.entries.insert(index, (seq, q));
    }

    #[cfg(test)]
    pub(crate) fn seqs(&self) -> Vec<u32> {
        self.entries.iter().map(|(s, _)| *s).collect()
    }
}

/// An entity's recent `(server tick, position)` samples, oldest first, ticks strictly
/// increasing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Samples {
    entries: VecDeque<(u64, Vec2)>,
}

impl Samples {
    /// Adds a sample. A tick equal to the newest replaces it; an older tick means the
    /// tick clock jumped (a zone change), so the old samples are dropped.
    pub(crate) fn push(&mut self, tick: u64, pos: Vec2) {
        match self.entries.back() {
            Some(&(t, _)) if t == tick => {
                self.entries.pop_back();
            }
            Some(&(t, _)) if tick < t => self.entries.clear(),
            _ => {}
        }
        if self.entries.len() == INTERPOLATION_SAMPLES {
            self.entries.pop_front();
        }
        self.entries.push_back((tick, pos));
    }

    /// The position at fractional tick `t`: linear between the two samples around it,
    /// clamped to the first and last sample outside their range.
    pub(crate) fn at(&self, t: f64) -> Option<Vec2> {
        let &(first_tick, first) = self.entries.front()?;
        let &(last_tick, last) = self.entries.back()?;
        if t.is_nan() || t <= first_tick as f64 {
            return Some(first);
        }
        if t >= last_tick as f64 {
            return Some(last);
        }
        let pairs = self.entries.iter().zip(self.entries.iter().skip(1));
        for (&(t0, p0), &(t1, p1)) in pairs {
            if t < t1 as f64 {
                let frac = (t - t0 as f64) / (t1 - t0) as f64;
                return Some(p0.lerp(p1, frac as f32));
            }
        }
        Some(last)
    }
}

/// Despawned entities and the snapshot that despawned them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tombstones {
    by_id: HashMap<NetId, u32>,
    /// Insertion order, for pruning; may hold entries already removed from `by_id`.
    order: VecDeque<(NetId, u32)>,
}

impl Tombstones {
    /// Remembers that `id` was despawned in snapshot `seq` (if newer than what is known).
    pub(crate) fn insert(&mut self, id: NetId, seq: u32) {
        if self.by_id.get(&id).is_some_and(|s| !seq::newer(seq, *s)) {
            return;
        }
        self.by_id.insert(id, seq);
        self.order.push_back((id, seq));
        while self.order.len() > TOMBSTONES_MAX {
            self.pop_oldest();
        }
    }

    /// Forgets `id` (it was spawned again).
    pub(crate) fn remove(&mut self, id: NetId) {
        self.by_id.remove(&id);
    }

    /// True if a record of snapshot `seq` for `id` predates its despawn.
    pub(crate) fn hides(&self, id: NetId, seq: u32) -> bool {
        self.by_id.get(&id).is_some_and(|s| !seq::newer(seq, *s))
    }

    /// Forgets tombstones more than `window` sequence numbers behind `newest`: records
    /// that old are rejected before they reach an entity anyway.
    pub(crate) fn prune(&mut self, newest: u32, window: u32) {
        while self
            .order
            .front()
            .is_some_and(|&(_, s)| seq::behind(newest, s) > window)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((id, seq)) = self.order.pop_front()
            && self.by_id.get(&id) == Some(&seq)
        {
            self.by_id.remove(&id);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(x: i32) -> QPos {
        QPos { x, y: 0 }
    }

    #[test]
    fn position_history_is_bounded_and_ordered() {
        let mut h = PositionHistory::default();
        for s in 0..20 {
            h.push(s, q(s as i32));
        }
        assert_eq!(h.seqs(), (4..20).collect::<Vec<_>>());
        assert_eq!(h.at(4), Some(q(4)));
        assert_eq!(h.at(3), None);
        assert_eq!(h.before(10), Some(q(9)));
    }

    #[test]
    fn late_positions_are_inserted_in_order() {
        let mut h = PositionHistory::default();
        for s in [1, 2, 5] {
            h.push(s, q(s as i32));
        }
        h.insert(4, q(40));
        h.insert(3, q(30));
        h.insert(4, q(99));
        assert_eq!(h.seqs(), vec![1, 2, 3, 4, 5]);
        assert_eq!(h.at(4), Some(q(40)));
    }

    #[test]
    fn late_position_older_than_a_full_history_is_dropped() {
        let mut h = PositionHistory::default();
        for s in 10..26 {
            h.push(s, q(0));
        }
        h.insert(5, q(1));
        assert_eq!(h.at(5), None);
        h.insert(20 + 100, q(2));
        assert_eq!(h.seqs().len(), POSITION_HISTORY);
        assert_eq!(h.seqs().last(), Some(&120));
    }

    #[test]
    fn history_orders_across_wraparound() {
        let mut h = PositionHistory::default();
        h.push(u32::MAX - 1, q(1));
        h.push(1, q(3));
        h.insert(u32::MAX, q(2));
        h.insert(0, q(25));
        assert_eq!(h.seqs(), vec![u32::MAX - 1, u32::MAX, 0, 1]);
        assert_eq!(h.before(0), Some(q(2)));
    }

    #[test]
    fn samples_interpolate_and_clamp() {
        let mut s = Samples::default();
        assert_eq!(s.at(1.0), None);
        s.push(10, Vec2::new(0.0, 0.0));
        s.push(12, Vec2::new(4.0, 2.0));
        s.push(13, Vec2::new(4.0, 10.0));
        assert_eq!(s.at(5.0), Some(Vec2::new(0.0, 0.0)));
        assert_eq!(s.at(11.0), Some(Vec2::new(2.0, 1.0)));
        assert_eq!(s.at(12.5), Some(Vec2::new(4.0, 6.0)));
        assert_eq!(s.at(99.0), Some(Vec2::new(4.0, 10.0)));
        assert_eq!(s.at(f64::NAN), Some(Vec2::new(0.0, 0.0)));
    }

    #[test]
    fn samples_replace_same_tick_and_reset_on_clock_jump() {
        let mut s = Samples::default();
        s.push(10, Vec2::new(1.0, 0.0));
        s.push(10, Vec2::new(2.0, 0.0));
        assert_eq!(s.at(10.0), Some(Vec2::new(2.0, 0.0)));
        s.push(11, Vec2::new(3.0, 0.0));
        s.push(3, Vec2::new(9.0, 0.0));
        assert_eq!(s.at(11.0), Some(Vec2::new(9.0, 0.0)));
        for t in 0..100 {
            s.push(100 + t, Vec2::ZERO);
        }
        assert_eq!(s.entries.len(), INTERPOLATION_SAMPLES);
    }

    #[test]
    fn tombstones_hide_older_records_and_are_pruned() {
        let mut t = Tombstones::default();
        t.insert(NetId(1), 10);
        assert!(t.hides(NetId(1), 9) && t.hides(NetId(1), 10));
        assert!(!t.hides(NetId(1), 11) && !t.hides(NetId(2), 1));
        t.insert(NetId(1), 8);
        assert!(t.hides(NetId(1), 10));
        t.prune(10 + 64, 64);
        assert_eq!(t.len(), 1);
        t.prune(10 + 65, 64);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn tombstones_are_bounded() {
        let mut t = Tombstones::default();
        for i in 0..(TOMBSTONES_MAX as u64 + 10) {
            t.insert(NetId(i), 1);
        }
        assert_eq!(t.len(), TOMBSTONES_MAX);
        assert!(!t.hides(NetId(0), 1));
        t.remove(NetId(TOMBSTONES_MAX as u64 + 9));
        assert_eq!(t.len(), TOMBSTONES_MAX - 1);
    }
}
