//! The invariants: those checked after every step, and those that hold once a run
//! has settled. (Applying an input or an effect twice is caught where it happens, in
//! `zone.rs`.)

use std::collections::BTreeSet;

use zonemesh_shared::node::NodeRef;

use super::model::{ActionId, ZoneState};
use super::world::{Slot, World};

impl World {
    /// The invariants that hold after every step.
    pub(super) fn check(&self) {
        self.check_one_owner();
        self.check_saved_progress_kept();
        self.check_acknowledged_actions();
    }

    /// At most one node accepts inputs for the zone, and it is the store's holder at
    /// the epoch it believes, under a live lease.
    fn check_one_owner(&self) {
        let accepting: Vec<(NodeRef, u64)> = self
            .runs()
            .filter_map(|r| match &r.slot {
                Slot::Live { epoch, mode, .. } if mode.accepts_inputs() => Some((r.me, *epoch)),
                _ => None,
            })
            .collect();
        if accepting.len() > 1 {
            self.fail(&format!("{accepting:?} accept inputs at once"));
        }
        for (run, epoch) in accepting {
            if !self.store.fenced(run, epoch, self.now) {
                self.fail(&format!(
                    "{run} accepts inputs at epoch {epoch}, the store has epoch {} held by {:?}",
                    self.store.epoch, self.store.holder
                ));
            }
        }
    }

    /// The zone a live holder has in memory carries everything the store saved: a
    /// crash loses only what was applied after the last checkpoint.
    fn check_saved_progress_kept(&self) {
        let Some(state) = self.holder_state() else {
            return;
        };
        let saved = &self.store.checkpoint;
        if !saved.inputs.is_subset(&state.inputs) || !saved.effects.is_subset(&state.effects) {
            self.fail("the zone held lost inputs or effects the store had saved");
        }
    }

    /// Every durable action a client heard committed has exactly one record in the
    /// store, and no action has two.
    fn check_acknowledged_actions(&self) {
        for c in &self.clients {
            for n in &c.committed {
                if !self.store.records.contains_key(&(c.player, *n)) {
                    self.fail(&format!(
                        "action {n} of player {} was acknowledged but is not in the store",
                        c.player
                    ));
                }
            }
        }
        if let Some((id, n)) = self.store.records.iter().find(|(_, n)| **n > 1) {
            self.fail(&format!("action {id:?} was committed {n} times"));
        }
    }

    /// The zone's state on the store's live holder, if that run is up and has it.
    fn holder_state(&self) -> Option<&ZoneState> {
        let holder = self.store.live_holder(self.now)?;
        self.runs()
            .filter(|r| r.me == holder)
            .find_map(|r| match &r.slot {
                Slot::Live { state, .. } => Some(state),
                _ => None,
            })
    }

    /// Once the run settled: the zone is served by its holder, every client heard
    /// every input and action acknowledged, the cores are idle; without crashes,
    /// nothing was lost either.
    pub(super) fn check_settled(&self) {
        let Some(state) = self.holder_state() else {
            self.fail("nobody serves the zone at the end");
        };
        self.check_one_owner();
        if self
            .runs()
            .filter(|r| matches!(r.slot, Slot::Live { .. }))
            .count()
            != 1
        {
            self.fail("the zone is in memory on more than its holder at the end");
        }
        for c in &self.clients {
            let all_committed = c.committed.len() == c.actions_total as usize;
            if c.busy() || !all_committed {
                self.fail(&format!("client {c:?} never finished"));
            }
        }
        if self
            .runs()
            .any(|r| r.source.in_flight() + r.target.in_flight() > 0)
        {
            self.fail("a handoff is still in flight at the end");
        }
        if !self.crashed {
            self.check_nothing_lost(state);
        }
    }

    /// Without crashes: every handoff ended, the holder applied every input of every
    /// client once and every committed action's effect once, and nothing was
    /// applied on any other lineage.
    fn check_nothing_lost(&self, state: &ZoneState) {
        if self.finished.len() != self.started {
            self.fail("a handoff never ended");
        }
        let sent: BTreeSet<(u64, u32)> = self
            .clients
            .iter()
            .flat_map(|c| (1..=c.sent).map(move |seq| (c.player, seq)))
            .collect();
        if state.inputs != sent || self.applied_ever != sent {
            let lost: Vec<_> = sent.difference(&state.inputs).collect();
            self.fail(&format!("inputs lost: {lost:?}"));
        }
        let committed: BTreeSet<ActionId> = self.store.records.keys().copied().collect();
        if state.effects != committed || self.effects_ever != committed {
            let lost: Vec<_> = committed.difference(&state.effects).collect();
            self.fail(&format!("effects of committed actions lost: {lost:?}"));
        }
    }
}
