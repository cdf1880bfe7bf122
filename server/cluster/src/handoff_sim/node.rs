//! The nodes' runtime for a handoff, as `server/src/cluster/handoff.rs` carries out
//! the cores' actions: freezing, the final checkpoint and release, shipping the
//! state, redirecting the clients and forwarding what the frozen zone buffered,
//! taking the zone back, and on the target prewarming, restoring and activating.
//! Store calls answer later; the answer of a run that crashed meanwhile is lost,
//! though its request may still have reached the store.

use std::collections::BTreeMap;
use std::mem;

use zonemesh_shared::datagram::InputFrame;
use zonemesh_shared::node::NodeRef;
use zonemesh_shared::quant::Vec2;

use super::model::{Player, ZoneState};
use super::world::{B, Event, Mode, Run, Slot, World, Z};
use crate::handoff::{
    ForwardedItem, HandoffMsg, HandoffOutcome, Snapshot, SourceAction, TargetAction,
};

impl World {
    /// Handles one event.
    pub(super) fn on_event(&mut self, event: Event) {
        match event {
            Event::Handoff(msg) => self.on_handoff(msg),
            Event::Input { to, player, seqs } => self.on_input(to, player, &seqs),
            Event::Ack { player, last } => self.on_ack(player, last),
            Event::Action { to, id } => self.on_action(to, id),
            Event::ActionAnswer { id, committed } => self.on_action_answer(id, committed),
            Event::Redirect { player, to } => self.on_redirect(player, to),
            Event::ClientTick(player) => self.client_tick(player),
            Event::CheckpointTick => self.checkpoint_tick(),
            Event::FailoverTick => self.failover_tick(),
            Event::Restart(i) => self.restart(i),
            Event::Start => self.start(),
            Event::Frozen { run, id } => self.on_frozen(run, id),
            Event::Released {
                run,
                id,
                epoch,
                state,
            } => self.on_released(run, id, epoch, &state),
            Event::HandoffActivation { run, attempt } => self.on_handoff_activation(run, attempt),
            Event::Reactivation { run, id } => self.on_reactivation(run, id),
            Event::FailoverActivation { run } => self.on_failover_activation(run),
            Event::Saved { run, epoch, state } => self.on_saved(run, epoch, &state),
            Event::Committed { run, epoch, id } => self.on_committed(run, epoch, id),
        }
    }

    /// Whether a store call of `run` reached the store: always while the run lives;
    /// if it crashed since, only if the request left before the crash (even odds).
    pub(super) fn reaches_store(&mut self, run: NodeRef) -> bool {
        self.node_of(run).is_some() || self.rng.chance(0.5)
    }

    fn set_stage(&mut self, i: usize, stage: &'static str) {
        if let Some(s) = self.stages.get_mut(i) {
            *s = stage;
        }
    }

    /// The node holding the zone starts moving it: the first time from A to B, then
    /// to another node.
    fn start(&mut self) {
        let now = self.now;
        let accepting = |r: &Run| {
            matches!(
                r.slot,
                Slot::Live {
                    mode: Mode::Accepting,
                    ..
                }
            )
        };
        let holder = self
            .nodes
            .iter()
            .position(|n| n.run.as_ref().is_some_and(accepting));
        let Some(from) = holder else {
            return; // Nobody holds it now (a crash): no more moves.
        };
        let to = if self.started == 0 {
            B
        } else {
            (from + 1 + self.rng.index(self.nodes.len() - 1)) % self.nodes.len()
        };
        let to = self.current_run(to);
        let run = self.nodes[from].run.as_mut().expect("up");
        let Slot::Live { epoch, .. } = run.slot else {
            unreachable!("found holding the zone");
        };
        if let Err(e) = run.source.start(now, Z, epoch, to) {
            self.fail(&format!("a handoff did not start: {e:?}"));
        }
        self.started += 1;
        self.handoffs_left -= 1;
        self.set_stage(from, "preparing");
    }

    fn on_handoff(&mut self, msg: HandoffMsg) {
        let to = msg.to();
        // A message for an older run reaches the node's current run, whose cores
        // drop it.
        let Some(i) = self
            .nodes
            .iter()
            .position(|n| n.run.as_ref().is_some_and(|r| r.me.id == to.id))
        else {
            return;
        };
        let admit = self.admission(i);
        let now = self.now;
        let run = self.nodes[i].run.as_mut().expect("up");
        match msg {
            HandoffMsg::Forward { to, items, .. } => self.on_forward(to, items),
            HandoffMsg::Ready { .. }
            | HandoffMsg::Refused { .. }
            | HandoffMsg::Activated { .. } => {
                run.source.handle_message(now, msg);
            }
            HandoffMsg::Prepare { .. } | HandoffMsg::State { .. } | HandoffMsg::Abort { .. } => {
                run.target.handle_message(now, msg, |_| admit);
            }
        }
    }

    /// The inputs a frozen source buffered reach the target: applied like any input
    /// (only those newer than what the zone applied).
    fn on_forward(&mut self, to: NodeRef, items: Vec<ForwardedItem>) {
        for item in items {
            if let ForwardedItem::Input { session, inputs } = item {
                let mut seqs: Vec<u32> = inputs.iter().map(|i| i.seq).collect();
                seqs.sort_unstable();
                self.on_input(to, session, &seqs);
            }
        }
    }

    /// Carries out a source core's action on node `i`.
    pub(super) fn source_action(&mut self, i: usize, action: SourceAction) {
        match action {
            SourceAction::Send(msg) => self.send_handoff(msg),
            SourceAction::Freeze { id, .. } => self.freeze(i, id),
            SourceAction::CheckpointAndRelease { id, epoch, .. } => {
                self.checkpoint_and_release(i, id, epoch);
            }
            SourceAction::Unfreeze { id, .. } => self.unfreeze(i, id),
            SourceAction::ShipState {
                id,
                zone,
                epoch,
                tick,
                to,
            } => {
                let snapshot = self.frozen_state(i, id).to_snapshot();
                self.send_handoff(HandoffMsg::State {
                    id,
                    to,
                    zone,
                    epoch,
                    tick,
                    snapshot,
                });
                self.set_stage(i, "shipping");
            }
            SourceAction::Reactivate { id, .. } => self.reactivate(i, id),
            SourceAction::RedirectClients { id, to, epoch, .. } => {
                self.redirect_clients(i, id, to, epoch);
            }
            SourceAction::Finished { id, outcome, .. } => self.finished(i, id, outcome),
            SourceAction::LateActivated { .. } => {}
        }
    }

    /// The state of node `i`'s zone frozen for handoff `id` (a broken invariant if
    /// it is not frozen for it).
    fn frozen_state(&self, i: usize, id: u64) -> &ZoneState {
        match self.nodes[i].run.as_ref().map(|r| &r.slot) {
            Some(Slot::Live {
                state,
                mode: Mode::Frozen(f),
                ..
            }) if *f == id => state,
            other => self.fail(&format!(
                "handoff {id} needs a frozen zone, found {other:?}"
            )),
        }
    }

    fn freeze(&mut self, i: usize, id: u64) {
        let run = self.nodes[i].run.as_mut().expect("up");
        let Slot::Live { mode, .. } = &mut run.slot else {
            return; // Not in memory: the core's timer gives up.
        };
        if *mode != Mode::Accepting {
            return;
        }
        *mode = Mode::Freezing(id);
        let (me, idle) = (run.me, run.actions_in_flight == 0);
        self.set_stage(i, "freezing");
        // New actions are refused now; the freeze waits for those in flight.
        if idle {
            self.schedule_frozen(me, id);
        }
    }

    /// The zone freezes at its next tick's end, unless it is unfrozen meanwhile.
    pub(super) fn schedule_frozen(&mut self, run: NodeRef, id: u64) {
        let ms = self.freeze_delay();
        self.later(ms, Event::Frozen { run, id });
    }

    fn on_frozen(&mut self, run: NodeRef, id: u64) {
        let Some(i) = self.node_of(run) else {
            return;
        };
        let r = self.nodes[i].run.as_mut().expect("up");
        let Slot::Live { state, mode, .. } = &mut r.slot else {
            return;
        };
        if *mode != Mode::Freezing(id) {
            return; // Unfrozen meanwhile: the freeze was given up.
        }
        if r.actions_in_flight > 0 {
            self.fail("froze a zone with durable actions in flight");
        }
        if r.source.awaits_freeze(id) {
            *mode = Mode::Frozen(id);
            r.source.frozen(id, state.version);
            self.set_stage(i, "releasing");
        } else {
            // Frozen for a handoff given up: it carries on, as the runtime resumes it.
            *mode = Mode::Accepting;
        }
    }

    fn checkpoint_and_release(&mut self, i: usize, id: u64, epoch: u64) {
        let state = self.frozen_state(i, id).clone();
        let me = self.nodes[i].run.as_ref().expect("up").me;
        let ms = self.store_delay();
        self.later(
            ms,
            Event::Released {
                run: me,
                id,
                epoch,
                state,
            },
        );
    }

    /// The store's answers to the final checkpoint and the release, as the runtime
    /// reports them: both done; the save failed (nothing happened, the zone stays);
    /// or the release's answer was lost (it may have happened: reported released, as
    /// the core requires).
    fn on_released(&mut self, run: NodeRef, id: u64, epoch: u64, state: &ZoneState) {
        let reached = self.reaches_store(run);
        let fate = self.rng.index(100);
        let (save_fails, release_unknown) = ((85..93).contains(&fate), fate >= 93);
        let saved = reached && !save_fails && self.store.save(run, epoch, self.now, state);
        let released =
            saved && (!release_unknown || self.rng.chance(0.5)) && self.store.release(run, epoch);
        let Some(i) = self.node_of(run) else {
            return;
        };
        if released {
            self.frozen_state(i, id);
        }
        let now = self.now;
        let r = self.nodes[i].run.as_mut().expect("up");
        r.source
            .released(now, id, released || (saved && release_unknown));
    }

    fn unfreeze(&mut self, i: usize, id: u64) {
        let now = self.now;
        let r = self.nodes[i].run.as_mut().expect("up");
        let me = r.me;
        let Slot::Live { mode, epoch, .. } = &mut r.slot else {
            return;
        };
        let was = *mode;
        let epoch = *epoch;
        if was != Mode::Freezing(id) && was != Mode::Frozen(id) {
            return;
        }
        *mode = Mode::Accepting;
        self.set_stage(i, "unfrozen");
        if was == Mode::Frozen(id) {
            if !self.store.fenced(me, epoch, now) {
                self.fail("unfroze a zone the store does not give it");
            }
            self.resume(i);
        }
    }

    fn reactivate(&mut self, i: usize, id: u64) {
        self.frozen_state(i, id);
        let me = self.nodes[i].run.as_ref().expect("up").me;
        let ms = self.store_delay();
        self.later(ms, Event::Reactivation { run: me, id });
        self.set_stage(i, "reactivating");
    }

    /// The store's answer to the source taking the zone back: granted, it resumes
    /// with what it buffered; not, the zone is held elsewhere and leaves memory (its
    /// players reconnect and find it there).
    fn on_reactivation(&mut self, run: NodeRef, id: u64) {
        let now = self.now;
        let granted = if self.reaches_store(run) {
            self.store.activate(run, now)
        } else {
            None
        };
        let Some(i) = self.node_of(run) else {
            return;
        };
        self.frozen_state(i, id);
        let r = self.nodes[i].run.as_mut().expect("up");
        match granted {
            Some(granted) => {
                let Slot::Live { state, epoch, .. } = mem::replace(&mut r.slot, Slot::Empty) else {
                    unreachable!("checked frozen above");
                };
                let state = self.fresh_state(state, epoch, granted);
                self.nodes[i].run.as_mut().expect("up").slot = Slot::Live {
                    state,
                    epoch: granted,
                    mode: Mode::Accepting,
                };
                self.set_stage(i, "reactivated");
                self.resume(i);
            }
            None => {
                r.slot = Slot::Empty;
                r.inbox_inputs.clear();
                r.inbox_effects.clear();
                self.set_stage(i, "sent away");
            }
        }
    }

    /// The zone moved: its clients go to `to`, and what the frozen zone buffered is
    /// forwarded there (each player's newest datagram; durable actions cannot be
    /// there, the freeze waited for them); the zone leaves memory unsaved.
    fn redirect_clients(&mut self, i: usize, id: u64, to: NodeRef, epoch: u64) {
        if !self.store.grants.contains(&(to, epoch)) {
            self.fail("redirected the clients to an activation the store never granted");
        }
        self.frozen_state(i, id);
        let r = self.nodes[i].run.as_mut().expect("up");
        let me = r.me;
        r.slot = Slot::Empty;
        r.inbox_effects.clear();
        let items = forwarded_items(mem::take(&mut r.inbox_inputs));
        let players: Vec<Player> = self
            .clients
            .iter()
            .filter(|c| c.node == Some(me))
            .map(|c| c.player)
            .collect();
        for player in players {
            let ms = self.rng.range(1, 50);
            self.later(ms, Event::Redirect { player, to });
        }
        if !items.is_empty() {
            self.send_handoff(HandoffMsg::Forward {
                id,
                to,
                zone: Z,
                items,
            });
        }
        self.set_stage(i, "moved");
    }

    fn finished(&mut self, i: usize, id: u64, outcome: HandoffOutcome) {
        let me = self.nodes[i].run.as_ref().expect("up").me;
        if !self.finished.insert((me, id)) {
            self.fail("a handoff finished twice");
        }
        self.outcomes.push(outcome);
        if self.handoffs_left > 0 {
            let after = if self.slow_activations {
                self.rng.range(50, 1_000)
            } else {
                self.rng.range(200, 3_000)
            };
            self.later(after, Event::Start);
        }
    }

    /// Carries out a target core's action on node `i`.
    pub(super) fn target_action(&mut self, i: usize, action: TargetAction) {
        match action {
            TargetAction::Send(msg) => self.send_handoff(msg),
            TargetAction::Prewarm { id, .. } => self.prewarm(i, id),
            TargetAction::Restore {
                id,
                epoch,
                tick,
                snapshot,
                ..
            } => self.restore(i, id, epoch, tick, &snapshot),
            TargetAction::Activate { zone, attempt } => {
                assert_eq!(zone, Z);
                let me = self.nodes[i].run.as_ref().expect("up").me;
                let ms = self.activation_delay();
                self.later(ms, Event::HandoffActivation { run: me, attempt });
                self.set_stage(i, "activating");
            }
            TargetAction::Drop { id, .. } => self.drop_restored(i, id),
        }
    }

    fn prewarm(&mut self, i: usize, id: u64) {
        let r = self.nodes[i].run.as_mut().expect("up");
        if !matches!(r.slot, Slot::Empty) {
            self.fail("prewarmed a zone over another one");
        }
        r.slot = Slot::Prewarmed(id);
        self.set_stage(i, "prewarmed");
    }

    fn restore(&mut self, i: usize, id: u64, epoch: u64, tick: u64, snapshot: &Snapshot) {
        let state = match ZoneState::from_snapshot(snapshot) {
            Ok(state) if state.version == tick => state,
            other => self.fail(&format!("restored a bad state: {other:?}")),
        };
        let r = self.nodes[i].run.as_mut().expect("up");
        if matches!(r.slot, Slot::Prewarmed(p) if p == id) {
            r.slot = Slot::Restored { id, epoch, state };
            self.set_stage(i, "restored");
        } else {
            self.fail("restored a zone that was not prewarmed for it");
        }
    }

    /// The store's answer to the target's activation.
    fn on_handoff_activation(&mut self, run: NodeRef, attempt: u64) {
        let now = self.now;
        let granted = if self.grant && self.reaches_store(run) {
            self.store.activate(run, now)
        } else {
            None
        };
        let Some(i) = self.node_of(run) else {
            return;
        };
        let r = self.nodes[i].run.as_mut().expect("up");
        if !matches!(r.slot, Slot::Restored { id, .. } if id == attempt) {
            self.fail("an activation answered for a zone not restored");
        }
        if let Some(epoch) = granted {
            let Slot::Restored {
                state,
                epoch: released,
                ..
            } = mem::replace(&mut r.slot, Slot::Empty)
            else {
                unreachable!("checked above");
            };
            let state = self.fresh_state(state, released, epoch);
            let r = self.nodes[i].run.as_mut().expect("up");
            r.slot = Slot::Live {
                state,
                epoch,
                mode: Mode::Accepting,
            };
        }
        let r = self.nodes[i].run.as_mut().expect("up");
        r.target.activated(now, Z, attempt, granted);
        if granted.is_some() {
            self.set_stage(i, "live");
        }
    }

    fn drop_restored(&mut self, i: usize, id: u64) {
        let r = self.nodes[i].run.as_mut().expect("up");
        match &r.slot {
            Slot::Prewarmed(p) | Slot::Restored { id: p, .. } if *p == id => {
                r.slot = Slot::Empty;
                self.set_stage(i, "dropped");
            }
            Slot::Live { .. } => self.fail("dropped a zone it holds"),
            _ => {}
        }
    }
}

/// The state a node takes a handoff's zone up with once the store granted it at
/// `granted`: the state it holds (restored on the target, frozen on the source) if
/// that activation is the first since the release at `released`; otherwise the zone
/// was held in between (the source took it back, or it failed over) and may have
/// moved on, so the state held is stale and the zone is loaded from the store, like
/// any activation. Installing the held state regardless loses what was applied in
/// between, durable actions' effects included, without any crash: a slow activation
/// of the target can land after the source took the zone back and released it
/// again for a second handoff (`handoff_sim_late_activation_loads_the_saved_state`).
impl World {
    fn fresh_state(&mut self, held: ZoneState, released: u64, granted: u64) -> ZoneState {
        if granted == released + 1 {
            return held;
        }
        self.stale_grants += 1;
        self.store.checkpoint.clone()
    }
}

/// Each player's newest buffered datagram, as `Forward` items (inputs being states,
/// the newest datagram carries every input not yet applied).
fn forwarded_items(inbox: Vec<(Player, Vec<u32>)>) -> Vec<ForwardedItem> {
    let mut newest: BTreeMap<Player, Vec<u32>> = BTreeMap::new();
    for (player, seqs) in inbox {
        let entry = newest.entry(player).or_default();
        if seqs.iter().max() > entry.iter().max() {
            *entry = seqs;
        }
    }
    newest
        .into_iter()
        .map(|(session, seqs)| ForwardedItem::Input {
            session,
            inputs: seqs
                .into_iter()
                .map(|seq| InputFrame {
                    seq,
                    velocity: Vec2::new(1.0, 0.0),
                    buttons: 0,
                })
                .collect(),
        })
        .collect()
}
