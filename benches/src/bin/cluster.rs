//! `cluster`: benchmarks of a ZoneMesh cluster of real `zonemesh serve` processes on
//! PostgreSQL, printing markdown for BENCHMARKS.md.
//!
//! - `cluster failover --kills 10`: SIGKILLs a node holding zones, round after round,
//!   and measures how long the survivors take to see it gone, to serve its zones again,
//!   and until its players play again; median and max over the kills.
//! - `cluster redirect --samples 200`: connecting through a node that does not hold
//!   the player's zone (one redirect) against connecting to the one that does, in the
//!   same run, with the redirect's first leg (handshake, `Hello`, `Redirect`) timed
//!   on its own.
//! - `cluster crossing --crossings 100`: the longest gap in a client's snapshots when
//!   its player walks into a zone on another node (a mid-session move) against into a
//!   zone on the same node, in the same run.
//!
//! - `cluster handoff --moves 50 --players 50`: the pause players see while their
//!   zone moves to another node (live handoff), against disconnecting and
//!   reconnecting, in the same run.
//!
//! - `cluster drain --players 500`: a node holding 25 zones and the players in them
//!   drained while they play: time until empty, longest pause, disconnects.
//!
//! - `cluster rebalance --players 40`: a skewed load on three nodes placed by static
//!   consistent hashing, against the same with the rebalancer on: node CPU, max/min,
//!   missed ticks, convergence time.
//!
//! It builds nothing: it starts the prebuilt `zonemesh` (run `cargo build --release
//! --bins` first). Each run gets a fresh PostgreSQL schema `zm_bench_<random>`, dropped
//! at the end, and a temporary directory for configurations, data and node logs. Every
//! wait is bounded, and every node is killed when the run ends, however it ends.

// A binary's root looks for modules next to it; these live in `cluster/`.
#[path = "cluster/anchors.rs"]
mod anchors;
#[path = "cluster/crossing.rs"]
mod crossing;
#[path = "cluster/drain.rs"]
mod drain;
#[path = "cluster/failover.rs"]
mod failover;
// Shared with the `scenarios` binary (its cluster-overhead scenario), which uses parts
// this one does not.
#[allow(
    dead_code,
    reason = "shared with the scenarios binary, which uses the rest"
)]
#[path = "cluster/fixture.rs"]
mod fixture;
#[path = "cluster/handoff.rs"]
mod handoff;
#[path = "cluster/leg.rs"]
mod leg;
#[allow(
    dead_code,
    reason = "shared with the scenarios binary, which uses the rest"
)]
#[path = "cluster/node.rs"]
mod node;
#[path = "cluster/players.rs"]
mod players;
#[allow(
    dead_code,
    reason = "shared with the scenarios binary, which uses the rest"
)]
#[path = "scenarios/procfs.rs"]
mod procfs;
#[path = "cluster/rebalance.rs"]
mod rebalance;
#[path = "cluster/redirect.rs"]
mod redirect;
#[path = "cluster/stats.rs"]
mod stats;
#[path = "cluster/walker.rs"]
mod walker;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fixture::{Cleanup, Fixture, NodeSettings};
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use zonemesh_client::ReplicaScope;

/// The PostgreSQL of the development setup (trust authentication).
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Parser)]
#[command(
    name = "cluster",
    about = "ZoneMesh cluster benchmarks on PostgreSQL (run `cargo build --release --bins` first)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Directory of the prebuilt `zonemesh` (default: this binary's own directory,
    /// i.e. target/release).
    #[arg(long, global = true)]
    bin_dir: Option<PathBuf>,
    /// PostgreSQL the nodes share; the run uses a schema of its own and drops it.
    #[arg(
        long,
        global = true,
        env = "ZONEMESH_BENCH_POSTGRES_URL",
        default_value = DEFAULT_URL
    )]
    url: String,
    /// Keep the temporary directory (configurations, data, node logs) and print it.
    #[arg(long, global = true)]
    keep_dir: bool,
}

/// What the benchmark's SDK clients keep in their replicas.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ClientReplica {
    /// Every entity shown, as a game client does.
    All,
    /// The player's own entity only.
    Own,
}

impl ClientReplica {
    fn scope(self) -> ReplicaScope {
        match self {
            Self::All => ReplicaScope::Everything,
            Self::Own => ReplicaScope::OwnEntity,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Failure detection, zones served again and players back after SIGKILLs.
    Failover {
        /// Nodes killed, one after another (each restarted before the next kill).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
        kills: u64,
        /// Players kept connected (at least one per zone is ensured).
        #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u64).range(1..=200))]
        players: u64,
    },
    /// First connect through the wrong node (one redirect) against the right node.
    Redirect {
        /// Connects measured of each kind.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        samples: u64,
    },
    /// Pauses of players whose zone moves to another node against reconnecting.
    Handoff {
        /// Moves of the zone (back and forth between the two nodes).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        moves: u64,
        /// Players in the zone.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=2_000))]
        players: u64,
        /// Area-of-interest radius, world units (200: the whole zone in view).
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..=1_000))]
        aoi: u16,
        /// What each player's SDK client keeps: `all` entities, as a game does, or
        /// its `own` entity only (lighter clients; the nodes work the same).
        #[arg(long, value_enum, default_value_t = ClientReplica::All)]
        client_replica: ClientReplica,
    },
    /// Draining a node that holds every zone while players play.
    Drain {
        /// Players in the world.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=5_000))]
        players: u64,
        /// What each player's SDK client keeps. `own` by default: with every entity
        /// kept, 500 clients in this one process saturate a 2-core machine and the
        /// pauses measure them, not the drain.
        #[arg(long, value_enum, default_value_t = ClientReplica::Own)]
        client_replica: ClientReplica,
    },
    /// A skewed load on three nodes: static hashing against the rebalancer.
    Rebalance {
        /// Players in each of the hot zones.
        #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=2_000))]
        players: u64,
        /// The rebalancer's floor (`cluster.rebalancer.floor_ms_per_s`): a node ticking
        /// less than this many ms per second is never hot.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=1_000))]
        floor_ms: u64,
    },
    /// Snapshot gaps when walking into a zone on another node against the same node.
    Crossing {
        /// Crossings measured of each kind (over all walkers).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        crossings: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_client_log();
    let bin_dir = match &cli.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("cannot locate this binary")?
            .parent()
            .context("this binary has no directory")?
            .to_owned(),
    };
    // Two workers: the SDK clients and the PostgreSQL connection; the nodes are other
    // processes, the measuring loop is this thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let settings = match cli.command {
        Command::Failover { .. } => NodeSettings::small(failover::WORLD_ZONES),
        Command::Redirect { .. } => NodeSettings::small(redirect::WORLD_ZONES),
        Command::Crossing { .. } => crossing::settings(),
        Command::Handoff { aoi, .. } => handoff::settings(f32::from(aoi)),
        Command::Drain { .. } => drain::settings(),
        Command::Rebalance { floor_ms, .. } => rebalance::settings(false, floor_ms),
    };
    let fixture = Fixture::new(&bin_dir, &cli.url, settings, cli.keep_dir, &runtime)?;
    eprintln!("PostgreSQL schema {}", fixture.schema());
    runtime.spawn(clean_up_on_signal(fixture.cleanup()));
    // The run owns its nodes and players: they are gone when it returns, before the
    // schema is dropped.
    let outcome = match cli.command {
        Command::Failover { kills, players } => {
            failover::run(&runtime, &fixture, to_usize(kills), to_usize(players))
        }
        Command::Redirect { samples } => redirect::run(&runtime, &fixture, to_usize(samples)),
        Command::Crossing { crossings } => crossing::run(&runtime, &fixture, to_usize(crossings)),
        Command::Handoff {
            moves,
            players,
            client_replica,
            ..
        } => handoff::run(
            &runtime,
            &fixture,
            to_usize(moves),
            to_usize(players),
            client_replica.scope(),
        ),
        Command::Drain {
            players,
            client_replica,
        } => drain::run(
            &runtime,
            &fixture,
            to_usize(players),
            client_replica.scope(),
        ),
        Command::Rebalance { players, floor_ms } => {
            rebalance::run(&runtime, &fixture, to_usize(players), floor_ms)
        }
    };
    let cleanup = fixture.drop_schema(&runtime);
    runtime.shutdown_timeout(Duration::from_secs(2));
    outcome.and(cleanup)
}

/// On Ctrl-C or SIGTERM: kills the nodes, drops the schema and exits (the main thread
/// may be in the middle of a blocking wait, and destructors would not run).
async fn clean_up_on_signal(cleanup: Cleanup) {
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("interrupted: killing the nodes and dropping the schema");
    node::kill_all_running();
    if let Err(e) = cleanup.all().await {
        eprintln!("{e:#}");
    }
    std::process::exit(130);
}

/// A count clap already bounded.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Logs what the SDK clients of this process do to stderr, at the filter
/// `CLUSTER_BENCH_CLIENT_LOG` names (for example `zonemesh_client=debug`); off when
/// it is not set, so the figures are not measured with logging on.
fn init_client_log() {
    let Ok(filter) = std::env::var("CLUSTER_BENCH_CLIENT_LOG") else {
        return;
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}
