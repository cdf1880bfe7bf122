//! The players' clients: every tick a client sends a new input (while it has fewer
//! than one datagram's worth unacknowledged) with every unacknowledged one, and its
//! durable action until answered. It follows a redirect at once, sending its
//! unacknowledged inputs there (as the SDK does on a move), and when its node no
//! longer holds the zone (crashed, or sent its players away) it reconnects to the
//! store's holder.

use zonemesh_shared::node::NodeRef;

use super::model::Player;
use super::world::{Event, Slot, World};
use crate::handoff::FORWARDED_INPUTS_MAX;

/// How often a client sends.
const CLIENT_TICK_MS: u64 = 100;
/// Inputs a client leaves unacknowledged at most: what one datagram, and so one
/// forwarded item, carries. The newest datagram a frozen zone buffered then carries
/// every input the zone has not applied, and forwarding it loses none.
const INPUT_WINDOW: u32 = FORWARDED_INPUTS_MAX as u32;
/// How long a client waits for a durable action's answer before sending it again.
const ACTION_RETRY_MS: u64 = 1_000;
/// How long a client waits to send a refused durable action again.
const ACTION_REFUSED_RETRY_MS: u64 = 200;
/// The chance a client without a pending action makes one at a tick.
const ACTION_CHANCE: f64 = 0.2;

impl World {
    pub(super) fn client_tick(&mut self, player: Player) {
        self.reconnect_if_needed(player);
        let c = &mut self.clients[player as usize];
        if c.node.is_some() && c.sent < c.total && c.sent - c.acked < INPUT_WINDOW {
            c.sent += 1;
        }
        self.send_unacked(player);
        self.send_action(player);
        if self.clients[player as usize].busy() {
            self.later(CLIENT_TICK_MS, Event::ClientTick(player));
        }
    }

    /// Whether live run `run` holds the zone in memory (frozen or not).
    fn serves(&self, run: NodeRef) -> bool {
        self.runs()
            .any(|r| r.me == run && matches!(r.slot, Slot::Live { .. }))
    }

    fn reconnect_if_needed(&mut self, player: Player) {
        let node = self.clients[player as usize].node;
        if node.is_some_and(|run| self.serves(run)) {
            return;
        }
        let holder = self
            .store
            .live_holder(self.now)
            .filter(|run| self.serves(*run));
        self.clients[player as usize].node = holder;
    }

    fn send_unacked(&mut self, player: Player) {
        let c = &self.clients[player as usize];
        let (Some(to), seqs) = (c.node, c.unacked()) else {
            return;
        };
        if !seqs.is_empty() {
            self.send_datagram(Event::Input { to, player, seqs });
        }
    }

    fn send_action(&mut self, player: Player) {
        let make = self.rng.chance(ACTION_CHANCE);
        let now = self.now;
        let c = &mut self.clients[player as usize];
        let Some(to) = c.node else {
            return;
        };
        if c.pending.is_none() && c.made < c.actions_total && make {
            c.made += 1;
            c.pending = Some((c.made, now));
        }
        let Some((n, at)) = c.pending else {
            return;
        };
        if at <= now {
            c.pending = Some((n, now + ACTION_RETRY_MS));
            let id = (player, n);
            self.send_datagram(Event::Action { to, id });
        }
    }

    pub(super) fn on_ack(&mut self, player: Player, last: u32) {
        let c = &mut self.clients[player as usize];
        c.acked = c.acked.max(last);
    }

    pub(super) fn on_action_answer(&mut self, (player, n): (Player, u32), committed: bool) {
        let now = self.now;
        let c = &mut self.clients[player as usize];
        if committed {
            c.committed.insert(n);
        }
        if c.pending.is_some_and(|(p, _)| p == n) {
            c.pending = (!committed).then_some((n, now + ACTION_REFUSED_RETRY_MS));
        }
    }

    pub(super) fn on_redirect(&mut self, player: Player, to: NodeRef) {
        self.clients[player as usize].node = Some(to);
        self.send_unacked(player);
    }
}
