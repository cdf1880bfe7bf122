//! Players inside a zone: joining, inputs (validated and clamped to max speed),
//! reliable events, leaving, and crossing into a neighbour zone.
//!
//! Single-player invariant: a player's entity exists in exactly one zone world, or in
//! exactly one `TransferIn` message between two zones. The leaving zone despawns the
//! entity only after the neighbour's inbox accepted the transfer; if it is full the
//! player stays (clamped back inside) and the transfer is retried next tick.
//!
//! A player whose session ends is saved wherever it is: in a zone (the tick after the
//! close), or in flight (the zone receiving the transfer saves it instead of taking
//! it in). The versions of its records travel with it, so saves keep increasing.

use super::{PlayerSlot, Zone, ZoneMessage};
use crate::game::{
    MaxSpeed, NetEntity, NetIdAllocator, OutgoingEvents, Player, PlayerEvent, PlayerEvents,
    PlayerInput, Position, ReplicaComponents, Replicated, SessionId, Velocity, ZoneCounters,
};
use crate::link::ClientLink;
use crate::persist::RecordVersions;
use crate::zone::messages::{PlayerTransfer, SendError};
use std::sync::Arc;
use zonemesh_replication::ClientView;
use zonemesh_shared::control::ServerControl;
use zonemesh_shared::datagram::{Ack, InputFrame};
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::quant::Vec2;

impl Zone {
    /// Creates a player entity for a new session and welcomes it.
    pub(super) fn join(
        &mut self,
        link: Arc<ClientLink>,
        spawn: Vec2,
        saved: Option<&[u8]>,
        versions: RecordVersions,
    ) {
        if link.is_closed() {
            return;
        }
        let rules = &self.ctx.rules;
        let net_id = self.world.resource_mut::<NetIdAllocator>().allocate();
        let position = self.bounds.clamp(spawn);
        let mut entity = self.world.spawn((
            Replicated::new(net_id, rules.player_kind, position),
            Player {
                name: link.name().to_owned(),
                session: link.session(),
            },
            MaxSpeed(rules.player_max_speed),
            PlayerInput::default(),
        ));
        for hook in &self.on_player_spawn {
            hook(&mut entity);
        }
        if let Some(bytes) = saved {
            match crate::persist::state::decode::<crate::persist::state::PlayerData>(bytes) {
                Ok(data) => {
                    let registry = entity
                        .world()
                        .resource::<crate::game::PersistRegistry>()
                        .clone();
                    crate::persist::state::restore_components(
                        &mut entity,
                        &registry,
                        &data.components,
                    );
                }
                Err(e) => tracing::warn!(player = link.name(), error = %e, "saved data unusable"),
            }
        }
        let entity = entity.id();
        link.push_control(ServerControl::Welcome {
            player: net_id,
            zone: self.id,
            tick_hz: self.ctx.config.tick_hz,
        });
        let view = ClientView::new(self.ctx.config.view.clone());
        self.insert_slot(PlayerSlot {
            entity,
            link,
            view,
            versions,
        });
    }

    fn insert_slot(&mut self, slot: PlayerSlot) {
        let previous = self.players.insert(slot.link.session(), slot);
        if let Some(old) = previous {
            // A session id is unique per connection, so this means the same session
            // joined twice; keep the newest entity and never leave an orphan behind.
            self.world.despawn(old.entity);
        }
    }

    /// Applies the newest unseen input: inputs carry a desired velocity (state, not an
    /// impulse), so older redundant copies add nothing once a newer one is applied.
    pub(super) fn apply_input(&mut self, session: SessionId, ack: Ack, inputs: &[InputFrame]) {
        let Some(slot) = self.players.get_mut(&session) else {
            return; // Left, or moved zones while the datagram was in flight.
        };
        slot.view.handle_ack(ack);
        let entity = slot.entity;
        let Some(newest) = inputs.iter().max_by_key(|i| i.seq) else {
            return;
        };
        let Some(mut player) = self.world.get_entity_mut(entity).ok() else {
            return;
        };
        let last_seq = player.get::<PlayerInput>().map_or(0, |p| p.last_seq);
        if newest.seq <= last_seq {
            return;
        }
        let max_speed = player.get::<MaxSpeed>().map_or(0.0, |m| m.0);
        let (velocity, verdict) = clamp_velocity(newest.quantised_velocity(), max_speed);
        if let Some(mut input) = player.get_mut::<PlayerInput>() {
            *input = PlayerInput {
                velocity,
                buttons: newest.buttons,
                last_seq: newest.seq,
            };
        }
        if let Some(mut v) = player.get_mut::<Velocity>() {
            v.0 = velocity;
        }
        let mut counters = self.world.resource_mut::<ZoneCounters>();
        counters.inputs_applied += 1;
        counters.inputs_superseded += u64::from(newest.seq - last_seq - 1);
        match verdict {
            InputVerdict::Ok => {}
            InputVerdict::Clamped => counters.inputs_clamped += 1,
            InputVerdict::Invalid => counters.inputs_invalid += 1,
        }
    }

    pub(super) fn queue_player_event(&mut self, session: SessionId, kind: u16, payload: Vec<u8>) {
        if let Some(slot) = self.players.get(&session) {
            let player = slot.entity;
            if let Some(handler) = self.requests.get(&kind).cloned() {
                let link = Arc::clone(&slot.link);
                if let Some(answer) = handler(&mut self.world, player, &payload) {
                    link.push_control(ServerControl::GameEvent {
                        kind,
                        payload: answer,
                    });
                }
                return;
            }
            self.world
                .resource_mut::<PlayerEvents>()
                .events
                .push(PlayerEvent {
                    player,
                    kind,
                    payload,
                });
        }
    }

    pub(super) fn deliver_outgoing_events(&mut self) {
        let events = std::mem::take(&mut self.world.resource_mut::<OutgoingEvents>().events);
        for (entity, kind, payload) in events {
            let session = self.world.get::<Player>(entity).map(|p| p.session);
            if let Some(slot) = session.and_then(|s| self.players.get(&s)) {
                slot.link
                    .push_control(ServerControl::GameEvent { kind, payload });
            }
        }
    }

    /// Removes players whose connection ended.
    pub(super) fn drop_closed_players(&mut self) {
        let closed: Vec<SessionId> = self
            .players
            .iter()
            .filter(|(_, slot)| slot.link.is_closed())
            .map(|(s, _)| *s)
            .collect();
        for session in closed {
            self.remove_player(session);
        }
    }

    /// Takes a player whose session ended out of the world, saving its record.
    fn remove_player(&mut self, session: SessionId) {
        if let Some(mut slot) = self.players.remove(&session) {
            self.save_leaving_player(&mut slot);
            self.world.despawn(slot.entity);
        }
    }

    /// Hands every player now outside this zone's bounds to the zone that owns its
    /// position.
    pub(super) fn transfer_leavers(&mut self) {
        let leaving: Vec<(SessionId, Vec2)> = self
            .players
            .iter()
            .filter_map(|(s, slot)| {
                let pos = self.world.get::<Position>(slot.entity)?.0;
                (!self.bounds.contains(pos)).then_some((*s, pos))
            })
            .collect();
        self.release_crossing_holds(&leaving);
        for (session, pos) in leaving {
            self.transfer_out(session, pos);
        }
    }

    /// Takes durable actions again from held players that are no longer leaving.
    fn release_crossing_holds(&mut self, leaving: &[(SessionId, Vec2)]) {
        if self.crossing_holds.is_empty() {
            return;
        }
        let players = &self.players;
        self.crossing_holds.retain(|session| {
            let still_leaving = leaving.iter().any(|(s, _)| s == session);
            if !still_leaving && let Some(slot) = players.get(session) {
                slot.link.release_crossing_hold();
            }
            still_leaving
        });
    }

    fn transfer_out(&mut self, session: SessionId, pos: Vec2) {
        let target = self.ctx.layout.zone_at(pos);
        let Some(slot) = self.players.remove(&session) else {
            return;
        };
        if target == self.id {
            // Outside our rect but mapped to us: the world's outer edge. Stay inside.
            self.keep_inside(slot);
            return;
        }
        if let Some(other) = self.ctx.other_nodes.clone()
            && let Some(host) = other.host_elsewhere(target)
        {
            if !slot.link.hold_for_crossing() {
                // Durable actions of the player are being committed: their effects
                // must land here before it goes. New ones are refused meanwhile, so
                // the wait is one store round trip or so.
                if !self.crossing_holds.contains(&session) {
                    self.crossing_holds.push(session);
                }
                self.stats.transfers_deferred += 1;
                self.keep_inside(slot);
                return;
            }
            self.crossing_holds.retain(|s| *s != session);
            self.transfer_to_node(slot, pos, target, host, other.as_ref());
            return;
        }
        if !self.reserve_arrival(target) {
            // The neighbour is not loaded: its load has been asked for; hold the player
            // at the border until it is (a few ticks with a fast store).
            self.stats.transfers_deferred += 1;
            self.keep_inside(slot);
            return;
        }
        let Some(transfer) = self.capture_player(slot, pos) else {
            self.release_arrival(target);
            return;
        };
        let entity_link = Arc::clone(&transfer.link);
        entity_link.set_zone(target);
        match self
            .ctx
            .router
            .send(target, ZoneMessage::TransferIn(Box::new(transfer)))
        {
            Ok(()) => self.stats.transfers_out += 1,
            Err(SendError::Full(msg) | SendError::Stopped(msg) | SendError::UnknownZone(msg)) => {
                self.release_arrival(target);
                entity_link.set_zone(self.id);
                self.stats.transfers_deferred += 1;
                if let ZoneMessage::TransferIn(t) = msg {
                    self.restore_player(*t);
                }
            }
        }
    }

    /// Hands a player to the cluster for `target` on node `host`. From here the
    /// player exists only in the cluster's transfer: it arrives there once, or comes
    /// back to this zone as a `TransferIn`.
    fn transfer_to_node(
        &mut self,
        slot: PlayerSlot,
        pos: Vec2,
        target: ZoneId,
        host: zonemesh_shared::node::NodeRef,
        other: &dyn crate::zone::elsewhere::OtherNodes,
    ) {
        let Some(transfer) = self.capture_player(slot, pos) else {
            return;
        };
        match other.send_player(target, host, transfer) {
            Ok(()) => self.stats.transfers_out += 1,
            Err(transfer) => {
                self.stats.transfers_deferred += 1;
                self.restore_player(*transfer);
            }
        }
    }

    fn release_arrival(&self, zone: ZoneId) {
        if let Some(p) = &self.ctx.persistence {
            p.directory.arrived(zone);
        }
    }

    fn keep_inside(&mut self, slot: PlayerSlot) {
        if let Some(mut p) = self.world.get_mut::<Position>(slot.entity) {
            p.0 = self.bounds.clamp(p.0);
        }
        self.players.insert(slot.link.session(), slot);
    }

    /// Takes a player out of this world into a transfer message.
    fn capture_player(&mut self, slot: PlayerSlot, pos: Vec2) -> Option<PlayerTransfer> {
        let state = self.player_state(slot.entity)?;
        let transfer = PlayerTransfer {
            net_id: state.net_id,
            name: slot.link.name().to_owned(),
            position: pos,
            velocity: state.velocity,
            max_speed: state.max_speed,
            last_input_seq: state.last_input_seq,
            components: state.components,
            link: slot.link,
            view: slot.view,
            versions: slot.versions,
            from_other_node: false,
        };
        self.world.despawn(slot.entity);
        Some(transfer)
    }

    /// What a player's entity carries to another zone or node.
    pub(super) fn player_state(&self, entity: bevy_ecs::entity::Entity) -> Option<PlayerState> {
        let e = self.world.get_entity(entity).ok()?;
        Some(PlayerState {
            net_id: e.get::<NetEntity>()?.0,
            position: e.get::<Position>()?.0,
            velocity: e.get::<Velocity>().map_or(Vec2::ZERO, |v| v.0),
            max_speed: e
                .get::<MaxSpeed>()
                .map_or(self.ctx.rules.player_max_speed, |m| m.0),
            last_input_seq: e.get::<PlayerInput>().map_or(0, |i| i.last_seq),
            components: e
                .get::<ReplicaComponents>()
                .map(|c| c.shared().to_vec())
                .unwrap_or_default(),
        })
    }

    /// Brings a player that could not leave back into this world, just inside the edge.
    fn restore_player(&mut self, mut transfer: PlayerTransfer) {
        transfer.position = self.bounds.clamp(transfer.position);
        self.spawn_transferred(transfer);
    }

    /// Takes over a player crossing in from a neighbour, keeping its id and view.
    pub(super) fn accept_transfer(&mut self, transfer: PlayerTransfer) {
        let link = Arc::clone(&transfer.link);
        let (net_id, from_other_node) = (transfer.net_id, transfer.from_other_node);
        self.spawn_transferred(transfer);
        if link.is_closed() {
            // The session ended in flight. Its progress since the last save lives only
            // in the transfer: save it as any leaving player is saved, then let it go.
            self.remove_player(link.session());
            return;
        }
        let msg = if from_other_node {
            // The client connects to this node anew; it keeps its entity and replica.
            ServerControl::Welcome {
                player: net_id,
                zone: self.id,
                tick_hz: self.ctx.config.tick_hz,
            }
        } else {
            ServerControl::ZoneChanged { zone: self.id }
        };
        link.push_control(msg);
    }

    fn spawn_transferred(&mut self, t: PlayerTransfer) {
        // Here to stay (an arrival, or back from a crossing that failed).
        t.link.release_crossing_hold();
        let position = self.bounds.clamp(t.position);
        let registry = self
            .world
            .resource::<crate::game::ReplicationRegistry>()
            .clone();
        let mut entity = self.world.spawn((
            Replicated::new(t.net_id, self.ctx.rules.player_kind, position),
            Player {
                name: t.name,
                session: t.link.session(),
            },
            MaxSpeed(t.max_speed),
            PlayerInput {
                velocity: t.velocity,
                buttons: 0,
                last_seq: t.last_input_seq,
            },
        ));
        entity.insert((
            Velocity(t.velocity),
            ReplicaComponents::from_values(t.components.clone()),
        ));
        registry.restore(&mut entity, &t.components);
        let entity = entity.id();
        self.insert_slot(PlayerSlot {
            entity,
            link: t.link,
            view: t.view,
            versions: t.versions,
        });
    }

    /// Names of the players here.
    pub(super) fn player_names(&self) -> Vec<String> {
        self.players
            .values()
            .map(|s| s.link.name().to_owned())
            .collect()
    }

    /// Entities with a network id in this world.
    pub(super) fn local_entity_count(&self) -> usize {
        self.world
            .iter_entities()
            .filter(|e| e.contains::<NetEntity>())
            .count()
    }
}

/// A player entity's state as it travels (its session's parts travel separately).
pub(super) struct PlayerState {
    pub(super) net_id: zonemesh_shared::ids::NetId,
    pub(super) position: Vec2,
    pub(super) velocity: Vec2,
    pub(super) max_speed: f32,
    pub(super) last_input_seq: u32,
    pub(super) components: Vec<zonemesh_shared::datagram::ComponentValue>,
}

/// What the max-speed check did to an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputVerdict {
    /// Within limits.
    Ok,
    /// Faster than allowed: scaled down to the max speed.
    Clamped,
    /// Not a finite vector: replaced by standing still.
    Invalid,
}

/// Enforces the max speed on a requested velocity.
pub(crate) fn clamp_velocity(requested: Vec2, max_speed: f32) -> (Vec2, InputVerdict) {
    if !requested.is_finite() {
        return (Vec2::ZERO, InputVerdict::Invalid);
    }
    let max = max_speed.max(0.0);
    // A small tolerance so the client's own quantisation never counts as cheating.
    if requested.length() > max * 1.001 + 1e-3 {
        (requested.clamp_length(max), InputVerdict::Clamped)
    } else {
        (requested, InputVerdict::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn velocity_within_limit_passes() {
        let (v, verdict) = clamp_velocity(Vec2::new(3.0, 4.0), 5.0);
        assert_eq!(verdict, InputVerdict::Ok);
        assert_eq!(v, Vec2::new(3.0, 4.0));
    }

    #[test]
    fn velocity_over_limit_is_clamped_to_max_speed() {
        let (v, verdict) = clamp_velocity(Vec2::new(30.0, 40.0), 5.0);
        assert_eq!(verdict, InputVerdict::Clamped);
        assert!((v.length() - 5.0).abs() < 1e-3);
        assert!((v.x / v.y - 0.75).abs() < 1e-4, "direction kept");
    }

    #[test]
    fn non_finite_velocity_is_invalid() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let (v, verdict) = clamp_velocity(Vec2::new(bad, 1.0), 5.0);
            assert_eq!(verdict, InputVerdict::Invalid);
            assert_eq!(v, Vec2::ZERO);
        }
    }
}
