//! The load: `zonemesh-swarm` started from the prebuilt binary, pinned, and the part
//! of its JSON report the scenarios use.

use crate::child::{ChildGuard, Placement};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

/// What the bots do and for how long (the swarm's flags).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SwarmSpec {
    /// `--bots`.
    pub(crate) bots: u64,
    /// `--ramp`, seconds.
    pub(crate) ramp_s: f64,
    /// `--duration`, seconds (ramp included).
    pub(crate) duration_s: f64,
    /// `--behavior`: idle, wander, cross, churn.
    pub(crate) behavior: &'static str,
    /// `--input-hz`.
    pub(crate) input_hz: u32,
    /// `--churn-secs` (churn only).
    pub(crate) churn_s: f64,
    /// `--full-replica`: each bot keeps every entity, as a game client does.
    pub(crate) full_replica: bool,
}

impl SwarmSpec {
    /// Wandering bots at 20 Hz.
    pub(crate) fn wander(bots: u64, duration_s: f64) -> Self {
        Self {
            bots,
            ramp_s: ramp_for(bots, duration_s),
            duration_s,
            behavior: "wander",
            input_hz: 20,
            churn_s: 10.0,
            full_replica: false,
        }
    }

    /// Starts the swarm against `servers` (bots spread over them round-robin), writing
    /// its report to `json`; with `admin`, the swarm reads that server's tick counters
    /// before and after its load (one server's only: a cluster's nodes are read by the
    /// scenario itself).
    pub(crate) fn spawn(
        &self,
        placement: &Placement,
        servers: &[SocketAddr],
        admin: Option<SocketAddr>,
        dev_data: &Path,
        json: &Path,
    ) -> anyhow::Result<ChildGuard> {
        let program = placement.binary("zonemesh-swarm")?;
        let mut cmd = Placement::command(&program, placement.load_core);
        let servers: Vec<String> = servers.iter().map(SocketAddr::to_string).collect();
        cmd.arg("--server").arg(servers.join(","));
        if let Some(admin) = admin {
            cmd.arg("--server-admin").arg(admin.to_string());
        }
        cmd.arg("--dev-data")
            .arg(dev_data)
            .arg("--json")
            .arg(json)
            .args(["--bots", &self.bots.to_string()])
            .args(["--ramp", &self.ramp_s.to_string()])
            .args(["--duration", &self.duration_s.to_string()])
            .args(["--behavior", self.behavior])
            .args(["--input-hz", &self.input_hz.to_string()])
            .args(["--churn-secs", &self.churn_s.to_string()])
            .args(self.full_replica.then_some("--full-replica"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        ChildGuard::spawn(cmd, "swarm")
    }
}

/// Ramp: 200 connections a second, at least 1 s and at most a third of the run.
pub(crate) fn ramp_for(bots: u64, duration_s: f64) -> f64 {
    (bots as f64 / 200.0).clamp(1.0, duration_s / 3.0)
}

/// Latency percentiles in milliseconds, as the swarm reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Percentiles {
    /// Samples.
    pub(crate) count: u64,
    /// Median.
    pub(crate) p50: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// 99.9th percentile.
    pub(crate) p999: f64,
    /// Largest.
    pub(crate) max: f64,
}

/// The fields of the swarm's JSON report the scenarios read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SwarmReport {
    /// Wall time of the run.
    pub(crate) duration_s: f64,
    /// Bots asked for.
    pub(crate) bots_requested: u64,
    /// Bots that connected at least once.
    pub(crate) bots_connected: u64,
    /// Bots that never connected.
    pub(crate) bots_failed: u64,
    /// Sessions (more than bots when churning).
    pub(crate) sessions: u64,
    /// Inputs sent.
    pub(crate) inputs_sent: u64,
    /// Inputs acknowledged by a snapshot.
    pub(crate) inputs_acknowledged: u64,
    /// Zone changes the bots saw (crossings of a border, on one node or between two).
    #[serde(default)]
    pub(crate) zone_changes: u64,
    /// Sessions ended by the server or network, by kind.
    #[serde(default)]
    pub(crate) disconnects: BTreeMap<String, u64>,
    /// Failures by kind.
    #[serde(default)]
    pub(crate) errors: BTreeMap<String, u64>,
    /// Input sent to visible in a snapshot.
    pub(crate) input_to_visible_ms: Percentiles,
    /// Snapshot arrival jitter.
    pub(crate) jitter_ms: Percentiles,
    /// Snapshot datagrams per bot per second.
    pub(crate) snapshots_per_bot_per_s: f64,
    /// UDP bytes received per bot per second (QUIC overhead included).
    pub(crate) bytes_down_per_bot_per_s: f64,
    /// UDP bytes sent per bot per second.
    pub(crate) bytes_up_per_bot_per_s: f64,
    /// What the server itself reported over the run (from its admin endpoint).
    #[serde(default)]
    pub(crate) server: Option<ServerSide>,
}

/// The server's own figures over a swarm run, as the swarm's report carries them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ServerSide {
    /// Ticks the server fell behind by.
    pub(crate) missed_ticks: u64,
    /// Worker rounds that overran.
    pub(crate) overruns: u64,
    /// Worker rounds in the window.
    pub(crate) rounds: u64,
    /// One zone's tick time.
    pub(crate) zone_tick_ms: Percentiles,
    /// One worker round's time (every zone of the worker once): a round longer than
    /// the tick period is what misses ticks.
    pub(crate) round_ms: Percentiles,
}

impl SwarmReport {
    /// Parses the swarm's `--json` output.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        serde_json::from_str(text).context("the swarm's JSON report has an unexpected shape")
    }

    /// Reads and parses the report file.
    pub(crate) fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "the swarm wrote no report to {} (did it fail to start?)",
                path.display()
            )
        })?;
        Self::parse(&text)
    }

    /// Why the swarm's own numbers are not sane, if they are not: bots missing,
    /// sessions ended, errors, or snapshots arriving at under 90 % of the tick rate.
    pub(crate) fn insanity(&self, tick_hz: u32) -> Option<String> {
        let mut why = Vec::new();
        if self.bots_connected < self.bots_requested || self.bots_failed > 0 {
            why.push(format!(
                "{}/{} bots connected",
                self.bots_connected, self.bots_requested
            ));
        }
        let disconnects: u64 = self.disconnects.values().sum();
        if disconnects > 0 {
            why.push(format!("{disconnects} disconnects {:?}", self.disconnects));
        }
        let errors: u64 = self.errors.values().sum();
        if errors > 0 {
            why.push(format!("{errors} errors {:?}", self.errors));
        }
        if self.snapshots_per_bot_per_s < 0.9 * f64::from(tick_hz) {
            why.push(format!(
                "{:.1} snapshots/s per bot (tick {tick_hz} Hz)",
                self.snapshots_per_bot_per_s
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"duration_s":20.0,"counters_complete":true,"bots_requested":100,
      "bots_connected":100,"bots_failed":0,"sessions":100,"inputs_sent":39000,
      "inputs_acknowledged":38900,"zone_changes":3,"disconnects":{},"errors":{},
      "connect_ms":{"count":100,"p50":3.0,"p90":4.0,"p99":5.0,"p999":5.0,"max":5.0,"mean":3.1},
      "first_snapshot_ms":{"count":100,"p50":3.0,"p90":4.0,"p99":5.0,"p999":5.0,"max":5.0,"mean":3.1},
      "input_to_visible_ms":{"count":38900,"p50":40.1,"p90":60.0,"p99":80.2,"p999":95.5,"max":120.0,"mean":41.0},
      "jitter_ms":{"count":38000,"p50":0.5,"p90":1.0,"p99":3.0,"p999":5.0,"max":9.0,"mean":0.6},
      "snapshots_per_bot_per_s":19.98,"bytes_down_per_bot_per_s":14000.5,"bytes_up_per_bot_per_s":2100.0,
      "server":{"window_s":19.9,"tick_hz":20,"workers":1,"rounds":398,"overruns":2,"missed_ticks":3,
        "zone_ticks":6368,"zone_tick_ms":{"count":6368,"p50":0.4,"p90":0.6,"p99":1.2,"p999":60.0,"max":75.5,"mean":0.45},
        "round_ms":{"count":398,"p50":6.0,"p90":7.0,"p99":9.0,"p999":80.0,"max":80.0,"mean":6.2}}}"#;

    #[test]
    fn parses_the_swarm_report() {
        let r = SwarmReport::parse(REPORT).unwrap();
        assert_eq!(r.bots_connected, 100);
        assert!((r.input_to_visible_ms.p999 - 95.5).abs() < 1e-9);
        assert!((r.bytes_down_per_bot_per_s - 14000.5).abs() < 1e-9);
        assert_eq!(r.insanity(20), None);
        let server = r.server.expect("the server's figures");
        assert_eq!(
            (server.missed_ticks, server.overruns, server.rounds),
            (3, 2, 398)
        );
        assert!((server.zone_tick_ms.p99 - 1.2).abs() < 1e-9);
        assert!((server.round_ms.max - 80.0).abs() < 1e-9);
    }

    #[test]
    fn a_report_without_server_figures_says_so() {
        let without = REPORT.replace(r#""server":{"#, r#""ignored":{"#);
        assert_eq!(SwarmReport::parse(&without).unwrap().server, None);
    }

    #[test]
    fn malformed_report_is_an_error_not_a_panic() {
        assert!(SwarmReport::parse("{").is_err());
        assert!(SwarmReport::parse(r#"{"duration_s":"x"}"#).is_err());
    }

    #[test]
    fn insanity_names_every_problem() {
        let mut r = SwarmReport::parse(REPORT).unwrap();
        r.bots_connected = 90;
        r.disconnects.insert("SlowClient".into(), 2);
        r.snapshots_per_bot_per_s = 12.0;
        let why = r.insanity(20).unwrap();
        assert!(why.contains("90/100") && why.contains("disconnects") && why.contains("12.0"));
    }

    #[test]
    fn ramp_is_bounded_by_the_run() {
        assert!((ramp_for(100, 20.0) - 1.0).abs() < 1e-9);
        assert!((ramp_for(1000, 20.0) - 5.0).abs() < 1e-9);
        assert!((ramp_for(4000, 20.0) - 20.0 / 3.0).abs() < 1e-9);
    }
}
