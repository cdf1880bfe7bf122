//! The two servers under test, started fresh for every measured point: the stateless
//! baseline ([`super::stateless`]) and the real ZoneMesh dev server
//! ([`zonemesh_server::dev::start_dev_server`], the demo world with its
//! `EVENT_ADD_COIN`), each against the embedded store or PostgreSQL.

use super::stateless::{Backing, StatelessServer};
use anyhow::Context;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use zonemesh_server::dev::{DevServer, DevWorld, start_dev_server};
use zonemesh_server::net::limits::RateLimit;
use zonemesh_server::{NetLimits, ServerStatus};
use zonemesh_store::{PostgresOptions, PostgresStore, Store, StoreStats, open_store};

/// Connections in the stateless server's PostgreSQL pool (the dev server keeps its
/// default of 4 for its background writer).
const STATELESS_PG_POOL: usize = 16;
/// Schema of the stateless server's PostgreSQL tables.
const STATELESS_PG_SCHEMA: &str = "thesis_stateless";

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Load, modify, save, answer, per request.
    Stateless,
    /// ZoneMesh: state in the zone, checkpoints in the background.
    Stateful,
    /// The stateless server answering from its connection task's memory: the
    /// transport's own round trip, the floor under both.
    Floor,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stateless => "stateless",
            Self::Stateful => "stateful",
            Self::Floor => "floor",
        })
    }
}

/// A running server of either kind.
#[derive(Debug)]
pub(crate) enum Subject {
    Stateless(StatelessServer),
    Stateful(DevServer),
}

/// What a server reports when it stops.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SubjectReport {
    /// Store writes (player saves plus checkpoints) during the server's life.
    pub(crate) store_writes: u64,
    /// Connections the server failed or closed abnormally.
    pub(crate) errors: u64,
    /// Stateful: CPU time of one round of ticks, all zones together (sum of the
    /// zones' mean tick times), microseconds; what a request arriving mid-round may
    /// wait for on a busy core.
    pub(crate) tick_round_us: f64,
}

impl Subject {
    /// Starts `mode` on an ephemeral port of 127.0.0.1, its identity (and the redb file)
    /// under `data`, saving to `store` (`embedded` or a postgres URL); the stateful
    /// server ticks at `tick_hz` on `workers` zone workers.
    pub(crate) async fn start(
        mode: Mode,
        store: &str,
        data: &Path,
        tick_hz: u16,
        workers: usize,
    ) -> anyhow::Result<Self> {
        let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        match mode {
            Mode::Stateless => {
                let store = open_stateless_store(store, data).await?;
                Ok(Self::Stateless(
                    StatelessServer::start(listen, data, Backing::Store(store)).await?,
                ))
            }
            Mode::Floor => Ok(Self::Stateless(
                StatelessServer::start(listen, data, Backing::Memory).await?,
            )),
            Mode::Stateful => Ok(Self::Stateful(
                start_dev_server(listen, data, &dev_world(store, tick_hz, workers)).await?,
            )),
        }
    }

    /// The address clients connect to.
    pub(crate) fn addr(&self) -> anyhow::Result<SocketAddr> {
        match self {
            Self::Stateless(s) => s.local_addr(),
            Self::Stateful(d) => d.server.local_addr().context("no local address"),
        }
    }

    /// Stops the server (the dev server writes its final checkpoints first).
    pub(crate) async fn stop(self) -> SubjectReport {
        match self {
            Self::Stateless(s) => {
                let writes = s.player_saves();
                SubjectReport {
                    errors: s.shutdown().await,
                    store_writes: writes,
                    tick_round_us: 0.0,
                }
            }
            Self::Stateful(d) => {
                let status = d.server.status();
                let report = SubjectReport {
                    store_writes: writes(&d.server.store().stats()),
                    errors: abnormal_closes(&status),
                    tick_round_us: status.zones.iter().map(|z| z.tick_time_us.mean()).sum(),
                };
                d.server.shutdown().await;
                report
            }
        }
    }
}

fn writes(stats: &StoreStats) -> u64 {
    stats.n_player_saves + stats.n_checkpoints
}

/// Sessions the server ended for a reason other than the client leaving.
fn abnormal_closes(status: &ServerStatus) -> u64 {
    use zonemesh_shared::control::ErrorCode;
    status
        .closes
        .iter()
        .filter(|(code, _)| !matches!(code, ErrorCode::Normal | ErrorCode::ServerShutdown))
        .map(|(_, n)| n)
        .sum()
}

/// `zonemesh dev` for the benchmark: the default world (4x4 zones, checkpoints every
/// 5 s) without NPCs, at `tick_hz` on `workers` zone workers, and a game-event limit
/// no client reaches (what `--event-rate` sets on the command line).
fn dev_world(store: &str, tick_hz: u16, workers: usize) -> DevWorld {
    let unlimited = RateLimit {
        per_second: 1e9,
        burst: 1e9,
        flood_after: u32::MAX,
    };
    let mut world = DevWorld {
        npcs: 0,
        limits: NetLimits {
            event_rate: unlimited,
            ..NetLimits::default()
        },
        store: store.to_owned(),
        ..DevWorld::default()
    };
    world.node.zone.tick_hz = tick_hz;
    world.node.workers = Some(workers);
    world
}

async fn open_stateless_store(store: &str, data: &Path) -> anyhow::Result<Arc<dyn Store>> {
    if store.starts_with("postgres") {
        let options = PostgresOptions {
            schema: STATELESS_PG_SCHEMA.to_owned(),
            pool_size: STATELESS_PG_POOL,
            ..PostgresOptions::default()
        };
        let pg = PostgresStore::connect_with(store, options)
            .await
            .context("cannot connect to PostgreSQL")?;
        return Ok(Arc::new(pg));
    }
    open_store(store, data)
        .await
        .context("cannot open the embedded store")
}
