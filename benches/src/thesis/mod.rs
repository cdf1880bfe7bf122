//! The thesis benchmark (issue #4 item 9): one player read-modify-write action (add a
//! coin, answer the new count) served two ways over the same QUIC transport and
//! framing, with real SDK clients:
//!
//! - **stateless**: load the record from the store, modify, save, answer, per request;
//! - **stateful**: ZoneMesh, the coin count lives in the zone and is saved by the
//!   normal background checkpoints.
//!
//! Against the embedded store (redb) and PostgreSQL. Phase 1 (saturation) runs each
//! load point closed loop on both servers back to back; a server's saturation
//! throughput in a run is its best point. Phase 2 (latency) runs both open loop at half
//! of the stateless median maximum, next to the transport floor (the stateless server
//! answering from memory). Every figure is repeated `--runs` times.

mod load;
mod pacer;
mod pin;
mod report;
mod stateless;
mod subject;

use anyhow::Context;
use clap::Parser;
use load::{LoadResult, LoadSpec, Target};
use pin::Cores;
use report::{Measurement, Phase};
use std::path::PathBuf;
use std::time::Duration;
use subject::{Mode, Subject};

/// Command line of `thesis`.
#[derive(Parser, Debug)]
#[command(about = "Stateful (ZoneMesh) vs stateless read-modify-write throughput and latency")]
struct Args {
    /// Stores to run against: `embedded` and/or a postgres URL, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "embedded,postgres://postgres@127.0.0.1:5432/thesis"
    )]
    stores: Vec<String>,
    /// Repetitions of every measurement.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Unmeasured seconds at the start of each point.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Measured seconds of each point.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Closed-loop points, `CLIENTSxWINDOW` (requests outstanding per client).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "4x1,16x1,64x1,256x1,64x8,64x32"
    )]
    points: Vec<String>,
    /// Clients of the open-loop latency phase.
    #[arg(long, default_value_t = 32)]
    latency_clients: usize,
    /// Skip the latency phase.
    #[arg(long)]
    no_latency: bool,
    /// Skip the saturation phase (then give `--latency-rates`).
    #[arg(long)]
    no_saturation: bool,
    /// Open-loop rates per store (same order as `--stores`) instead of half the
    /// measured stateless maximum.
    #[arg(long, value_delimiter = ',')]
    latency_rates: Vec<f64>,
    /// The stateful server's tick rate (`zonemesh dev --tick-hz`).
    #[arg(long, default_value_t = 20)]
    tick_hz: u16,
    /// Let both servers and clients run on any core (by default, with two or more
    /// allowed cores, the servers run on the first and the load generator on the second).
    #[arg(long)]
    no_pin: bool,
    /// Threads of each side: the servers' tokio runtime (and the stateful server's
    /// zone workers), and the load generator's runtime. Default: 1 when pinned (two
    /// threads on one core only take turns), else 2.
    #[arg(long)]
    threads: Option<usize>,
    /// Where data directories (identity, redb file) are created.
    #[arg(long, default_value = "target/thesis-data")]
    data: PathBuf,
}

/// Runs the benchmark and prints raw lines and the summary.
pub(crate) fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let points = args
        .points
        .iter()
        .map(|p| parse_point(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bench = Bench::new(&args)?;
    println!(
        "cores: {}; {} thread(s) per side",
        bench.cores.describe(),
        bench.threads
    );
    let mut all = Vec::new();
    for run in (1..=args.runs).filter(|_| !args.no_saturation) {
        for store in &args.stores {
            for &(clients, window) in &points {
                for mode in [Mode::Stateless, Mode::Stateful] {
                    let spec = bench.spec(clients, window, None);
                    all.push(bench.measure(Phase::Saturation, run, store, mode, &spec)?);
                }
            }
        }
    }
    if !args.no_latency {
        latency_phase(&args, &bench, &mut all)?;
    }
    report::print_summary(&all, &args.stores);
    Ok(())
}

/// Open loop at half of each store's stateless median maximum, both servers.
fn latency_phase(args: &Args, bench: &Bench, all: &mut Vec<Measurement>) -> anyhow::Result<()> {
    let rates: Vec<(String, f64)> = args
        .stores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let half = report::saturation(all, s, Mode::Stateless).median / 2.0;
            (
                s.clone(),
                args.latency_rates.get(i).copied().unwrap_or(half),
            )
        })
        .collect();
    anyhow::ensure!(
        rates.iter().all(|(_, r)| *r > 0.0),
        "no latency rate: run the saturation phase or give --latency-rates"
    );
    for run in 1..=args.runs {
        for (store, rate) in &rates {
            // The floor keeps no store; it runs at each store's rate so every row of
            // the summary has its own floor, measured minutes apart at most.
            for mode in [Mode::Stateless, Mode::Stateful, Mode::Floor] {
                let spec = bench.spec(args.latency_clients, 1, Some(*rate));
                all.push(bench.measure(Phase::Latency, run, store, mode, &spec)?);
            }
        }
    }
    Ok(())
}

fn parse_point(point: &str) -> anyhow::Result<(usize, usize)> {
    let (c, w) = point
        .split_once('x')
        .with_context(|| format!("point {point:?} is not CLIENTSxWINDOW"))?;
    let clients = c
        .parse()
        .with_context(|| format!("bad clients in {point:?}"))?;
    let window = w
        .parse()
        .with_context(|| format!("bad window in {point:?}"))?;
    anyhow::ensure!(
        clients >= 1 && window >= 1,
        "point {point:?} must be at least 1x1"
    );
    Ok((clients, window))
}

/// The runtimes and settings every measurement shares. Servers and clients run on
/// separate tokio runtimes (two threads each), as separate processes would, each
/// pinned to its own core (see [`pin`]).
struct Bench {
    servers: tokio::runtime::Runtime,
    clients: tokio::runtime::Runtime,
    cores: Cores,
    threads: usize,
    warmup: Duration,
    measure: Duration,
    data: PathBuf,
    tick_hz: u16,
}

impl Bench {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let cores = Cores::choose(!args.no_pin)?;
        // Fail early, with the reason, if this machine does not allow pinning.
        cores.pin_current_thread(cores.server)?;
        let threads = args
            .threads
            .unwrap_or(if cores.server.is_some() { 1 } else { 2 });
        anyhow::ensure!(threads >= 1, "--threads must be at least 1");
        let runtime = |name: &str, core: Option<usize>| {
            let cores = cores.clone();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name(name)
                .on_thread_start(move || {
                    if let Err(error) = cores.pin_current_thread(core) {
                        eprintln!("{error:#}");
                    }
                })
                .enable_all()
                .build()
                .with_context(|| format!("cannot start the {name} runtime"))
        };
        std::fs::create_dir_all(&args.data)
            .with_context(|| format!("cannot create {}", args.data.display()))?;
        Ok(Self {
            servers: runtime("thesis-server", cores.server)?,
            clients: runtime("thesis-client", cores.clients)?,
            cores,
            threads,
            warmup: Duration::try_from_secs_f64(args.warmup_secs).context("bad --warmup-secs")?,
            measure: Duration::try_from_secs_f64(args.secs).context("bad --secs")?,
            data: args.data.clone(),
            tick_hz: args.tick_hz,
        })
    }

    fn spec(&self, clients: usize, window: usize, rate: Option<f64>) -> LoadSpec {
        LoadSpec {
            clients,
            window,
            rate,
            warmup: self.warmup,
            measure: self.measure,
        }
    }

    /// Starts a fresh server, runs the load against it, stops it, prints a raw line.
    fn measure(
        &self,
        phase: Phase,
        run: usize,
        store: &str,
        mode: Mode,
        spec: &LoadSpec,
    ) -> anyhow::Result<Measurement> {
        let dir = tempfile::tempdir_in(&self.data).context("cannot create a data directory")?;
        // The server's own threads (zone workers) inherit the main thread's core.
        self.cores.pin_current_thread(self.cores.server)?;
        let subject = self
            .servers
            .block_on(Subject::start(
                mode,
                store,
                dir.path(),
                self.tick_hz,
                self.threads,
            ))
            .with_context(|| format!("cannot start the {mode} server on {store}"))?;
        let target = Target {
            addr: subject.addr()?,
            data_dir: dir.path().to_path_buf(),
            prefix: format!("r{run}{}{}", phase.tag(), rand_tag()),
        };
        // The load's main future and the pacer thread it starts run on the clients' core.
        self.cores.pin_current_thread(self.cores.clients)?;
        let result: anyhow::Result<LoadResult> = self.clients.block_on(load::run(&target, spec));
        self.cores.pin_current_thread(self.cores.server)?;
        let server = self.servers.block_on(subject.stop());
        let result = result.with_context(|| format!("{mode} on {store}: load failed"))?;
        let m = Measurement::new(phase, run, store, mode, spec, &result, server);
        println!("{}", m.raw_line());
        Ok(m)
    }
}

/// A short random tag, so player names never repeat across measurements.
fn rand_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{nanos:x}")
}
