//! `scenarios`: the benchmark suite's scenario runner. It starts the prebuilt
//! `zonemesh` server and `zonemesh-swarm` as pinned child processes, measures them from
//! /proc and the swarm's JSON report, runs a raw quinn echo baseline (this binary's
//! hidden `echo-server` / `echo-client` subcommands), and prints markdown sections for
//! BENCHMARKS.md. It builds nothing: run `cargo build --release --bins` first.

// The cluster-overhead scenario starts and lays out its nodes with the `cluster`
// binary's own code; parts of it only that binary uses.
#[allow(
    dead_code,
    reason = "shared with the cluster binary, which uses the rest"
)]
#[path = "../cluster/anchors.rs"]
mod anchors;
mod child;
mod crowd;
mod drive;
mod echo;
mod echorun;
#[allow(
    dead_code,
    reason = "shared with the cluster binary, which uses the rest"
)]
#[path = "../cluster/fixture.rs"]
mod fixture;
mod gamerun;
#[allow(
    dead_code,
    reason = "shared with the cluster binary, which uses the rest"
)]
#[path = "../cluster/node.rs"]
mod node;
mod overhead;
mod procfs;
mod report;
mod scenarios;
mod servecluster;
mod server;
mod swarm;

use anyhow::Context;
use clap::{Parser, Subcommand};
use scenarios::Ctx;
use server::ServerSpec;
use std::path::PathBuf;
use swarm::SwarmSpec;

// The baseline's echo server should allocate like the server under test.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "scenarios",
    about = "ZoneMesh benchmark scenarios (run `cargo build --release --bins` first)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Directory of the prebuilt `zonemesh` and `zonemesh-swarm` (default: this
    /// binary's own directory, i.e. target/release).
    #[arg(long, global = true)]
    bin_dir: Option<PathBuf>,
    /// Seconds per run, ramp included (the targets say 60).
    #[arg(long, global = true, default_value_t = 20.0)]
    secs: f64,
    /// Runs per measured point (medians are reported).
    #[arg(long, global = true, default_value_t = 3)]
    runs: usize,
    /// Do not pin the server and the load to separate cores.
    #[arg(long, global = true)]
    no_pin: bool,
    /// Bots for latency/transport/memory (default: 80 % of the capacity found by
    /// `all`, else 800).
    #[arg(long, global = true)]
    bots: Option<u64>,
    /// Capacity steps (bots), tried in order until one fails.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "100,200,400,600,800,1000,1200,1600"
    )]
    steps: Vec<u64>,
    /// Length of the memory soak, seconds (the target says 600).
    #[arg(long, global = true, default_value_t = 120.0)]
    soak_secs: f64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Largest bot count with no missed tick (stepped search).
    Capacity,
    /// Input-to-visible latency at 80 % of capacity.
    Latency,
    /// Bytes per bot per second, moving and idle scenes, against a naive encoding.
    Bandwidth,
    /// Server CPU per snapshot against a raw quinn echo server's CPU per datagram.
    Transport,
    /// The swarm's own CPU for 1,000 bots.
    SwarmCost,
    /// Server RSS per bot and RSS growth in a churn soak.
    Memory,
    /// Everything, in one run.
    All,
    /// Server CPU and node-to-node traffic of the same load on one `zonemesh serve`
    /// node and on a cluster of them, on PostgreSQL.
    ClusterOverhead(overhead::OverheadArgs),
    /// A crowd: every bot and NPC in one zone and in everyone's view, at 100, 500
    /// and 1,000 bots.
    Crowd(crowd::CrowdArgs),
    /// One measured run of a world and load you choose, printed as JSON (the
    /// server's missed ticks and tick times, the swarm's report, CPU and memory).
    Point(PointArgs),
    /// (internal) the raw quinn echo server of the transport baseline.
    #[command(hide = true)]
    EchoServer(echo::EchoServerArgs),
    /// (internal) the load client of the transport baseline.
    #[command(hide = true)]
    EchoClient(echo::EchoClientArgs),
}

/// The world and load of `point`.
#[derive(Debug, clap::Args)]
struct PointArgs {
    /// Bots (wandering, 20 inputs/s).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    point_bots: u64,
    /// The server's tick rate.
    #[arg(long, default_value_t = 20)]
    tick_hz: u32,
    /// Zones per side.
    #[arg(long, default_value_t = 4)]
    zones: u32,
    /// Zone side, world units.
    #[arg(long, default_value_t = 256.0)]
    zone_size: f64,
    /// NPCs in the whole world.
    #[arg(long, default_value_t = 4000)]
    npcs: u64,
}

impl PointArgs {
    fn server_spec(&self) -> ServerSpec {
        ServerSpec {
            tick_hz: self.tick_hz,
            zones: self.zones,
            zone_size: self.zone_size,
            npcs: self.npcs,
            ..ServerSpec::demo()
        }
    }
}

/// Bots for latency when no capacity is known.
const DEFAULT_LATENCY_BOTS: u64 = 800;
/// Bots of the moving bandwidth scene.
const BANDWIDTH_BOTS: u64 = 200;
/// Bots of the memory scenario when none is given.
const MEMORY_BOTS: u64 = 500;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::EchoServer(args) => return echo::serve(args),
        Command::EchoClient(args) => return echo::load(args),
        _ => {}
    }
    anyhow::ensure!(
        cli.secs >= 5.0 && cli.secs <= 600.0,
        "--secs must be 5 to 600"
    );
    anyhow::ensure!(cli.runs <= 10, "--runs must be at most 10");
    anyhow::ensure!(cli.soak_secs <= 3600.0, "--soak-secs must be at most 3600");
    let ctx = context(&cli)?;
    print_machine(&ctx);
    run(&cli, &ctx)
}

fn context(cli: &Cli) -> anyhow::Result<Ctx> {
    let bin_dir = match &cli.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("cannot find this binary")?
            .parent()
            .context("this binary has no directory")?
            .to_path_buf(),
    };
    let (server_core, load_core) = child::choose_cores(cli.no_pin);
    let placement = child::Placement {
        bin_dir,
        server_core,
        load_core,
    };
    // Fail before any scenario when the binaries are missing.
    placement.binary("zonemesh")?;
    placement.binary("zonemesh-swarm")?;
    Ok(Ctx {
        placement,
        clk_tck: procfs::clk_tck(),
        secs: cli.secs,
        runs: cli.runs,
    })
}

fn run(cli: &Cli, ctx: &Ctx) -> anyhow::Result<()> {
    let latency_bots = cli.bots.unwrap_or(DEFAULT_LATENCY_BOTS);
    match cli.command {
        Command::Capacity => scenarios::capacity(ctx, &cli.steps).map(drop),
        Command::Latency => {
            let runs = scenarios::latency_runs(ctx, latency_bots, false)?;
            scenarios::print_latency(&runs);
            Ok(())
        }
        Command::Transport => {
            let runs = scenarios::latency_runs(ctx, latency_bots, true)?;
            scenarios::print_transport(&runs);
            Ok(())
        }
        Command::Bandwidth => {
            scenarios::print_bandwidth(&scenarios::bandwidth(ctx, BANDWIDTH_BOTS)?);
            Ok(())
        }
        Command::SwarmCost => scenarios::swarm_cost(ctx).map(drop),
        Command::Memory => {
            scenarios::memory(ctx, cli.bots.unwrap_or(MEMORY_BOTS), cli.soak_secs).map(drop)
        }
        Command::All => run_all(cli, ctx),
        Command::ClusterOverhead(ref args) => overhead::run(ctx, args),
        Command::Crowd(ref args) => crowd::run(ctx, args).map(drop),
        Command::Point(ref args) => {
            let load = SwarmSpec::wander(args.point_bots, ctx.secs);
            let run = gamerun::run(&ctx.placement, ctx.clk_tck, &args.server_spec(), &load)?;
            println!("{}", serde_json::to_string(&run)?);
            Ok(())
        }
        Command::EchoServer(_) | Command::EchoClient(_) => Ok(()),
    }
}

fn run_all(cli: &Cli, ctx: &Ctx) -> anyhow::Result<()> {
    let (capacity, _) = scenarios::capacity(ctx, &cli.steps)?;
    let bots = cli
        .bots
        .unwrap_or_else(|| (capacity * 4 / 5).max(cli.steps.first().copied().unwrap_or(100)));
    let runs = scenarios::latency_runs(ctx, bots, true)?;
    scenarios::print_latency(&runs);
    scenarios::print_transport(&runs);
    scenarios::print_bandwidth(&scenarios::bandwidth(ctx, BANDWIDTH_BOTS)?);
    scenarios::swarm_cost(ctx)?;
    scenarios::memory(ctx, cli.bots.unwrap_or(MEMORY_BOTS), cli.soak_secs)?;
    Ok(())
}

/// Prints the machine facts every section depends on.
fn print_machine(ctx: &Ctx) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let pin = |c: Option<usize>| c.map_or_else(|| "not pinned".to_owned(), |c| format!("core {c}"));
    println!("# ZoneMesh scenarios\n");
    println!(
        "- CPU: {cpu}, {cores} cores available; kernel {kernel}; CLK_TCK {}",
        ctx.clk_tck
    );
    println!(
        "- server (and echo server): {}; swarm (and echo client): {}",
        pin(ctx.placement.server_core),
        pin(ctx.placement.load_core)
    );
    println!("- {} s per run, {} runs per point", ctx.secs, ctx.runs);
}
