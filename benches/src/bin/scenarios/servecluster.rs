//! `zonemesh serve` nodes on PostgreSQL for the cluster-overhead scenario, started and
//! laid out with the `cluster` binary's own fixture (`cluster/fixture.rs`,
//! `cluster/node.rs`, `cluster/anchors.rs`, included by this binary with `#[path]`):
//! each node a pinned child process with its own configuration, data directory and
//! admin endpoint (so every node's `/status` can be read, which `zonemesh dev --nodes
//! N` does not offer: its admin endpoint reports node 0 only). The run gets a fresh
//! schema, dropped when the cluster is dropped, after its nodes are killed.
//!
//! Zones are laid out before the load: column `x` of the world on node `x % nodes`.

use crate::anchors::{AbortOnDrop, lay_out};
use crate::child::Placement;
use crate::fixture::{Fixture, NodeSettings};
use crate::node::Node;
use crate::server::ServerSpec;
use anyhow::Context;
use std::path::Path;
use zonemesh_server::zone::WorldLayout;

/// A cluster of `zonemesh serve` nodes with its world laid out. Dropping it ends the
/// anchors, kills the nodes, then drops the schema.
#[derive(Debug)]
pub(crate) struct ServeCluster {
    anchors: Vec<AbortOnDrop<()>>,
    pub(crate) nodes: Vec<Node>,
    fixture: Fixture,
    /// The anchors' sessions and the PostgreSQL connections.
    runtime: tokio::runtime::Runtime,
}

impl ServeCluster {
    /// Starts `count` nodes running `spec`'s world on PostgreSQL at `url`, pinned to
    /// the server core, and lays the zones out. With `keep_dir` the nodes log at
    /// `info` and the run's directory is kept.
    pub(crate) fn start(
        placement: &Placement,
        spec: &ServerSpec,
        url: &str,
        count: usize,
        keep_dir: bool,
    ) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        // Checks that the binary is there, with the runner's message if not.
        placement.binary("zonemesh")?;
        let settings = NodeSettings {
            zones: u16::try_from(spec.zones).context("too many zones")?,
            zone_size: spec.zone_size as f32,
            tick_hz: u16::try_from(spec.tick_hz).context("tick rate")?,
            npcs: spec.npcs,
            aoi_radius: spec.aoi_radius as f32,
            // The server's default: checkpoints cost what they cost in production.
            checkpoint_secs: 5.0,
            workers: spec.workers,
            pin: placement.server_core,
            // Logs at `info` on a loaded core would be load of their own.
            log_level: if keep_dir { "info" } else { "warn" },
            // The overhead measured is the cluster's, not that of zones moving.
            ..NodeSettings::small(0)
        };
        let layout = WorldLayout {
            zones_x: settings.zones,
            zones_y: settings.zones,
            zone_size: settings.zone_size,
        };
        let fixture = Fixture::new(&placement.bin_dir, url, settings, keep_dir, &runtime)?;
        let mut cluster = Self {
            anchors: Vec::new(),
            nodes: Vec::new(),
            fixture,
            runtime,
        };
        cluster.nodes = cluster.fixture.start_cluster(count)?;
        cluster.anchors = lay_out(
            &cluster.runtime,
            &cluster.nodes,
            &cluster.fixture.shared,
            &layout,
            |zone| usize::from(zone.x()) % count,
        )?;
        Ok(cluster)
    }

    /// The players' certificate and token secret (`--dev-data` for the swarm).
    pub(crate) fn shared(&self) -> &Path {
        &self.fixture.shared
    }

    /// The run's directory (configurations, data, node logs).
    pub(crate) fn dir(&self) -> &Path {
        self.fixture.dir()
    }

    /// The first panic each node's log reports (a zone worker that panicked stops
    /// ticking its zones, and every figure after it is void).
    pub(crate) fn panics(&self) -> Vec<String> {
        self.nodes.iter().filter_map(Node::panic_in_log).collect()
    }
}

impl Drop for ServeCluster {
    fn drop(&mut self) {
        self.anchors.clear();
        // Killed and reaped before the schema goes: a live node would hold locks the
        // drop waits for, or recreate its tables.
        self.nodes.clear();
        if let Err(e) = self.fixture.drop_schema(&self.runtime) {
            eprintln!("could not drop schema {}: {e:#}", self.fixture.schema());
        }
    }
}
