//! A node: the zones this process hosts, their router, worker pool and persistence.
//! Network-free.

use crate::game::Game;
use crate::persist::host::directory_for;
use crate::persist::{CheckpointWriter, KeepWarm, ZoneHost, ZoneOwnership};
use crate::zone::worker::ZonePool;
use crate::zone::{WorldLayout, ZoneConfig, ZoneContext, ZonePersistence, ZoneRouter, ZoneStatus};
use std::sync::Arc;
use zonemesh_store::Store;

/// How a node is laid out and tuned.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The world's grid of zones (this node hosts all of them for now).
    pub layout: WorldLayout,
    /// Zone tunables.
    pub zone: ZoneConfig,
    /// Worker threads; `None` = one per available core.
    pub workers: Option<usize>,
    /// How long a zone that is not kept warm stays in memory without players.
    pub idle_deactivate_after: std::time::Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            layout: WorldLayout {
                zones_x: 4,
                zones_y: 4,
                zone_size: 256.0,
            },
            zone: ZoneConfig::default(),
            workers: None,
            idle_deactivate_after: std::time::Duration::from_secs(60),
        }
    }
}

impl NodeConfig {
    /// Checks the values a user can set.
    pub fn validate(&self) -> Result<(), String> {
        self.layout.validate()?;
        let z = &self.zone;
        if !(1..=240).contains(&z.tick_hz) {
            return Err(format!("tick rate must be 1..=240 Hz, got {}", z.tick_hz));
        }
        if !(z.view.aoi_radius.is_finite() && z.view.aoi_radius > 0.0) {
            return Err("area-of-interest radius must be a positive number".into());
        }
        if z.view.datagram_max_bytes < 200 || z.view.budget_bytes_per_tick < 200 {
            return Err("datagram size and byte budget must each be at least 200 bytes".into());
        }
        if z.inbox_capacity == 0 {
            return Err("zone inbox capacity must be at least 1".into());
        }
        if self.workers == Some(0) {
            return Err("worker count must be at least 1".into());
        }
        Ok(())
    }
}

/// The zones of this process: their lifecycle host (loading, saving) and pool.
#[derive(Debug)]
pub struct Node {
    ctx: Arc<ZoneContext>,
    host: Arc<ZoneHost>,
}

impl Node {
    /// Starts the worker pool and the persistence tasks, and requests the zones to
    /// keep warm (they load in the background; the rest load on first use). Zones are
    /// granted by `ownership` (the store alone for a single node, see
    /// [`StoreOwnership`](crate::persist::StoreOwnership)). Must run inside a tokio
    /// runtime.
    pub fn start(
        config: NodeConfig,
        game: &Game,
        store: Arc<dyn Store>,
        keep_warm: &KeepWarm,
        ownership: Arc<dyn ZoneOwnership>,
        other_nodes: Option<Arc<dyn crate::zone::elsewhere::OtherNodes>>,
    ) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let (router, inboxes) = ZoneRouter::new(config.layout.zones(), config.zone.inbox_capacity);
        let (directory, loads) =
            directory_for(config.layout.zones().collect(), LOADING_RETRY_AFTER);
        let writer = Arc::new(CheckpointWriter::new(Arc::clone(&store)));
        let ctx = Arc::new(ZoneContext {
            router: Arc::new(router),
            layout: config.layout,
            config: config.zone.clone(),
            rules: game.rules().clone(),
            persistence: Some(ZonePersistence {
                writer: Arc::clone(&writer),
                directory: Arc::clone(&directory),
                keep_warm: keep_warm.clone(),
                idle_after: config.idle_deactivate_after,
            }),
            other_nodes,
        });
        let workers = config.workers.unwrap_or_else(available_cores);
        let (retire_tx, retired) = tokio::sync::mpsc::channel(config.layout.n_zones().max(1));
        let pool = ZonePool::start(workers, config.zone.tick_hz, retire_tx)?;
        tracing::info!(
            zones = config.layout.n_zones(),
            workers = pool.size(),
            tick_hz = config.zone.tick_hz,
            store = store.backend(),
            "node started"
        );
        let host = ZoneHost::start(
            Arc::clone(&ctx),
            directory,
            loads,
            retired,
            store,
            writer,
            game.clone(),
            inboxes,
            pool,
            ownership,
        );
        host.preload(keep_warm);
        Ok(Self { ctx, host })
    }

    /// Shared zone context: router, layout, rules.
    pub fn context(&self) -> &Arc<ZoneContext> {
        &self.ctx
    }

    /// The lifecycle host: directory, player loads, writer, store.
    pub fn host(&self) -> &Arc<ZoneHost> {
        &self.host
    }

    /// Every active zone's latest status.
    pub fn status(&self) -> Vec<ZoneStatus> {
        self.host.status()
    }

    /// Stops the zones (after their current tick) and saves their final state.
    pub async fn stop(self) {
        self.host.stop().await;
    }
}

/// What a client asking for a zone that is still loading is told to wait.
pub const LOADING_RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// Cores available to this process (1 if unknown).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
