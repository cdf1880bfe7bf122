//! `scenarios crowd`: a town square. One zone of 1,000 × 1,000 units holding 1,000
//! NPCs, an area of interest that covers all of it and a 60 kB snapshot budget, so
//! every client sees every entity, and bots wandering at 20 inputs/s: the load where
//! per-client snapshots cost clients × entities. For each bot count: server CPU,
//! bytes and snapshots per bot, input→visible latency, missed ticks and server memory
//! per bot and per entity a bot tracks.

use crate::gamerun::{self, GameRun};
use crate::report::{Spread, show};
use crate::scenarios::{Ctx, rss_per_bot_kib};
use crate::server::ServerSpec;
use crate::swarm::SwarmSpec;

/// Side of the crowd's one zone, world units.
const ZONE_SIDE: f64 = 1000.0;
/// NPCs in the zone.
const NPCS: u64 = 1000;
/// Area-of-interest radius: more than the zone's diagonal (1,414), so every entity is
/// in every bot's view.
const AOI_RADIUS: f64 = 1500.0;
/// Snapshot bytes per client per tick.
const BUDGET_BYTES: u64 = 60_000;

/// What `crowd` runs.
#[derive(Debug, clap::Args)]
pub(crate) struct CrowdArgs {
    /// Bot counts, each measured `--runs` times.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    crowd_bots: Vec<u64>,
}

/// The crowd's world: everyone in one zone, everyone in view.
pub(crate) fn crowd_world() -> ServerSpec {
    ServerSpec {
        zones: 1,
        zone_size: ZONE_SIDE,
        npcs: NPCS,
        aoi_radius: AOI_RADIUS,
        budget_bytes: BUDGET_BYTES,
        ..ServerSpec::demo()
    }
}

/// Runs every bot count `ctx.runs` times and prints one row per run, then the medians.
pub(crate) fn run(ctx: &Ctx, args: &CrowdArgs) -> anyhow::Result<Vec<GameRun>> {
    println!(
        "\n## Crowd (one {ZONE_SIDE}-unit zone, {NPCS} NPCs, everything in view, \
         {BUDGET_BYTES}-byte budget, {} s per run, `--workers 1`)\n",
        ctx.secs
    );
    println!(
        "| bots | server CPU (% of a core) | bytes down per bot/s | snapshots per bot/s | input→visible p50 / p99 (ms) | missed ticks | server RSS (MB) | RSS per bot (KiB) | per tracked entity (B) | swarm CPU (cores) | other load (cores) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut runs = Vec::new();
    for &bots in &args.crowd_bots {
        let mut of_count = Vec::new();
        for _ in 0..ctx.runs.max(1) {
            let run = gamerun::run(
                &ctx.placement,
                ctx.clk_tck,
                &crowd_world(),
                &SwarmSpec::wander(bots, ctx.secs),
            )?;
            print_row(&run);
            of_count.push(run);
        }
        print_medians(bots, &of_count);
        runs.extend(of_count);
    }
    Ok(runs)
}

/// Server memory per connected bot per entity it tracks (every NPC and every other
/// bot), bytes.
fn bytes_per_tracked_entity(run: &GameRun) -> f64 {
    let tracked = NPCS as f64 + run.swarm.bots_connected.saturating_sub(1) as f64;
    rss_per_bot_kib(run) * 1024.0 / tracked
}

fn print_row(run: &GameRun) {
    println!(
        "| {} | {:.1} | {:.0} | {:.1} | {:.1} / {:.1} | {} | {:.0} | {:.1} | {:.0} | {:.2} | {:.2} |",
        run.load.bots,
        run.server_steady_cores * 100.0,
        run.swarm.bytes_down_per_bot_per_s,
        run.swarm.snapshots_per_bot_per_s,
        run.swarm.input_to_visible_ms.p50,
        run.swarm.input_to_visible_ms.p99,
        run.missed_ticks,
        run.rss_end_kib as f64 / 1024.0,
        rss_per_bot_kib(run),
        bytes_per_tracked_entity(run),
        run.swarm_cores(),
        run.other_cores,
    );
}

/// The medians (and ranges) of `runs`, one line under their rows.
fn print_medians(bots: u64, runs: &[GameRun]) {
    let spread = |f: &dyn Fn(&GameRun) -> f64| Spread::of(runs.iter().map(f));
    println!(
        "| **{bots}, median [range] of {}** | {} | {} | {} | {} p99 | {} | | {} | {} | {} | |",
        runs.len(),
        show(spread(&|r| r.server_steady_cores * 100.0), 1),
        show(spread(&|r| r.swarm.bytes_down_per_bot_per_s), 0),
        show(spread(&|r| r.swarm.snapshots_per_bot_per_s), 1),
        show(spread(&|r| r.swarm.input_to_visible_ms.p99), 1),
        show(spread(&|r| r.missed_ticks as f64), 0),
        show(spread(&rss_per_bot_kib), 1),
        show(spread(&bytes_per_tracked_entity), 0),
        show(spread(&GameRun::swarm_cores), 2),
    );
}
