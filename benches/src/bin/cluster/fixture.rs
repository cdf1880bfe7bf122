//! What a benchmark run's cluster shares: a temporary directory (configurations, data
//! directories, node logs), the players' certificate and token secret and the cluster
//! secret, a fresh PostgreSQL schema (dropped at the end), and the prebuilt `zonemesh`
//! binary. It writes each node's configuration and starts the nodes.
//!
//! Shared by the `cluster` binary and the `scenarios` binary's cluster-overhead
//! scenario (included there with `#[path]`); what differs between them (the world,
//! pinning, log level) is [`NodeSettings`].

use crate::node::{Node, all_see_each_other, toml_path, wait_until};
use anyhow::{Context, bail};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::runtime::Runtime;

/// Longest wait for nodes to see each other, or PostgreSQL to answer.
pub(crate) const PHASE_LIMIT: Duration = Duration::from_secs(60);
/// How often cluster state is polled while waiting (not while measuring).
const POLL: Duration = Duration::from_millis(50);
/// Longest wait to connect to PostgreSQL or drop the schema.
const STORE_LIMIT: Duration = Duration::from_secs(30);

/// What every node of a run is configured with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeSettings {
    /// Zones along each side of the world.
    pub(crate) zones: u16,
    /// A zone's side, world units.
    pub(crate) zone_size: f32,
    pub(crate) tick_hz: u16,
    /// NPCs in the whole world.
    pub(crate) npcs: u64,
    /// Area-of-interest radius, world units.
    pub(crate) aoi_radius: f32,
    /// How often zones are checkpointed to PostgreSQL, seconds.
    pub(crate) checkpoint_secs: f64,
    /// Zone worker threads per node.
    pub(crate) workers: u32,
    /// The core every node is pinned to, or `None`.
    pub(crate) pin: Option<usize>,
    /// `RUST_LOG` of the nodes.
    pub(crate) log_level: &'static str,
    /// Whether the nodes' rebalancers move zones by themselves (off unless a
    /// benchmark measures them: a move would disturb the other figures).
    pub(crate) rebalance: bool,
    /// `cluster.rebalancer.floor_ms_per_s` when `rebalance` (a node ticking less is
    /// never hot).
    pub(crate) rebalance_floor_ms: u64,
    /// `cluster.placement` and `cluster.placement_block`.
    pub(crate) placement: (&'static str, u16),
}

impl NodeSettings {
    /// The small world of the `cluster` benchmarks: `zones` × `zones` zones of 32
    /// units (a walker crosses one in 4 s), 8 NPCs, everything in view, checkpoints
    /// every second, one worker, not pinned, logs at `info` (kept with `--keep-dir`
    /// to tell what a node did).
    pub(crate) fn small(zones: u16) -> Self {
        Self {
            zones,
            zone_size: 32.0,
            tick_hz: 20,
            npcs: 8,
            aoi_radius: 200.0,
            checkpoint_secs: 1.0,
            workers: 1,
            pin: None,
            log_level: "info",
            rebalance: false,
            rebalance_floor_ms: 50,
            placement: ("prefer-requester", 4),
        }
    }
}

/// A benchmark run's shared files, schema and binary.
#[derive(Debug)]
pub(crate) struct Fixture {
    dir: tempfile::TempDir,
    /// The players' certificate and token secret, and the cluster secret.
    pub(crate) shared: PathBuf,
    zonemesh: PathBuf,
    url: String,
    schema: String,
    settings: NodeSettings,
    keep_dir: bool,
}

impl Fixture {
    /// Finds the binary in `bin_dir`, checks that PostgreSQL at `url` answers, and
    /// creates the shared identity files in a new temporary directory (left in place
    /// when `keep_dir`, for reading the node logs).
    pub(crate) fn new(
        bin_dir: &Path,
        url: &str,
        settings: NodeSettings,
        keep_dir: bool,
        runtime: &Runtime,
    ) -> anyhow::Result<Self> {
        let zonemesh = bin_dir.join("zonemesh");
        if !zonemesh.is_file() {
            bail!(
                "{} is missing: this benchmark builds nothing itself; run \
                 `cargo build --release --bins` first (or pass --bin-dir)",
                zonemesh.display()
            );
        }
        runtime.block_on(check_store(url))?;
        let dir = tempfile::Builder::new()
            .prefix("zm-cluster-bench-")
            .disable_cleanup(keep_dir)
            .tempdir()
            .context("cannot create a temporary directory")?;
        let shared = dir.path().join("shared");
        zonemesh_server::dev::load_or_create(&shared)?;
        zonemesh_server::dev::ensure_secret(&shared.join("cluster-secret.hex"))?;
        // A random name per run, so runs never see each other's rows.
        let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        let schema = format!("zm_bench_{:08x}", random as u32);
        if keep_dir {
            eprintln!("configurations, data and logs in {}", dir.path().display());
        }
        Ok(Self {
            dir,
            shared,
            zonemesh,
            url: url.to_owned(),
            schema,
            settings,
            keep_dir,
        })
    }

    /// Another run's files and schema for the same binary and PostgreSQL, with other
    /// node settings (a benchmark comparing two configurations in one run). Its
    /// schema is its own to drop.
    pub(crate) fn sibling(
        &self,
        settings: NodeSettings,
        runtime: &Runtime,
    ) -> anyhow::Result<Self> {
        let bin_dir = self
            .zonemesh
            .parent()
            .context("the binary has no directory")?;
        Self::new(bin_dir, &self.url, settings, self.keep_dir, runtime)
    }

    /// The schema this run's nodes use.
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// The run's temporary directory (configurations, data, node logs).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `count` nodes, the first being the others' seed, and waits until every
    /// node sees all of them.
    pub(crate) fn start_cluster(&self, count: usize) -> anyhow::Result<Vec<Node>> {
        let first = self.start_node(0, &[])?;
        let seed = [first.node_addr];
        let mut nodes = vec![first];
        for index in 1..count {
            nodes.push(self.start_node(index, &seed)?);
        }
        wait_until("every node sees every node", PHASE_LIMIT, POLL, || {
            all_see_each_other(&nodes)
        })?;
        Ok(nodes)
    }

    /// Starts node `index` (again, after a kill: same data directory, so a new
    /// incarnation of the same node id), joining through `seeds`.
    pub(crate) fn start_node(&self, index: usize, seeds: &[SocketAddr]) -> anyhow::Result<Node> {
        let config = self.write_config(index, seeds)?;
        let log = self.dir.path().join(format!("node-{index}.log"));
        let s = &self.settings;
        Node::start(&self.zonemesh, s.pin, index, &config, log, s.log_level)
    }

    /// Node `index`'s configuration, as in `server/tests/cluster_processes.rs`:
    /// ephemeral ports everywhere, so a restarted node gets new ones (and `seeds`
    /// must name live nodes). `max_connections` is far above any load here, so that
    /// the limit never shapes a figure.
    fn write_config(&self, index: usize, seeds: &[SocketAddr]) -> anyhow::Result<PathBuf> {
        let shared = toml_path(&self.shared)?;
        let data = toml_path(&self.dir.path().join(format!("node-{index}")))?;
        let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
        let text = format!(
            r#"listen = "127.0.0.1:0"
data = "{data}"
store = "{url}"
store_schema = "{schema}"
token_secret_file = "{shared}/dev-secret.hex"

[tls]
cert = "{shared}/dev-cert.pem"
key = "{shared}/dev-key.pem"

[cluster]
node_listen = "127.0.0.1:0"
secret_file = "{shared}/cluster-secret.hex"
seeds = [{seeds}]
rebalance = {rebalance}
placement = "{placement}"
placement_block = {placement_block}
# A stopped node hands its zones over at once (saved and released): the benchmarks
# that stop nodes measure that, not a drain.
drain_grace_secs = 0

[world]
zones = {zones}
zone_size = {zone_size:?}
tick_hz = {tick_hz}
npcs = {npcs}
aoi_radius = {aoi_radius:?}
checkpoint_secs = {checkpoint_secs:?}
workers = {workers}

[limits]
max_connections = 20000

[admin]
listen = "127.0.0.1:0"
{rebalancer}"#,
            url = self.url,
            schema = self.schema,
            seeds = seeds.join(", "),
            zones = self.settings.zones,
            zone_size = self.settings.zone_size,
            tick_hz = self.settings.tick_hz,
            npcs = self.settings.npcs,
            aoi_radius = self.settings.aoi_radius,
            checkpoint_secs = self.settings.checkpoint_secs,
            workers = self.settings.workers,
            rebalance = self.settings.rebalance,
            placement = self.settings.placement.0,
            placement_block = self.settings.placement.1,
            rebalancer = if self.settings.rebalance {
                format!(
                    "\n[cluster.rebalancer]\nfloor_ms_per_s = {}\n",
                    self.settings.rebalance_floor_ms
                )
            } else {
                String::new()
            },
        );
        let path = self.dir.path().join(format!("node-{index}.toml"));
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// Drops the run's schema (call after every node is gone: a live node would
    /// recreate its tables, or hold locks the drop waits for).
    pub(crate) fn drop_schema(&self, runtime: &Runtime) -> anyhow::Result<()> {
        runtime.block_on(self.cleanup().drop_schema())
    }

    /// What must be undone if the run is interrupted.
    pub(crate) fn cleanup(&self) -> Cleanup {
        Cleanup {
            url: self.url.clone(),
            schema: self.schema.clone(),
            dir: (!self.keep_dir).then(|| self.dir.path().to_owned()),
        }
    }
}

/// The schema and temporary directory of a run, for a signal handler (the process
/// then exits without running destructors).
#[derive(Debug, Clone)]
pub(crate) struct Cleanup {
    url: String,
    schema: String,
    /// The temporary directory, unless it is to be kept.
    dir: Option<PathBuf>,
}

impl Cleanup {
    /// Drops the schema, at most [`STORE_LIMIT`].
    pub(crate) async fn drop_schema(&self) -> anyhow::Result<()> {
        let statement = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        let drop = async {
            let client = connect(&self.url).await?;
            client
                .batch_execute(&statement)
                .await
                .context("cannot drop the schema")
        };
        tokio::time::timeout(STORE_LIMIT, drop)
            .await
            .context("dropping the schema timed out")?
    }

    /// Drops the schema and removes the temporary directory.
    pub(crate) async fn all(&self) -> anyhow::Result<()> {
        if let Some(dir) = &self.dir {
            // Best effort: a leftover temporary directory harms nobody.
            let _ = std::fs::remove_dir_all(dir);
        }
        self.drop_schema().await
    }
}

/// Fails early, with a clear message, when PostgreSQL does not answer.
async fn check_store(url: &str) -> anyhow::Result<()> {
    tokio::time::timeout(STORE_LIMIT, connect(url))
        .await
        .context("PostgreSQL (--url) did not answer in time")??;
    Ok(())
}

/// A PostgreSQL connection whose connection task runs on the runtime.
async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("cannot connect to PostgreSQL (--url)")?;
    tokio::spawn(connection);
    Ok(client)
}
