//! Applying committed durable actions: the game's handler runs once per committed
//! action on the acting player's entity. A player who changed zone on this node while
//! the action was being committed is followed (a bounded number of hops); a player
//! does not cross to another node while an action of its session is in flight (see
//! [`ActionInFlight`]), so the effect is never left behind on the old node.

use super::Zone;
use super::messages::{CommittedAction, ZoneMessage};
use crate::game::DurableActionEvent;
use crate::link::{ActionInFlight, ClientLink};
use std::sync::Arc;

/// Forwards after which a committed action whose player cannot be found is dropped
/// (logged); the action itself stays in the store.
const MAX_HOPS: u8 = 2;

impl Zone {
    pub(super) fn apply_durable_action(
        &mut self,
        link: Arc<ClientLink>,
        action: CommittedAction,
        hops: u8,
        in_flight: ActionInFlight,
    ) {
        let Some(slot) = self.players.get(&link.session()) else {
            self.forward_durable_action(link, action, hops, in_flight);
            return;
        };
        let Some(handler) = self.durable_actions.get(&action.kind).cloned() else {
            tracing::error!(
                kind = action.kind,
                "committed durable action has no handler"
            );
            return;
        };
        let event = DurableActionEvent {
            id: action.id,
            player: slot.entity,
            kind: action.kind,
            payload: action.payload,
        };
        handler(&mut self.world, &event);
        drop(in_flight);
    }

    fn forward_durable_action(
        &self,
        link: Arc<ClientLink>,
        action: CommittedAction,
        hops: u8,
        in_flight: ActionInFlight,
    ) {
        let now_in = link.zone();
        if now_in == self.id || hops >= MAX_HOPS || link.is_closed() {
            tracing::warn!(
                player = link.name(),
                id = action.id,
                "committed durable action not applied: the player left"
            );
            return;
        }
        let msg = ZoneMessage::DurableAction {
            link,
            action,
            hops: hops + 1,
            in_flight,
        };
        if self.ctx.router.send(now_in, msg).is_err() {
            tracing::warn!(zone = ?now_in, "could not forward a committed durable action");
        }
    }

    /// Durable action kinds this game handles.
    pub fn durable_action_kinds(&self) -> impl Iterator<Item = u16> + '_ {
        self.durable_actions.keys().copied()
    }
}
