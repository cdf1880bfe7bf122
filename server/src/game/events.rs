//! Reliable game events between players and game systems (chat, emotes, use-item...).
//!
//! Incoming events from players are collected in [`PlayerEvents`] before the zone's
//! schedule runs and cleared after it, so every system sees each event exactly once, in
//! the tick it arrived. Systems answer through [`OutgoingEvents`]; the zone delivers them
//! on the players' control streams after the schedule.
//!
//! Bound: at most [`OUTGOING_EVENTS_MAX`] outgoing events per tick per zone; more are
//! dropped and counted in [`OutgoingEvents::dropped`], because a runaway system must not
//! grow memory without limit.

use bevy_ecs::prelude::*;

/// Most outgoing events a zone accepts in one tick.
pub const OUTGOING_EVENTS_MAX: usize = 4096;

/// One reliable event from a player.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerEvent {
    /// The sending player's entity.
    pub player: Entity,
    /// Game-defined event kind.
    pub kind: u16,
    /// Game-defined payload.
    pub payload: Vec<u8>,
}

/// Events received from players this tick.
#[derive(Resource, Debug, Default)]
pub struct PlayerEvents {
    pub(crate) events: Vec<PlayerEvent>,
}

impl PlayerEvents {
    /// This tick's events, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = &PlayerEvent> {
        self.events.iter()
    }
}

/// Events game systems send to players this tick.
#[derive(Resource, Debug, Default)]
pub struct OutgoingEvents {
    pub(crate) events: Vec<(Entity, u16, Vec<u8>)>,
    dropped: u64,
}

impl OutgoingEvents {
    /// Queues `payload` of `kind` for the player whose entity is `to`. Events for
    /// entities that are not players are discarded at delivery.
    pub fn send(&mut self, to: Entity, kind: u16, payload: Vec<u8>) {
        if self.events.len() >= OUTGOING_EVENTS_MAX {
            self.dropped += 1;
            return;
        }
        self.events.push((to, kind, payload));
    }

    /// Events dropped because a tick exceeded [`OUTGOING_EVENTS_MAX`].
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
