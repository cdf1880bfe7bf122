//! Per-client replication: which entities a client is shown, what it has acknowledged,
//! and the prioritised snapshot datagrams of each tick.
//!
//! # Contract for the caller
//! Call [`ClientView::build_snapshot`] once per tick with a rising tick number and this
//! tick's states, and [`ClientView::handle_ack`] with every acknowledgement the client
//! sends, in any order. Nothing else is needed: loss, reordering, duplicated or bogus
//! acknowledgements and entities vanishing are all handled, and nothing panics.
//!
//! # What gets sent
//! Each tick the view settles the set of entities it shows (the nearest
//! [`ViewConfig::max_tracked_entities`] of the visible ones), then lists candidates:
//! - a *despawn* for every entity that left and whose despawn is not yet acknowledged
//!   (re-sent every [`ViewConfig::resend_after_ticks`]); these go first;
//! - a *full* record (spawn kind, absolute position, all components) for a shown
//!   entity with no acknowledged record in its current life;
//! - an *update* for a shown entity some state the client may hold differs from: the
//!   position as a delta from the acknowledged baseline (absolute when the client may
//!   no longer hold it: more than 15 records since, or older than the newest spawn
//!   record, which a client may treat as a fresh start of the entity's history), and
//!   the whole component list when components differ.
//!
//! A record that exactly repeats the unacknowledged newest one is held back for
//! `resend_after_ticks` (it is probably in flight). Candidates are ordered by staleness
//! (ticks since the client's acknowledged state was current) weighted by nearness,
//! and packed into datagrams until the tick's byte budget runs out; the rest are
//! deferred and, growing staler, win later.
//!
//! An entity that comes back while its despawn is still owed starts a new life: its
//! old acknowledgements are ignored and it is spawned again with a full record (a
//! client applies that spawn whether or not the despawn reached it, since the spawn is
//! newer). Clients must remember the sequence number of a despawn they applied (a
//! tombstone) so that an older, reordered spawn record cannot resurrect the entity.
//!
//! A view resumed on another node from a [`ViewHandover`] starts with every entity the
//! client may hold in that state (left, despawn owed), so each is either spawned again
//! with a full record or despawned (see `handover`).

mod entity;
mod handover;
mod log;
mod order;
mod pack;
mod plan;
mod record;
mod section;
mod select;
mod send;
mod size;
mod tracked_set;

use crate::state::ReplicatedState;
pub use handover::ViewHandover;
use log::SentLog;
use plan::Candidate;
use select::Ranked;
use tracked_set::TrackedSet;
use zonemesh_shared::codec::Writer;
use zonemesh_shared::datagram::{Ack, DATAGRAM_MAX};
use zonemesh_shared::quant::{POSITION_STEP, QPos, Vec2};

/// Per-client replication settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewConfig {
    /// Radius of the area of interest in world units (used by the caller's grid query
    /// and, here, to weight priority by nearness).
    pub aoi_radius: f32,
    /// Most snapshot bytes (headers included) sent to one client per tick.
    pub budget_bytes_per_tick: usize,
    /// Largest snapshot datagram; each tick the smaller of this and the connection's
    /// current limit applies (and never more than `DATAGRAM_MAX`).
    pub datagram_max_bytes: usize,
    /// Most entities one client is shown at once, departing ones included; beyond it
    /// the nearest win.
    pub max_tracked_entities: usize,
    /// Longest run of ticks without a datagram: an empty snapshot then goes out so the
    /// input acknowledgement keeps flowing (0 behaves as 1).
    pub heartbeat_ticks: u32,
    /// Ticks an unacknowledged record is given before it is presumed lost and re-sent.
    pub resend_after_ticks: u32,
}

impl Default for ViewConfig {
    fn default() -> Self {
        Self {
            aoi_radius: 64.0,
            budget_bytes_per_tick: 4000,
            datagram_max_bytes: 1200,
            max_tracked_entities: 1024,
            heartbeat_ticks: 10,
            resend_after_ticks: 3,
        }
    }
}

/// Everything a view needs from the zone for one tick.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotFrame<'a> {
    /// The server tick.
    pub tick: u64,
    /// Newest input sequence number applied for this client, echoed in the header.
    pub input_ack: u32,
    /// The viewing player's position in world units.
    pub viewer: Vec2,
    /// Every entity state of the tick.
    pub states: &'a [ReplicatedState],
    /// Indices into `states` of the entities in this client's area of interest.
    /// Out-of-range indices are ignored; of states sharing an id, the nearest is shown.
    pub visible: &'a [u32],
    /// The connection's current largest datagram.
    pub mtu: usize,
}

/// What one [`ClientView::build_snapshot`] call produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Datagrams appended.
    pub datagrams: usize,
    /// Bytes in those datagrams, headers included (never above the tick budget).
    pub bytes: usize,
    /// Records sent (spawns, updates and despawns).
    pub records: usize,
    /// Records due but not sent because the byte budget ran out (or shown entities
    /// that could not be admitted while departing ones still hold their places).
    pub deferred: usize,
    /// Spawn records (kind, absolute position, all components).
    pub full_records: usize,
    /// Updates relative to what the client holds.
    pub delta_records: usize,
    /// Records skipped because they can never be sent: larger than a datagram, or
    /// breaking the protocol's component limits. Records are measured only while they
    /// might fit the budget, so such a record may count as deferred on some ticks.
    pub oversized: usize,
}

/// One client's replication state: what it was sent, what it acknowledged, and which
/// entities it is shown. Moves with the player between zones (ids are stable); to
/// another node, it travels as a [`ViewHandover`] and continues as a
/// [`ClientView::resume`]d view.
#[derive(Debug)]
pub struct ClientView {
    config: ViewConfig,
    entities: TrackedSet,
    log: SentLog,
    /// Sequence number of the next datagram, unwrapped (the wire carries the low 32
    /// bits), so comparisons never face a wrap.
    next_seq: u64,
    /// Counts builds; marks which tracked entities this build selected.
    generation: u64,
    last_datagram_tick: Option<u64>,
    scratch: Scratch,
}

/// Buffers reused across ticks.
#[derive(Debug, Default)]
struct Scratch {
    ranked: Vec<Ranked>,
    admit: Vec<Ranked>,
    candidates: Vec<Candidate>,
    /// Candidate sort keys (see `plan`).
    order: Vec<u64>,
    /// Sum of the candidates' smallest lengths.
    len_min_sum: usize,
    /// The record being placed, without its component section.
    record: Writer,
    /// A component section written from the components (when not cached).
    section: Writer,
}

impl ClientView {
    /// A view showing nothing yet, numbering snapshots from 0.
    pub fn new(config: ViewConfig) -> Self {
        Self::with_first_seq(config, 0)
    }

    /// A view numbering snapshots from `first_seq` (a random start makes sequence
    /// numbers harder to guess; tests use it to cross the wrap).
    pub fn with_first_seq(config: ViewConfig, first_seq: u32) -> Self {
        Self {
            config,
            entities: TrackedSet::default(),
            log: SentLog::default(),
            next_seq: u64::from(first_seq),
            generation: 0,
            last_datagram_tick: None,
            scratch: Scratch::default(),
        }
    }

    /// The settings this view was made with.
    pub fn config(&self) -> &ViewConfig {
        &self.config
    }

    /// Entities the client is shown or is being told to despawn; at most
    /// [`ViewConfig::max_tracked_entities`].
    pub fn tracked(&self) -> usize {
        self.entities.len()
    }

    /// Applies an acknowledgement from the client: acknowledged records become
    /// baselines, acknowledged despawns end tracking. Acknowledgements of unknown,
    /// forgotten or already-acknowledged snapshots do nothing.
    pub fn handle_ack(&mut self, ack: Ack) {
        let entities = &mut self.entities;
        self.log.acknowledge(ack, |record, sent| {
            let Some(t) = entities.get_mut(record.id) else {
                return;
            };
            if !record.despawn {
                t.on_acked(sent);
                return;
            }
            // A despawn from an earlier life says nothing about a re-spawned entity.
            if sent.seq >= t.since_seq && t.is_leaving() {
                entities.remove(record.id);
            }
        });
    }

    /// Builds this tick's snapshot datagrams for the client, appending them to `out`;
    /// each is a complete encoded snapshot no larger than the smaller of `frame.mtu`
    /// and [`ViewConfig::datagram_max_bytes`], and together they stay within
    /// [`ViewConfig::budget_bytes_per_tick`].
    pub fn build_snapshot(
        &mut self,
        frame: &SnapshotFrame<'_>,
        out: &mut Vec<Vec<u8>>,
    ) -> BuildStats {
        self.generation += 1;
        let mut stats = BuildStats {
            deferred: self.select(frame),
            ..BuildStats::default()
        };
        self.plan(frame);
        let mtu = frame
            .mtu
            .min(self.config.datagram_max_bytes)
            .min(DATAGRAM_MAX);
        let next_seq = self.pack(frame, mtu, out, &mut stats);
        self.next_seq = next_seq;
        if stats.datagrams > 0 {
            self.last_datagram_tick = Some(frame.tick);
        }
        stats
    }
}

/// Squared distance from `viewer` to `pos`, in world units (NaN for a NaN viewer).
fn distance_squared(viewer: Vec2, pos: QPos) -> f64 {
    let step = f64::from(POSITION_STEP);
    let dx = f64::from(pos.x) * step - f64::from(viewer.x);
    let dy = f64::from(pos.y) * step - f64::from(viewer.y);
    dx * dx + dy * dy
}
