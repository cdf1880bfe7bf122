//! A zone's side of a live handoff: freezing at a tick boundary, capturing its
//! complete state as a [`ZoneImage`], and being built again from one on the node
//! that takes it over.
//!
//! Freezing: a handoff asks through the zone's status cell. As soon as its worker
//! handles its messages (woken for it) the zone holds every player's link for
//! crossing (new durable actions are refused with `Busy`; those in flight are
//! counted). It freezes at the end of a tick, right after that tick's snapshots went
//! out, once no action is in flight and no player is on its way in (the directory's
//! arrival count; the zone then turns `Deactivating`, so joins and neighbours'
//! transfers wait). Until then it keeps ticking, applying the actions in flight.
//! Freezing just after a snapshot rather than as soon as possible puts the players'
//! pause (last snapshot from here to first from the target) on the handoff alone,
//! not on the handoff plus the part of a tick interval that had gone by. Frozen, it
//! does not tick again; its worker hands it to the host, which gives it to the
//! handoff. Inputs and events that arrive meanwhile stay in its inbox.

use super::{PlayerSlot, Zone, ZoneContext, ZoneMessage};
use crate::game::{
    Game, Kind, NetEntity, NetIdAllocator, PersistRegistry, Persistent, Player, Position,
    ReplicaComponents, Replicated, ReplicationRegistry, Velocity, ZoneCounters, ZoneInfo,
};
use crate::link::ClientLink;
use crate::persist::RecordVersions;
use crate::persist::state::{SavedComponent, capture_components, restore_components};
use crate::zone::PlayerTransfer;
use bevy_ecs::prelude::*;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use zonemesh_cluster::crossing::CarriedPlayer;
use zonemesh_cluster::zone_image::{ImageCounters, ImageEntity, ZoneImage};
use zonemesh_replication::{ClientView, ViewHandover};
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::quant::Vec2;

impl Zone {
    /// Holds every player's link for a freeze asked for; true if no durable action
    /// is in flight.
    pub(super) fn hold_for_freeze(&mut self) -> bool {
        // Hold every link, even after one with actions in flight: all refuse new ones.
        self.freeze_holds = true;
        let busy = self
            .players
            .values()
            .filter(|slot| !slot.link.hold_for_crossing())
            .count();
        busy == 0
    }

    /// Freezes the zone if it can now (see the module docs); true once frozen.
    pub(super) fn try_freeze(&mut self) -> bool {
        if self.lost || self.ctx.persistence.is_none() {
            return false;
        }
        if !self.hold_for_freeze() || !self.begin_retirement() {
            return false;
        }
        self.frozen = true;
        tracing::debug!(zone = ?self.id, tick = self.tick, players = self.players.len(), "zone frozen for a handoff");
        true
    }

    /// A freeze asked for was given up before it happened: durable actions are taken
    /// again.
    pub(super) fn release_freeze_holds(&mut self) {
        self.freeze_holds = false;
        for slot in self.players.values() {
            slot.link.release_crossing_hold();
        }
    }

    /// Whether the zone is frozen for a handoff.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// The tick the zone completed last.
    pub fn completed_tick(&self) -> u64 {
        self.tick
    }

    /// The epoch this activation holds.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Lets a frozen zone tick again at `epoch` (the same one if it was never
    /// released, a new one if it was activated here again): its players may start
    /// durable actions again.
    pub fn unfreeze(&mut self, epoch: u64) {
        self.frozen = false;
        self.epoch = epoch;
        self.status.request_freeze(false);
        self.release_freeze_holds();
    }

    /// Whether its worker should tick it as soon as it takes it (a zone handed over
    /// from another node: its players wait for their first snapshot from here).
    pub fn ticks_on_arrival(&self) -> bool {
        self.tick_on_arrival
    }

    /// Ticks it now if it asked to tick on arrival (once); false if it did not.
    pub fn tick_if_just_arrived(&mut self) -> bool {
        if !std::mem::take(&mut self.tick_on_arrival) {
            return false;
        }
        self.tick();
        true
    }

    /// Forgets the tick on arrival (its worker takes it just before a round).
    pub fn clear_tick_on_arrival(&mut self) {
        self.tick_on_arrival = false;
    }

    /// Sets the epoch a zone built from a handoff's state was granted.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The links of the zone's players.
    pub fn player_links(&self) -> Vec<Arc<ClientLink>> {
        self.players.values().map(|s| Arc::clone(&s.link)).collect()
    }

    /// Takes what waits in the inbox of a zone that moved away.
    pub fn take_inbox_messages(&mut self) -> Vec<ZoneMessage> {
        self.inbox.try_iter().collect()
    }

    /// The zone's complete state (see [`ZoneImage`]).
    pub fn capture_image(&mut self) -> ZoneImage {
        let registry = self.world.resource::<PersistRegistry>().clone();
        let next_net_id = self.world.resource::<NetIdAllocator>().next_sequence();
        let mut query = self.world.query_filtered::<(
            Entity,
            &NetEntity,
            &Kind,
            &Position,
            Option<&Velocity>,
            Option<&ReplicaComponents>,
            Has<Persistent>,
        ), Without<Player>>();
        let rows: Vec<_> = query
            .iter(&self.world)
            .map(|(e, net, kind, pos, vel, replica, persistent)| {
                let image = ImageEntity {
                    net_id: net.0,
                    kind: kind.0,
                    position: [pos.0.x, pos.0.y],
                    velocity: vel.map_or([0.0; 2], |v| [v.0.x, v.0.y]),
                    persistent,
                    replicated: replica.map(|r| r.shared().to_vec()).unwrap_or_default(),
                    persisted: Vec::new(),
                };
                (e, image)
            })
            .collect();
        let entities = rows
            .into_iter()
            .map(|(e, mut image)| {
                image.persisted = capture_components(&self.world.entity(e), &registry)
                    .into_iter()
                    .map(|c| (c.id, c.bytes))
                    .collect();
                image
            })
            .collect();
        let players = self
            .players
            .values()
            .filter_map(|slot| self.carried_player(slot))
            .collect();
        ZoneImage {
            tick: self.tick,
            next_net_id,
            entities,
            players,
            counters: image_counters(self.world.resource::<ZoneCounters>()),
        }
    }

    /// A player as the image carries it (as a crossing does, with its client's view).
    fn carried_player(&self, slot: &PlayerSlot) -> Option<CarriedPlayer> {
        let state = self.player_state(slot.entity)?;
        Some(CarriedPlayer {
            session: slot.link.session().0,
            name: slot.link.name().to_owned(),
            net_id: state.net_id,
            position: [state.position.x, state.position.y],
            velocity: [state.velocity.x, state.velocity.y],
            max_speed: state.max_speed,
            last_input_seq: state.last_input_seq,
            components: state.components,
            next_record_version: slot.versions.peek_next(),
            view: slot.view.handover().encode(),
        })
    }

    /// Builds zone `id` at `epoch` from a handoff's image: its entities, its tick and
    /// id sequence, and its players on the links `link_for` gives (links waiting for
    /// their clients, which are welcomed with their entities when they come). A
    /// player whose client view does not decode starts a fresh view (its client
    /// gets everything whole).
    pub fn from_image(
        id: ZoneId,
        game: &Game,
        ctx: Arc<ZoneContext>,
        inbox: Receiver<ZoneMessage>,
        epoch: u64,
        image: ZoneImage,
        mut link_for: impl FnMut(&CarriedPlayer) -> Arc<ClientLink>,
    ) -> Self {
        let entities = image.entities;
        let mut zone = Self::assemble(id, game, ctx, inbox, epoch, |world, _| {
            world.insert_resource(NetIdAllocator::resume(id, image.next_net_id));
            for e in &entities {
                restore_entity(world, e);
            }
        });
        zone.tick = image.tick;
        zone.tick_on_arrival = true;
        *zone.world.resource_mut::<ZoneCounters>() = zone_counters(&image.counters);
        zone.world.resource_mut::<ZoneInfo>().tick = image.tick;
        for p in image.players {
            let link = link_for(&p);
            let view = match ViewHandover::decode(&p.view) {
                Ok(handover) => ClientView::resume(zone.ctx.config.view.clone(), &handover),
                Err(e) => {
                    tracing::warn!(player = p.name, "handed-over view unreadable: {e}");
                    ClientView::new(zone.ctx.config.view.clone())
                }
            };
            zone.accept_transfer(PlayerTransfer {
                net_id: p.net_id,
                name: p.name,
                link,
                position: Vec2::new(p.position[0], p.position[1]),
                velocity: Vec2::new(p.velocity[0], p.velocity[1]),
                max_speed: p.max_speed,
                last_input_seq: p.last_input_seq,
                view,
                components: p.components,
                versions: RecordVersions::continuing_from(p.next_record_version),
                from_other_node: true,
            });
        }
        zone
    }
}

/// The zone's counters as an image carries them.
fn image_counters(c: &ZoneCounters) -> ImageCounters {
    ImageCounters {
        inputs_applied: c.inputs_applied,
        inputs_superseded: c.inputs_superseded,
        inputs_clamped: c.inputs_clamped,
        inputs_invalid: c.inputs_invalid,
        components_oversized: c.components_oversized,
    }
}

/// The counters of a handed-over zone, going on from where they were.
fn zone_counters(c: &ImageCounters) -> ZoneCounters {
    ZoneCounters {
        inputs_applied: c.inputs_applied,
        inputs_superseded: c.inputs_superseded,
        inputs_clamped: c.inputs_clamped,
        inputs_invalid: c.inputs_invalid,
        components_oversized: c.components_oversized,
    }
}

/// Spawns one entity of an image with all its components.
fn restore_entity(world: &mut World, e: &ImageEntity) {
    let replication = world.resource::<ReplicationRegistry>().clone();
    let persisted = world.resource::<PersistRegistry>().clone();
    let position = Vec2::new(e.position[0], e.position[1]);
    let mut entity = world.spawn(Replicated::new(e.net_id, e.kind, position));
    entity.insert((
        Velocity(Vec2::new(e.velocity[0], e.velocity[1])),
        ReplicaComponents::from_values(e.replicated.clone()),
    ));
    if e.persistent {
        entity.insert(Persistent);
    }
    replication.restore(&mut entity, &e.replicated);
    let saved: Vec<SavedComponent> = e
        .persisted
        .iter()
        .map(|(id, bytes)| SavedComponent {
            id: *id,
            bytes: bytes.clone(),
        })
        .collect();
    restore_components(&mut entity, &persisted, &saved);
}
