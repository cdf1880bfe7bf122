//! The entities one view tracks, laid out for the cache: a small index from id to
//! slot, and the [`Tracked`] entries in a dense array. In a crowd every client's view
//! visits every tracked entity several times a tick (selection, planning, sending,
//! acknowledgements); with the entries inside the hash table, each lookup by id
//! landed on a large, scattered entry and most of the time went to cache misses.
//! Now a lookup reads a 16-byte index entry, and a pass over all entries (planning)
//! reads memory in order.
//!
//! Removal swaps the last entry into the freed slot, so slots are stable only
//! between removals: a slot taken during one build is used within it, never kept.

use super::entity::Tracked;
use crate::idmap::IdMap;
use std::collections::hash_map::Entry;
use zonemesh_shared::ids::NetId;

/// A view's tracked entities, by id and by slot.
#[derive(Debug, Default)]
pub(crate) struct TrackedSet {
    /// Id to slot in `ids` and `entries`.
    index: IdMap<u32>,
    ids: Vec<NetId>,
    entries: Vec<Tracked>,
}

impl TrackedSet {
    /// Entities tracked.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry of `id`, if tracked.
    pub(crate) fn get_mut(&mut self, id: NetId) -> Option<&mut Tracked> {
        let slot = *self.index.get(&id)?;
        self.entries.get_mut(slot as usize)
    }

    /// The entry in `slot`, if it holds `id` (slots move on removal).
    pub(crate) fn at_mut(&mut self, slot: u32, id: NetId) -> Option<&mut Tracked> {
        let slot = slot as usize;
        if self.ids.get(slot) != Some(&id) {
            return None;
        }
        self.entries.get_mut(slot)
    }

    /// True if `id` is tracked.
    pub(crate) fn contains(&self, id: NetId) -> bool {
        self.index.contains_key(&id)
    }

    /// Starts tracking `id` with `entry`; an entry it already had is replaced.
    pub(crate) fn insert(&mut self, id: NetId, entry: Tracked) {
        // Views track at most `max_tracked_entities`, far below `u32::MAX`.
        let next = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        match self.index.entry(id) {
            Entry::Occupied(slot) => self.entries[*slot.get() as usize] = entry,
            Entry::Vacant(slot) => {
                slot.insert(next);
                self.ids.push(id);
                self.entries.push(entry);
            }
        }
    }

    /// Stops tracking `id`.
    pub(crate) fn remove(&mut self, id: NetId) {
        if let Some(slot) = self.index.remove(&id) {
            self.remove_slot(slot as usize);
        }
    }

    /// Keeps the entries for which `keep` is true, visiting each once.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&mut Tracked) -> bool) {
        let mut slot = 0;
        while slot < self.entries.len() {
            if keep(&mut self.entries[slot]) {
                slot += 1;
            } else {
                // The last entry moves here and is visited next.
                self.index.remove(&self.ids[slot]);
                self.remove_slot(slot);
            }
        }
    }

    /// Every entry with its slot and id, in slot order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (u32, NetId, &mut Tracked)> {
        self.ids
            .iter()
            .zip(self.entries.iter_mut())
            .enumerate()
            .map(|(slot, (&id, t))| (slot as u32, id, t))
    }

    /// Every entry with its id, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (NetId, &Tracked)> {
        self.ids.iter().copied().zip(self.entries.iter())
    }

    /// Empties `slot` (whose index entry is already gone) by moving the last entry in.
    fn remove_slot(&mut self, slot: usize) {
        self.ids.swap_remove(slot);
        self.entries.swap_remove(slot);
        if let Some(&moved) = self.ids.get(slot) {
            self.index.insert(moved, slot as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: u16) -> Tracked {
        Tracked::new(kind, 0, 0, 0, 0)
    }

    fn kinds(set: &TrackedSet) -> Vec<(u64, u16)> {
        let mut all: Vec<(u64, u16)> = set.iter().map(|(id, t)| (id.0, t.kind)).collect();
        all.sort_unstable();
        all
    }

    #[test]
    fn lookups_by_id_and_slot_survive_removals() {
        let mut set = TrackedSet::default();
        for i in 0..5u16 {
            set.insert(NetId(u64::from(i)), entry(i));
        }
        set.remove(NetId(1));
        set.remove(NetId(7));
        assert_eq!(set.len(), 4);
        assert!(!set.contains(NetId(1)));
        for i in [0u16, 2, 3, 4] {
            assert_eq!(set.get_mut(NetId(u64::from(i))).map(|t| t.kind), Some(i));
        }
        let slots: Vec<(u32, NetId)> = set.iter_mut().map(|(s, id, _)| (s, id)).collect();
        for (slot, id) in slots {
            assert_eq!(set.at_mut(slot, id).map(|t| t.kind), Some(id.0 as u16));
            assert!(
                set.at_mut(slot, NetId(99)).is_none(),
                "a slot answers for its id only"
            );
        }
        set.insert(NetId(2), entry(20));
        assert_eq!(kinds(&set), vec![(0, 0), (2, 20), (3, 3), (4, 4)]);
    }

    #[test]
    fn retain_visits_every_entry_once_and_keeps_the_index_right() {
        let mut set = TrackedSet::default();
        for i in 0..10u16 {
            set.insert(NetId(u64::from(i)), entry(i));
        }
        let mut visits = 0;
        set.retain(|t| {
            visits += 1;
            t.kind % 3 == 0
        });
        assert_eq!(visits, 10);
        assert_eq!(kinds(&set), vec![(0, 0), (3, 3), (6, 6), (9, 9)]);
        for i in [0u16, 3, 6, 9] {
            assert_eq!(set.get_mut(NetId(u64::from(i))).map(|t| t.kind), Some(i));
        }
        assert!(set.get_mut(NetId(4)).is_none());
    }
}
