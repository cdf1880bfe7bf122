//! The zone's replication step: gather what clients may see, share the border strip
//! with neighbours as ghosts, and build every client's snapshot.
//!
//! Ghosts travel as plain [`ReplicatedState`] messages through the neighbour's inbox,
//! the same way they would travel between nodes, so nothing here assumes the
//! neighbour lives in this process.

use super::Zone;
use crate::game::{Kind, NetEntity, PlayerInput, Position, Rect, ReplicaComponents};
use crate::link::SnapshotBatch;
use crate::zone::messages::ZoneMessage;
use std::collections::HashSet;
use zonemesh_replication::{ReplicatedState, SnapshotFrame};
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::{QPos, Vec2};

impl Zone {
    /// Rebuilds `states` (own entities first, then ghosts not owned here) and the grid.
    pub(super) fn collect_states(&mut self) {
        self.states.clear();
        let mut query = self
            .world
            .query::<(&NetEntity, &Kind, &Position, &ReplicaComponents)>();
        for (net, kind, pos, cache) in query.iter(&self.world) {
            self.states.push(ReplicatedState {
                id: net.0,
                kind: kind.0,
                pos: QPos::from_world(pos.0),
                components: cache.shared().clone(),
                components_hash: cache.hash(),
            });
        }
        self.own_states = self.states.len();
        self.append_ghosts();
        self.grid.rebuild(&self.states);
    }

    /// Adds neighbours' ghosts, skipping any id this zone owns: a player that just
    /// crossed in may still be in the neighbour's previous ghost batch.
    fn append_ghosts(&mut self) {
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
        for (neighbour, rect) in &self.neighbours {
            if !self.accepts_traffic(*neighbour) {
                continue; // Nobody drains its inbox until it is loaded.
            }
            let near: Vec<ReplicatedState> = self.states[..own]
                .iter()
                .filter(|s| distance_to_rect(s.pos.to_world(), rect) <= margin)
                .cloned()
                .collect();
            let msg = ZoneMessage::Ghosts {
                from: self.id,
                states: near,
            };
            // A full inbox drops this batch (counted by the router); the next tick's
            // batch replaces it anyway.
            let _ = self.ctx.router.send(*neighbour, msg);
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
