//! The client's copy of the visible world, rebuilt from snapshot records (sans-IO).
//!
//! Decoding follows the delta rules of [`zonemesh_shared::datagram`]:
//! - every entity keeps the positions of its last [`POSITION_HISTORY`] records, keyed by
//!   snapshot sequence number; a `Delta` is relative to the position held for
//!   `seq - baseline_back`, and a record whose baseline is missing is counted as an
//!   error and skipped (never a panic);
//! - `Unchanged` means "the position this client holds for the entity";
//! - a record applies only if its snapshot is newer (serial arithmetic, so sequence
//!   wraparound is fine) than the last one applied to that entity. Older records are
//!   not applied, but their positions still enter the history, because the server may
//!   use any acknowledged snapshot as a later baseline;
//! - a despawned entity leaves a tombstone so a late, reordered record cannot bring it
//!   back;
//! - a record's component list, when present, is the entity's complete component set
//!   (the server compares whole sets by hash and resends the set when it differs); an
//!   empty list means "unchanged", except in a spawn record, which is complete.
//!
//! Each entity also keeps `(server tick, position)` samples for interpolation.

use crate::events::{Event, EventQueue};
use crate::history::{PositionHistory, Samples, Tombstones};
use crate::seq;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::time::Duration;
use zonemesh_shared::datagram::{ComponentValue, EntityRecord, PosField, Snapshot};
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::{QPos, Vec2};

pub use crate::history::INTERPOLATION_SAMPLES;
pub use zonemesh_shared::datagram::POSITION_HISTORY;

/// Snapshots this many sequence numbers older than the newest are dropped whole:
/// reordering that deep means they are useless, and it bounds how long tombstones live.
pub const STALE_SNAPSHOT_WINDOW: u32 = 1024;
/// Default interpolation delay behind the newest snapshot, in server ticks.
pub const DEFAULT_INTERPOLATION_DELAY_TICKS: f64 = 2.0;

/// One entity the client can see.
#[derive(Debug, Clone)]
pub struct RemoteEntity {
    /// Network id.
    pub id: NetId,
    /// Game-defined kind, from its spawn record.
    pub kind: u16,
    /// Latest position, in world units.
    pub position: Vec2,
    /// Latest replicated components (postcard-encoded by the server), sorted by id.
    /// At most [`zonemesh_shared::datagram::COMPONENTS_PER_RECORD_MAX`] (a record carries
    /// the whole set).
    pub components: Vec<ComponentValue>,
    /// Sequence number of the snapshot last applied to this entity.
    pub last_snapshot_seq: u32,
    /// Server tick of that snapshot.
    pub last_tick: u64,
    qpos: QPos,
    history: PositionHistory,
    samples: Samples,
}

impl RemoteEntity {
    fn spawn(id: NetId, kind: u16, seq: u32, tick: u64, q: QPos) -> Self {
        let mut entity = Self {
            id,
            kind,
            position: q.to_world(),
            components: Vec::new(),
            last_snapshot_seq: seq,
            last_tick: tick,
            qpos: q,
            history: PositionHistory::default(),
            samples: Samples::default(),
        };
        entity.history.push(seq, q);
        entity.samples.push(tick, entity.position);
        entity
    }

    /// Latest position exactly as it travelled (quantised).
    pub fn quantised_position(&self) -> QPos {
        self.qpos
    }

    /// The encoded bytes of component `component_id`, if the server replicated it.
    pub fn component_bytes(&self, component_id: u16) -> Option<&[u8]> {
        self.components
            .binary_search_by_key(&component_id, |c| c.id)
            .ok()
            .map(|i| self.components[i].bytes.as_slice())
    }

    /// Component `component_id` decoded as `T` (the server encodes with postcard):
    /// `None` if absent, `Some(Err)` if the bytes are not a `T`.
    pub fn component<T: DeserializeOwned>(
        &self,
        component_id: u16,
    ) -> Option<Result<T, postcard::Error>> {
        self.component_bytes(component_id)
            .map(postcard::from_bytes::<T>)
    }

    /// Position at fractional server tick `render_tick`, interpolated between the
    /// samples around it (clamped to the oldest and newest sample).
    pub fn interpolated(&self, render_tick: f64) -> Vec2 {
        self.samples.at(render_tick).unwrap_or(self.position)
    }

    /// Applies a record newer than anything applied so far; true if it changed
    /// something the game may care about. `full` marks a spawn record, whose
    /// component list is complete even when empty.
    fn apply(
        &mut self,
        seq: u32,
        tick: u64,
        q: QPos,
        components: &[ComponentValue],
        full: bool,
    ) -> bool {
        let moved = q != self.qpos;
        self.qpos = q;
        self.position = q.to_world();
        self.last_snapshot_seq = seq;
        self.last_tick = tick;
        self.history.push(seq, q);
        self.samples.push(tick, self.position);
        let changed = (full || !components.is_empty())
            && replace_components(&mut self.components, components);
        moved || changed
    }

    /// Keeps the position of a record that arrived after a newer one, so it can still
    /// serve as a delta baseline. False if its position cannot be worked out.
    fn keep_stale(&mut self, seq: u32, pos: &PosField) -> bool {
        let q = match *pos {
            PosField::Absolute(q) => Some(q),
            PosField::Delta { .. } => resolve_delta(&self.history, seq, pos).ok(),
            PosField::Unchanged => self.history.before(seq),
        };
        match q {
            Some(q) => {
                self.history.insert(seq, q);
                true
            }
            None => false,
        }
    }
}

/// Why a record could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordError {
    /// A delta's baseline is not in the entity's history.
    MissingBaseline,
    /// An update for an entity this client does not hold, without a spawn kind.
    UnknownEntity,
    /// A spawn without an absolute position.
    SpawnWithoutPosition,
    /// Applying the delta leaves the `i32` range.
    PositionOverflow,
}

/// What applying one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordOutcome {
    /// Applied (or a despawn of an entity already gone).
    Applied,
    /// Older than what the entity already holds; not applied.
    Stale,
    /// Stale, and its position could not be recovered for the history.
    StaleUnplaced,
}

/// What applying one snapshot did; the core decides from it whether to acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ApplyReport {
    /// False when the whole snapshot was older than [`STALE_SNAPSHOT_WINDOW`].
    pub(crate) accepted: bool,
    /// True when this is the newest snapshot so far.
    pub(crate) newest: bool,
    /// Records that could not be applied ([`RecordError`]).
    pub(crate) errors: u32,
    /// True when every record is held, so acknowledging the snapshot is truthful (the
    /// server may then use it as a baseline).
    pub(crate) complete: bool,
}

/// The replicated world as this client sees it.
#[derive(Debug, Clone)]
pub struct Replica {
    entities: HashMap<NetId, RemoteEntity>,
    tombstones: Tombstones,
    /// Sequence number and tick of the newest snapshot applied.
    newest: Option<(u32, u64)>,
    interpolation_delay_ticks: f64,
    /// The one entity kept, when the client keeps only its own
    /// ([`ReplicaScope::OwnEntity`](crate::ReplicaScope::OwnEntity)).
    only: Option<NetId>,
}

impl Default for Replica {
    fn default() -> Self {
        Self::new(DEFAULT_INTERPOLATION_DELAY_TICKS)
    }
}

impl Replica {
    /// An empty replica rendering `interpolation_delay_ticks` behind the newest tick.
    pub fn new(interpolation_delay_ticks: f64) -> Self {
        Self {
            entities: HashMap::new(),
            tombstones: Tombstones::default(),
            newest: None,
            interpolation_delay_ticks: sanitize_delay(interpolation_delay_ticks),
            only: None,
        }
    }

    /// From now on, applies only the records of entity `id` and skips the others (see
    /// [`ReplicaScope::OwnEntity`](crate::ReplicaScope::OwnEntity)).
    pub(crate) fn keep_only(&mut self, id: NetId) {
        self.only = Some(id);
        self.entities.retain(|&held, _| held == id);
    }

    /// The entity with this id, if visible.
    pub fn get(&self, id: NetId) -> Option<&RemoteEntity> {
        self.entities.get(&id)
    }

    /// True if the entity is visible.
    pub fn contains(&self, id: NetId) -> bool {
        self.entities.contains_key(&id)
    }

    /// All visible entities, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &RemoteEntity> + '_ {
        self.entities.values()
    }

    /// Number of visible entities.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// True when nothing is visible.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// Server tick of the newest snapshot applied.
    pub fn latest_tick(&self) -> Option<u64> {
        self.newest.map(|(_, tick)| tick)
    }

    /// Sequence number of the newest snapshot applied.
    pub fn latest_seq(&self) -> Option<u32> {
        self.newest.map(|(seq, _)| seq)
    }

    /// How far behind the newest tick rendering happens, in ticks.
    pub fn interpolation_delay_ticks(&self) -> f64 {
        self.interpolation_delay_ticks
    }

    /// Changes the interpolation delay (negative or non-finite values become 0).
    pub fn set_interpolation_delay_ticks(&mut self, ticks: f64) {
        self.interpolation_delay_ticks = sanitize_delay(ticks);
    }

    /// The tick to render now: newest tick minus the interpolation delay, so there is
    /// usually a newer sample to interpolate towards.
    pub fn render_tick(&self) -> Option<f64> {
        self.latest_tick()
            .map(|tick| tick as f64 - self.interpolation_delay_ticks)
    }

    /// Like [`Replica::render_tick`], advanced by the time since the newest snapshot
    /// arrived at `tick_hz`, but never past the newest tick: smooth between snapshots.
    pub fn render_tick_after(&self, since_newest: Duration, tick_hz: u16) -> Option<f64> {
        let base = self.render_tick()?;
        let advance = since_newest.as_secs_f64() * f64::from(tick_hz);
        Some(base + advance.min(self.interpolation_delay_ticks))
    }

    /// Entity `id`'s position at `render_tick` (see [`RemoteEntity::interpolated`]).
    pub fn interpolated(&self, id: NetId, render_tick: f64) -> Option<Vec2> {
        self.get(id).map(|e| e.interpolated(render_tick))
    }

    /// Applies a decoded snapshot, queueing the events it causes.
    pub(crate) fn apply(&mut self, snapshot: &Snapshot, events: &mut EventQueue) -> ApplyReport {
        let (seq, tick) = (snapshot.header.seq, snapshot.header.tick);
        if let Some((newest, _)) = self.newest
            && seq::behind(newest, seq) > STALE_SNAPSHOT_WINDOW
        {
            return ApplyReport::default();
        }
        let newest = self.newest.is_none_or(|(n, _)| seq::newer(seq, n));
        if newest {
            self.newest = Some((seq, tick));
            self.tombstones.prune(seq, STALE_SNAPSHOT_WINDOW);
        }
        let mut report = ApplyReport {
            accepted: true,
            newest,
            errors: 0,
            complete: true,
        };
        let only = self.only;
        let kept = |record: &&EntityRecord| only.is_none_or(|id| id == record.id());
        for record in snapshot.records.iter().filter(kept) {
            match self.apply_record(record, seq, tick, events) {
                Ok(RecordOutcome::Applied | RecordOutcome::Stale) => {}
                Ok(RecordOutcome::StaleUnplaced) => report.complete = false,
                Err(error) => {
                    tracing::debug!(id = %record.id(), seq, ?error, "snapshot record skipped");
                    report.errors += 1;
                    report.complete = false;
                }
            }
        }
        report
    }

    fn apply_record(
        &mut self,
        record: &EntityRecord,
        seq: u32,
        tick: u64,
        events: &mut EventQueue,
    ) -> Result<RecordOutcome, RecordError> {
        match record {
            EntityRecord::Despawn { id } => Ok(self.despawn(*id, seq, events)),
            EntityRecord::Update {
                id,
                spawn_kind,
                pos,
                components,
            } => {
                let update = Update {
                    seq,
                    tick,
                    spawn_kind: *spawn_kind,
                    pos,
                    components,
                };
                if self.entities.contains_key(id) {
                    self.update_known(*id, &update, events)
                } else {
                    self.spawn(*id, &update, events)
                }
            }
        }
    }

    fn despawn(&mut self, id: NetId, seq: u32, events: &mut EventQueue) -> RecordOutcome {
        match self.entities.get(&id) {
            Some(e) if !seq::newer(seq, e.last_snapshot_seq) => RecordOutcome::Stale,
            Some(_) => {
                self.entities.remove(&id);
                self.tombstones.insert(id, seq);
                events.push(Event::Despawned { id });
                RecordOutcome::Applied
            }
            None => {
                self.tombstones.insert(id, seq);
                RecordOutcome::Applied
            }
        }
    }

    fn update_known(
        &mut self,
        id: NetId,
        update: &Update<'_>,
        events: &mut EventQueue,
    ) -> Result<RecordOutcome, RecordError> {
        let Some(entity) = self.entities.get_mut(&id) else {
            return Err(RecordError::UnknownEntity);
        };
        if !seq::newer(update.seq, entity.last_snapshot_seq) {
            return Ok(if entity.keep_stale(update.seq, update.pos) {
                RecordOutcome::Stale
            } else {
                RecordOutcome::StaleUnplaced
            });
        }
        let q = match *update.pos {
            PosField::Absolute(q) => q,
            PosField::Unchanged => entity.qpos,
            PosField::Delta { .. } => resolve_delta(&entity.history, update.seq, update.pos)?,
        };
        let full = update.spawn_kind.is_some();
        let changed = entity.apply(update.seq, update.tick, q, update.components, full);
        match update.spawn_kind {
            // The server re-sent a spawn with another kind: the id was reused.
            Some(kind) if kind != entity.kind => {
                entity.kind = kind;
                events.push(Event::Despawned { id });
                events.push(Event::Spawned { id, kind });
            }
            _ if changed => events.push(Event::Updated { id }),
            _ => {}
        }
        Ok(RecordOutcome::Applied)
    }

    fn spawn(
        &mut self,
        id: NetId,
        update: &Update<'_>,
        events: &mut EventQueue,
    ) -> Result<RecordOutcome, RecordError> {
        if self.tombstones.hides(id, update.seq) {
            return Ok(RecordOutcome::Stale);
        }
        let Some(kind) = update.spawn_kind else {
            return Err(RecordError::UnknownEntity);
        };
        let PosField::Absolute(q) = *update.pos else {
            return Err(RecordError::SpawnWithoutPosition);
        };
        let mut entity = RemoteEntity::spawn(id, kind, update.seq, update.tick, q);
        replace_components(&mut entity.components, update.components);
        self.entities.insert(id, entity);
        self.tombstones.remove(id);
        events.push(Event::Spawned { id, kind });
        Ok(RecordOutcome::Applied)
    }
}

/// The parts of an `Update` record plus its snapshot's sequence number and tick.
#[derive(Debug)]
struct Update<'a> {
    seq: u32,
    tick: u64,
    spawn_kind: Option<u16>,
    pos: &'a PosField,
    components: &'a [ComponentValue],
}

/// The absolute position a `Delta` field stands for, from the entity's history.
fn resolve_delta(history: &PositionHistory, seq: u32, pos: &PosField) -> Result<QPos, RecordError> {
    let PosField::Delta {
        baseline_back,
        dx,
        dy,
    } = *pos
    else {
        return Err(RecordError::MissingBaseline);
    };
    let base = history
        .at(seq.wrapping_sub(baseline_back))
        .ok_or(RecordError::MissingBaseline)?;
    let x = base
        .x
        .checked_add(dx)
        .ok_or(RecordError::PositionOverflow)?;
    let y = base
        .y
        .checked_add(dy)
        .ok_or(RecordError::PositionOverflow)?;
    Ok(QPos { x, y })
}

/// Makes `held` the set `incoming` (sorted by id); true if it differs from before.
fn replace_components(held: &mut Vec<ComponentValue>, incoming: &[ComponentValue]) -> bool {
    let mut next = incoming.to_vec();
    next.sort_by_key(|c| c.id);
    if *held == next {
        return false;
    }
    *held = next;
    true
}

fn sanitize_delay(ticks: f64) -> f64 {
    if ticks.is_finite() && ticks > 0.0 {
        ticks
    } else {
        0.0
    }
}

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;
