//! A zone's side of persistence: capturing its state and its players' records into a
//! checkpoint job for the writer (never waiting for the store), and restoring a
//! joining player's saved components. Every record takes the next version from its
//! player's [`RecordVersions`](crate::persist::RecordVersions), so each save of a
//! session is newer than the one before.

use super::{PlayerSlot, Zone};
use crate::game::{PersistRegistry, Position};
use crate::persist::CheckpointJob;
use crate::persist::state::{self, PlayerData};
use bytes::Bytes;
use std::time::{SystemTime, UNIX_EPOCH};
use zonemesh_store::{PlayerRecord, ZoneSnapshot};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Zone {
    /// Hands the writer this zone's state and players (periodic checkpoint).
    pub(super) fn save_checkpoint(&mut self) {
        let Some(persistence) = self.ctx.persistence.clone() else {
            return;
        };
        if let Some(job) = self.checkpoint_job(true) {
            persistence.writer.submit(job);
        }
    }

    /// This zone's checkpoint: its state (if `with_state`) and every player's record.
    /// `None` when the state cannot be encoded (logged; the previous save stands).
    pub fn checkpoint_job(&mut self, with_state: bool) -> Option<CheckpointJob> {
        let state = if with_state {
            Some(self.zone_snapshot()?)
        } else {
            None
        };
        let slots: Vec<_> = self
            .players
            .values_mut()
            .map(|s| (s.entity, s.versions.next_version()))
            .collect();
        let players = slots
            .into_iter()
            .filter_map(|(entity, version)| self.player_record(entity, version))
            .collect();
        Some(CheckpointJob {
            zone: self.id,
            epoch: self.epoch,
            state,
            players,
        })
    }

    fn zone_snapshot(&mut self) -> Option<ZoneSnapshot> {
        let captured = state::capture_zone(&mut self.world);
        match state::encode(&captured) {
            Ok(bytes) => Some(ZoneSnapshot {
                tick: self.tick,
                saved_at_unix_ms: unix_ms(),
                state: Bytes::from(bytes),
            }),
            Err(e) => {
                tracing::error!(zone = ?self.id, error = %e, "zone state not encodable");
                None
            }
        }
    }

    /// The record of the player whose entity is `entity`, at `version`.
    fn player_record(
        &self,
        entity: bevy_ecs::entity::Entity,
        version: u64,
    ) -> Option<PlayerRecord> {
        let e = self.world.get_entity(entity).ok()?;
        let name = e.get::<crate::game::Player>()?.name.clone();
        let pos = e.get::<Position>()?.0;
        let registry = self.world.resource::<PersistRegistry>();
        let data = PlayerData {
            components: state::capture_components(&e, registry),
        };
        let data = state::encode(&data)
            .inspect_err(|err| tracing::error!(player = %name, error = %err, "not saved"))
            .ok()?;
        Some(PlayerRecord {
            player: name,
            zone: self.id.0,
            x: pos.x,
            y: pos.y,
            data: Bytes::from(data),
            updated_at_unix_ms: unix_ms(),
            version,
        })
    }

    /// Saves the record of a player leaving the server (not the zone state).
    pub(super) fn save_leaving_player(&self, slot: &mut PlayerSlot) {
        let Some(persistence) = &self.ctx.persistence else {
            return;
        };
        let version = slot.versions.next_version();
        if let Some(record) = self.player_record(slot.entity, version) {
            let saved = persistence.writer.submit_and_wait(CheckpointJob {
                zone: self.id,
                epoch: self.epoch,
                state: None,
                players: vec![record],
            });
            // The session's end waits on it before giving the player's claim back.
            slot.link.set_final_save(saved);
        }
    }
}
