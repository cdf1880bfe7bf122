//! A node: the zones this process hosts, their router and worker pool. Network-free,
//! so benchmarks and tests can drive zones directly.

use crate::game::Game;
use crate::zone::worker::ZonePool;
use crate::zone::{
    WorldLayout, Zone, ZoneConfig, ZoneContext, ZoneRouter, ZoneStatus, ZoneStatusCell,
};
use std::sync::Arc;

/// How a node is laid out and tuned.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The world's grid of zones (this node hosts all of them for now).
    pub layout: WorldLayout,
    /// Zone tunables.
    pub zone: ZoneConfig,
    /// Worker threads; `None` = one per available core.
    pub workers: Option<usize>,
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

/// The zones of this process, ticking.
#[derive(Debug)]
pub struct Node {
    ctx: Arc<ZoneContext>,
    statuses: Vec<Arc<ZoneStatusCell>>,
    pool: ZonePool,
}

impl Node {
    /// Builds every zone from `game` and starts ticking them.
    pub fn start(config: NodeConfig, game: &Game) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let (router, mut inboxes) =
            ZoneRouter::new(config.layout.zones(), config.zone.inbox_capacity);
        let ctx = Arc::new(ZoneContext {
            router: Arc::new(router),
            layout: config.layout,
            config: config.zone.clone(),
            rules: game.rules().clone(),
        });
        let mut zones = Vec::with_capacity(config.layout.n_zones());
        for id in config.layout.zones() {
            let inbox = inboxes
                .remove(&id)
                .ok_or_else(|| anyhow::anyhow!("no inbox for zone {id:?}"))?;
            zones.push(Zone::new(id, game, Arc::clone(&ctx), inbox));
        }
        let statuses = zones.iter().map(Zone::status).collect();
        let workers = config.workers.unwrap_or_else(available_cores);
        let pool = ZonePool::start(zones, workers, config.zone.tick_hz)?;
        tracing::info!(
            zones = config.layout.n_zones(),
            workers = pool.size(),
            tick_hz = config.zone.tick_hz,
            "zones started"
        );
        Ok(Self {
            ctx,
            statuses,
            pool,
        })
    }

    /// Shared zone context: router, layout, rules.
    pub fn context(&self) -> &Arc<ZoneContext> {
        &self.ctx
    }

    /// Every zone's latest status.
    pub fn status(&self) -> Vec<ZoneStatus> {
        self.statuses.iter().map(|s| s.snapshot()).collect()
    }

    /// Stops the workers (after their current tick).
    pub fn stop(self) {
        self.pool.stop();
    }
}

/// Cores available to this process (1 if unknown).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
