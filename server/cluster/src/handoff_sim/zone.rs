//! The zone host's side of the simulation: a held zone applies its players' inputs
//! (each only if newer than what it applied) and acknowledges them, a frozen one
//! buffers them; durable actions are committed to the store under the zone's epoch
//! and their effect handed to the zone; zones are saved every second; and when a
//! zone's host died, the directory has the store activate it on a live node, which
//! loads the last checkpoint.

use std::mem;

use zonemesh_shared::node::NodeRef;

use super::model::{ActionId, Commit, Player, ZoneState};
use super::world::{Event, Mode, Slot, World};

/// How often a node saves the zone it holds.
pub(super) const CHECKPOINT_MS: u64 = 1_000;
/// How often the directory looks for a zone whose host died.
pub(super) const FAILOVER_MS: u64 = 500;

/// The zone applies `seqs` (oldest first), each only if newer than the newest it
/// applied, as the real zone does; returns those it applied.
fn apply(state: &mut ZoneState, player: Player, seqs: &[u32]) -> Vec<u32> {
    let mut applied = Vec::new();
    for &seq in seqs {
        if seq > state.last_applied(player) {
            state.last_applied.insert(player, seq);
            state.version += 1;
            applied.push(seq);
        }
    }
    applied
}

impl World {
    /// Inputs of `player` reach run `to`: a zone taking inputs applies them and
    /// acknowledges, a frozen one buffers them, anything else drops them.
    pub(super) fn on_input(&mut self, to: NodeRef, player: Player, seqs: &[u32]) {
        let Some(i) = self.node_of(to) else {
            return;
        };
        let r = self.nodes[i].run.as_mut().expect("up");
        let Slot::Live { state, mode, .. } = &mut r.slot else {
            return;
        };
        if let Mode::Frozen(_) = mode {
            r.inbox_inputs.push((player, seqs.to_vec()));
            return;
        }
        let applied = apply(state, player, seqs);
        let last = state.last_applied(player);
        for seq in applied {
            let twice_here = !state.inputs.insert((player, seq));
            let twice_anywhere = !self.crashed && !self.applied_ever.insert((player, seq));
            if twice_here || twice_anywhere {
                self.fail(&format!(
                    "input {seq} of player {player} applied twice (on one lineage: {twice_here})"
                ));
            }
        }
        self.send_datagram(Event::Ack { player, last });
    }

    /// The effect of committed action `id` reaches node `i`'s zone.
    fn take_effect(&mut self, i: usize, id: ActionId) {
        let r = self.nodes[i].run.as_mut().expect("up");
        match &mut r.slot {
            Slot::Live {
                mode: Mode::Frozen(_),
                ..
            } => r.inbox_effects.push(id),
            Slot::Live { state, .. } => {
                state.version += 1;
                let twice_here = !state.effects.insert(id);
                let twice_anywhere = !self.crashed && !self.effects_ever.insert(id);
                if twice_here || twice_anywhere {
                    self.fail(&format!(
                        "the effect of action {id:?} applied twice (on one lineage: {twice_here})"
                    ));
                }
            }
            // Not held here any more: the effect is lost with the zone.
            _ => {}
        }
    }

    /// A zone that takes inputs again applies what waited in its inbox.
    pub(super) fn resume(&mut self, i: usize) {
        let r = self.nodes[i].run.as_mut().expect("up");
        let me = r.me;
        let inputs = mem::take(&mut r.inbox_inputs);
        let effects = mem::take(&mut r.inbox_effects);
        for (player, seqs) in inputs {
            self.on_input(me, player, &seqs);
        }
        for id in effects {
            self.take_effect(i, id);
        }
    }

    /// A durable action reaches run `to`: committed under the zone's epoch if the
    /// zone takes actions; refused (the client sends it again) if it is freezing,
    /// frozen or not here.
    pub(super) fn on_action(&mut self, to: NodeRef, id: ActionId) {
        let Some(i) = self.node_of(to) else {
            return;
        };
        let r = self.nodes[i].run.as_mut().expect("up");
        let Slot::Live {
            epoch,
            mode: Mode::Accepting,
            ..
        } = r.slot
        else {
            self.send_datagram(Event::ActionAnswer {
                id,
                committed: false,
            });
            return;
        };
        r.actions_in_flight += 1;
        let ms = self.store_delay();
        self.later(ms, Event::Committed { run: to, epoch, id });
    }

    /// The store's answer to a commit: a new action's effect goes to the zone, then
    /// the client hears it committed; a repeat is acknowledged again, not applied; a
    /// stale one is refused. A freeze waiting for the last action in flight goes on.
    pub(super) fn on_committed(&mut self, run: NodeRef, epoch: u64, id: ActionId) {
        let now = self.now;
        let commit = self
            .reaches_store(run)
            .then(|| self.store.commit(id, run, epoch, now));
        let Some(i) = self.node_of(run) else {
            return;
        };
        let r = self.nodes[i].run.as_mut().expect("up");
        r.actions_in_flight -= 1;
        let committed = match commit.expect("a live run's call reaches the store") {
            Commit::New => {
                self.take_effect(i, id);
                true
            }
            Commit::Again => true,
            Commit::Stale => false,
        };
        self.send_datagram(Event::ActionAnswer { id, committed });
        let r = self.nodes[i].run.as_ref().expect("up");
        if let (
            0,
            Slot::Live {
                mode: Mode::Freezing(handoff),
                ..
            },
        ) = (r.actions_in_flight, &r.slot)
        {
            let handoff = *handoff;
            self.schedule_frozen(run, handoff);
        }
    }

    /// Every node holding the zone saves it if it changed (one write at a time).
    pub(super) fn checkpoint_tick(&mut self) {
        self.later(CHECKPOINT_MS, Event::CheckpointTick);
        let mut saves = Vec::new();
        for node in &mut self.nodes {
            let Some(r) = &mut node.run else {
                continue;
            };
            if let Slot::Live { state, epoch, mode } = &r.slot
                && mode.accepts_inputs()
                && !r.saving
                && r.saved_version != Some(state.version)
            {
                r.saving = true;
                r.saved_version = Some(state.version);
                saves.push((r.me, *epoch, state.clone()));
            }
        }
        for (run, epoch, state) in saves {
            let ms = self.store_delay();
            self.later(ms, Event::Saved { run, epoch, state });
        }
    }

    pub(super) fn on_saved(&mut self, run: NodeRef, epoch: u64, state: &ZoneState) {
        if self.reaches_store(run) {
            self.store.save(run, epoch, self.now, state);
        }
        if let Some(r) = self.run_mut(run) {
            r.saving = false;
        }
    }

    /// The directory has the zone activated on a live node with nothing of it when no
    /// live run holds it and no live node has it in memory (a source shipping or
    /// taking it back, a target activating, another failover: each ends by itself).
    pub(super) fn failover_tick(&mut self) {
        self.later(FAILOVER_MS, Event::FailoverTick);
        if self.store.live_holder(self.now).is_some() {
            return;
        }
        let in_memory = self.runs().any(|r| {
            matches!(
                r.slot,
                Slot::Loading | Slot::Restored { .. } | Slot::Live { .. }
            )
        });
        let empty: Vec<usize> = (0..self.nodes.len())
            .filter(|i| {
                let run = self.nodes[*i].run.as_ref();
                run.is_some_and(|r| matches!(r.slot, Slot::Empty))
            })
            .collect();
        if in_memory || empty.is_empty() {
            return;
        }
        let i = empty[self.rng.index(empty.len())];
        let r = self.nodes[i].run.as_mut().expect("up");
        r.slot = Slot::Loading;
        let me = r.me;
        let ms = self.store_delay();
        self.later(ms, Event::FailoverActivation { run: me });
    }

    /// The store's answer to a failover activation: granted, the node loads the last
    /// checkpoint and takes inputs.
    pub(super) fn on_failover_activation(&mut self, run: NodeRef) {
        let now = self.now;
        let granted = if self.reaches_store(run) {
            self.store.activate(run, now)
        } else {
            None
        };
        let checkpoint = self.store.checkpoint.clone();
        let Some(r) = self.run_mut(run) else {
            return;
        };
        r.slot = match granted {
            Some(epoch) => Slot::Live {
                state: checkpoint,
                epoch,
                mode: Mode::Accepting,
            },
            None => Slot::Empty,
        };
    }
}
