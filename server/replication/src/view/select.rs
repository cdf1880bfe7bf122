//! Settles which entities a client is shown this tick: the nearest
//! `max_tracked_entities` visible ones. Newcomers take free places nearest first;
//! entities no longer selected start leaving (they keep their place until their
//! despawn is acknowledged, which bounds memory even if the client never acknowledges).

use super::entity::Tracked;
use super::{ClientView, SnapshotFrame, distance_squared};
use std::cmp::Ordering;
use zonemesh_shared::ids::NetId;

/// A visible entity with its distance to the viewer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ranked {
    distance_squared: f64,
    id: NetId,
    index: u32,
}

impl Ranked {
    /// Nearest first; ties (and NaN distances) broken by id so selection is
    /// deterministic.
    fn nearer(a: &Self, b: &Self) -> Ordering {
        a.distance_squared
            .total_cmp(&b.distance_squared)
            .then(a.id.cmp(&b.id))
    }
}

impl ClientView {
    /// Updates the shown set for `frame`; returns how many selected entities could not
    /// be admitted for lack of room.
    pub(super) fn select(&mut self, frame: &SnapshotFrame<'_>) -> usize {
        self.rank_visible(frame);
        self.mark_selected(frame);
        let generation = self.generation;
        self.entities.retain(|t| t.seen == generation || t.leave());
        self.admit(frame)
    }

    /// Fills `scratch.ranked` with the nearest `max_tracked_entities` valid visible
    /// entities.
    fn rank_visible(&mut self, frame: &SnapshotFrame<'_>) {
        let ranked = &mut self.scratch.ranked;
        ranked.clear();
        ranked.extend(frame.visible.iter().filter_map(|&index| {
            let s = frame.states.get(index as usize)?;
            Some(Ranked {
                distance_squared: distance_squared(frame.viewer, s.pos),
                id: s.id,
                index,
            })
        }));
        let keep = self.config.max_tracked_entities;
        if ranked.len() > keep {
            if keep > 0 {
                ranked.select_nth_unstable_by(keep - 1, Ranked::nearer);
            }
            ranked.truncate(keep);
        }
    }

    /// Marks tracked entities among the selected as seen this build (bringing back
    /// departing ones) and queues the rest for admission.
    fn mark_selected(&mut self, frame: &SnapshotFrame<'_>) {
        let (generation, next_seq) = (self.generation, self.next_seq);
        self.scratch.admit.clear();
        for r in &self.scratch.ranked {
            let kind = frame.states[r.index as usize].kind;
            match self.entities.get_mut(r.id) {
                Some(t) if t.seen == generation => keep_nearer(t, r, frame),
                Some(t) => {
                    t.seen = generation;
                    t.state_index = r.index;
                    if t.is_leaving() {
                        t.restart(kind, next_seq, frame.tick);
                    }
                }
                None => self.scratch.admit.push(*r),
            }
        }
    }

    /// Starts tracking queued newcomers, nearest first, while there is room; returns
    /// how many had to wait.
    fn admit(&mut self, frame: &SnapshotFrame<'_>) -> usize {
        let room = self
            .config
            .max_tracked_entities
            .saturating_sub(self.entities.len());
        let admit = &mut self.scratch.admit;
        let mut waiting = 0;
        if admit.len() > room {
            admit.sort_unstable_by(Ranked::nearer);
            waiting = admit.len() - room;
            admit.truncate(room);
        }
        for r in admit.iter() {
            let kind = frame.states[r.index as usize].kind;
            match self.entities.get_mut(r.id) {
                Some(t) => keep_nearer(t, r, frame),
                None => {
                    let t = Tracked::new(kind, self.next_seq, frame.tick, r.index, self.generation);
                    self.entities.insert(r.id, t);
                }
            }
        }
        waiting
    }
}

/// The same id listed twice in a frame (say a ghost from a neighbour's stale batch):
/// show the copy nearer the viewer, whatever the listing order.
fn keep_nearer(t: &mut Tracked, r: &Ranked, frame: &SnapshotFrame<'_>) {
    let Some(current) = frame.states.get(t.state_index as usize) else {
        t.state_index = r.index;
        return;
    };
    let current_distance = distance_squared(frame.viewer, current.pos);
    if r.distance_squared.total_cmp(&current_distance).is_lt() {
        t.state_index = r.index;
    }
}
