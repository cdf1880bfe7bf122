//! `cluster crossing`: how long a client goes without snapshots when its player walks
//! into a zone on another node (the old node hands the player over and redirects the
//! client mid-session), against walking into a zone on the same node (the player is
//! re-routed between zone inboxes), in the same run.
//!
//! Three nodes, a world of 3 × 3 zones. Row `r` is laid out so that its zones in
//! columns 0 and 1 are held by node `r` and its zone in column 2 by node `r + 1`
//! (mod 3): each row has a border inside one node and a border between two nodes.
//! Anchor players lay the world out (see [`crate::anchors`]). Then one walker per row
//! walks east and west across both borders of its row (see [`crate::walker`]).
//!
//! The gap of a crossing is the longest interval between consecutive snapshot
//! applications that overlaps the window of ±[`WINDOW`] around the instant the client
//! saw its new zone. The control is the same measure over windows of the same width
//! centred between two crossings, where nothing crosses.

use crate::anchors::{AbortOnDrop, connect, lay_out, name_spawning_in, see_itself};
use crate::fixture::{Fixture, NodeSettings};
use crate::node::Node;
use crate::stats::{max, median, ms, quantile};
use crate::walker::{Crossing, Route, Walk, first_from, last_before, longest_gap, own_x, walk};
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use zonemesh_server::zone::WorldLayout;
use zonemesh_shared::ids::ZoneId;

/// Nodes in the cluster, and rows of zones (one walker per row).
const NODES: usize = 3;
/// Zones along each side of the world.
const WORLD_ZONES: u16 = 3;
/// How far past each border the walkers turn: 0.75 s of walking at 8 units/s, so
/// consecutive crossings are at least 1.5 s apart.
const TURN_MARGIN: f32 = 6.0;
/// How far inside its first zone a walker spawns, at least.
const SPAWN_MARGIN: f32 = 8.0;
/// Half the width of the window around a crossing.
const WINDOW: Duration = Duration::from_millis(300);
/// Time allowed per crossing of each kind a walker must see (a back-and-forth walk of
/// 44 units each way takes 11 s and sees two of each), plus a fixed allowance.
const LIMIT_PER_CROSSING: Duration = Duration::from_secs(12);
const LIMIT_FIXED: Duration = Duration::from_secs(60);

/// The nodes' configuration: the small world, 3 × 3 zones.
pub(crate) fn settings() -> NodeSettings {
    NodeSettings::small(WORLD_ZONES)
}

/// The node that holds the zone in `column` of `row`.
fn host(column: u16, row: u16) -> usize {
    let row = usize::from(row);
    if column < 2 {
        row % NODES
    } else {
        (row + 1) % NODES
    }
}

fn layout() -> WorldLayout {
    WorldLayout {
        zones_x: WORLD_ZONES,
        zones_y: WORLD_ZONES,
        zone_size: settings().zone_size,
    }
}

/// Runs the walk until `crossings` crossings of each kind were seen (over all walkers)
/// and prints the report.
pub(crate) fn run(runtime: &Runtime, fixture: &Fixture, crossings: usize) -> anyhow::Result<()> {
    let nodes = fixture.start_cluster(NODES)?;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.players).collect();
    let _anchors = lay_out(runtime, &nodes, &fixture.shared, &layout(), |z| {
        host(z.x(), z.y())
    })?;
    let per_walker = crossings.div_ceil(NODES);
    let limit = LIMIT_FIXED + LIMIT_PER_CROSSING * u32::try_from(per_walker).unwrap_or(u32::MAX);
    eprintln!(
        "zones laid out; {NODES} walkers, {per_walker} crossings of each kind each, at most {limit:?}"
    );
    let started = Instant::now();
    let walks = runtime.block_on(walk_all(&addrs, &fixture.shared, per_walker, limit))?;
    let tick_hz = nodes[0].tick_hz().context("node 0 does not answer")?;
    let counters = crossing_counters(&nodes);
    print_report(&walks, tick_hz, started, &counters);
    let panics: Vec<String> = nodes.iter().filter_map(Node::panic_in_log).collect();
    if !panics.is_empty() {
        bail!(
            "a node panicked, the figures are void: {}",
            panics.join("; ")
        );
    }
    let failures: Vec<&str> = walks.iter().filter_map(|w| w.failure.as_deref()).collect();
    if !failures.is_empty() {
        bail!(
            "{} walks stopped early: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(())
}

/// Starts one walker per row, each from column 0 of its row through the row's node,
/// and waits for all of them (each bounded by `limit`).
async fn walk_all(
    addrs: &[SocketAddr],
    shared: &Path,
    per_kind: usize,
    limit: Duration,
) -> anyhow::Result<Vec<Walk>> {
    let size = layout().zone_size;
    let route = Route {
        west_x: size - TURN_MARGIN,
        east_x: 2.0 * size + TURN_MARGIN,
        cross_column: 2,
        per_kind,
        limit,
    };
    let mut tasks = Vec::new();
    for row in 0..WORLD_ZONES {
        let zone = ZoneId::grid(0, row);
        let name = name_spawning_in(&layout(), &format!("walker-{row}-"), zone, SPAWN_MARGIN)?;
        let mut client = connect(addrs[host(0, row)], shared, &name).await?;
        see_itself(&mut client, &name).await?;
        let x = own_x(&client).context("seen above")?;
        let spawn = zonemesh_server::demo::spawn_point(&name, layout().world_bounds().max);
        if client.zone() != zone || (x - spawn.x).abs() > 1.0 {
            bail!(
                "{name} is in {} at x = {x}, expected {zone} at x = {}: not the layout \
                 this benchmark assumes ({size}-unit zones)",
                client.zone(),
                spawn.x
            );
        }
        tasks.push(AbortOnDrop(tokio::spawn(walk(client, route))));
    }
    let mut walks = Vec::new();
    for task in &mut tasks {
        // Each walk ends by itself within `limit`; this bound covers its close.
        let walked = tokio::time::timeout(limit + Duration::from_secs(10), &mut task.0)
            .await
            .context("a walker overran its limit")?
            .context("a walker panicked")?;
        walks.push(walked);
    }
    Ok(walks)
}

/// The nodes' crossing counters, summed: players out, in, taken back, arrivals
/// expired.
fn crossing_counters(nodes: &[Node]) -> [u64; 4] {
    let mut sum = [0; 4];
    for c in nodes.iter().filter_map(Node::cluster) {
        let x = &c.crossings;
        for (s, v) in sum.iter_mut().zip([
            x.players_out,
            x.players_in,
            x.players_taken_back,
            x.arrivals_expired,
        ]) {
            *s += v;
        }
    }
    sum
}

/// The gaps of one kind of crossing (or of the control windows).
#[derive(Debug, Default)]
struct Gaps {
    gaps: Vec<Duration>,
    rtts: Vec<Duration>,
    /// For moves: last snapshot before → `Redirect` seen, → `Welcome` (the switch), →
    /// first snapshot after.
    to_redirect: Vec<Duration>,
    to_welcome: Vec<Duration>,
    to_snapshot: Vec<Duration>,
    /// Each crossing's gap with when it was seen and its steps (if a move whose
    /// `Redirect` was seen), to tell whether the slowest come early (cold caches) or
    /// at any time, and which step they spend in.
    each: Vec<(Duration, Instant, Option<[Duration; 3]>)>,
}

impl Gaps {
    fn add(&mut self, snapshots: &[Instant], c: &Crossing) {
        let Some(gap) = longest_gap(snapshots, c.at - WINDOW, c.at + WINDOW) else {
            return;
        };
        self.gaps.push(gap);
        self.rtts.push(c.rtt);
        let steps = match (
            c.redirect_seen,
            c.redirect_seen.and_then(|r| last_before(snapshots, r)),
            first_from(snapshots, c.at),
        ) {
            (Some(redirect), Some(before), Some(after)) => Some([
                redirect.duration_since(before),
                c.at.duration_since(redirect),
                after.duration_since(c.at),
            ]),
            _ => None,
        };
        self.each.push((gap, c.at, steps));
        if let Some([to_redirect, to_welcome, to_snapshot]) = steps {
            self.to_redirect.push(to_redirect);
            self.to_welcome.push(to_welcome);
            self.to_snapshot.push(to_snapshot);
        }
    }

    /// The `n` largest gaps, largest first.
    fn slowest(&self, n: usize) -> Vec<(Duration, Instant, Option<[Duration; 3]>)> {
        let mut each = self.each.clone();
        each.sort_by_key(|e| std::cmp::Reverse(e.0));
        each.truncate(n);
        each
    }
}

/// Every walk's crossings sorted by kind, and the control windows.
#[derive(Debug, Default)]
struct Sorted {
    same: Gaps,
    other: Gaps,
    control: Gaps,
    /// Gaps by `[between nodes][eastward]`.
    by_direction: [[Vec<Duration>; 2]; 2],
    unexpected: Vec<String>,
}

fn sort(walks: &[Walk]) -> Sorted {
    let mut s = Sorted::default();
    for w in walks {
        for c in &w.crossings {
            match (c.as_expected(), c.between_nodes) {
                (false, _) => s
                    .unexpected
                    .push(format!("{} → {} moved: {}", c.from, c.to, c.moved)),
                (true, false) => s.same.add(&w.snapshots, c),
                (true, true) => s.other.add(&w.snapshots, c),
            }
            if let (true, Some(gap)) = (
                c.as_expected(),
                longest_gap(&w.snapshots, c.at - WINDOW, c.at + WINDOW),
            ) {
                let east = c.to.x() > c.from.x();
                s.by_direction[usize::from(c.between_nodes)][usize::from(east)].push(gap);
            }
        }
        // Midway between two crossings at least four half-windows apart, nothing
        // crosses within a window.
        for pair in w.crossings.windows(2) {
            let apart = pair[1].at.duration_since(pair[0].at);
            if apart >= 4 * WINDOW {
                let mid = pair[0].at + apart / 2;
                if let Some(gap) = longest_gap(&w.snapshots, mid - WINDOW, mid + WINDOW) {
                    s.control.gaps.push(gap);
                }
            }
        }
    }
    s
}

/// The markdown report.
fn print_report(walks: &[Walk], tick_hz: u16, started: Instant, counters: &[u64; 4]) {
    let elapsed = started.elapsed();
    let s = sort(walks);
    let tick = Duration::from_secs(1) / u32::from(tick_hz.max(1));
    let rtts: Vec<Duration> = s.same.rtts.iter().chain(&s.other.rtts).copied().collect();
    let rtt = median(&rtts);
    println!(
        "{} walkers, {:.0} s; zones tick every {} ms (tick {} Hz); client RTT p50 {} ms \
         (quinn's estimate at each crossing); window ±{} ms around each crossing.",
        walks.len(),
        elapsed.as_secs_f64(),
        tick.as_millis(),
        tick_hz,
        ms(rtt, 3),
        WINDOW.as_millis()
    );
    println!();
    println!("| longest snapshot gap (ms) | samples | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (label, g) in [
        ("crossing into a zone on the same node", &s.same),
        ("crossing into a zone on another node", &s.other),
        ("no crossing (control windows)", &s.control),
    ] {
        println!(
            "| {label} | {} | {} | {} | {} |",
            g.gaps.len(),
            ms(median(&g.gaps), 1),
            ms(quantile(&g.gaps, 0.99), 1),
            ms(max(&g.gaps), 1)
        );
    }
    let diff = |q: f64| {
        let (o, s) = (quantile(&s.other.gaps, q), quantile(&s.same.gaps, q));
        o.zip(s)
            .map(|(o, s)| o.as_secs_f64() * 1e3 - s.as_secs_f64() * 1e3)
    };
    let budget = rtt.map(|r| (r + tick).as_secs_f64() * 1e3);
    let verdict = |d: Option<f64>| match (d, budget) {
        (Some(d), Some(b)) if d <= b => format!("{d:.1} (met, ≤ {b:.1})"),
        (Some(d), Some(b)) => format!("{d:.1} (**missed**, > {b:.1})"),
        _ => "—".to_owned(),
    };
    println!(
        "| **another node − same node** (target ≤ RTT + 1 tick) | | {} | {} | |",
        verdict(diff(0.5)),
        verdict(diff(0.99))
    );
    println!();
    print_directions(&s.by_direction);
    println!();
    print_move_breakdown(&s.other);
    println!();
    print_slowest(&s.other, started);
    println!();
    println!(
        "Crossings seen that did not do what the layout says: {}{}. Nodes' counters: \
         players out {}, in {}, taken back {}, arrivals expired {}.",
        s.unexpected.len(),
        if s.unexpected.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.unexpected.join(", "))
        },
        counters[0],
        counters[1],
        counters[2],
        counters[3]
    );
}

/// The gaps of each kind by the direction of the walk: the zones of a node tick one
/// after the other in one worker round, so whether the zone entered ticks before or
/// after the zone left may matter.
fn print_directions(by: &[[Vec<Duration>; 2]; 2]) {
    println!("| longest snapshot gap by direction (ms) | samples | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (between, kind) in [(0, "same node"), (1, "another node")] {
        for (east, way) in [(1, "eastward"), (0, "westward")] {
            let g = &by[between][east];
            println!(
                "| {kind}, {way} | {} | {} | {} | {} |",
                g.len(),
                ms(median(g), 1),
                ms(quantile(g, 0.99), 1),
                ms(max(g), 1)
            );
        }
    }
}

/// The slowest moves, each with when it happened and where its gap went.
fn print_slowest(g: &Gaps, started: Instant) {
    let one = |(gap, at, steps): (Duration, Instant, Option<[Duration; 3]>)| {
        let steps = steps.map_or_else(
            || "`Redirect` not seen".to_owned(),
            |s| {
                let [a, b, c] = s.map(|d| ms(Some(d), 1));
                format!("{a} + {b} + {c}")
            },
        );
        format!(
            "{} ms at {:.1} s ({steps})",
            ms(Some(gap), 1),
            at.saturating_duration_since(started).as_secs_f64()
        )
    };
    let slowest: Vec<String> = g.slowest(5).into_iter().map(one).collect();
    println!(
        "Slowest moves (gap at seconds into the walk, and its steps as in the table \
         above): {}.",
        slowest.join("; ")
    );
}

/// Where a move's gap goes, from the client's side.
fn print_move_breakdown(g: &Gaps) {
    println!(
        "| a move to another node, {} of {} with `Redirect` seen (ms) | p50 | p99 | max |",
        g.to_redirect.len(),
        g.gaps.len()
    );
    println!("|---|---:|---:|---:|");
    for (label, samples) in [
        (
            "last snapshot from the old node → `Redirect` read",
            &g.to_redirect,
        ),
        (
            "`Redirect` read → welcomed by the new node (handshake, `Hello`)",
            &g.to_welcome,
        ),
        (
            "welcomed → first snapshot from the new node",
            &g.to_snapshot,
        ),
    ] {
        println!(
            "| {label} | {} | {} | {} |",
            ms(median(samples), 1),
            ms(quantile(samples, 0.99), 1),
            ms(max(samples), 1)
        );
    }
}
