//! One measured run of the game: a fresh server, a settle period (idle CPU and RSS
//! with no bot), then the swarm to completion while both are sampled, then the
//! figures of that run.

use crate::child::Placement;
use crate::drive::{self, Point};
use crate::procfs;
use crate::server::{Server, ServerSpec};
use crate::swarm::{SwarmReport, SwarmSpec};
use anyhow::Context;
use serde::Serialize;
use std::time::Duration;

/// Wait after the server announced its address, for the zones to load.
const SETTLE: Duration = Duration::from_secs(3);
/// Idle measurement after settling (0 bots).
const IDLE_WINDOW: Duration = Duration::from_secs(2);
/// The steady window starts this long after the ramp ends...
const STEADY_AFTER_RAMP_S: f64 = 2.0;
/// ...and ends this long before the swarm's duration.
const STEADY_BEFORE_END_S: f64 = 1.0;
/// Slack over the swarm's duration before the run is declared stuck.
const SWARM_SLACK: Duration = Duration::from_secs(30);

/// What one game run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GameRun {
    /// The server's flags.
    pub(crate) server: ServerSpec,
    /// The swarm's flags.
    pub(crate) load: SwarmSpec,
    /// The swarm's report.
    pub(crate) swarm: SwarmReport,
    /// Ticks the server fell behind by while the swarm ran (its own counter).
    pub(crate) missed_ticks: u64,
    /// Worker rounds that overran while the swarm ran (its own counter).
    pub(crate) overruns: u64,
    /// The server's zone tick time over the run, milliseconds.
    pub(crate) zone_tick_ms: crate::swarm::Percentiles,
    /// The server's worker round time over the run, milliseconds.
    pub(crate) round_ms: crate::swarm::Percentiles,
    /// Server CPU with no bot (cores), before the swarm.
    pub(crate) server_idle_cores: f64,
    /// Server CPU in the steady window (all bots connected), cores.
    pub(crate) server_steady_cores: f64,
    /// Length of the steady window, seconds.
    pub(crate) steady_window_s: f64,
    /// Server RSS with no bot, KiB.
    pub(crate) rss_idle_kib: u64,
    /// Server RSS when the swarm ended, KiB.
    pub(crate) rss_end_kib: u64,
    /// Server peak RSS (VmHWM) over the run, KiB.
    pub(crate) hwm_kib: u64,
    /// Swarm CPU seconds over its whole run.
    pub(crate) swarm_cpu_s: f64,
    /// CPU the rest of the machine used while the swarm ran (cores): all busy time
    /// minus the server's and the swarm's. Other jobs on a shared machine show here.
    pub(crate) other_cores: f64,
    /// Server samples while the swarm ran (for RSS over time).
    #[serde(skip)]
    pub(crate) server_points: Vec<Point>,
}

impl GameRun {
    /// Swarm CPU in cores over its run.
    pub(crate) fn swarm_cores(&self) -> f64 {
        self.swarm_cpu_s / self.load.duration_s
    }

    /// Snapshots delivered per second in the steady window (all bots).
    pub(crate) fn snapshots_per_s(&self) -> f64 {
        self.swarm.snapshots_per_bot_per_s * self.swarm.bots_connected as f64
    }

    /// Server CPU microseconds per delivered snapshot in the steady window.
    pub(crate) fn server_us_per_snapshot(&self) -> f64 {
        crate::report::per_item_us(self.server_steady_cores, self.snapshots_per_s())
    }
}

/// Runs the server with `server` and the swarm with `load`, once.
pub(crate) fn run(
    placement: &Placement,
    clk_tck: u64,
    server: &ServerSpec,
    load: &SwarmSpec,
) -> anyhow::Result<GameRun> {
    let mut srv = Server::start(placement, server)?;
    std::thread::sleep(SETTLE);
    let idle_a = srv.sample(clk_tck)?;
    std::thread::sleep(IDLE_WINDOW);
    let idle_b = srv.sample(clk_tck)?;
    let server_idle_cores =
        (idle_b.cpu_s - idle_a.cpu_s) / idle_b.at.duration_since(idle_a.at).as_secs_f64();
    let rss_idle_kib = idle_b.memory.map_or(0, |m| m.rss_kib);

    let json_dir = tempfile::tempdir().context("cannot create a report directory")?;
    let json = json_dir.path().join("swarm.json");
    let busy_before = (procfs::machine_busy_s(clk_tck)?, srv.sample(clk_tck)?.cpu_s);
    let mut swarm = load.spawn(
        placement,
        &[srv.addr],
        Some(srv.admin),
        srv.data_dir(),
        &json,
    )?;
    let limit = Duration::from_secs_f64(load.duration_s) + SWARM_SLACK;
    let driven = drive::drive(&mut || srv.sample(clk_tck), &mut swarm, clk_tck, limit)?;
    drop(swarm);
    let busy_after = procfs::machine_busy_s(clk_tck)?;
    let report =
        SwarmReport::read(&json).with_context(|| format!("swarm exit ok: {}", driven.load_ok))?;
    let server_side = report.server.clone().with_context(|| {
        format!(
            "the swarm's report has no server figures (its admin endpoint did not answer); errors: {:?}",
            report.errors
        )
    })?;

    let server_cpu = drive::last_cpu_s(&driven.server) - busy_before.1;
    let swarm_cpu_s = drive::last_cpu_s(&driven.load);
    let wall = driven.server.last().map_or(1.0, |p| p.t_s.max(0.1));
    let other_cores = (busy_after - busy_before.0 - server_cpu - swarm_cpu_s) / wall;
    let (steady_cpu, steady_wall) = steady_window(&driven.server, load)
        .context("too few server samples in the steady window")?;
    Ok(GameRun {
        server: server.clone(),
        load: load.clone(),
        swarm: report,
        missed_ticks: server_side.missed_ticks,
        overruns: server_side.overruns,
        zone_tick_ms: server_side.zone_tick_ms,
        round_ms: server_side.round_ms,
        server_idle_cores,
        server_steady_cores: steady_cpu / steady_wall,
        steady_window_s: steady_wall,
        rss_idle_kib,
        rss_end_kib: drive::last_rss_kib(&driven.server).unwrap_or(0),
        hwm_kib: drive::peak_hwm_kib(&driven.server).unwrap_or(0),
        swarm_cpu_s,
        other_cores,
        server_points: driven.server,
    })
}

/// Server CPU over the steady window: after the ramp plus a margin, until just before
/// the end; the whole run when that window is too short.
fn steady_window(points: &[Point], load: &SwarmSpec) -> Option<(f64, f64)> {
    let start = load.ramp_s + STEADY_AFTER_RAMP_S;
    let end = load.duration_s - STEADY_BEFORE_END_S;
    if end - start >= 2.0 {
        drive::cpu_over(points, start, end)
    } else {
        drive::cpu_over(points, 0.0, load.duration_s)
    }
}
