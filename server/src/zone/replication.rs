//! The zone's replication step: gather what clients may see, share the border strip
//! with neighbours as ghosts, and build every client's snapshot.
//!
//! Ghosts travel as plain [`ReplicatedState`] messages through the neighbour's inbox;
//! a neighbour on another node gets them through the cluster
//! ([`OtherNodes::send_ghosts`](super::elsewhere::OtherNodes::send_ghosts)), which
//! delivers them to that zone's inbox the same way. Each batch names its zone's epoch
//! and tick: a batch older than the one held (reordered on the way, or from an
//! activation since replaced) is ignored, and a batch not refreshed for
//! [`GHOST_EXPIRY_MS`] (its zone stopped, moved, or its node died) is no longer shown.

use super::Zone;
use super::elsewhere::GhostOrigin;
use crate::game::{Kind, NetEntity, PlayerInput, Position, Rect, ReplicaComponents};
use crate::link::SnapshotBatch;
use crate::zone::messages::ZoneMessage;
use std::collections::HashSet;
use zonemesh_replication::{ReplicatedState, SnapshotFrame};
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::{QPos, Vec2};

/// How long a ghost batch is shown without a newer one (a neighbour sends one per
/// tick; this is several ticks at any sane rate).
pub(super) const GHOST_EXPIRY_MS: u64 = 500;

/// The ghosts a neighbour sent last.
#[derive(Debug)]
pub(super) struct GhostBatch {
    origin: GhostOrigin,
    /// This zone's tick when the batch arrived.
    received_tick: u64,
    states: Vec<ReplicatedState>,
}

impl Zone {
    /// Keeps a neighbour's batch unless the one held is newer (by epoch, then tick).
    pub(super) fn take_ghosts(&mut self, origin: GhostOrigin, states: Vec<ReplicatedState>) {
        if let Some(held) = self.ghosts.get(&origin.zone) {
            let held_key = (held.origin.epoch, held.origin.tick);
            if (origin.epoch, origin.tick) < held_key {
                return;
            }
        }
        let batch = GhostBatch {
            origin,
            received_tick: self.tick,
            states,
        };
        self.ghosts.insert(origin.zone, batch);
    }

    /// Forgets batches not refreshed within [`GHOST_EXPIRY_MS`].
    fn expire_ghosts(&mut self) {
        let hz = u64::from(self.ctx.config.tick_hz.max(1));
        let max_age = (GHOST_EXPIRY_MS * hz / 1000).max(2);
        let now = self.tick;
        self.ghosts
            .retain(|_, b| now.saturating_sub(b.received_tick) <= max_age);
    }

    /// Rebuilds `states` (own entities first, then ghosts not owned here) and the grid.
    ///
    /// The query visits entities in the same order tick after tick unless some were
    /// spawned or despawned, so each state is updated where it lies: an entity whose
    /// components did not change keeps its shared component list, and the tick does
    /// not clone (and drop) one `Arc` per entity.
    pub(super) fn collect_states(&mut self) {
        let mut query = self
            .world
            .query::<(&NetEntity, &Kind, &Position, &ReplicaComponents)>();
        let mut n = 0;
        for (net, kind, pos, cache) in query.iter(&self.world) {
            let pos = QPos::from_world(pos.0);
            let fresh = || ReplicatedState {
                id: net.0,
                kind: kind.0,
                pos,
                components: cache.shared().clone(),
                components_hash: cache.hash(),
            };
            match self.states.get_mut(n) {
                Some(s) if s.id == net.0 && s.components_hash == cache.hash() => {
                    s.kind = kind.0;
                    s.pos = pos;
                }
                Some(s) => *s = fresh(),
                None => self.states.push(fresh()),
            }
            n += 1;
        }
        self.states.truncate(n);
        self.own_states = n;
        self.append_ghosts();
        self.grid.rebuild(&self.states);
    }

    /// Adds neighbours' ghosts, skipping any id this zone owns: a player that just
    /// crossed in may still be in the neighbour's previous ghost batch.
    fn append_ghosts(&mut self) {
        self.expire_ghosts();
        if self.ghosts.is_empty() {
            return;
        }
        let own_players: HashSet<NetId> = self
            .players
            .values()
            .filter_map(|slot| self.world.get::<NetEntity>(slot.entity).map(|n| n.0))
            .collect();
        for batch in self.ghosts.values() {
            self.states.extend(
                batch
                    .states
                    .iter()
                    .filter(|s| !own_players.contains(&s.id))
                    .cloned(),
            );
        }
    }

    /// Sends each neighbour this zone's entities within the ghost margin of its area.
    pub(super) fn export_ghosts(&mut self) {
        let margin = self.ctx.config.ghost_margin;
        if margin <= 0.0 {
            return;
        }
        let own = self.own_states;
        let origin = GhostOrigin {
            zone: self.id,
            epoch: self.epoch,
            tick: self.tick,
        };
        for (neighbour, rect) in &self.neighbours {
            let near = || -> Vec<ReplicatedState> {
                self.states[..own]
                    .iter()
                    .filter(|s| distance_to_rect(s.pos.to_world(), rect) <= margin)
                    .cloned()
                    .collect()
            };
            if self.accepts_traffic(*neighbour) {
                let msg = ZoneMessage::Ghosts {
                    origin,
                    states: near(),
                };
                // A full inbox drops this batch (counted by the router); the next
                // tick's batch replaces it anyway.
                let _ = self.ctx.router.send(*neighbour, msg);
            } else if let Some(other) = &self.ctx.other_nodes
                && let Some(host) = other.host_elsewhere(*neighbour)
            {
                other.send_ghosts(host, origin, *neighbour, &near());
            }
            // Otherwise the neighbour is loaded nowhere (or not yet): nobody to show.
        }
    }

    /// Builds and hands over every client's snapshot for this tick.
    pub(super) fn send_snapshots(&mut self) {
        let radius = self.ctx.config.view.aoi_radius;
        for slot in self.players.values_mut() {
            let Some(viewer) = self.world.get::<Position>(slot.entity).map(|p| p.0) else {
                continue;
            };
            let input_ack = self
                .world
                .get::<PlayerInput>(slot.entity)
                .map_or(0, |i| i.last_seq);
            self.grid.query(viewer, radius, &mut self.visible);
            let frame = SnapshotFrame {
                tick: self.tick,
                input_ack,
                viewer,
                states: &self.states,
                visible: &self.visible,
                mtu: slot.link.max_datagram_bytes(),
            };
            let mut datagrams = Vec::new();
            let built = slot.view.build_snapshot(&frame, &mut datagrams);
            self.stats.snapshot_bytes += built.bytes as u64;
            self.stats.records_deferred += built.deferred as u64;
            if !datagrams.is_empty() {
                slot.link.push_snapshot(SnapshotBatch {
                    tick: self.tick,
                    datagrams,
                });
            }
        }
    }
}

/// Distance from `p` to the nearest point of `rect` (0 inside).
fn distance_to_rect(p: Vec2, rect: &Rect) -> f32 {
    let dx = (rect.min.x - p.x).max(0.0).max(p.x - rect.max.x);
    let dy = (rect.min.y - p.y).max(0.0).max(p.y - rect.max.y);
    (dx * dx + dy * dy).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_to_rect_is_zero_inside_and_euclidean_outside() {
        let r = Rect {
            min: Vec2::new(0.0, 0.0),
            max: Vec2::new(10.0, 10.0),
        };
        assert_eq!(distance_to_rect(Vec2::new(5.0, 5.0), &r), 0.0);
        assert_eq!(distance_to_rect(Vec2::new(13.0, 5.0), &r), 3.0);
        assert_eq!(distance_to_rect(Vec2::new(13.0, 14.0), &r), 5.0);
        assert_eq!(distance_to_rect(Vec2::new(-2.0, 5.0), &r), 2.0);
    }
}
