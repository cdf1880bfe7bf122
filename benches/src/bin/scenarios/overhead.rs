//! The cluster-overhead scenario: the same swarm load on one `zonemesh serve` node and
//! on a cluster of three on loopback, all on PostgreSQL, the nodes pinned to the
//! server core and the swarm to the load core. The world is 3 × 3 zones with
//! column `x` on node `x % nodes` (see [`crate::servecluster`]), so wandering bots
//! cross borders between nodes (columns) and inside one node (rows).
//!
//! Per run: server CPU summed over the node processes in the steady window (from
//! /proc), bytes sent between nodes and players handed to another node summed over
//! every node's `/status` in that window, missed ticks summed over every node's
//! counter over the whole load, and the swarm's own report. Runs alternate one node,
//! the cluster, one node, ... so noise meets both alike.

use crate::drive::{self, Point};
use crate::node::Node;
use crate::procfs::{self, Sample};
use crate::report::{self, Spread, show};
use crate::scenarios::{Ctx, IN_VIEW_TARGET};
use crate::servecluster::ServeCluster;
use crate::server::ServerSpec;
use crate::swarm::{SwarmReport, SwarmSpec};
use anyhow::Context;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use zonemesh_shared::status::NodeStatusReport;

/// Wait after the zones were laid out, before measuring.
const SETTLE: Duration = Duration::from_secs(3);
/// The steady window starts this long after the ramp ends...
const STEADY_AFTER_RAMP_S: f64 = 2.0;
/// ...and ends this long before the swarm's duration.
const STEADY_BEFORE_END_S: f64 = 1.0;
/// Slack over the swarm's duration before the run is declared stuck.
const SWARM_SLACK: Duration = Duration::from_secs(30);
/// The PostgreSQL of the development setup (trust authentication).
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The flags of `scenarios cluster-overhead`.
#[derive(Debug, clap::Args)]
pub(crate) struct OverheadArgs {
    /// Bot counts, each run on one node and on the cluster.
    #[arg(long, value_delimiter = ',', default_value = "100,300")]
    bot_counts: Vec<u64>,
    /// Nodes of the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=3))]
    nodes: u64,
    /// PostgreSQL the nodes share; each run uses a schema of its own and drops it.
    #[arg(long, env = "ZONEMESH_BENCH_POSTGRES_URL", default_value = DEFAULT_URL)]
    url: String,
    /// NPCs in the whole world (default: enough for about 50 entities in view, as the
    /// capacity scenario sets them).
    #[arg(long)]
    npcs: Option<u64>,
    /// Keep each run's directory (configurations, node logs at `info`, the swarm's
    /// JSON report) and print where it is.
    #[arg(long)]
    keep_dir: bool,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
struct OverheadRun {
    nodes: usize,
    bots: u64,
    /// NPCs in the whole world.
    npcs: u64,
    /// Server CPU in the steady window, all node processes, cores.
    server_cores: f64,
    /// Bytes all nodes sent to other nodes per second, steady window.
    node_bytes_per_s: f64,
    /// Players handed to another node per second (all nodes' `players_out`).
    node_crossings_per_s: f64,
    /// Zone changes the bots saw per second (the swarm's count over its run).
    zone_changes_per_s: f64,
    /// Ticks all nodes fell behind by while the swarm ran.
    missed_ticks: u64,
    /// CPU the rest of the machine used (PostgreSQL included), cores.
    other_cores: f64,
    swarm: SwarmReport,
}

impl OverheadRun {
    /// Server CPU per bot, percent of a core.
    fn cpu_pct_per_bot(&self) -> f64 {
        100.0 * self.server_cores / self.bots.max(1) as f64
    }
}

/// The 3 × 3 world of 256-unit zones with `npcs` NPCs, by default enough for about
/// [`IN_VIEW_TARGET`] entities in view, as the capacity scenario sets them.
fn world(bots: u64, npcs: Option<u64>) -> ServerSpec {
    let mut spec = ServerSpec {
        zones: 3,
        ..ServerSpec::demo()
    };
    let total = report::entities_for_view(IN_VIEW_TARGET, spec.world_side(), spec.aoi_radius);
    spec.npcs = npcs.unwrap_or_else(|| (total.round() as u64).saturating_sub(bots));
    spec
}

/// Runs every bot count `ctx.runs` times on each side and prints the section.
pub(crate) fn run(ctx: &Ctx, args: &OverheadArgs) -> anyhow::Result<()> {
    let nodes = usize::try_from(args.nodes).context("node count")?;
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for &bots in &args.bot_counts {
        for i in 0..ctx.runs.max(1) {
            for n in [1, nodes] {
                match one_run(ctx, args, n, bots) {
                    Ok(r) => {
                        eprintln!(
                            "run {i}: {bots} bots on {n} node(s): {:.3} cores, {:.0} node B/s, \
                             {:.2} node crossings/s, {} missed ticks",
                            r.server_cores,
                            r.node_bytes_per_s,
                            r.node_crossings_per_s,
                            r.missed_ticks
                        );
                        if let Some(why) = r.swarm.insanity(20) {
                            eprintln!("  the swarm saw problems: {why}");
                        }
                        runs.push(r);
                    }
                    // One failed run (a node too loaded to answer, say) is reported,
                    // not allowed to lose the others.
                    Err(e) => {
                        eprintln!("run {i}: {bots} bots on {n} node(s) failed: {e:#}");
                        failures.push(format!("{bots} bots on {n} node(s), run {i}: {e:#}"));
                    }
                }
            }
        }
    }
    print_section(ctx, &runs, nodes);
    for failure in &failures {
        println!("Failed run (left out): {failure}");
    }
    anyhow::ensure!(runs.len() > failures.len(), "most runs failed");
    Ok(())
}

/// All nodes' `/status`.
struct Statuses {
    nodes: Vec<NodeStatusReport>,
}

impl Statuses {
    fn read(nodes: &[Node]) -> anyhow::Result<Self> {
        let nodes = nodes
            .iter()
            .map(Node::status)
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { nodes })
    }

    /// The sum over nodes of `f` now minus `f` in `before`.
    fn grew(&self, before: &Self, f: impl Fn(&NodeStatusReport) -> u64) -> u64 {
        let sum = |s: &Self| s.nodes.iter().map(&f).sum::<u64>();
        sum(self).saturating_sub(sum(before))
    }

    /// The sum over nodes of `f`'s growth per second of each node's own uptime
    /// between the two reads (the reads of several nodes are not simultaneous).
    fn rate(&self, before: &Self, f: impl Fn(&NodeStatusReport) -> u64) -> f64 {
        self.nodes
            .iter()
            .zip(&before.nodes)
            .map(|(now, then)| {
                let secs = (now.uptime_s - then.uptime_s).max(1e-3);
                f(now).saturating_sub(f(then)) as f64 / secs
            })
            .sum()
    }
}

fn node_bytes_sent(s: &NodeStatusReport) -> u64 {
    s.cluster.as_ref().map_or(0, |c| c.node_bytes_sent)
}

fn players_out(s: &NodeStatusReport) -> u64 {
    s.cluster.as_ref().map_or(0, |c| c.crossings.players_out)
}

/// One measured run of `bots` bots on `n` nodes.
fn one_run(ctx: &Ctx, args: &OverheadArgs, n: usize, bots: u64) -> anyhow::Result<OverheadRun> {
    let spec = world(bots, args.npcs);
    let mut cluster = ServeCluster::start(&ctx.placement, &spec, &args.url, n, args.keep_dir)?;
    std::thread::sleep(SETTLE);
    let load = SwarmSpec::wander(bots, ctx.secs);
    let json = cluster.dir().join("swarm.json");
    let before = Statuses::read(&cluster.nodes)?;
    let busy_before = procfs::machine_busy_s(ctx.clk_tck)?;
    let cpu_before = sample_all(&mut cluster.nodes, ctx.clk_tck)?.cpu_s;
    let servers: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.players).collect();
    // No `--server-admin`: the swarm would read one node's counters; the nodes' are
    // read here.
    let mut swarm = load.spawn(&ctx.placement, &servers, None, cluster.shared(), &json)?;
    let (start_s, end_s) = steady_window(&load);
    let t0 = Instant::now();
    let mut steady: (Option<Statuses>, Option<Statuses>) = (None, None);
    let mut sample = || -> anyhow::Result<Sample> {
        let t = t0.elapsed().as_secs_f64();
        if t >= start_s && steady.0.is_none() {
            steady.0 = Some(Statuses::read(&cluster.nodes)?);
        }
        if t >= end_s && steady.1.is_none() {
            steady.1 = Some(Statuses::read(&cluster.nodes)?);
        }
        sample_all(&mut cluster.nodes, ctx.clk_tck)
    };
    let limit = Duration::from_secs_f64(load.duration_s) + SWARM_SLACK;
    let driven = drive::drive(&mut sample, &mut swarm, ctx.clk_tck, limit)?;
    drop(swarm);
    let after = Statuses::read(&cluster.nodes)?;
    let busy_after = procfs::machine_busy_s(ctx.clk_tck)?;
    let panics = cluster.panics();
    anyhow::ensure!(
        panics.is_empty(),
        "a node panicked, its figures are void: {}",
        panics.join("; ")
    );
    let report = SwarmReport::read(&json)?;
    let (Some(s0), Some(s1)) = steady else {
        anyhow::bail!("the steady window's /status reads did not happen (run too short)");
    };
    let (cpu, wall) = drive::cpu_over(&driven.server, start_s, end_s)
        .context("too few server samples in the steady window")?;
    let server_cpu = drive::last_cpu_s(&driven.server) - cpu_before;
    let swarm_cpu = drive::last_cpu_s(&driven.load);
    let whole = driven.server.last().map_or(1.0, |p: &Point| p.t_s.max(0.1));
    Ok(OverheadRun {
        nodes: n,
        bots,
        npcs: spec.npcs,
        server_cores: cpu / wall,
        node_bytes_per_s: s1.rate(&s0, node_bytes_sent),
        node_crossings_per_s: s1.rate(&s0, players_out),
        zone_changes_per_s: report.zone_changes as f64 / report.duration_s.max(1e-3),
        missed_ticks: after.grew(&before, |s| s.ticks.missed_ticks),
        other_cores: (busy_after - busy_before - server_cpu - swarm_cpu) / whole,
        swarm: report,
    })
}

/// Steady window, seconds from the swarm's start.
fn steady_window(load: &SwarmSpec) -> (f64, f64) {
    (
        load.ramp_s + STEADY_AFTER_RAMP_S,
        load.duration_s - STEADY_BEFORE_END_S,
    )
}

/// One /proc look at every node, summed (CPU and memory); an error if one exited.
fn sample_all(nodes: &mut [Node], clk_tck: u64) -> anyhow::Result<Sample> {
    let mut sum: Option<Sample> = None;
    for node in nodes.iter_mut() {
        node.check_alive()?;
        let s = procfs::sample(node.pid(), clk_tck)?;
        sum = Some(match sum {
            None => s,
            Some(mut total) => {
                total.at = s.at;
                total.cpu_s += s.cpu_s;
                total.memory = total.memory.zip(s.memory).map(|(mut a, b)| {
                    a.rss_kib += b.rss_kib;
                    a.hwm_kib += b.hwm_kib;
                    a
                });
                total
            }
        });
    }
    sum.context("no nodes")
}

/// A figure of a run.
type Figure = fn(&OverheadRun) -> f64;

/// Prints the markdown section: one table per bot count, medians [min–max] of the
/// runs, and the ratio of the medians.
fn print_section(ctx: &Ctx, runs: &[OverheadRun], nodes: usize) {
    println!(
        "\n## Cluster overhead ({} runs of {} s per side; 3 × 3 zones of 256 units, column x \
         on node x mod {nodes})\n",
        ctx.runs.max(1),
        ctx.secs
    );
    let mut counts: Vec<u64> = runs.iter().map(|r| r.bots).collect();
    counts.dedup();
    let rows: [(&str, Figure, usize); 10] = [
        (
            "server CPU, steady (cores, all nodes)",
            |r| r.server_cores,
            3,
        ),
        (
            "server CPU per bot (% of a core)",
            OverheadRun::cpu_pct_per_bot,
            3,
        ),
        (
            "node-to-node bytes sent per s (all nodes, KB)",
            |r| r.node_bytes_per_s / 1e3,
            1,
        ),
        (
            "node-to-node bytes sent per bot per s",
            |r| r.node_bytes_per_s / r.bots.max(1) as f64,
            0,
        ),
        (
            "players handed to another node per s",
            |r| r.node_crossings_per_s,
            2,
        ),
        (
            "zone changes per s (bots' count)",
            |r| r.zone_changes_per_s,
            2,
        ),
        ("missed ticks (all nodes)", |r| r.missed_ticks as f64, 0),
        (
            "snapshots per bot per s",
            |r| r.swarm.snapshots_per_bot_per_s,
            2,
        ),
        (
            "input→visible p99 (ms)",
            |r| r.swarm.input_to_visible_ms.p99,
            1,
        ),
        (
            "other load, PostgreSQL included (cores)",
            |r| r.other_cores,
            2,
        ),
    ];
    for bots in counts {
        let of = |n: usize| -> Vec<&OverheadRun> {
            runs.iter()
                .filter(|r| r.bots == bots && r.nodes == n)
                .collect()
        };
        let (single, cluster) = (of(1), of(nodes));
        let npcs = runs.iter().find(|r| r.bots == bots).map_or(0, |r| r.npcs);
        println!("{bots} bots, {npcs} NPCs:\n");
        println!("| metric | 1 node | {nodes} nodes | {nodes} nodes / 1 node (medians) |");
        println!("|---|---:|---:|---:|");
        for (name, f, digits) in rows {
            let a = Spread::of(single.iter().map(|r| f(r)));
            let b = Spread::of(cluster.iter().map(|r| f(r)));
            let ratio = a.zip(b).filter(|(a, _)| a.median > 0.0).map_or_else(
                || "—".to_owned(),
                |(a, b)| format!("{:.2}", b.median / a.median),
            );
            println!(
                "| {name} | {} | {} | {ratio} |",
                show(a, digits),
                show(b, digits)
            );
        }
        println!();
    }
}
