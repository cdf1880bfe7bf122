//! The async driver of zone lifecycles: loads zones from the store when the directory
//! asks (bounded concurrency), builds them and hands them to the worker pool; preloads
//! the zones to keep warm; and on shutdown saves every zone before it goes.

use super::directory::ZoneDirectory;
use super::lifecycle::Lifecycle;
use super::ownership::{AcquireError, ZoneOwnership};
use super::players::PlayerLoader;
use super::state::{self, ZoneState};
use super::writer::CheckpointWriter;
use crate::game::Game;
use crate::zone::worker::ZonePool;
use crate::zone::{Zone, ZoneContext, ZoneMessage, ZoneStatus, ZoneStatusCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use zonemesh_shared::ids::ZoneId;
use zonemesh_store::Store;

/// Zones loaded at the same time, at most (start-up preloading included).
pub const LOAD_CONCURRENCY: usize = 8;
/// How long shutdown waits for the final checkpoints.
const FINAL_SAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which zones a node activates at start-up rather than on first use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeepWarm {
    /// Every zone of the world (the default for a single node).
    #[default]
    All,
    /// None: every zone loads on first use.
    None,
    /// These zones.
    Zones(Vec<ZoneId>),
}

impl KeepWarm {
    /// True if `zone` is kept warm.
    pub fn includes(&self, zone: ZoneId) -> bool {
        match self {
            Self::All => true,
            Self::None => false,
            Self::Zones(list) => list.contains(&zone),
        }
    }
}

/// What a zone starts from.
#[derive(Debug)]
pub struct ZoneActivation {
    /// The epoch this activation holds.
    pub epoch: u64,
    /// Its saved state; `None` for a zone that was never saved.
    pub saved: Option<ZoneState>,
}

/// Zone lifecycles of one node.
#[derive(Debug)]
pub struct ZoneHost {
    directory: Arc<ZoneDirectory>,
    store: Arc<dyn Store>,
    writer: Arc<CheckpointWriter>,
    players: Arc<PlayerLoader>,
    game: Game,
    ctx: Arc<ZoneContext>,
    ownership: Arc<dyn ZoneOwnership>,
    inboxes: Mutex<HashMap<ZoneId, Receiver<ZoneMessage>>>,
    statuses: Mutex<BTreeMap<ZoneId, Arc<ZoneStatusCell>>>,
    pool: ZonePool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Live handoffs waiting for their zones to freeze.
    freezing: Mutex<HashMap<ZoneId, oneshot::Sender<Box<Zone>>>>,
}

impl ZoneHost {
    /// Starts the loader and writer tasks (inside a tokio runtime).
    #[allow(clippy::too_many_arguments)] // One constructor wiring the node's parts.
    pub fn start(
        ctx: Arc<ZoneContext>,
        directory: Arc<ZoneDirectory>,
        loads: mpsc::Receiver<ZoneId>,
        retired: mpsc::Receiver<Box<Zone>>,
        store: Arc<dyn Store>,
        writer: Arc<CheckpointWriter>,
        game: Game,
        inboxes: HashMap<ZoneId, Receiver<ZoneMessage>>,
        pool: ZonePool,
        ownership: Arc<dyn ZoneOwnership>,
    ) -> Arc<Self> {
        let host = Arc::new(Self {
            players: Arc::new(PlayerLoader::new(Arc::clone(&store), Arc::clone(&writer))),
            directory,
            store,
            writer: Arc::clone(&writer),
            game,
            ctx,
            ownership,
            inboxes: Mutex::new(inboxes),
            statuses: Mutex::default(),
            pool,
            tasks: Mutex::default(),
            freezing: Mutex::default(),
        });
        let loader = tokio::spawn(Arc::clone(&host).run_loads(loads));
        let retiring = tokio::spawn(Arc::clone(&host).run_retirements(retired));
        let writing = tokio::spawn(writer.run());
        crate::link::lock(&host.tasks).extend([loader, retiring, writing]);
        host
    }

    /// What the node's zones share (router, layout, tunables).
    pub fn context(&self) -> &Arc<ZoneContext> {
        &self.ctx
    }

    /// The zone directory.
    pub fn directory(&self) -> &Arc<ZoneDirectory> {
        &self.directory
    }

    /// Player record loads.
    pub fn players(&self) -> &Arc<PlayerLoader> {
        &self.players
    }

    /// The checkpoint writer.
    pub fn writer(&self) -> &Arc<CheckpointWriter> {
        &self.writer
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Requests the zones to keep warm; they load in the background.
    pub fn preload(&self, keep: &KeepWarm) {
        let zones: Vec<ZoneId> = match keep {
            KeepWarm::All => self.ctx.layout.zones().collect(),
            KeepWarm::None => Vec::new(),
            KeepWarm::Zones(list) => list.clone(),
        };
        for zone in zones {
            if self.directory.request(zone).is_none() {
                tracing::warn!(?zone, "zone to keep warm is not in this world");
            }
        }
    }

    /// Tick figures of the node's workers since start.
    pub fn tick_totals(&self) -> zonemesh_shared::status::TickTotals {
        self.pool.tick_totals()
    }

    /// Worker threads ticking zones.
    pub fn workers(&self) -> usize {
        self.pool.size()
    }

    /// Status of every active zone.
    pub fn status(&self) -> Vec<ZoneStatus> {
        crate::link::lock(&self.statuses)
            .values()
            .map(|s| s.snapshot())
            .collect()
    }

    async fn run_loads(self: Arc<Self>, mut loads: mpsc::Receiver<ZoneId>) {
        let permits = Arc::new(Semaphore::new(LOAD_CONCURRENCY));
        while let Some(zone) = loads.recv().await {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return;
            };
            let host = Arc::clone(&self);
            tokio::spawn(async move {
                host.load(zone).await;
                drop(permit);
            });
        }
    }

    async fn run_retirements(self: Arc<Self>, mut retired: mpsc::Receiver<Box<Zone>>) {
        while let Some(zone) = retired.recv().await {
            if zone.is_frozen() {
                self.hand_frozen(zone);
                continue;
            }
            let host = Arc::clone(&self);
            tokio::spawn(async move { host.retire(zone).await });
        }
    }

    /// Tells the zone in memory that this node no longer holds it (the cluster gave
    /// it to another node): it sends its players away and leaves memory unsaved.
    pub fn revoke(&self, zone: ZoneId) {
        if let Some(status) = crate::link::lock(&self.statuses).get(&zone) {
            status.revoke();
        }
    }

    /// Asks `zone` to freeze at its next tick boundary for a live handoff (see
    /// `zone/image.rs`); the receiver gets the frozen zone, out of its worker. `None`
    /// if the zone is not in memory here or a freeze of it is pending already.
    pub fn freeze(&self, zone: ZoneId) -> Option<oneshot::Receiver<Box<Zone>>> {
        let statuses = crate::link::lock(&self.statuses);
        let status = statuses.get(&zone)?;
        let mut freezing = crate::link::lock(&self.freezing);
        if freezing.contains_key(&zone) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        freezing.insert(zone, tx);
        status.request_freeze(true);
        // Its links are held at once, so no durable action starts before the freeze.
        self.ctx.router.wake(zone);
        Some(rx)
    }

    /// Gives up a freeze asked for: a zone that has not frozen yet carries on; one
    /// that froze meanwhile is resumed when its worker hands it over.
    pub fn cancel_freeze(&self, zone: ZoneId) {
        crate::link::lock(&self.freezing).remove(&zone);
        if let Some(status) = crate::link::lock(&self.statuses).get(&zone) {
            status.request_freeze(false);
        }
    }

    /// A zone its worker handed over frozen: to the handoff waiting for it, or, if
    /// the handoff gave up meanwhile, back to ticking (it was never released).
    fn hand_frozen(&self, zone: Box<Zone>) {
        let waiter = crate::link::lock(&self.freezing).remove(&zone.id());
        let unclaimed = match waiter {
            Some(waiter) => waiter.send(zone).err(),
            None => Some(zone),
        };
        if let Some(zone) = unclaimed {
            let epoch = zone.epoch();
            self.resume_frozen(zone, epoch);
        }
    }

    /// Lets a frozen zone tick again here at `epoch` (its handoff did not move it).
    pub fn resume_frozen(&self, mut zone: Box<Zone>, epoch: u64) {
        let id = zone.id();
        zone.unfreeze(epoch);
        let status = zone.status();
        match self.pool.add(zone) {
            Ok(()) => {
                crate::link::lock(&self.statuses).insert(id, status);
                self.directory.update(|l| l.resumed(id, epoch));
                tracing::info!(
                    zone = id.0,
                    epoch,
                    "zone active again: a handoff did not move it"
                );
            }
            Err(zone) => {
                tracing::warn!(zone = id.0, "zone not resumed: the node is stopping");
                self.drop_moved(zone);
            }
        }
    }

    /// Lets go of a frozen zone without saving it: it moved to another node, or the
    /// store gave it to another node while it was frozen. Its players must have been
    /// sent away already; its inbox is kept for a later activation here.
    pub fn drop_moved(&self, zone: Box<Zone>) {
        let id = zone.id();
        crate::link::lock(&self.statuses).remove(&id);
        crate::link::lock(&self.inboxes).insert(id, (*zone).into_inbox());
        self.directory.update(|l| l.deactivated(id));
    }

    /// The inbox of `zone`, for building it here from a handoff's state: the zone
    /// turns `Loading` (no load from the store starts). `None` if the zone is not
    /// inactive here. Give it back with [`Self::install_restored`] or
    /// [`Self::abandon_restore`].
    pub fn begin_restore(&self, zone: ZoneId) -> Option<Receiver<ZoneMessage>> {
        let mut started = false;
        self.directory.update(|l| started = l.begin_restore(zone));
        if !started {
            return None;
        }
        let inbox = crate::link::lock(&self.inboxes).remove(&zone);
        if inbox.is_none() {
            self.directory.update(|l| l.load_failed(zone));
        }
        inbox
    }

    /// Starts a zone built from a handoff's state, held here at `epoch`.
    pub fn install_restored(&self, mut zone: Box<Zone>, epoch: u64) -> bool {
        let id = zone.id();
        zone.set_epoch(epoch);
        let status = zone.status();
        if let Err(rejected) = self.pool.add(zone) {
            self.abandon_restore(rejected);
            return false;
        }
        crate::link::lock(&self.statuses).insert(id, status);
        self.directory.update(|l| l.loaded(id, epoch));
        tracing::info!(
            zone = id.0,
            epoch,
            "zone active, handed over from another node"
        );
        true
    }

    /// Drops a zone built from a handoff's state that will not run here.
    pub fn abandon_restore(&self, zone: Box<Zone>) {
        let id = zone.id();
        crate::link::lock(&self.inboxes).insert(id, (*zone).into_inbox());
        self.directory.update(|l| l.load_failed(id));
    }

    /// Gives back an inbox taken with [`Self::begin_restore`] whose zone was never
    /// built.
    pub fn return_inbox(&self, zone: ZoneId, inbox: Receiver<ZoneMessage>) {
        crate::link::lock(&self.inboxes).insert(zone, inbox);
        self.directory.update(|l| l.load_failed(zone));
    }

    /// The game this node hosts.
    pub fn game(&self) -> &Game {
        &self.game
    }

    /// Saves an idle zone's final checkpoint (unless it was lost to another node),
    /// then lets it go (its inbox is kept for the next activation, which reads what
    /// was just saved).
    async fn retire(&self, mut zone: Box<Zone>) {
        let id = zone.id();
        if zone.is_lost() {
            tracing::debug!(zone = ?id, "lost zone left memory unsaved");
        } else if let Some(job) = zone.checkpoint_job(true) {
            let wait = self.writer.submit_and_wait(job);
            match tokio::time::timeout(FINAL_SAVE_TIMEOUT, wait).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::error!(zone = ?id, error = %e, "final save failed"),
                Ok(Err(_)) | Err(_) => tracing::error!(zone = ?id, "final save not confirmed"),
            }
        }
        crate::link::lock(&self.statuses).remove(&id);
        crate::link::lock(&self.inboxes).insert(id, (*zone).into_inbox());
        // Released while still `Deactivating`, so no request can load it again before
        // the grant is given back.
        self.ownership.released(id);
        self.directory.update(|l| l.deactivated(id));
        tracing::debug!(zone = ?id, "idle zone left memory");
    }

    /// Activates `zone` in the store (taking the next epoch), builds it and starts it.
    async fn load(&self, zone: ZoneId) {
        let Some(inbox) = crate::link::lock(&self.inboxes).remove(&zone) else {
            tracing::error!(?zone, "no inbox for a zone being loaded");
            self.directory.update(|l| l.load_failed(zone));
            return;
        };
        let activation = match self.activate(zone).await {
            Ok(a) => a,
            Err(AcquireError::NotGranted(why)) => {
                tracing::debug!(?zone, %why, "zone not loaded here");
                crate::link::lock(&self.inboxes).insert(zone, inbox);
                self.directory.update(|l| l.load_failed(zone));
                return;
            }
            Err(e) => {
                tracing::error!(?zone, error = %e, "zone load failed; the next request retries");
                crate::link::lock(&self.inboxes).insert(zone, inbox);
                self.directory.update(|l| l.load_failed(zone));
                return;
            }
        };
        let epoch = activation.epoch;
        let built = Box::new(Zone::new(
            zone,
            &self.game,
            Arc::clone(&self.ctx),
            inbox,
            activation,
        ));
        let status = built.status();
        if let Err(rejected) = self.pool.add(built) {
            tracing::warn!(?zone, "zone loaded while the node stops; not started");
            crate::link::lock(&self.inboxes).insert(zone, (*rejected).into_inbox());
            self.directory.update(|l| l.load_failed(zone));
            return;
        }
        if !self.ownership.holds(zone, epoch) {
            // Lost while it was being built; the zone sees it at its first tick.
            status.revoke();
        }
        crate::link::lock(&self.statuses).insert(zone, status);
        self.directory.update(|l| l.loaded(zone, epoch));
        tracing::info!(zone = zone.0, epoch, "zone active");
    }

    async fn activate(&self, zone: ZoneId) -> Result<ZoneActivation, AcquireError> {
        let a = self.ownership.acquire(zone).await?;
        let saved = match a.record {
            Some(record) => {
                Some(state::decode::<ZoneState>(&record.state).map_err(anyhow::Error::from)?)
            }
            None => None,
        };
        Ok(ZoneActivation {
            epoch: a.epoch,
            saved,
        })
    }

    /// Stops the zones and saves each one's final checkpoint (waiting for the store).
    pub async fn stop(&self) {
        let zones = self.pool.stop();
        let mut waits = Vec::with_capacity(zones.len());
        for mut zone in zones {
            if zone.is_lost() {
                continue;
            }
            // Players in flight between zones are in an inbox, not a world: take them
            // in (or save them, if their session ended) so the final save has them.
            zone.handle_pending_messages();
            if let Some(job) = zone.checkpoint_job(true) {
                waits.push((zone.id(), self.writer.submit_and_wait(job)));
            }
        }
        self.writer.flush().await;
        for (zone, wait) in waits {
            match tokio::time::timeout(FINAL_SAVE_TIMEOUT, wait).await {
                Ok(Ok(Ok(()))) => self.ownership.released(zone),
                Ok(Ok(Err(e))) => tracing::error!(?zone, error = %e, "final checkpoint failed"),
                Ok(Err(_)) | Err(_) => tracing::error!(?zone, "final checkpoint not confirmed"),
            }
        }
        // Wait for the aborted tasks to be gone: they hold the store, which must be
        // closed (its file released) when the node has stopped.
        let tasks: Vec<_> = crate::link::lock(&self.tasks).drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Builds the lifecycle of every zone of `ctx`'s world and the load queue.
pub fn directory_for(
    zones: Vec<ZoneId>,
    retry_after: Duration,
) -> (Arc<ZoneDirectory>, mpsc::Receiver<ZoneId>) {
    // Every zone may be queued for loading at once, never more (see `ZoneDirectory`).
    let (tx, rx) = mpsc::channel(zones.len().max(1));
    let lifecycle = Lifecycle::new(zones, retry_after);
    (Arc::new(ZoneDirectory::new(lifecycle, tx)), rx)
}
