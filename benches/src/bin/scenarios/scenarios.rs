//! The benchmark suite's scenarios: each runs the game (and for transport the raw
//! quinn baseline) a few times and prints a markdown section with its figures.

use crate::child::Placement;
use crate::echorun::{self, EchoRun, EchoSpec};
use crate::gamerun::{self, GameRun};
use crate::report::{self, Spread, show};
use crate::server::ServerSpec;
use crate::swarm::SwarmSpec;
use serde::Serialize;

/// Entities each bot should see (the capacity target's density).
pub(crate) const IN_VIEW_TARGET: f64 = 50.0;
/// Bots of the capacity target.
pub(crate) const TARGET_BOTS: u64 = 1000;
/// Warm-up excluded from the soak's RSS growth, seconds.
const SOAK_WARMUP_S: f64 = 30.0;

/// What every scenario needs.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// Binaries and cores.
    pub(crate) placement: Placement,
    /// Clock ticks per second of /proc.
    pub(crate) clk_tck: u64,
    /// Length of one run, seconds (ramp included).
    pub(crate) secs: f64,
    /// Runs per measured point.
    pub(crate) runs: usize,
}

/// The demo world with NPCs chosen so that each of `bots` bots sees about
/// [`IN_VIEW_TARGET`] entities (NPCs plus bots); never fewer than 0 NPCs.
pub(crate) fn dense_world(bots: u64) -> ServerSpec {
    let mut spec = ServerSpec::demo();
    let total = report::entities_for_view(IN_VIEW_TARGET, spec.world_side(), spec.aoi_radius);
    spec.npcs = (total.round() as u64).saturating_sub(bots);
    spec
}

/// Runs `f` `n` times, stopping at the first error.
fn repeat<T>(n: usize, mut f: impl FnMut(usize) -> anyhow::Result<T>) -> anyhow::Result<Vec<T>> {
    (0..n.max(1)).map(&mut f).collect()
}

/// Why a capacity step fails, if it does.
pub(crate) fn step_failure(run: &GameRun) -> Option<String> {
    let mut why = Vec::new();
    if run.missed_ticks > 0 {
        why.push(format!(
            "{} missed ticks ({} rounds overran)",
            run.missed_ticks, run.overruns
        ));
    }
    if let Some(w) = run.swarm.insanity(run.server.tick_hz) {
        why.push(format!("swarm: {w}"));
    }
    if run.swarm_cores() > 0.95 {
        why.push(format!(
            "swarm saturated its core ({:.2})",
            run.swarm_cores()
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Capacity: stepped bot counts; the largest step with no missed tick and sane swarm
/// numbers. Stops at the first failing step.
pub(crate) fn capacity(ctx: &Ctx, steps: &[u64]) -> anyhow::Result<(u64, Vec<GameRun>)> {
    println!(
        "\n## Capacity ({} s per step, 1 run per step, `--workers 1`)\n",
        ctx.secs
    );
    println!(
        "| bots | NPCs | missed ticks | round p99 / max (ms) | zone tick p99 / max (ms) | server CPU (cores, steady) | swarm CPU (cores) | snapshots/bot/s | input→visible p99 (ms) | RSS/bot (KiB) | other load (cores) | verdict |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut best = 0;
    let mut runs = Vec::new();
    for &bots in steps {
        let run = gamerun::run(
            &ctx.placement,
            ctx.clk_tck,
            &dense_world(bots),
            &SwarmSpec::wander(bots, ctx.secs),
        )?;
        let failure = step_failure(&run);
        print_capacity_row(&run, failure.as_deref());
        runs.push(run);
        if failure.is_some() {
            break;
        }
        best = bots;
    }
    println!("\nCapacity: **{best} bots** (target {TARGET_BOTS}).");
    Ok((best, runs))
}

fn print_capacity_row(run: &GameRun, failure: Option<&str>) {
    let bots = run.load.bots;
    println!(
        "| {bots} | {} | {} | {:.1} / {:.1} | {:.2} / {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.2} | {} |",
        run.server.npcs,
        run.missed_ticks,
        run.round_ms.p99,
        run.round_ms.max,
        run.zone_tick_ms.p99,
        run.zone_tick_ms.max,
        run.server_steady_cores,
        run.swarm_cores(),
        run.swarm.snapshots_per_bot_per_s,
        run.swarm.input_to_visible_ms.p99,
        rss_per_bot_kib(run),
        run.other_cores,
        failure.unwrap_or("pass"),
    );
}

/// Server RSS growth per connected bot in one run, KiB.
pub(crate) fn rss_per_bot_kib(run: &GameRun) -> f64 {
    let bots = run.swarm.bots_connected.max(1) as f64;
    (run.rss_end_kib as f64 - run.rss_idle_kib as f64) / bots
}

/// Latency runs, each followed (with `echo`) by the raw quinn baseline with the same
/// traffic.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LatencyRuns {
    /// Game runs.
    pub(crate) game: Vec<GameRun>,
    /// Baseline runs (empty without `echo`).
    pub(crate) echo: Vec<EchoRun>,
}

/// Runs the game at `bots` `ctx.runs` times, with the baseline after each when `echo`.
pub(crate) fn latency_runs(ctx: &Ctx, bots: u64, echo: bool) -> anyhow::Result<LatencyRuns> {
    let mut out = LatencyRuns {
        game: Vec::new(),
        echo: Vec::new(),
    };
    for _ in 0..ctx.runs.max(1) {
        let run = gamerun::run(
            &ctx.placement,
            ctx.clk_tck,
            &dense_world(bots),
            &SwarmSpec::wander(bots, ctx.secs),
        )?;
        if echo {
            let spec = echo_spec(&run, ctx.secs);
            out.echo
                .push(echorun::run(&ctx.placement, ctx.clk_tck, &spec)?);
        }
        out.game.push(run);
    }
    Ok(out)
}

/// The baseline traffic of a game run: as many connections as bots, answers at the
/// snapshot rate, payloads of the measured datagram sizes.
pub(crate) fn echo_spec(run: &GameRun, secs: f64) -> EchoSpec {
    let s = &run.swarm;
    let rate = s.snapshots_per_bot_per_s.max(1.0);
    EchoSpec {
        conns: s.bots_connected.max(1),
        rate_hz: rate,
        up_bytes: echorun::payload_bytes(s.bytes_up_per_bot_per_s, f64::from(run.load.input_hz)),
        down_bytes: echorun::payload_bytes(s.bytes_down_per_bot_per_s, rate),
        secs,
    }
}

/// Reads one figure out of a run.
type Figure = fn(&GameRun) -> f64;

/// Prints the latency section.
pub(crate) fn print_latency(runs: &LatencyRuns) {
    let g = &runs.game;
    let bots = g.first().map_or(0, |r| r.load.bots);
    println!(
        "\n## Latency at {bots} bots ({} runs of {} s)\n",
        g.len(),
        g.first().map_or(0.0, |r| r.load.duration_s)
    );
    let tick_ms = g
        .first()
        .map_or(50.0, |r| 1000.0 / f64::from(r.server.tick_hz));
    println!("| metric | median [min–max] | × tick ({tick_ms} ms) |");
    println!("|---|---:|---:|");
    let rows: [(&str, Figure); 9] = [
        ("input→visible p50 (ms)", |r| {
            r.swarm.input_to_visible_ms.p50
        }),
        ("input→visible p99 (ms)", |r| {
            r.swarm.input_to_visible_ms.p99
        }),
        ("input→visible p99.9 (ms)", |r| {
            r.swarm.input_to_visible_ms.p999
        }),
        ("jitter p99 (ms)", |r| r.swarm.jitter_ms.p99),
        ("missed ticks (server's counter)", |r| r.missed_ticks as f64),
        ("round p99 (ms, server's histogram)", |r| r.round_ms.p99),
        ("zone tick p99 (ms, server's histogram)", |r| {
            r.zone_tick_ms.p99
        }),
        ("zone tick max (ms, server's histogram)", |r| {
            r.zone_tick_ms.max
        }),
        ("other load on the machine (cores)", |r| r.other_cores),
    ];
    for (name, f) in rows {
        let s = Spread::of(g.iter().map(f));
        let ratio = s.map_or_else(|| "".into(), |s| format!("{:.2}", s.median / tick_ms));
        println!("| {name} | {} | {ratio} |", show(s, 1));
    }
}

/// Prints the transport section: server CPU per snapshot vs echo CPU per datagram.
pub(crate) fn print_transport(runs: &LatencyRuns) {
    println!("\n## Transport ({} paired runs)\n", runs.echo.len());
    let game_us = Spread::of(runs.game.iter().map(GameRun::server_us_per_snapshot));
    let marginal_us = Spread::of(runs.game.iter().map(|r| {
        report::per_item_us(
            r.server_steady_cores - r.server_idle_cores,
            r.snapshots_per_s(),
        )
    }));
    let echo_us = Spread::of(runs.echo.iter().map(EchoRun::us_per_datagram));
    let ratio = Spread::of(
        runs.game
            .iter()
            .zip(&runs.echo)
            .map(|(g, e)| g.server_us_per_snapshot() / e.us_per_datagram()),
    );
    let marginal_ratio = Spread::of(runs.game.iter().zip(&runs.echo).map(|(g, e)| {
        report::per_item_us(
            g.server_steady_cores - g.server_idle_cores,
            g.snapshots_per_s(),
        ) / e.us_per_datagram()
    }));
    if let Some(e) = runs.echo.first() {
        println!(
            "Baseline traffic: {} connections, {:.1} datagrams/s each way per connection, {} B up, {} B down (payload).\n",
            e.spec.conns, e.spec.rate_hz, e.spec.up_bytes, e.spec.down_bytes
        );
    }
    println!("| figure | median [min–max] |");
    println!("|---|---:|");
    println!(
        "| server CPU per delivered snapshot (µs, whole process) | {} |",
        show(game_us, 1)
    );
    println!(
        "| same, minus the idle world's CPU (µs) | {} |",
        show(marginal_us, 1)
    );
    println!(
        "| echo server CPU per datagram answered (µs) | {} |",
        show(echo_us, 1)
    );
    println!("| ratio server / echo (target ≤ 2) | {} |", show(ratio, 2));
    println!(
        "| ratio, idle world subtracted | {} |",
        show(marginal_ratio, 2)
    );
}

/// Bandwidth of one scene.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Scene {
    /// Name.
    pub(crate) name: &'static str,
    /// Its runs.
    pub(crate) runs: Vec<GameRun>,
    /// NPCs and bots one bot sees on average (from the world's density).
    pub(crate) in_view: (f64, f64),
    /// Naive full-state bytes per bot per second.
    pub(crate) naive_bytes_per_s: f64,
}

/// Bandwidth: wandering bots among wandering NPCs, and idle bots with no NPC.
pub(crate) fn bandwidth(ctx: &Ctx, moving_bots: u64) -> anyhow::Result<Vec<Scene>> {
    let moving = dense_world(moving_bots);
    let mut idle = ServerSpec::demo();
    idle.zones = 1;
    idle.npcs = 0;
    let idle_bots = report::entities_for_view(IN_VIEW_TARGET, idle.world_side(), idle.aoi_radius)
        .round() as u64;
    let scenes = [
        ("moving", moving, SwarmSpec::wander(moving_bots, ctx.secs)),
        ("idle", idle, idle_swarm(idle_bots, ctx.secs)),
    ];
    scenes
        .into_iter()
        .map(|(name, server, load)| scene(ctx, name, &server, &load))
        .collect()
}

fn idle_swarm(bots: u64, secs: f64) -> SwarmSpec {
    SwarmSpec {
        behavior: "idle",
        ..SwarmSpec::wander(bots, secs)
    }
}

fn scene(
    ctx: &Ctx,
    name: &'static str,
    server: &ServerSpec,
    load: &SwarmSpec,
) -> anyhow::Result<Scene> {
    let side = server.world_side();
    let npcs = report::expected_in_view(server.npcs as f64, side, server.aoi_radius);
    let bots = report::expected_in_view(load.bots as f64, side, server.aoi_radius);
    let naive = report::naive_bytes_per_s(
        npcs,
        bots,
        report::bot_name_len(load.bots),
        f64::from(server.tick_hz),
    );
    let runs = repeat(ctx.runs, |_| {
        gamerun::run(&ctx.placement, ctx.clk_tck, server, load)
    })?;
    Ok(Scene {
        name,
        runs,
        in_view: (npcs, bots),
        naive_bytes_per_s: naive,
    })
}

/// Prints the bandwidth section.
pub(crate) fn print_bandwidth(scenes: &[Scene]) {
    println!("\n## Bandwidth\n");
    println!(
        "| scene | world | bots | in view (NPCs + bots) | down B/bot/s | up B/bot/s | naive B/bot/s | down / naive |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for s in scenes {
        let Some(first) = s.runs.first() else {
            continue;
        };
        let down = Spread::of(s.runs.iter().map(|r| r.swarm.bytes_down_per_bot_per_s));
        let up = Spread::of(s.runs.iter().map(|r| r.swarm.bytes_up_per_bot_per_s));
        let ratio = Spread::of(
            s.runs
                .iter()
                .map(|r| r.swarm.bytes_down_per_bot_per_s / s.naive_bytes_per_s),
        );
        let w = &first.server;
        println!(
            "| {} | {}×{} zones of {}, {} NPCs | {} | {:.1} + {:.1} | {} | {} | {:.0} | {} |",
            s.name,
            w.zones,
            w.zones,
            w.zone_size,
            w.npcs,
            first.load.bots,
            s.in_view.0,
            s.in_view.1,
            show(down, 0),
            show(up, 0),
            s.naive_bytes_per_s,
            show(ratio, 3),
        );
    }
}

/// Swarm efficiency: the swarm's CPU for [`TARGET_BOTS`] wandering bots.
pub(crate) fn swarm_cost(ctx: &Ctx) -> anyhow::Result<Vec<GameRun>> {
    let mut own_only = Vec::new();
    let mut full = Vec::new();
    // Alternated, so both kinds of run meet the same machine.
    for _ in 0..ctx.runs.max(1) {
        for (full_replica, runs) in [(false, &mut own_only), (true, &mut full)] {
            let load = SwarmSpec {
                full_replica,
                ..SwarmSpec::wander(TARGET_BOTS, ctx.secs)
            };
            let world = dense_world(TARGET_BOTS);
            runs.push(gamerun::run(&ctx.placement, ctx.clk_tck, &world, &load)?);
        }
    }
    println!(
        "\n## Swarm efficiency ({TARGET_BOTS} bots, {} runs of {} s of each kind, alternated)\n",
        own_only.len(),
        ctx.secs
    );
    println!(
        "| figure | bots keep their own entity (default) | bots keep every entity (`--full-replica`) |"
    );
    println!("|---|---:|---:|");
    let both = |f: &dyn Fn(&GameRun) -> f64, digits: usize| {
        let of = |runs: &[GameRun]| show(Spread::of(runs.iter().map(f)), digits);
        (of(&own_only), of(&full))
    };
    let (a, b) = both(&GameRun::swarm_cores, 2);
    println!("| swarm CPU, cores over the run (target ≤ 0.33: 3,000 bots per core) | {a} | {b} |");
    let (a, b) = both(&|r| r.swarm.bots_connected as f64 / r.swarm_cores(), 0);
    println!("| bots per core of swarm | {a} | {b} |");
    let (a, b) = both(&|r| r.swarm.snapshots_per_bot_per_s, 1);
    println!("| snapshots/bot/s the swarm handled | {a} | {b} |");
    let (a, b) = both(&|r| r.swarm.input_to_visible_ms.p99, 1);
    println!("| input→visible p99 (ms) | {a} | {b} |");
    let (a, b) = both(&|r| r.server_steady_cores, 2);
    println!("| server CPU (cores, steady) | {a} | {b} |");
    own_only.extend(full);
    Ok(own_only)
}

/// Memory: RSS per connected bot, and RSS growth in a churn soak after warm-up.
pub(crate) fn memory(
    ctx: &Ctx,
    bots: u64,
    soak_secs: f64,
) -> anyhow::Result<(Vec<GameRun>, GameRun)> {
    let runs = repeat(ctx.runs, |_| {
        gamerun::run(
            &ctx.placement,
            ctx.clk_tck,
            &dense_world(bots),
            &SwarmSpec::wander(bots, ctx.secs),
        )
    })?;
    let soak_load = SwarmSpec {
        behavior: "churn",
        churn_s: 10.0,
        ..SwarmSpec::wander(bots, soak_secs)
    };
    let soak = gamerun::run(&ctx.placement, ctx.clk_tck, &dense_world(bots), &soak_load)?;
    print_memory(&runs, &soak);
    Ok((runs, soak))
}

/// RSS growth after warm-up in a soak: (KiB at the end − KiB at warm-up, KiB/min).
pub(crate) fn soak_growth(run: &GameRun) -> Option<(f64, f64)> {
    let at_warm = run
        .server_points
        .iter()
        .find(|p| p.t_s >= SOAK_WARMUP_S)
        .and_then(|p| p.rss_kib.map(|r| (p.t_s, r)))?;
    let last = run
        .server_points
        .iter()
        .rev()
        .find_map(|p| p.rss_kib.map(|r| (p.t_s, r)))?;
    let growth = last.1 as f64 - at_warm.1 as f64;
    let minutes = (last.0 - at_warm.0) / 60.0;
    (minutes > 0.0).then(|| (growth, growth / minutes))
}

fn print_memory(runs: &[GameRun], soak: &GameRun) {
    let bots = runs.first().map_or(0, |r| r.load.bots);
    println!(
        "\n## Memory ({bots} bots, {} runs; soak {} s churning)\n",
        runs.len(),
        soak.load.duration_s
    );
    let idle = Spread::of(runs.iter().map(|r| r.rss_idle_kib as f64 / 1024.0));
    let loaded = Spread::of(runs.iter().map(|r| r.rss_end_kib as f64 / 1024.0));
    let per_bot = Spread::of(runs.iter().map(rss_per_bot_kib));
    let hwm = Spread::of(runs.iter().map(|r| r.hwm_kib as f64 / 1024.0));
    println!("| figure | median [min–max] |");
    println!("|---|---:|");
    println!("| server RSS, 0 bots (MiB) | {} |", show(idle, 1));
    println!("| server RSS, {bots} bots (MiB) | {} |", show(loaded, 1));
    println!(
        "| server RSS per connected bot (KiB) | {} |",
        show(per_bot, 1)
    );
    println!("| server peak RSS, VmHWM (MiB) | {} |", show(hwm, 1));
    let missed = Spread::of(runs.iter().map(|r| r.missed_ticks as f64));
    println!("| missed ticks (server's counter) | {} |", show(missed, 0));
    println!(
        "| soak: missed ticks; round p99 / max (ms) | {}; {:.1} / {:.1} |",
        soak.missed_ticks, soak.round_ms.p99, soak.round_ms.max
    );
    match soak_growth(soak) {
        Some((kib, per_min)) => println!(
            "| soak: RSS growth after {SOAK_WARMUP_S} s warm-up (KiB; KiB/min) | {kib:.0}; {per_min:.0} (1 run, {} sessions) |",
            soak.swarm.sessions
        ),
        None => println!("| soak: RSS growth | n/a (soak shorter than its warm-up) |"),
    }
}
