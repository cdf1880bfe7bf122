//! `cluster rebalance`: a skewed load on three nodes, placed by static consistent
//! hashing, against the same load with the rebalancer on, in the same run: each
//! node's CPU and missed ticks once the cluster is quiet, max/min node CPU, and how
//! long the rebalancer took to get there.
//!
//! Each phase is a fresh cluster (its own PostgreSQL schema and data) of three
//! `zonemesh serve` nodes with `placement = "hash"` (blocks of one zone): a world of
//! 3 × 3 zones of 32 units, [`NPCS`] NPCs, an area of interest of [`AOI`] units. One
//! anchor player per zone, connecting through node 0 (redirected to the zone's
//! node), activates every zone. The skew: the [`HOT_ZONES`] lowest zones of the node
//! that hashing gave the most zones get `--players` players each, circling where
//! they spawned and sending an input every 50 ms; the other zones keep their anchor.
//! Hashing cannot move that load; the rebalancer (`[cluster.rebalancer]` with
//! `floor_ms_per_s = --floor-ms`) can.
//!
//! From the moment the crowd starts joining (the skew appears; joining takes a few
//! seconds, and the rebalancer may act meanwhile), the cluster converges: it is quiet
//! once every player plays and no move started or ended for [`QUIET`] and none is
//! under way. Convergence time is from the first crowd join to the end of the last
//! move (0 without moves). Then for
//! [`MEASURE`] each node's CPU (user + system, `/proc/PID/stat`) and missed ticks
//! (`/status`) are counted. Nodes are not pinned: they share this machine's cores
//! with each other, PostgreSQL and the players, so the ratio between nodes is the
//! figure, not their absolute CPU.

use crate::anchors::{AbortOnDrop, CONNECT_LIMIT, name_spawning_in, see_itself};
use crate::fixture::{Fixture, NodeSettings};
use crate::node::{Node, wait_until};
use crate::procfs;
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use zonemesh_client::{Client, ClientConfig};
use zonemesh_server::zone::WorldLayout;
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::quant::Vec2;

/// Zones along each side of the world.
const ZONES: u16 = 3;
/// A zone's side, world units.
const ZONE_SIZE: f32 = 32.0;
/// NPCs in the whole world.
const NPCS: u64 = 900;
/// Area-of-interest radius: a zone's players see their own zone, not the world.
const AOI: f32 = 12.0;
/// Zones that get the crowd.
const HOT_ZONES: usize = 3;
/// Nodes in the cluster.
const NODES: usize = 3;
/// No move started or ended for this long: the cluster is quiet.
const QUIET: Duration = Duration::from_secs(12);
/// Longest wait for quiet before the run fails.
const CONVERGE_LIMIT: Duration = Duration::from_secs(120);
/// The window CPU and missed ticks are counted over.
const MEASURE: Duration = Duration::from_secs(20);
/// How often inputs are sent.
const INPUT_EVERY: Duration = Duration::from_millis(50);
/// Connects a player makes before the run fails.
const JOIN_TRIES: u32 = 3;
/// How often the moves are polled while converging.
const POLL: Duration = Duration::from_millis(250);

/// The nodes' configuration for one phase.
pub(crate) fn settings(rebalance: bool, floor_ms: u64) -> NodeSettings {
    NodeSettings {
        zone_size: ZONE_SIZE,
        npcs: NPCS,
        aoi_radius: AOI,
        rebalance,
        rebalance_floor_ms: floor_ms,
        placement: ("hash", 1),
        ..NodeSettings::small(ZONES)
    }
}

fn layout() -> WorldLayout {
    WorldLayout {
        zones_x: ZONES,
        zones_y: ZONES,
        zone_size: ZONE_SIZE,
    }
}

/// What one phase measured.
struct Phase {
    name: &'static str,
    moves: usize,
    /// How long the crowd took to join.
    joined_in: Duration,
    converged_in: Duration,
    /// Per node: CPU over the window (share of one core), missed ticks, zones held.
    nodes: Vec<(f64, u64, usize)>,
    moves_in_window: usize,
    players_lost: u64,
    /// Connects that gave up and were made again.
    joins_retried: u64,
}

impl Phase {
    fn cpu_ratio(&self) -> f64 {
        let cpus = self.nodes.iter().map(|n| n.0);
        let max = cpus.clone().fold(0.0, f64::max);
        let min = cpus.fold(f64::INFINITY, f64::min);
        max / min.max(1e-9)
    }
}

/// Runs the static phase on `fixture` (rebalancing off), then the rebalancing phase
/// on a sibling fixture, and prints the report.
pub(crate) fn run(
    runtime: &Runtime,
    fixture: &Fixture,
    players: usize,
    floor_ms: u64,
) -> anyhow::Result<()> {
    let fixed = phase(runtime, fixture, "static hashing", players)?;
    let balanced = {
        let sibling = fixture.sibling(settings(true, floor_ms), runtime)?;
        eprintln!("PostgreSQL schema {} (rebalancing)", sibling.schema());
        let outcome = phase(runtime, &sibling, "hashing + rebalancer", players);
        let dropped = sibling.drop_schema(runtime);
        let outcome = outcome?;
        dropped?;
        outcome
    };
    print_report(&[fixed, balanced], players, floor_ms);
    Ok(())
}

/// One cluster under the skewed load, until quiet, then the measured window.
fn phase(
    runtime: &Runtime,
    fixture: &Fixture,
    name: &'static str,
    players: usize,
) -> anyhow::Result<Phase> {
    let nodes = fixture.start_cluster(NODES)?;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.players).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let lost = Arc::new(AtomicU64::new(0));
    let retried = AtomicU64::new(0);
    let mut tasks = Vec::new();
    let layout = layout();
    for zone in layout.zones() {
        let prefix = format!("anchor-{}-{}-", zone.x(), zone.y());
        let name = name_spawning_in(&layout, &prefix, zone, 4.0)?;
        let client = runtime.block_on(join(&addrs, &fixture.shared, &name, &retried))?;
        tasks.push(AbortOnDrop(runtime.spawn(circle(
            client,
            stop.clone(),
            lost.clone(),
        ))));
    }
    wait_until("every zone is held", Duration::from_secs(30), POLL, || {
        nodes.iter().map(|n| n.held_zones().len()).sum::<usize>() == layout.zones().count()
    })?;
    let hot = hot_zones(&nodes);
    eprintln!("{name}: hot zones {hot:?}; {players} players in each");
    let skewed = Instant::now();
    for zone in &hot {
        for i in 0..players {
            let prefix = format!("crowd-{}-{}-{i}-", zone.x(), zone.y());
            let name = name_spawning_in(&layout, &prefix, *zone, 6.0)?;
            let client = runtime.block_on(join(&addrs, &fixture.shared, &name, &retried))?;
            tasks.push(AbortOnDrop(runtime.spawn(circle(
                client,
                stop.clone(),
                lost.clone(),
            ))));
        }
    }
    let joined_in = skewed.elapsed();
    let (moves, last_move_end) = wait_quiet(&nodes, Instant::now())?;
    let converged_in =
        last_move_end.map_or(Duration::ZERO, |end| end.saturating_duration_since(skewed));
    let measured = measure(&nodes)?;
    let moves_after = total_moves(&nodes);
    stop.store(true, Ordering::Release);
    drop(tasks);
    let panics: Vec<String> = nodes.iter().filter_map(Node::panic_in_log).collect();
    if !panics.is_empty() {
        bail!(
            "a node panicked, the figures are void: {}",
            panics.join("; ")
        );
    }
    Ok(Phase {
        name,
        moves,
        joined_in,
        converged_in,
        nodes: measured,
        moves_in_window: moves_after.saturating_sub(moves),
        players_lost: lost.load(Ordering::Acquire),
        joins_retried: retried.load(Ordering::Acquire),
    })
}

/// The [`HOT_ZONES`] lowest zones of the node holding the most (ties: the lowest
/// node index): the load hashing put together.
fn hot_zones(nodes: &[Node]) -> Vec<ZoneId> {
    let held: Vec<Vec<u32>> = nodes
        .iter()
        .map(|n| n.held_zones().into_iter().collect())
        .collect();
    let most = held
        .iter()
        .enumerate()
        .max_by_key(|(i, zones)| (zones.len(), std::cmp::Reverse(*i)))
        .map(|(_, zones)| zones.clone())
        .unwrap_or_default();
    most.into_iter().take(HOT_ZONES).map(ZoneId).collect()
}

/// Connects `name` through node 0 (following its redirect), with every node to
/// reconnect to, and waits until it sees itself. A connect that gives up is tried
/// again (at most [`JOIN_TRIES`] in all), as a game would; each retry is counted in
/// `retried` and its reason printed.
async fn join(
    addrs: &[SocketAddr],
    shared: &Path,
    name: &str,
    retried: &AtomicU64,
) -> anyhow::Result<Client> {
    let mut config = ClientConfig::from_dev_data(addrs[0], shared, name)?;
    config.other_servers = addrs[1..].to_vec();
    let mut tries = 0;
    let mut client = loop {
        tries += 1;
        let outcome = tokio::time::timeout(CONNECT_LIMIT, Client::connect(config.clone())).await;
        let error = match outcome {
            Ok(Ok(client)) => break client,
            Ok(Err(e)) => anyhow::Error::from(e),
            Err(_) => anyhow::anyhow!("connect timed out"),
        };
        if tries >= JOIN_TRIES {
            return Err(error.context(format!("{name}: no session after {tries} connects")));
        }
        retried.fetch_add(1, Ordering::AcqRel);
        eprintln!("{name}: connect gave up ({error:#}); trying again");
    };
    see_itself(&mut client, name).await?;
    Ok(client)
}

/// Plays until `stop`: circles where it spawned (a new heading every 2 s), reading
/// every snapshot. A session that ends counts in `lost`.
async fn circle(mut client: Client, stop: Arc<AtomicBool>, lost: Arc<AtomicU64>) {
    let mut inputs = tokio::time::interval(INPUT_EVERY);
    let mut turn = 0u32;
    while !stop.load(Ordering::Acquire) {
        let ok = tokio::select! {
            done = client.wait_snapshot() => done.is_ok(),
            _ = inputs.tick() => {
                turn = turn.wrapping_add(1);
                let angle = (turn / 40) as f32;
                client.send_input(Vec2::new(angle.cos(), angle.sin()), 0).is_ok()
            }
        };
        if !ok {
            lost.fetch_add(1, Ordering::AcqRel);
            return;
        }
    }
}

/// Every move any node started so far.
fn total_moves(nodes: &[Node]) -> usize {
    nodes
        .iter()
        .filter_map(Node::moves)
        .map(|m| m.moves.len())
        .sum()
}

/// Waits until no move started or ended for [`QUIET`] and none is under way; returns
/// the moves made and when the last one ended.
fn wait_quiet(nodes: &[Node], since: Instant) -> anyhow::Result<(usize, Option<Instant>)> {
    let mut ends: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut last_change = since;
    let mut seen = (0usize, 0usize);
    while since.elapsed() < CONVERGE_LIMIT {
        let now = Instant::now();
        let reports: Vec<_> = nodes
            .iter()
            .filter_map(Node::moves)
            .flat_map(|m| m.moves)
            .collect();
        let in_progress = reports.iter().filter(|m| m.in_progress).count();
        for m in reports.iter().filter(|m| !m.in_progress) {
            let age = Duration::from_millis(m.age_ms);
            let took = Duration::from_millis(m.took_ms.unwrap_or(0));
            ends.entry(m.id).or_insert_with(|| now - age + took);
        }
        let state = (reports.len(), in_progress);
        if state != seen {
            seen = state;
            last_change = now;
        }
        if in_progress == 0 && now.duration_since(last_change) >= QUIET {
            return Ok((reports.len(), ends.values().max().copied()));
        }
        std::thread::sleep(POLL);
    }
    bail!("the cluster was still moving zones after {CONVERGE_LIMIT:?}")
}

/// Each node's CPU (share of one core), missed ticks and zones over [`MEASURE`].
fn measure(nodes: &[Node]) -> anyhow::Result<Vec<(f64, u64, usize)>> {
    let clk_tck = procfs::clk_tck();
    let before: Vec<_> = nodes
        .iter()
        .map(|n| Ok((procfs::sample(n.pid(), clk_tck)?, n.status()?)))
        .collect::<anyhow::Result<_>>()?;
    std::thread::sleep(MEASURE);
    nodes
        .iter()
        .zip(before)
        .map(|(n, (cpu0, status0))| {
            let cpu1 = procfs::sample(n.pid(), clk_tck)?;
            let status1 = n.status()?;
            let wall = cpu1.at.duration_since(cpu0.at).as_secs_f64();
            let missed = status1
                .ticks
                .since(&status0.ticks)
                .context("a node restarted while measured")?
                .missed_ticks;
            Ok((
                (cpu1.cpu_s - cpu0.cpu_s) / wall,
                missed,
                n.held_zones().len(),
            ))
        })
        .collect()
}

/// Prints the markdown for BENCHMARKS.md.
fn print_report(phases: &[Phase], players: usize, floor_ms: u64) {
    println!(
        "Skewed load on {NODES} nodes (PostgreSQL): {ZONES}x{ZONES} zones, {NPCS} NPCs, \
         {HOT_ZONES} zones with {players} players each, an anchor in every other zone; \
         rebalancer floor {floor_ms} ms/s."
    );
    println!();
    println!(
        "| placement | crowd joined in | moves | converged in | node CPU (% of a core) | max/min CPU | missed ticks | zones per node | moves while measured | players lost | connects retried |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for p in phases {
        let cpu: Vec<String> = p
            .nodes
            .iter()
            .map(|n| format!("{:.1}", n.0 * 100.0))
            .collect();
        let missed: Vec<String> = p.nodes.iter().map(|n| n.1.to_string()).collect();
        let zones: Vec<String> = p.nodes.iter().map(|n| n.2.to_string()).collect();
        println!(
            "| {} | {:.1} s | {} | {:.1} s | {} | {:.2} | {} | {} | {} | {} | {} |",
            p.name,
            p.joined_in.as_secs_f64(),
            p.moves,
            p.converged_in.as_secs_f64(),
            cpu.join(" / "),
            p.cpu_ratio(),
            missed.join(" / "),
            zones.join(" / "),
            p.moves_in_window,
            p.players_lost,
            p.joins_retried,
        );
    }
}
