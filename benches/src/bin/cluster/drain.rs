//! `cluster drain`: a node holding every zone of the world and `--players` SDK
//! players is drained (`POST /drain`, what `zonemesh-ctl drain` sends) while they play:
//! how long until it holds nothing, the longest pause any player saw (the longest
//! interval between its consecutive snapshots during the drain), and how many
//! players lost their session.
//!
//! Two nodes; a world of 5 × 5 zones of 32 units, [`NPCS`] NPCs, an area of interest
//! of [`AOI`] units (each player sees its surroundings, as in a real world, not the
//! whole world: with every entity in view, 500 SDK clients on this machine's two
//! cores cannot keep up with their snapshots and the pauses measure them); the players join
//! through node 0, so every zone they spawn in is activated there (names spread
//! players over the world: with a few hundred, every zone has some). Each player
//! sends an input every 50 ms. Each player's SDK client keeps only its own entity by
//! default (`--client-replica own`): 500 clients keeping the world, all in this one
//! process on the machine that also runs both nodes, fall behind their snapshots, and
//! the pauses then measure them.

use crate::fixture::{Fixture, NodeSettings};
use crate::handoff::{Player, join_all, play};
use crate::node::Node;
use crate::stats::{max, median, ms, quantile};
use crate::walker::longest_gap;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use zonemesh_client::ReplicaScope;

/// Zones along each side of the world.
const ZONES: u16 = 5;
/// NPCs in the whole world.
const NPCS: u64 = 400;
/// Area-of-interest radius, world units.
const AOI: f32 = 16.0;
/// Longest the drain may take before the run fails.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// Play before the drain starts, and after it ended (a late snapshot still counts).
const SETTLE: Duration = Duration::from_secs(2);

/// The nodes' configuration: 5 × 5 zones of 32 units.
pub(crate) fn settings() -> NodeSettings {
    NodeSettings {
        npcs: NPCS,
        aoi_radius: AOI,
        ..NodeSettings::small(ZONES)
    }
}

/// Drains node 0 under load and prints the report.
pub(crate) fn run(
    runtime: &Runtime,
    fixture: &Fixture,
    players: usize,
    scope: ReplicaScope,
) -> anyhow::Result<()> {
    let nodes = fixture.start_cluster(2)?;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.players).collect();
    let joined = runtime.block_on(join_all(&addrs[..1], &fixture.shared, players, scope))?;
    let held = nodes[0].held_zones().len();
    eprintln!("{players} players in {held} zones on node 0; draining it");
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = joined
        .into_iter()
        .map(|p| crate::anchors::AbortOnDrop(runtime.spawn(play(p, Arc::clone(&stop)))))
        .collect();
    std::thread::sleep(SETTLE);
    let started = Instant::now();
    nodes[0].drain()?;
    let took = wait_drained(&nodes[0])?;
    let ended = Instant::now();
    std::thread::sleep(SETTLE);
    stop.store(true, Ordering::Release);
    let mut after: Vec<Player> = Vec::new();
    let mut lost = Vec::new();
    for mut task in tasks {
        let done = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), &mut task.0).await })
            .context("a player did not stop")?
            .context("a player task panicked")?;
        match done {
            Ok(p) if p.client.reconnects() == 0 => after.push(p),
            Ok(p) => lost.push(format!("{} reconnected", p.name)),
            Err(e) => lost.push(format!("{e:#}")),
        }
    }
    let pauses: Vec<Duration> = after
        .iter()
        .filter_map(|p| longest_gap(&p.snapshots, started, ended))
        .collect();
    // The same measure over a window as long just before the drain: what the load
    // itself costs the players on this machine.
    let control: Vec<Duration> = after
        .iter()
        .filter_map(|p| longest_gap(&p.snapshots, started - took, started))
        .collect();
    let report = nodes[0].moves().map(|m| m.moves).unwrap_or_default();
    let moves = report.len();
    // The zones' own pauses: each was frozen (no ticks, no snapshots) from its freeze
    // to its redirect, whatever the players' machine made of it.
    let frozen: Vec<Duration> = report
        .iter()
        .filter_map(|m| m.pause_ms)
        .map(Duration::from_millis)
        .collect();
    let on_1 = nodes[1].held_zones().len();
    println!(
        "Drain of node 0: {held} zones, {players} players, {NPCS} NPCs, 2 nodes on PostgreSQL."
    );
    println!();
    println!(
        "| drained in | zones moved | zones on node 1 after | longest pause p50 | p99 | max | players disconnected |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {:.2} s | {moves} | {on_1} | {} ms | {} ms | {} ms | {} |",
        took.as_secs_f64(),
        ms(median(&pauses), 1),
        ms(quantile(&pauses, 0.99), 1),
        ms(max(&pauses), 1),
        lost.len(),
    );
    println!();
    println!(
        "Control, the same window just before the drain: longest gap p50 {} ms, p99 {} ms, max {} ms.",
        ms(median(&control), 1),
        ms(quantile(&control, 0.99), 1),
        ms(max(&control), 1),
    );
    println!(
        "Each zone frozen (freeze to redirect, node 0's moves report): p50 {} ms, p99 {} ms, max {} ms over {} moves.",
        ms(median(&frozen), 1),
        ms(quantile(&frozen, 0.99), 1),
        ms(max(&frozen), 1),
        frozen.len(),
    );
    for l in &lost {
        println!("- lost: {l}");
    }
    let panics: Vec<String> = nodes.iter().filter_map(Node::panic_in_log).collect();
    if !panics.is_empty() {
        bail!(
            "a node panicked, the figures are void: {}",
            panics.join("; ")
        );
    }
    Ok(())
}

/// Waits until node 0 says it is drained; returns how long that took.
fn wait_drained(node: &Node) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < DRAIN_LIMIT {
        if node.cluster().is_some_and(|c| c.drained) {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("the node was not drained within {DRAIN_LIMIT:?}")
}
