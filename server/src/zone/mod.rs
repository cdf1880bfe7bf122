//! Zones: each one an ECS world and schedule, ticked at a fixed rate by a worker, fed
//! only through its bounded inbox, never touching IO.
//!
//! One tick, in order:
//! 1. drain the inbox (joins, inputs clamped to max speed, transfers, ghosts, events);
//! 2. run the game's schedule (simulate → integrate → re-encode changed components);
//! 3. deliver game events, drop players whose session closed;
//! 4. hand players that left the zone's bounds to the neighbour zone;
//! 5. collect replicated state (own entities + neighbours' ghosts) into a spatial grid;
//! 6. send ghosts near each border to that neighbour;
//! 7. build each client's snapshot within its byte budget and hand it to its link.

mod actions;
mod checkpoint;
pub mod clock;
pub mod elsewhere;
mod image;
pub mod layout;
pub mod messages;
mod players;
mod replication;
pub mod status;
mod ticks;
pub mod worker;

pub use layout::WorldLayout;
pub use messages::{CommittedAction, PlayerTransfer, SendError, ZoneMessage, ZoneRouter};
pub use status::{ZoneStatus, ZoneStatusCell};

use crate::game::{
    DurableActionFn, Game, NetIdAllocator, PlayerEvents, PlayerSpawnFn, Rect, RequestFn, SessionId,
    WorldRules, ZoneInfo,
};
use crate::link::ClientLink;
use crate::persist::{CheckpointWriter, RecordVersions, ZoneActivation, ZoneDirectory};
use bevy_ecs::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use zonemesh_replication::{ClientView, ReplicatedState, SpatialGrid, ViewConfig};
use zonemesh_shared::ids::ZoneId;

/// Tunables shared by every zone of a node.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// Simulation rate, ticks per second.
    pub tick_hz: u16,
    /// Per-client replication settings (area of interest, byte budget...).
    pub view: ViewConfig,
    /// How far beyond a border a zone shows its entities to the neighbour (ghosts).
    /// Defaults to the area-of-interest radius so a player at the border sees as far
    /// into the neighbour as into its own zone.
    pub ghost_margin: f32,
    /// Capacity of each zone's inbox, in messages.
    pub inbox_capacity: usize,
    /// How often a zone saves a checkpoint (its state and its players' records).
    pub checkpoint_interval: std::time::Duration,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        let view = ViewConfig::default();
        Self {
            tick_hz: 20,
            ghost_margin: view.aoi_radius,
            view,
            inbox_capacity: 8192,
            checkpoint_interval: std::time::Duration::from_secs(5),
        }
    }
}

/// What every zone of a node shares.
#[derive(Debug)]
pub struct ZoneContext {
    /// Where other zones' inboxes are.
    pub router: Arc<ZoneRouter>,
    /// The world's geometry.
    pub layout: WorldLayout,
    /// Zone tunables.
    pub config: ZoneConfig,
    /// The game's world rules.
    pub rules: WorldRules,
    /// Where zones save and which neighbours are active; `None` for zones run without
    /// a store (benchmarks, unit tests), which then never save.
    pub persistence: Option<ZonePersistence>,
    /// Zones on other nodes; `None` outside a cluster.
    pub other_nodes: Option<Arc<dyn elsewhere::OtherNodes>>,
}

/// What zones need from the node's persistence.
#[derive(Debug, Clone)]
pub struct ZonePersistence {
    /// Checkpoints go here.
    pub writer: Arc<CheckpointWriter>,
    /// Which zones are active (ghosts and transfers go only to those).
    pub directory: Arc<ZoneDirectory>,
    /// Zones that stay in memory while they have no players.
    pub keep_warm: crate::persist::KeepWarm,
    /// How long a zone not kept warm stays in memory without players.
    pub idle_after: std::time::Duration,
}

/// A connected player this zone simulates.
#[derive(Debug)]
struct PlayerSlot {
    entity: Entity,
    link: Arc<ClientLink>,
    view: ClientView,
    /// The versions of the records this zone saves for the player.
    versions: RecordVersions,
}

/// One zone: world, schedule, inbox, players and replication state.
pub struct Zone {
    id: ZoneId,
    bounds: Rect,
    world: World,
    schedule: Schedule,
    inbox: Receiver<ZoneMessage>,
    ctx: Arc<ZoneContext>,
    on_player_spawn: Vec<PlayerSpawnFn>,
    durable_actions: HashMap<u16, DurableActionFn>,
    requests: HashMap<u16, RequestFn>,
    /// The store epoch this activation holds (0 without a store).
    epoch: u64,
    checkpoint_every: u64,
    /// Ticks without players after which the zone leaves memory (`None`: never).
    idle_limit_ticks: Option<u64>,
    idle_ticks: u64,
    players: HashMap<SessionId, PlayerSlot>,
    /// Players at a border to a zone on another node, waiting for their durable
    /// actions in flight before they cross (few: a store round trip each).
    crossing_holds: Vec<SessionId>,
    ghosts: HashMap<ZoneId, replication::GhostBatch>,
    neighbours: Vec<(ZoneId, Rect)>,
    states: Vec<ReplicatedState>,
    /// How many of `states` (the first ones) this zone owns; the rest are ghosts.
    own_states: usize,
    grid: SpatialGrid,
    visible: Vec<u32>,
    status: Arc<ZoneStatusCell>,
    tick: u64,
    stats: TickStats,
    /// This node lost the zone to another node: it only sends players away and
    /// leaves memory without saving (see [`Zone::lose`]).
    lost: bool,
    /// Frozen for a live handoff: it does not tick, and leaves its worker for the
    /// handoff (see `image.rs`).
    frozen: bool,
    /// Its players' links are held for a freeze that has not happened yet.
    freeze_holds: bool,
    /// Handed over from another node: its worker ticks it as soon as it takes it,
    /// so its players' first snapshot from here waits for no tick interval.
    tick_on_arrival: bool,
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zone")
            .field("id", &self.id)
            .field("tick", &self.tick)
            .field("players", &self.players.len())
            .finish_non_exhaustive()
    }
}

/// Ends a session whose zone is no longer served here.
fn send_away(link: &ClientLink) {
    link.kick(
        zonemesh_shared::control::ErrorCode::ZoneMoved,
        "the zone moved to another node; connect again",
    );
}

/// Counters accumulated by the zone itself (the game's live in `ZoneCounters`).
#[derive(Debug, Default, Clone, Copy)]
struct TickStats {
    transfers_out: u64,
    transfers_deferred: u64,
    snapshot_bytes: u64,
    records_deferred: u64,
}

impl Zone {
    /// Builds zone `id` from the game's plugins, then restores its saved state or, for
    /// a zone never saved, runs the game's zone-start hooks.
    pub fn new(
        id: ZoneId,
        game: &Game,
        ctx: Arc<ZoneContext>,
        inbox: Receiver<ZoneMessage>,
        activation: ZoneActivation,
    ) -> Self {
        let saved = activation.saved;
        Self::assemble(
            id,
            game,
            ctx,
            inbox,
            activation.epoch,
            |world, starts| match &saved {
                Some(saved) => crate::persist::state::restore_zone(world, saved),
                None => starts.iter().for_each(|start| start(world)),
            },
        )
    }

    /// A fresh zone that is the whole world (`layout` has one zone), with no store, no
    /// cluster and no worker: whoever holds it ticks it, and messages (joins, inputs)
    /// go in through the returned context's router. For a game's tests and for
    /// benchmarks that step a zone by hand.
    pub fn standalone(
        game: &Game,
        layout: WorldLayout,
        config: ZoneConfig,
    ) -> (Self, Arc<ZoneContext>) {
        let id = ZoneId::grid(0, 0);
        let (router, mut inboxes) = ZoneRouter::new([id], config.inbox_capacity);
        let ctx = Arc::new(ZoneContext {
            router: Arc::new(router),
            layout,
            config,
            rules: game.rules().clone(),
            persistence: None,
            other_nodes: None,
        });
        let inbox = inboxes
            .remove(&id)
            .expect("the router has an inbox for its one zone");
        let fresh = ZoneActivation {
            epoch: 0,
            saved: None,
        };
        (Self::new(id, game, Arc::clone(&ctx), inbox, fresh), ctx)
    }

    /// Builds zone `id` from the game's plugins at `epoch`; `fill` populates the new
    /// world (given the game's zone-start hooks).
    fn assemble(
        id: ZoneId,
        game: &Game,
        ctx: Arc<ZoneContext>,
        inbox: Receiver<ZoneMessage>,
        epoch: u64,
        fill: impl FnOnce(&mut World, &[crate::game::ZoneStartFn]),
    ) -> Self {
        let app = game.build_zone().finish();
        let bounds = ctx.layout.bounds(id);
        let mut world = app.world;
        world.insert_resource(ZoneInfo {
            id,
            bounds,
            world_bounds: ctx.layout.world_bounds(),
            tick: 0,
            dt: 1.0 / f32::from(ctx.config.tick_hz.max(1)),
        });
        world.insert_resource(NetIdAllocator::new(id));
        fill(&mut world, &app.on_zone_start);
        let tick_hz = u64::from(ctx.config.tick_hz.max(1));
        let ticks_in = |d: std::time::Duration| (d.as_millis() as u64 * tick_hz / 1000).max(1);
        let checkpoint_every = ticks_in(ctx.config.checkpoint_interval);
        let idle_limit_ticks = ctx
            .persistence
            .as_ref()
            .filter(|p| !p.keep_warm.includes(id))
            .map(|p| ticks_in(p.idle_after));
        let neighbours = ctx
            .layout
            .neighbours(id)
            .into_iter()
            .map(|(z, _, _)| (z, ctx.layout.bounds(z)))
            .collect();
        Self {
            id,
            bounds,
            world,
            schedule: app.schedule,
            inbox,
            grid: SpatialGrid::new(ctx.config.view.aoi_radius.max(1.0)),
            ctx,
            on_player_spawn: app.on_player_spawn,
            durable_actions: app.durable_actions,
            requests: app.requests,
            epoch,
            checkpoint_every,
            idle_limit_ticks,
            idle_ticks: 0,
            players: HashMap::new(),
            crossing_holds: Vec::new(),
            ghosts: HashMap::new(),
            neighbours,
            states: Vec::new(),
            own_states: 0,
            visible: Vec::new(),
            status: Arc::new(ZoneStatusCell::new(id)),
            tick: 0,
            stats: TickStats::default(),
            lost: false,
            frozen: false,
            freeze_holds: false,
            tick_on_arrival: false,
        }
    }

    /// This zone's id.
    pub fn id(&self) -> ZoneId {
        self.id
    }

    /// Gives back the inbox (the zone is leaving memory; a later activation reuses it).
    pub fn into_inbox(self) -> Receiver<ZoneMessage> {
        self.inbox
    }

    /// True if `zone` can receive ghosts now: always without a store, otherwise only
    /// when it is active (a loading zone's inbox is not drained).
    fn accepts_traffic(&self, zone: ZoneId) -> bool {
        self.ctx
            .persistence
            .as_ref()
            .is_none_or(|p| p.directory.is_active(zone))
    }

    /// Reserves a player's arrival in `zone` (loading it if needed); false if it is
    /// not active yet. Always true without a store.
    fn reserve_arrival(&self, zone: ZoneId) -> bool {
        self.ctx
            .persistence
            .as_ref()
            .is_none_or(|p| p.directory.reserve_arrival(zone))
    }

    /// A player reserved for this zone is in (or will never come).
    fn arrived(&self) {
        if let Some(p) = &self.ctx.persistence {
            p.directory.arrived(self.id);
        }
    }

    /// True when this zone has had no players for its idle limit and may leave memory
    /// (never for zones kept warm or run without a store).
    pub fn wants_to_retire(&self) -> bool {
        self.lost
            || self
                .idle_limit_ticks
                .is_some_and(|limit| self.players.is_empty() && self.idle_ticks >= limit)
    }

    /// Asks the directory to let this zone leave; true if it may (no player on the way).
    pub fn begin_retirement(&self) -> bool {
        self.ctx
            .persistence
            .as_ref()
            .is_some_and(|p| p.directory.begin_deactivation(self.id))
    }

    /// The zone's status cell, shared with whoever wants to read it.
    pub fn status(&self) -> Arc<ZoneStatusCell> {
        Arc::clone(&self.status)
    }

    /// The zone's ECS world (for tests and benchmarks).
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// Entities this tick replicated (own plus ghosts).
    pub fn replicated_states(&self) -> &[ReplicatedState] {
        &self.states
    }

    /// Runs one tick. Never blocks: the inbox is drained without waiting and every
    /// outgoing message is a non-blocking send.
    pub fn tick(&mut self) {
        if self.frozen {
            return;
        }
        if self.freeze_holds && !self.status.freeze_requested() {
            self.release_freeze_holds();
        }
        self.tick += 1;
        self.world.resource_mut::<ZoneInfo>().tick = self.tick;
        if self.status.is_revoked() {
            self.lose();
        }
        self.drain_inbox();
        if self.lost {
            return;
        }
        self.schedule.run(&mut self.world);
        self.world.resource_mut::<PlayerEvents>().events.clear();
        self.deliver_outgoing_events();
        self.world.clear_trackers();
        self.drop_closed_players();
        self.transfer_leavers();
        self.collect_states();
        self.export_ghosts();
        self.send_snapshots();
        if self.tick.is_multiple_of(self.checkpoint_every) {
            self.save_checkpoint();
        }
        self.idle_ticks = if self.players.is_empty() {
            self.idle_ticks + 1
        } else {
            0
        };
        // Right after the snapshots: the players' pause starts with the handoff.
        if self.status.freeze_requested() {
            self.try_freeze();
        }
    }

    /// Tells the router which worker ticks this zone, so requests can wake it.
    pub fn register_waker(&self, waker: messages::WorkerWaker) {
        self.ctx.router.set_waker(self.id, waker);
    }

    /// Handles what is waiting in the inbox now, between ticks (a worker woken for a
    /// request calls this; every message means the same whenever it is handled).
    pub fn handle_pending_messages(&mut self) {
        if self.frozen {
            return;
        }
        self.drain_inbox();
        // New durable actions are refused from now on; the freeze itself waits for
        // the end of the next tick (see `image.rs`).
        if self.status.freeze_requested() {
            self.hold_for_freeze();
        }
    }

    /// Handles at most one inbox's worth of messages, so a sender that refills the
    /// inbox while it is drained cannot stretch a tick without bound.
    fn drain_inbox(&mut self) {
        for _ in 0..self.ctx.config.inbox_capacity.max(1) {
            let Ok(msg) = self.inbox.try_recv() else {
                break;
            };
            self.handle(msg);
        }
    }

    fn handle(&mut self, msg: ZoneMessage) {
        match msg {
            ZoneMessage::Join { link, .. } if self.lost => {
                send_away(&link);
                self.arrived();
            }
            ZoneMessage::TransferIn(transfer) if self.lost => {
                send_away(&transfer.link);
                self.arrived();
            }
            ZoneMessage::Join {
                link,
                spawn,
                saved,
                versions,
            } => {
                self.join(link, spawn, saved.as_deref(), versions);
                self.arrived();
            }
            ZoneMessage::Input {
                session,
                ack,
                inputs,
            } => self.apply_input(session, ack, &inputs),
            ZoneMessage::TransferIn(transfer) => {
                self.accept_transfer(*transfer);
                self.arrived();
            }
            ZoneMessage::GameEvent {
                session,
                kind,
                payload,
            } => self.queue_player_event(session, kind, payload),
            ZoneMessage::DurableAction {
                link,
                action,
                hops,
                in_flight,
            } => self.apply_durable_action(link, action, hops, in_flight),
            ZoneMessage::Ghosts { origin, states } => self.take_ghosts(origin, states),
        }
    }

    /// This node no longer holds the zone (another node took it over, or this node's
    /// lease lapsed). Its players are sent away to reconnect, which the cluster routes
    /// to the zone's new host; the zone then leaves memory without a final save, since
    /// the store refuses writes of an epoch that is not the latest. Players lose what
    /// they did since the zone's last checkpoint.
    fn lose(&mut self) {
        if self.lost {
            return;
        }
        self.lost = true;
        tracing::warn!(zone = ?self.id, epoch = self.epoch, players = self.players.len(), "zone lost to another node; sending its players away");
        for (_, slot) in self.players.drain() {
            send_away(&slot.link);
            self.world.despawn(slot.entity);
        }
    }

    /// True once the zone was lost to another node: it must not be saved.
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Publishes this tick's figures; `took` is the tick's duration.
    pub fn publish_status(&self, took: std::time::Duration, cpu: std::time::Duration, missed: u64) {
        let counters = self.world.resource::<crate::game::ZoneCounters>().clone();
        let players = self.player_names();
        let entities = self.local_entity_count();
        let stats = self.stats;
        self.status.update(|s| {
            s.ticks = self.tick;
            s.missed_ticks += missed;
            s.record_tick_time(took);
            s.tick_cpu_us = s
                .tick_cpu_us
                .saturating_add(u64::try_from(cpu.as_micros()).unwrap_or(u64::MAX));
            s.players = players.len();
            s.player_names = players;
            s.entities = entities;
            s.inputs_applied = counters.inputs_applied;
            s.inputs_superseded = counters.inputs_superseded;
            s.inputs_clamped = counters.inputs_clamped;
            s.inputs_invalid = counters.inputs_invalid;
            s.transfers_out = stats.transfers_out;
            s.transfers_deferred = stats.transfers_deferred;
            s.snapshot_bytes = stats.snapshot_bytes;
            s.records_deferred = stats.records_deferred;
        });
    }
}
