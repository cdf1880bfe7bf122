//! What the checker and a failure report read from the world: the player entities
//! that could take inputs, what live runs hold of the sessions clients are connected
//! to, and each player's recent history.

use std::fmt;

use zonemesh_shared::node::NodeRef;

use super::{PlayerState, World};
use crate::sim::check::{Attachment, LiveEntity};

/// Something that happened to a player.
#[derive(Debug, Clone, Copy)]
pub(super) enum Trace {
    /// Its client's new state.
    Client(PlayerState),
    /// What a node run did with one of its sessions.
    Node(&'static str, NodeRef, u64),
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trace::Client(state) => write!(f, "client {state:?}"),
            Trace::Node(what, node, session) => write!(f, "{node} {what} (session {session})"),
        }
    }
}

/// Trace entries kept per player.
const TRACE_LEN: usize = 32;

impl World {
    /// Every player entity that could take inputs now: in a zone its run accepts
    /// inputs for, or waiting there for its client in the zone's activation it was
    /// put into.
    pub(super) fn live_entities(&self) -> impl Iterator<Item = LiveEntity> + '_ {
        let now = self.now;
        self.slots
            .iter()
            .filter_map(|s| s.run.as_ref())
            .flat_map(move |run| {
                let core = &run.core;
                let node = core.me();
                let in_zones = run
                    .entities
                    .iter()
                    .filter(move |(_, e)| core.accepts_inputs(now, e.zone))
                    .map(move |(player, e)| LiveEntity {
                        player: *player,
                        node,
                        zone: e.zone,
                    });
                let waiting = run
                    .crossings
                    .arrivals
                    .values()
                    .filter(move |a| {
                        core.accepts_inputs(now, a.zone)
                            && core.active_zones().any(|z| z == (a.zone, a.epoch))
                    })
                    .map(move |a| LiveEntity {
                        player: a.player,
                        node,
                        zone: a.zone,
                    });
                in_zones.chain(waiting)
            })
    }

    /// What the live runs hold of the sessions players' clients are connected to.
    pub(super) fn attachments(&self) -> impl Iterator<Item = Attachment> + '_ {
        self.players.iter().enumerate().filter_map(|(i, p)| {
            let (slot, node, crossing) = match p.state {
                PlayerState::Playing { slot, node, .. } => (slot, node, false),
                PlayerState::InTransfer { slot, node, .. } => (slot, node, true),
                PlayerState::Asking { .. } | PlayerState::Following { .. } => return None,
            };
            let run = self.slots[slot]
                .run
                .as_ref()
                .filter(|r| r.core.me() == node)?;
            let in_zone = run.entities.get(&i).is_some_and(|e| e.session == p.session);
            let n_in_transfer = run
                .crossings
                .transfers
                .values()
                .filter(|t| t.player == i && t.session == p.session)
                .count();
            Some(Attachment {
                player: i,
                node,
                crossing,
                n_in_zone: usize::from(in_zone),
                n_in_transfer,
            })
        })
    }

    /// Sets player `i`'s client state.
    pub(super) fn set_state(&mut self, i: usize, state: PlayerState) {
        let old = std::mem::replace(&mut self.players[i].state, state);
        // A check that changes nothing but its next time is left out of the trace.
        if where_is(old) != where_is(state) {
            self.trace(i, Trace::Client(state));
        }
    }

    /// Notes what run `node` did with player `i`'s `session`.
    pub(super) fn note(&mut self, i: usize, what: &'static str, node: NodeRef, session: u64) {
        self.trace(i, Trace::Node(what, node, session));
    }

    fn trace(&mut self, i: usize, entry: Trace) {
        let trace = &mut self.players[i].trace;
        if trace.len() >= TRACE_LEN {
            trace.pop_front();
        }
        trace.push_back((self.now, entry));
    }

    /// Where player `i` is held, its claim, and its latest history.
    pub(super) fn dump_player(&self, i: usize) -> String {
        use std::fmt::Write;
        let p = &self.players[i];
        let (n_pending, n_acked) = p.actions.counts();
        let mut out = format!(
            "  player {i}: session {}, claim {:?}, {:?}, actions {n_pending} pending {n_acked} acknowledged\n",
            p.session,
            self.store.claim_of(i),
            p.state
        );
        for (s, run) in self.slots.iter().enumerate() {
            let Some(run) = &run.run else { continue };
            let entity = run.entities.get(&i);
            let arrivals: Vec<_> = run
                .crossings
                .arrivals
                .iter()
                .filter(|(_, a)| a.player == i)
                .collect();
            let transfers: Vec<_> = run
                .crossings
                .transfers
                .iter()
                .filter(|(_, t)| t.player == i)
                .collect();
            let _ = writeln!(
                out,
                "    slot {s}: entity {entity:?} arrivals {arrivals:?} transfers {transfers:?}"
            );
        }
        for (at, entry) in &p.trace {
            let _ = writeln!(out, "    {at}: {entry}");
        }
        out
    }
}

/// What a client state says about where the client is (leaving out when it acts
/// next).
fn where_is(state: PlayerState) -> (std::mem::Discriminant<PlayerState>, usize, bool) {
    let (slot, flag) = match state {
        PlayerState::Asking {
            slot, redirected, ..
        } => (slot, redirected),
        PlayerState::Playing { slot, heading, .. } => (slot, heading.is_some()),
        PlayerState::InTransfer { slot, .. } => (slot, false),
        PlayerState::Following { slot, arrives, .. } => (slot, arrives),
    };
    (std::mem::discriminant(&state), slot, flag)
}
