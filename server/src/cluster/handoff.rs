//! Live zone handoff, the runtime's half: carries out what the sans-IO cores of
//! [`zonemesh_cluster::handoff`] decide, on this node's zones, store and sessions.
//!
//! On the source (A), for a handoff of zone Z to B:
//! - `Freeze`: the zone freezes at its next tick boundary once no durable action of
//!   its players is in flight (`zone/image.rs`); its worker hands it over and it
//!   waits here, out of every worker, inputs piling up in its inbox.
//! - `CheckpointAndRelease`: its final checkpoint is written (a failed one unfreezes
//!   it: the store still names A), its complete state captured and encoded once,
//!   then the node core forgets the zone (players asking wait) and the store releases
//!   it. An unknown outcome counts as released (the store decides what follows).
//! - `ShipState`: the encoded state goes to B (again on each resend).
//! - `RedirectClients`: each player's client is sent to B with a redirect token on
//!   its live connection (the SDK moves make-before-break, as for a crossing); the
//!   inputs and game events that waited in the inbox go to B
//!   ([`HandoffMsg::Forward`]); the zone leaves memory without a save (B has it).
//! - `Reactivate`: the players' claims are taken back from B and the store asked to
//!   activate Z here again; granted, the frozen zone resumes at the new epoch;
//!   refused (B won), its players are sent away to reconnect (they find Z on B).
//! - `Unfreeze`: the zone (never released) resumes at its epoch.
//!
//! On the target (B):
//! - `Restore`: the state is decoded, the players' claims taken over from A in the
//!   store, and the zone built from the state with each player on a link that waits
//!   for its client (as a player crossing from another node does). It does not tick.
//! - `Activate`: the node core asks the store; granted, the zone starts ticking and
//!   registers with the directory, and A hears `Activated`; refused, it is dropped.
//! - `Drop`: a restored zone that will not run here is let go (A still has it).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use zonemesh_cluster::Millis;
use zonemesh_cluster::crossing::CarriedPlayer;
use zonemesh_cluster::handoff::{
    ForwardedItem, HandoffMsg, HandoffOutcome, RefuseReason, SNAPSHOT_BYTES_MAX, Snapshot,
    SourceAction, SourceHandoffs, StartError, TargetAction, TargetHandoffs,
};
use zonemesh_cluster::zone_image::ZoneImage;
use zonemesh_shared::control::ErrorCode;
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;
use zonemesh_shared::status::{MoveReport, MoveStep, MovesReport};
use zonemesh_store::limits::MAX_CLAIMS_PER_CALL;
use zonemesh_store::{NodeRun, PlayerClaim};

use super::runtime::ClusterRuntime;
use super::store_calls::store_run;
use crate::game::SessionId;
use crate::link::ClientLink;
use crate::persist::lifecycle::ZonePhase;
use crate::zone::{Zone, ZoneMessage};

/// How long the final checkpoint of a zone being handed over may take.
const FINAL_SAVE_WAIT: Duration = Duration::from_secs(5);
/// Longest the handoff task sleeps without looking at its timers.
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// Moves remembered for `zonemesh-ctl moves`, newest kept.
pub const MOVES_REMEMBERED: usize = 256;
/// Claims changed at once while a zone's players are taken over.
const CLAIMS_AT_ONCE: usize = 32;

/// A zone frozen here for a handoff.
struct Frozen {
    zone: Option<Box<Zone>>,
    /// Its encoded state, captured after the final checkpoint.
    image: Option<Arc<Vec<u8>>>,
}

/// A zone built here from a handoff's state, waiting for the store.
struct Restored {
    id: u64,
    /// The epoch the source released: the state is current only under a grant of
    /// the next one (see [`ClusterRuntime::handoff_zone_active`]).
    released_epoch: u64,
    zone: Box<Zone>,
    links: Vec<Arc<ClientLink>>,
}

/// A move this node started, for the log and `zonemesh-ctl moves`.
#[derive(Debug, Clone)]
struct MoveRecord {
    id: u64,
    zone: ZoneId,
    to: NodeRef,
    reason: String,
    started: Instant,
    started_wall: std::time::SystemTime,
    frozen: Option<Instant>,
    ended: Option<(Instant, String)>,
    players: usize,
    /// The source's steps so far (see [`MoveStep`]).
    steps: Vec<(&'static str, Instant)>,
}

/// The cores and what the runtime keeps for them.
struct Cores {
    source: SourceHandoffs,
    target: TargetHandoffs,
}

/// A failure to inject into this node's handoffs, for tests of the recovery paths
/// (a knob like the store's `SlowStore`; nothing sets one in production).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffFault {
    /// As a target, drop every `State` (as if this node died, or its link dropped,
    /// after answering `Ready`).
    TargetDropsState,
    /// As a source, never redirect clients once the target activated the zone (as if
    /// this node died right then).
    SourceStallsAfterActivation,
}

/// Live handoffs of one node, both ways.
pub struct Handoffs {
    cores: Mutex<Option<Cores>>,
    frozen: Mutex<HashMap<u64, Frozen>>,
    restored: Mutex<HashMap<ZoneId, Restored>>,
    /// Zones being activated here again after a handoff that did not move them.
    reactivating: Mutex<HashMap<ZoneId, u64>>,
    moves: Mutex<VecDeque<MoveRecord>>,
    wake: Arc<Notify>,
    epoch: Instant,
    fault: Mutex<Option<HandoffFault>>,
    /// Set when the node starts to stop: no handoff starts here, either way.
    closing: std::sync::atomic::AtomicBool,
}

impl Default for Handoffs {
    fn default() -> Self {
        Self {
            cores: Mutex::new(None),
            frozen: Mutex::default(),
            restored: Mutex::default(),
            reactivating: Mutex::default(),
            moves: Mutex::default(),
            wake: Arc::new(Notify::new()),
            epoch: Instant::now(),
            fault: Mutex::new(None),
            closing: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl std::fmt::Debug for Handoffs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoffs").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a move was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    /// The node is not (yet) in a cluster.
    #[error("this node is not in a cluster yet")]
    NotClustered,
    /// The zone is not active here.
    #[error("zone {0} is not active on this node")]
    NotHere(u32),
    /// The target is not a live member.
    #[error("node {0} is not a live member of the cluster")]
    UnknownNode(String),
    /// The cores refused.
    #[error("cannot start the move: {0:?}")]
    Refused(StartError),
    /// The node is stopping.
    #[error("this node is stopping")]
    Stopping,
}

impl Handoffs {
    fn now(&self) -> Millis {
        millis_since(self.epoch)
    }

    fn with_cores<R>(&self, f: impl FnOnce(&mut Cores) -> R) -> Option<R> {
        lock(&self.cores).as_mut().map(f)
    }

    fn record(&self, rec: MoveRecord) {
        let mut moves = lock(&self.moves);
        if moves.len() >= MOVES_REMEMBERED {
            moves.pop_front();
        }
        moves.push_back(rec);
    }

    fn update_move(&self, id: u64, f: impl FnOnce(&mut MoveRecord)) {
        if let Some(rec) = lock(&self.moves).iter_mut().rev().find(|m| m.id == id) {
            f(rec);
        }
    }

    /// Notes that move `id` got through `step` now, the first time only (a resent
    /// `State` is answered with `Activated` again).
    fn step(&self, id: u64, step: &'static str) {
        self.update_move(id, |m| {
            if !m.steps.iter().any(|(s, _)| *s == step) {
                m.steps.push((step, Instant::now()));
            }
        });
    }

    /// Moves in progress and recent ones, newest first.
    pub fn report(&self) -> MovesReport {
        let now = Instant::now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let moves = lock(&self.moves)
            .iter()
            .rev()
            .map(|m| MoveReport {
                id: m.id,
                zone: m.zone.0,
                to: m.to.to_string(),
                reason: m.reason.clone(),
                players: m.players as u64,
                age_ms: ms(now.duration_since(m.started)),
                in_progress: m.ended.is_none(),
                outcome: m.ended.as_ref().map(|(_, o)| o.clone()),
                pause_ms: match (m.frozen, &m.ended) {
                    (Some(f), Some((end, _))) => Some(ms(end.duration_since(f))),
                    _ => None,
                },
                took_ms: m
                    .ended
                    .as_ref()
                    .map(|(end, _)| ms(end.duration_since(m.started))),
                started_unix_us: m
                    .started_wall
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, us),
                steps: m
                    .steps
                    .iter()
                    .map(|(step, at)| MoveStep {
                        step: (*step).to_owned(),
                        at_us: us(at.duration_since(m.started)),
                    })
                    .collect(),
            })
            .collect();
        MovesReport { moves }
    }
}

impl ClusterRuntime {
    /// Sets up the handoff cores for this node run and starts the task that drives
    /// their timers (called once the cluster is attached).
    pub(super) fn start_handoffs(&self, me: NodeRef) {
        let first_id = rand::random::<u64>() >> 1;
        *lock(&self.handoffs().cores) = Some(Cores {
            source: SourceHandoffs::new(me, first_id),
            target: TargetHandoffs::new(me),
        });
        if let Some(handle) = self.tokio() {
            handle.spawn(run_timers(self.weak()));
        }
    }

    /// Starts moving `zone`, active here, to node `to` (a node id as `zonemesh-ctl`
    /// shows it, or a full run); `reason` goes to the log and the moves report.
    pub fn move_zone(&self, zone: ZoneId, to: &str, reason: &str) -> Result<u64, MoveError> {
        let cluster = self.cluster().ok_or(MoveError::NotClustered)?;
        if self.handoffs_closing() {
            return Err(MoveError::Stopping);
        }
        let epoch = cluster
            .active_zones()
            .into_iter()
            .find(|(z, _)| *z == zone)
            .map(|(_, e)| e)
            .ok_or(MoveError::NotHere(zone.0))?;
        let in_memory = self
            .zone_host()
            .is_some_and(|h| h.directory().phase(zone) == Some(ZonePhase::Active { epoch }));
        if !in_memory {
            return Err(MoveError::NotHere(zone.0));
        }
        let target = cluster
            .members()
            .into_iter()
            .map(|m| m.node)
            .find(|n| n.to_string() == to || n.id.to_string() == to)
            .ok_or_else(|| MoveError::UnknownNode(to.to_owned()))?;
        let handoffs = self.handoffs();
        let now = handoffs.now();
        let id = handoffs
            .with_cores(|c| c.source.start(now, zone, epoch, target))
            .ok_or(MoveError::NotClustered)?
            .map_err(MoveError::Refused)?;
        let players = self
            .zone_host()
            .and_then(|h| h.status().into_iter().find(|s| s.zone == zone))
            .map_or(0, |s| s.players);
        tracing::info!(zone = zone.0, %target, id, reason, "moving zone");
        handoffs.record(MoveRecord {
            id,
            zone,
            to: target,
            reason: reason.to_owned(),
            started: Instant::now(),
            started_wall: std::time::SystemTime::now(),
            frozen: None,
            ended: None,
            players,
            steps: Vec::new(),
        });
        self.run_handoff_actions();
        Ok(id)
    }

    /// Handoffs of zones away from this node under way.
    /// Whether the node has started to stop (see [`Self::settle_handoffs_for_stop`]).
    fn handoffs_closing(&self) -> bool {
        self.handoffs()
            .closing
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Refuses handoffs from now on, either way, and waits (at most `within`) for
    /// those under way to end. Called before a stopping node stops its zones: a zone
    /// arriving meanwhile is then installed (and saved and released by the stop)
    /// rather than granted to a node whose zones have stopped, where nobody would
    /// run or release it until its lease lapsed.
    pub async fn settle_handoffs_for_stop(&self, within: Duration) {
        self.handoffs()
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
        let until = Instant::now() + within;
        while self.handoffs_either_way() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Handoffs under way here as source or target.
    fn handoffs_either_way(&self) -> usize {
        self.handoffs()
            .with_cores(|c| c.source.in_flight() + c.target.in_flight())
            .unwrap_or(0)
    }

    pub(super) fn handoffs_in_flight(&self) -> usize {
        self.handoffs()
            .with_cores(|c| c.source.in_flight())
            .unwrap_or(0)
    }

    /// Moves in progress and recent ones.
    pub fn moves(&self) -> MovesReport {
        self.handoffs().report()
    }

    /// Injects `fault` into this node's handoffs from now on (`None`: none). For tests
    /// of what happens when a node dies in the middle of a move.
    pub fn inject_handoff_fault(&self, fault: Option<HandoffFault>) {
        *lock(&self.handoffs().fault) = fault;
    }

    fn has_fault(&self, fault: HandoffFault) -> bool {
        *lock(&self.handoffs().fault) == Some(fault)
    }

    /// A handoff message from node run `from`.
    pub(super) fn on_handoff(&self, from: NodeRef, msg: HandoffMsg) {
        if matches!(msg, HandoffMsg::State { .. }) && self.has_fault(HandoffFault::TargetDropsState)
        {
            return;
        }
        if let HandoffMsg::Forward { zone, items, .. } = &msg {
            let (zone, items) = (*zone, items.clone());
            self.take_forwarded(zone, items);
            return;
        }
        let handoffs = self.handoffs();
        let now = handoffs.now();
        let host = self.zone_host();
        let stopping = self.cluster().is_none() || self.handoffs_closing();
        // A message goes to the one core that takes it: a `State` may be megabytes.
        let for_source = matches!(
            msg,
            HandoffMsg::Ready { .. } | HandoffMsg::Refused { .. } | HandoffMsg::Activated { .. }
        );
        if let HandoffMsg::Activated { id, .. } = &msg {
            handoffs.step(*id, "activated");
        }
        handoffs.with_cores(|c| {
            if for_source {
                c.source.handle_message(now, msg);
                return;
            }
            c.target.handle_message(now, msg, |zone| {
                let Some(host) = &host else {
                    return Err(RefuseReason::Stopping);
                };
                if stopping {
                    return Err(RefuseReason::Stopping);
                }
                match host.directory().phase(zone) {
                    Some(ZonePhase::Inactive) => Ok(()),
                    Some(_) => Err(RefuseReason::AlreadyHolds),
                    None => Err(RefuseReason::Full),
                }
            });
        });
        let _ = from;
        self.run_handoff_actions();
    }

    /// Carries out every action the cores want now, and lets the timer task look at
    /// the deadlines again.
    pub(super) fn run_handoff_actions(&self) {
        self.drain_handoff_actions();
        self.handoffs().wake.notify_one();
    }

    /// Carries out every action the cores want now.
    fn drain_handoff_actions(&self) {
        loop {
            let Some((source, target)) = self
                .handoffs()
                .with_cores(|c| (c.source.poll_action(), c.target.poll_action()))
            else {
                return;
            };
            if source.is_none() && target.is_none() {
                return;
            }
            if let Some(action) = source {
                self.source_action(action);
            }
            if let Some(action) = target {
                self.target_action(action);
            }
        }
    }

    fn send_handoff(&self, msg: &HandoffMsg) {
        if let Some(cluster) = self.cluster() {
            cluster.send_handoff(msg);
        }
    }

    fn source_action(&self, action: SourceAction) {
        match action {
            SourceAction::Send(msg) => self.send_handoff(&msg),
            SourceAction::Freeze { id, zone } => self.freeze(id, zone),
            SourceAction::CheckpointAndRelease { id, zone, epoch } => {
                self.spawn_handoff(move |this| async move {
                    this.checkpoint_and_release(id, zone, epoch).await;
                });
            }
            SourceAction::Unfreeze { id, zone } => self.unfreeze(id, zone),
            SourceAction::ShipState {
                id,
                zone,
                epoch,
                tick,
                to,
            } => self.ship_state(id, zone, epoch, tick, to),
            SourceAction::Reactivate { id, zone } => {
                self.spawn_handoff(move |this| async move { this.reactivate(id, zone).await });
            }
            SourceAction::RedirectClients { id, zone, to, .. } => {
                if self.has_fault(HandoffFault::SourceStallsAfterActivation) {
                    tracing::warn!(
                        id,
                        zone = zone.0,
                        "fault injected: not redirecting the clients"
                    );
                    return;
                }
                self.redirect_clients(id, zone, to);
            }
            SourceAction::Finished { id, zone, outcome } => self.finished(id, zone, outcome),
            SourceAction::LateActivated { id, zone, epoch } => {
                tracing::warn!(
                    id,
                    zone = zone.0,
                    epoch,
                    "the target activated the zone after this node asked to take it back; the store decided between them"
                );
            }
        }
    }

    fn target_action(&self, action: TargetAction) {
        match action {
            TargetAction::Send(msg) => self.send_handoff(&msg),
            TargetAction::Prewarm { id, zone } => {
                // The node link to the source is up (its message came over it), and
                // a zone's world is built from the game's plugins when its state
                // comes: there is nothing to read ahead.
                tracing::debug!(id, zone = zone.0, "preparing to take a zone over");
            }
            TargetAction::Restore {
                id,
                from,
                zone,
                epoch,
                snapshot,
                ..
            } => {
                self.spawn_handoff(move |this| async move {
                    this.restore(id, from, zone, epoch, snapshot).await;
                });
            }
            // Asked once the restore is built (see `restore`).
            TargetAction::Activate { .. } => {}
            TargetAction::Drop { id, zone } => self.drop_restored(id, zone),
        }
    }

    fn spawn_handoff<F, Fut>(&self, f: F)
    where
        F: FnOnce(Arc<ClusterRuntime>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if let (Some(this), Some(handle)) = (self.this(), self.tokio()) {
            handle.spawn(f(this));
        }
    }

    // ----- source -----

    fn freeze(&self, id: u64, zone: ZoneId) {
        let Some(waiting) = self.zone_host().and_then(|h| h.freeze(zone)) else {
            // Not in memory here (left meanwhile): the core's timer gives up.
            tracing::warn!(id, zone = zone.0, "zone to freeze is not in memory");
            return;
        };
        self.spawn_handoff(move |this| async move {
            let Ok(frozen) = waiting.await else {
                return; // The freeze was given up; the zone carries on.
            };
            this.zone_frozen(id, frozen);
        });
    }

    fn zone_frozen(&self, id: u64, zone: Box<Zone>) {
        let handoffs = self.handoffs();
        let tick = zone.completed_tick();
        let wanted = handoffs
            .with_cores(|c| c.source.awaits_freeze(id))
            .unwrap_or(false);
        if !wanted {
            if let Some(host) = self.zone_host() {
                let epoch = zone.epoch();
                host.resume_frozen(zone, epoch);
            }
            return;
        }
        lock(&handoffs.frozen).insert(
            id,
            Frozen {
                zone: Some(zone),
                image: None,
            },
        );
        handoffs.update_move(id, |m| m.frozen = Some(Instant::now()));
        handoffs.step(id, "frozen");
        handoffs.with_cores(|c| c.source.frozen(id, tick));
        self.run_handoff_actions();
    }

    async fn checkpoint_and_release(self: Arc<Self>, id: u64, zone: ZoneId, epoch: u64) {
        let released = self.save_and_release(id, zone, epoch).await;
        let handoffs = self.handoffs();
        let now = handoffs.now();
        handoffs.with_cores(|c| c.source.released(now, id, released));
        self.run_handoff_actions();
    }

    /// The final checkpoint, the captured state, then the release. False only when
    /// nothing was released (the checkpoint failed: the store still names this run).
    async fn save_and_release(&self, id: u64, zone: ZoneId, epoch: u64) -> bool {
        let (Some(host), Some(cluster)) = (self.zone_host(), self.cluster()) else {
            return false;
        };
        let job = {
            let mut frozen = lock(&self.handoffs().frozen);
            let Some(z) = frozen.get_mut(&id).and_then(|f| f.zone.as_mut()) else {
                return false;
            };
            z.checkpoint_job(true)
        };
        let Some(job) = job else {
            return false;
        };
        let saved = host.writer().submit_and_wait(job);
        match tokio::time::timeout(FINAL_SAVE_WAIT, saved).await {
            Ok(Ok(Ok(()))) => self.handoffs().step(id, "saved"),
            other => {
                tracing::warn!(
                    id,
                    zone = zone.0,
                    ?other,
                    "final checkpoint before a handoff failed; the zone stays here"
                );
                return false;
            }
        }
        if !self.capture_image(id, zone) {
            return false;
        }
        cluster.handoff_started(zone);
        let me = store_run(cluster.me());
        if let Err(e) = self.store().release_zone(zone.0, me, epoch).await {
            // Unknown outcome: counted as released, the store decides what follows.
            tracing::warn!(id, zone = zone.0, "release for a handoff failed: {e}");
        }
        self.handoffs().step(id, "released");
        true
    }

    /// Captures and encodes the frozen zone's state once; false when it is too large
    /// to ship (the zone then stays here).
    fn capture_image(&self, id: u64, zone: ZoneId) -> bool {
        let mut frozen = lock(&self.handoffs().frozen);
        let Some(f) = frozen.get_mut(&id) else {
            return false;
        };
        let Some(z) = f.zone.as_mut() else {
            return false;
        };
        let bytes = z.capture_image().encode();
        if bytes.len() > SNAPSHOT_BYTES_MAX {
            tracing::error!(
                id,
                zone = zone.0,
                bytes = bytes.len(),
                "zone state too large to hand over"
            );
            return false;
        }
        f.image = Some(Arc::new(bytes));
        true
    }

    fn unfreeze(&self, id: u64, zone: ZoneId) {
        let Some(host) = self.zone_host() else {
            return;
        };
        let taken = lock(&self.handoffs().frozen)
            .remove(&id)
            .and_then(|f| f.zone);
        match taken {
            Some(z) => {
                let epoch = z.epoch();
                host.resume_frozen(z, epoch);
            }
            // Not frozen yet: it carries on (or resumes once its worker hands it in).
            None => host.cancel_freeze(zone),
        }
    }

    fn ship_state(&self, id: u64, zone: ZoneId, epoch: u64, tick: u64, to: NodeRef) {
        let image = lock(&self.handoffs().frozen)
            .get(&id)
            .and_then(|f| f.image.clone());
        let Some(image) = image else {
            return;
        };
        self.send_handoff(&HandoffMsg::State {
            id,
            to,
            zone,
            epoch,
            tick,
            snapshot: Snapshot(image.as_ref().clone()),
        });
    }

    fn redirect_clients(&self, id: u64, zone: ZoneId, to: NodeRef) {
        let taken = lock(&self.handoffs().frozen)
            .remove(&id)
            .and_then(|f| f.zone);
        let Some(mut z) = taken else {
            return;
        };
        for link in z.player_links() {
            self.send_client_on(to, zone, &link);
        }
        let items = forwarded_items(z.take_inbox_messages());
        if !items.is_empty() {
            self.send_handoff(&HandoffMsg::Forward {
                id,
                to,
                zone,
                items,
            });
        }
        if let Some(host) = self.zone_host() {
            host.drop_moved(z);
        }
        if let Some(cluster) = self.cluster() {
            cluster.handoff_ended(zone, Some(to));
        }
        self.handoffs().step(id, "redirected");
    }

    async fn reactivate(self: Arc<Self>, id: u64, zone: ZoneId) {
        let handoffs = self.handoffs();
        let (links, to) = {
            let frozen = lock(&handoffs.frozen);
            let links = frozen
                .get(&id)
                .and_then(|f| f.zone.as_ref())
                .map(|z| z.player_links())
                .unwrap_or_default();
            let to = lock(&handoffs.moves)
                .iter()
                .rev()
                .find(|m| m.id == id)
                .map(|m| m.to);
            (links, to)
        };
        // The target may have claimed the players: take them back first.
        let lost = self.claim_players(&links, to).await;
        for link in lost {
            link.kick(ErrorCode::Replaced, "the player connected elsewhere");
            link.close();
        }
        lock(&handoffs.reactivating).insert(zone, id);
        let started = self.cluster().is_some_and(|c| c.activate_handed_over(zone));
        if !started {
            self.reactivation_refused(zone);
        }
    }

    fn finished(&self, id: u64, zone: ZoneId, outcome: HandoffOutcome) {
        let text = match outcome {
            HandoffOutcome::Moved { epoch } => format!("moved (epoch {epoch})"),
            HandoffOutcome::Aborted(reason) => format!("not moved: {reason:?}"),
        };
        tracing::info!(id, zone = zone.0, outcome = %text, "zone move ended");
        self.zone_moved(zone);
        self.handoffs()
            .update_move(id, |m| m.ended = Some((Instant::now(), text)));
    }

    /// The store granted `zone` here again after a handoff that did not move it, or
    /// (on the target) for the first time; true if a handoff was waiting for it.
    ///
    /// A state held here (frozen on the source, restored on the target) is current
    /// only under a grant of the released epoch plus one. A later grant means the zone
    /// was held elsewhere in between (the other side's activation went through and
    /// it played on, or the source took the zone back and moved it again): the state
    /// is stale, so it is let go unsaved, its players sent to reconnect, and the
    /// zone loads its saved state like any activation (false is returned for that).
    pub(super) fn handoff_zone_active(&self, zone: ZoneId, epoch: u64) -> bool {
        let handoffs = self.handoffs();
        if let Some(id) = lock(&handoffs.reactivating).remove(&zone) {
            let taken = lock(&handoffs.frozen).remove(&id).and_then(|f| f.zone);
            let (Some(z), Some(host)) = (taken, self.zone_host()) else {
                return true;
            };
            if epoch == z.epoch() + 1 {
                host.resume_frozen(z, epoch);
                return true;
            }
            tracing::warn!(
                zone = zone.0,
                epoch,
                released = z.epoch(),
                "the zone was held elsewhere since it was released here; loading its saved state, not the frozen one"
            );
            for link in z.player_links() {
                link.kick(ErrorCode::ZoneMoved, "the zone was reloaded; connect again");
            }
            host.drop_moved(z);
            return false;
        }
        let Some(restored) = lock(&handoffs.restored).remove(&zone) else {
            return false;
        };
        if epoch != restored.released_epoch + 1 {
            tracing::warn!(
                zone = zone.0,
                epoch,
                released = restored.released_epoch,
                "the zone was held elsewhere since the handoff's release; loading its saved state, not the handed-over one"
            );
            let now = handoffs.now();
            handoffs.with_cores(|c| c.target.activated(now, zone, restored.id, None));
            self.abandon(restored);
            self.run_handoff_actions();
            return false;
        }
        let installed = self
            .zone_host()
            .is_some_and(|host| host.install_restored(restored.zone, epoch));
        let now = handoffs.now();
        let granted = installed.then_some(epoch);
        if installed {
            self.zone_moved(zone);
        }
        handoffs.with_cores(|c| c.target.activated(now, zone, restored.id, granted));
        self.run_handoff_actions();
        true
    }

    /// The store refused a handoff's activation of `zone` here.
    pub(super) fn handoff_activation_refused(&self, zone: ZoneId) {
        let handoffs = self.handoffs();
        if lock(&handoffs.reactivating).contains_key(&zone) {
            self.reactivation_refused(zone);
            return;
        }
        let Some(restored) = lock(&handoffs.restored).remove(&zone) else {
            return;
        };
        let now = handoffs.now();
        handoffs.with_cores(|c| c.target.activated(now, zone, restored.id, None));
        self.abandon(restored);
        self.run_handoff_actions();
    }

    /// The zone did not move but another node holds it now: its players reconnect
    /// (and find it there); it leaves memory unsaved.
    fn reactivation_refused(&self, zone: ZoneId) {
        let handoffs = self.handoffs();
        let Some(id) = lock(&handoffs.reactivating).remove(&zone) else {
            return;
        };
        let taken = lock(&handoffs.frozen).remove(&id).and_then(|f| f.zone);
        tracing::warn!(
            zone = zone.0,
            "zone held elsewhere after a handoff; sending its players there"
        );
        if let Some(z) = taken {
            for link in z.player_links() {
                link.kick(
                    ErrorCode::ZoneMoved,
                    "the zone moved to another node; connect again",
                );
            }
            if let Some(host) = self.zone_host() {
                host.drop_moved(z);
            }
        }
        if let Some(cluster) = self.cluster() {
            cluster.handoff_ended(zone, None);
        }
    }

    /// Claims the players of `links` for this node run, taking them over from
    /// `from`; returns the links of players someone else holds now.
    async fn claim_players(
        &self,
        links: &[Arc<ClientLink>],
        from: Option<NodeRef>,
    ) -> Vec<Arc<ClientLink>> {
        let Some(cluster) = self.cluster() else {
            return links.to_vec();
        };
        let me = store_run(cluster.me());
        let takeover = from.map(store_run);
        let left = match takeover {
            Some(from) => self.take_over_at_once(links, me, from).await,
            None => links.to_vec(),
        };
        self.claim_one_by_one(&left, me, takeover).await
    }

    /// Takes the players of `links` over from `from` with one store call per
    /// [`MAX_CLAIMS_PER_CALL`]; returns the links not claimed that way (held by a
    /// third run, or the call failed), for [`Self::claim_one_by_one`].
    async fn take_over_at_once(
        &self,
        links: &[Arc<ClientLink>],
        me: NodeRun,
        from: NodeRun,
    ) -> Vec<Arc<ClientLink>> {
        let mut left = Vec::new();
        for chunk in links.chunks(MAX_CLAIMS_PER_CALL) {
            let players: Vec<(String, u64)> = chunk
                .iter()
                .map(|l| (l.name().to_owned(), l.session().0))
                .collect();
            match self.store().take_over_players(&players, me, from).await {
                Ok(taken) => left.extend(
                    chunk
                        .iter()
                        .zip(taken)
                        .filter(|(_, taken)| !taken)
                        .map(|(link, _)| Arc::clone(link)),
                ),
                Err(e) => {
                    tracing::warn!("cannot take a zone's players over at once: {e}");
                    left.extend(chunk.iter().cloned());
                }
            }
        }
        left
    }

    /// Claims the players of `links` one store call each (at most
    /// [`CLAIMS_AT_ONCE`] in flight); returns the links of players someone else holds.
    async fn claim_one_by_one(
        &self,
        links: &[Arc<ClientLink>],
        me: NodeRun,
        takeover: Option<NodeRun>,
    ) -> Vec<Arc<ClientLink>> {
        let mut lost = Vec::new();
        for chunk in links.chunks(CLAIMS_AT_ONCE) {
            let mut calls = tokio::task::JoinSet::new();
            for link in chunk {
                let (store, link) = (Arc::clone(self.store()), Arc::clone(link));
                calls.spawn(async move {
                    let claim = store
                        .claim_player(link.name(), me, link.session().0, takeover)
                        .await;
                    (link, claim)
                });
            }
            while let Some(done) = calls.join_next().await {
                let Ok((link, claim)) = done else {
                    continue;
                };
                match claim {
                    Ok(PlayerClaim::Claimed { .. }) => {}
                    Ok(PlayerClaim::HeldBy { .. }) => lost.push(link),
                    Err(e) => {
                        tracing::warn!(
                            player = link.name(),
                            "cannot claim a handed-over player: {e}"
                        );
                        lost.push(link);
                    }
                }
            }
        }
        lost
    }

    // ----- target -----

    async fn restore(
        self: Arc<Self>,
        id: u64,
        from: NodeRef,
        zone: ZoneId,
        released_epoch: u64,
        snapshot: Snapshot,
    ) {
        if !self
            .build_restored(id, from, zone, released_epoch, snapshot)
            .await
        {
            let handoffs = self.handoffs();
            let now = handoffs.now();
            handoffs.with_cores(|c| c.target.activated(now, zone, id, None));
            self.run_handoff_actions();
            return;
        }
        let started = self.cluster().is_some_and(|c| c.activate_handed_over(zone));
        if !started {
            self.handoff_activation_refused(zone);
        }
    }

    /// Builds the handed-over zone, not ticking yet; false if it cannot be.
    async fn build_restored(
        &self,
        id: u64,
        from: NodeRef,
        zone: ZoneId,
        released_epoch: u64,
        snapshot: Snapshot,
    ) -> bool {
        let (Some(host), Some(sessions)) = (self.zone_host(), self.sessions()) else {
            return false;
        };
        let image = match ZoneImage::decode(&snapshot.0) {
            Ok(image) => image,
            Err(e) => {
                tracing::warn!(id, zone = zone.0, %from, "handed-over zone state unreadable: {e}");
                return false;
            }
        };
        let Some(inbox) = host.begin_restore(zone) else {
            return false;
        };
        let links: Vec<Arc<ClientLink>> = image
            .players
            .iter()
            .map(|p| self.waiting_link(zone, p))
            .collect();
        let lost = self.claim_players(&links, Some(from)).await;
        let mut by_session: HashMap<u64, Arc<ClientLink>> = links
            .iter()
            .map(|l| (l.session().0, Arc::clone(l)))
            .collect();
        let built = Box::new(Zone::from_image(
            zone,
            host.game(),
            Arc::clone(host.context()),
            inbox,
            0,
            image,
            |p| {
                by_session
                    .remove(&p.session)
                    .unwrap_or_else(|| self.waiting_link(zone, p))
            },
        ));
        for link in &lost {
            // Logged in elsewhere meanwhile: that session is the player's now.
            link.kick(ErrorCode::Replaced, "the player connected elsewhere");
            link.close();
        }
        for link in links.iter().filter(|l| !l.is_closed()) {
            sessions.register_arrival(link);
            self.expect_client(Arc::clone(link));
        }
        lock(&self.handoffs().restored).insert(
            zone,
            Restored {
                id,
                released_epoch,
                zone: built,
                links,
            },
        );
        true
    }

    fn waiting_link(&self, zone: ZoneId, p: &CarriedPlayer) -> Arc<ClientLink> {
        let link = Arc::new(ClientLink::new(
            SessionId(p.session),
            p.name.clone(),
            zone,
            super::crossing::WAITING_DATAGRAM_BYTES,
        ));
        link.wait_for_client();
        link
    }

    fn drop_restored(&self, id: u64, zone: ZoneId) {
        let restored = {
            let mut restored = lock(&self.handoffs().restored);
            match restored.get(&zone) {
                Some(r) if r.id == id => restored.remove(&zone),
                _ => None,
            }
        };
        if let Some(r) = restored {
            self.abandon(r);
        }
    }

    /// Lets go of a restored zone that will not run here: the source keeps its
    /// players (and claims them back), so nothing is saved or released here.
    fn abandon(&self, restored: Restored) {
        for link in &restored.links {
            self.forget_arrival(link);
            link.mark_moved_away();
            link.close();
        }
        if let Some(host) = self.zone_host() {
            host.abandon_restore(restored.zone);
        }
    }

    /// Inputs and game events that waited in a moved zone's inbox on the source, for
    /// the players now here.
    fn take_forwarded(&self, zone: ZoneId, items: Vec<ForwardedItem>) {
        let Some(host) = self.zone_host() else {
            return;
        };
        let router = &host.context().router;
        for item in items {
            let msg = match item {
                ForwardedItem::Input { session, inputs } => ZoneMessage::Input {
                    session: SessionId(session),
                    ack: zonemesh_shared::datagram::Ack::default(),
                    inputs,
                },
                ForwardedItem::Event {
                    session,
                    kind,
                    payload,
                } => ZoneMessage::GameEvent {
                    session: SessionId(session),
                    kind,
                    payload,
                },
            };
            if router.send(zone, msg).is_err() {
                tracing::debug!(
                    zone = zone.0,
                    "forwarded input or event dropped: inbox full"
                );
            }
        }
    }
}

/// What waited in a moved zone's inbox, to forward: each player's inputs newer than
/// what was applied (the newest datagram's, inputs being states) and its game
/// events in order. Joins and transfers cannot be there (the zone was
/// `Deactivating`), and durable actions were held off before the freeze.
fn forwarded_items(messages: Vec<ZoneMessage>) -> Vec<ForwardedItem> {
    let mut newest_inputs: HashMap<u64, Vec<zonemesh_shared::datagram::InputFrame>> =
        HashMap::new();
    let mut items = Vec::new();
    for msg in messages {
        match msg {
            ZoneMessage::Input {
                session, inputs, ..
            } => {
                let entry = newest_inputs.entry(session.0).or_default();
                let newer = inputs.iter().map(|i| i.seq).max() > entry.iter().map(|i| i.seq).max();
                if newer {
                    *entry = inputs;
                }
            }
            ZoneMessage::GameEvent {
                session,
                kind,
                payload,
            } => items.push(ForwardedItem::Event {
                session: session.0,
                kind,
                payload,
            }),
            // Neighbours send ghosts every tick; the zone's new host gets newer ones.
            ZoneMessage::Ghosts { .. } => {}
            other => tracing::warn!(?other, "message left in a moved zone's inbox dropped"),
        }
    }
    let mut inputs: Vec<ForwardedItem> = newest_inputs
        .into_iter()
        .map(|(session, inputs)| ForwardedItem::Input { session, inputs })
        .collect();
    inputs.append(&mut items);
    inputs
}

/// Drives the cores' timers while the runtime lives.
async fn run_timers(runtime: Weak<ClusterRuntime>) {
    loop {
        let Some(this) = runtime.upgrade() else {
            return;
        };
        let handoffs = this.handoffs();
        let now = handoffs.now();
        let next = handoffs
            .with_cores(|c| {
                c.source.handle_timeout(now);
                c.target.handle_timeout(now);
                [c.source.poll_timeout(), c.target.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
            })
            .flatten();
        this.drain_handoff_actions();
        let wait = next.map_or(IDLE_WAKE, |at| {
            Duration::from_millis(at.0.saturating_sub(now.0)).min(IDLE_WAKE)
        });
        let wake = Arc::clone(&handoffs.wake);
        drop(this);
        let _ = tokio::time::timeout(wait.max(Duration::from_millis(1)), wake.notified()).await;
    }
}

/// Milliseconds since `epoch`, as the cores count time.
pub(super) fn millis_since(epoch: Instant) -> Millis {
    Millis(u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
}
