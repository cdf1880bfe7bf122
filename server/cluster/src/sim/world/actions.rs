//! Durable actions, as the server commits them (`server/src/net/actions.rs`): a playing
//! client now and then sends an action with a fresh random id to the node it is
//! connected to; the node commits it to the store under the epoch of the player's
//! zone (a round trip over the faulty network) and answers `ActionCommitted` only when
//! the store confirmed it, or `ActionRejected{Busy}` when it cannot commit (zone not
//! active, store cut off, stale epoch). The client keeps every id it has not seen
//! acknowledged and resends it with the same id: after `Busy`, after
//! [`ACTION_RESEND_MS`] without an answer (a lost call or answer, or a node that
//! crashed), and at once on a new session or node. Answers travel with the session:
//! one reaches the client only while it is still connected to that run in that session
//! (playing or in a transfer).
//!
//! Client ↔ node traffic is direct, as the sim's logins are; node ↔ store traffic goes
//! through the network, drawing from the actions' own generator.

use std::collections::BTreeMap;

use zonemesh_shared::node::NodeRef;

use super::{PlayerState, World};
use crate::Millis;
use crate::sim::check::{Violation, check_actions};
use crate::sim::net::{ActionCall, Endpoint, Packet};
use crate::sim::store::ActionCommit;
use crate::sim::world::SimFailure;

/// Chance, at each check of a playing client while faults run, that it starts a
/// durable action.
const ACTION_CHANCE: f64 = 0.05;
/// Unacknowledged actions a client keeps at most; it starts no new one while full.
const MAX_PENDING: usize = 8;
/// How long a client waits for an answer before resending an action.
pub(super) const ACTION_RESEND_MS: u64 = 1_000;

/// Where and when a client last sent an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    node: NodeRef,
    session: u64,
    at: Millis,
}

/// A client's durable actions.
#[derive(Debug, Default)]
pub(super) struct ClientActions {
    /// Ids not yet acknowledged → their last send (`None`: send at the next chance).
    pending: BTreeMap<u64, Option<Sent>>,
    /// Ids acknowledged, in order.
    acked: Vec<u64>,
}

impl ClientActions {
    /// How many actions are pending and how many acknowledged.
    pub(super) fn counts(&self) -> (usize, usize) {
        (self.pending.len(), self.acked.len())
    }
}

impl World {
    /// Player `i`, playing on run `node` in `slot`, maybe starts an action, then sends
    /// every pending action that is due (never sent on this session and node, refused,
    /// or unanswered for [`ACTION_RESEND_MS`]).
    pub(super) fn send_actions(&mut self, i: usize, slot: usize, node: NodeRef) {
        let now = self.now;
        let session = self.players[i].session;
        let actions = &mut self.players[i].actions;
        let room = actions.pending.len() < MAX_PENDING;
        if !self.faults_stopped && room && self.action_rng.chance(ACTION_CHANCE) {
            actions.pending.insert(self.action_rng.next_u64(), None);
            self.report.n_actions += 1;
        }
        let due: Vec<u64> = actions
            .pending
            .iter()
            .filter(|(_, sent)| {
                sent.is_none_or(|s| {
                    s.node != node || s.session != session || s.at + ACTION_RESEND_MS <= now
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let sent = Sent {
                node,
                session,
                at: now,
            };
            self.players[i].actions.pending.insert(id, Some(sent));
            self.report.n_action_sends += 1;
            self.submit_action(i, slot, node, session, id);
        }
    }

    /// The run `node` in `slot` receives action `id` from player `i`'s `session`: it
    /// refuses it unless the session's player is in a zone the run accepts inputs for
    /// and the store is reachable, else sends it to the store.
    fn submit_action(&mut self, i: usize, slot: usize, node: NodeRef, session: u64, id: u64) {
        let now = self.now;
        let store_reachable = !self.net.is_cut(Endpoint::Node(slot), Endpoint::Store);
        let Some(run) = self.slots[slot]
            .run
            .as_ref()
            .filter(|r| r.core.me() == node)
        else {
            return;
        };
        let zone = run
            .entities
            .get(&i)
            .filter(|e| e.session == session)
            .map(|e| e.zone)
            .filter(|z| run.core.accepts_inputs(now, *z));
        let epoch = zone.and_then(|z| run.core.active_zones().find(|(a, _)| *a == z));
        let Some((zone, epoch)) = epoch.filter(|_| store_reachable) else {
            self.answer_client(i, node, session, id, false);
            return;
        };
        let action = ActionCall {
            player: i,
            session,
            id,
            zone,
            epoch,
        };
        let packet = Packet::Action {
            from: slot,
            node,
            action,
        };
        let from = Endpoint::Node(slot);
        self.net
            .send(now, from, packet, self.faults, &mut self.action_rng);
        if self.config.acknowledges_before_commit {
            self.answer_client(i, node, session, id, true);
        }
    }

    /// The store commits `action` for run `node` in slot `from` and answers it.
    pub(super) fn commit_action(&mut self, from: usize, node: NodeRef, action: ActionCall) {
        let commit = self
            .store
            .commit_action(action.zone, action.epoch, action.id, action.player);
        let packet = Packet::ActionDone {
            to: from,
            node,
            action,
            commit,
        };
        self.net.send(
            self.now,
            Endpoint::Store,
            packet,
            self.faults,
            &mut self.action_rng,
        );
    }

    /// The store's answer reaches run `node` in `slot` (if it still lives), which
    /// answers the client: committed for a new record or a repeat, busy for a stale
    /// epoch.
    pub(super) fn answer_action(
        &mut self,
        slot: usize,
        node: NodeRef,
        action: ActionCall,
        commit: ActionCommit,
    ) {
        let live = self.slots[slot]
            .run
            .as_ref()
            .is_some_and(|r| r.core.me() == node);
        if !live || self.config.acknowledges_before_commit {
            return;
        }
        let committed = commit != ActionCommit::StaleEpoch;
        let ActionCall {
            player,
            session,
            id,
            ..
        } = action;
        self.answer_client(player, node, session, id, committed);
    }

    /// Run `node` answers action `id` on player `i`'s `session`; the answer reaches
    /// the client only if it is still connected to that run in that session.
    fn answer_client(&mut self, i: usize, node: NodeRef, session: u64, id: u64, committed: bool) {
        let p = &mut self.players[i];
        let connected = match p.state {
            PlayerState::Playing { node: n, .. } | PlayerState::InTransfer { node: n, .. } => {
                n == node
            }
            PlayerState::Asking { .. } | PlayerState::Following { .. } => false,
        };
        if !connected || p.session != session || !p.actions.pending.contains_key(&id) {
            return;
        }
        if committed {
            p.actions.pending.remove(&id);
            p.actions.acked.push(id);
            self.acks_to_check.push((i, id));
            self.report.n_actions_acked += 1;
            self.note(i, "acknowledged an action", node, session);
        } else {
            p.actions.pending.insert(id, None);
            self.report.n_actions_refused += 1;
        }
    }

    /// At the end of a run: every acknowledged action is committed (all of them, not
    /// only the latest), none twice, and no client holds an unacknowledged one
    /// (liveness: with the faults stopped, resends get every action committed).
    pub(super) fn check_actions_settled(&self) -> Result<(), SimFailure> {
        let acked = self
            .players
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.actions.acked.iter().map(move |id| (i, *id)));
        check_actions(acked, &self.store).map_err(|v| self.failure(v))?;
        let pending = self.players.iter().map(|p| p.actions.pending.len());
        let n_actions: usize = pending.clone().sum();
        match pending.enumerate().find(|(_, n)| *n > 0) {
            Some((player, _)) => Err(self.failure(Violation::ActionsPending { n_actions, player })),
            None => Ok(()),
        }
    }
}
