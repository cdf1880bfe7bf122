//! The final [`Report`] (pure: built from a [`MetricSet`]), its human-readable table,
//! and the live progress line.

use crate::metrics::{Counters, Metric, MetricSet};
use crate::own_cpu::OwnCpu;
use crate::server_figures::ServerFigures;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Percentiles of a latency histogram, in milliseconds. All zero when `count` is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Percentiles {
    /// Percentiles of a histogram of microseconds, in milliseconds.
    pub fn from_micros(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// Everything a run (or a merge of runs) found. Field names are the JSON keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Wall time of the run (the longest, for a merge), in seconds.
    pub duration_s: f64,
    /// False when built from interval logs that lacked their counter line (a run cut
    /// short): the counters then cover only the logs that had one.
    pub counters_complete: bool,
    /// Bots the run was asked for.
    pub bots_requested: u64,
    /// Bots that connected at least once.
    pub bots_connected: u64,
    /// Bots that never connected.
    pub bots_failed: u64,
    /// Sessions established (more than bots when churning).
    pub sessions: u64,
    /// Inputs sent.
    pub inputs_sent: u64,
    /// Inputs a snapshot acknowledged.
    pub inputs_acknowledged: u64,
    /// Border crossings seen (`ZoneChanged`).
    pub zone_changes: u64,
    /// `Redirect` answers followed, over every session: while connecting and
    /// mid-session (moves).
    pub redirects: u64,
    /// Sessions moving to another node: at connect (a redirect or retry landing on
    /// another address), mid-session (moves), and a rejoin landing elsewhere than the
    /// bot's last session.
    pub node_changes: u64,
    /// Mid-session moves: players crossing into a zone held by another node.
    pub moves: u64,
    /// Bots assigned to each `--server` address.
    pub bots_per_server: BTreeMap<String, u64>,
    /// Sessions by the address they were welcomed on (after redirects).
    pub sessions_per_server: BTreeMap<String, u64>,
    /// Sessions the server or network ended, by `code/kind`.
    pub disconnects: BTreeMap<String, u64>,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Intended start to `Welcome`, retries included.
    pub connect_ms: Percentiles,
    /// Intended start to the first snapshot (connect included).
    pub first_snapshot_ms: Percentiles,
    /// Intended input send time to the first snapshot acknowledging it (corrected for
    /// coordinated omission).
    pub input_to_visible_ms: Percentiles,
    /// Snapshot arrival jitter against the server's tick clock.
    pub jitter_ms: Percentiles,
    /// Mean over sessions of snapshot datagrams per second.
    pub snapshots_per_bot_per_s: f64,
    /// Mean over sessions of UDP bytes received per second.
    pub bytes_down_per_bot_per_s: f64,
    /// Mean over sessions of UDP bytes sent per second.
    pub bytes_up_per_bot_per_s: f64,
    /// The server's own figures over the run (missed ticks, tick times), read from
    /// its admin endpoint; `null` when none was given (or for a merge).
    pub server: Option<ServerFigures>,
    /// The swarm's own CPU over the run, and whether it was saturated; `null` for a
    /// merge.
    pub swarm: Option<OwnCpu>,
}

impl Report {
    /// Builds the report of `set`, measured over `duration`.
    pub fn build(set: &MetricSet, duration: Duration, counters_complete: bool) -> Self {
        let c: &Counters = &set.counters;
        let mean = |m: Metric| {
            let h = set.histogram(m);
            if h.is_empty() { 0.0 } else { h.mean() }
        };
        Self {
            duration_s: duration.as_secs_f64(),
            counters_complete,
            bots_requested: c.bots_requested,
            bots_connected: c.bots_connected,
            bots_failed: c.bots_failed,
            sessions: c.sessions,
            inputs_sent: c.inputs_sent,
            inputs_acknowledged: c.inputs_acknowledged,
            zone_changes: c.zone_changes,
            redirects: c.redirects,
            node_changes: c.node_changes,
            moves: c.moves,
            bots_per_server: c.bots_per_server.clone(),
            sessions_per_server: c.sessions_per_server.clone(),
            disconnects: c.disconnects.clone(),
            errors: c.errors.clone(),
            connect_ms: Percentiles::from_micros(set.histogram(Metric::Connect)),
            first_snapshot_ms: Percentiles::from_micros(set.histogram(Metric::FirstSnapshot)),
            input_to_visible_ms: Percentiles::from_micros(set.histogram(Metric::InputToVisible)),
            jitter_ms: Percentiles::from_micros(set.histogram(Metric::Jitter)),
            snapshots_per_bot_per_s: mean(Metric::SnapshotsPerSecondMilli) / 1000.0,
            bytes_down_per_bot_per_s: mean(Metric::BytesDownPerSecond),
            bytes_up_per_bot_per_s: mean(Metric::BytesUpPerSecond),
            server: None,
            swarm: None,
        }
    }

    /// The human-readable table printed at the end of a run or merge.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bots: {} requested, {} connected, {} failed; {} sessions over {:.1} s{}",
            self.bots_requested,
            self.bots_connected,
            self.bots_failed,
            self.sessions,
            self.duration_s,
            if self.counters_complete {
                ""
            } else {
                " (counters incomplete)"
            },
        );
        let _ = writeln!(
            out,
            "inputs: {} sent, {} acknowledged; {} zone changes",
            self.inputs_sent, self.inputs_acknowledged, self.zone_changes
        );
        let _ = writeln!(
            out,
            "routing: {} redirects followed, {} node changes ({} moves mid-session); bots per server: {}; sessions per server: {}",
            self.redirects,
            self.node_changes,
            self.moves,
            list(&self.bots_per_server),
            list(&self.sessions_per_server)
        );
        let _ = writeln!(
            out,
            "\n{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, p) in [
            ("connect", &self.connect_ms),
            ("first snapshot", &self.first_snapshot_ms),
            ("input to visible", &self.input_to_visible_ms),
            ("snapshot jitter", &self.jitter_ms),
        ] {
            let _ = writeln!(
                out,
                "{name:<18} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                p.count, p.p50, p.p90, p.p99, p.p999, p.max
            );
        }
        let _ = writeln!(
            out,
            "\nper bot per second: {:.1} snapshots, {:.0} bytes down, {:.0} bytes up",
            self.snapshots_per_bot_per_s,
            self.bytes_down_per_bot_per_s,
            self.bytes_up_per_bot_per_s
        );
        let _ = writeln!(out, "{}", server_line(self.server.as_ref()));
        if let Some(own) = &self.swarm {
            let _ = writeln!(out, "{}", own.line());
        }
        let _ = writeln!(out, "disconnects: {}", list(&self.disconnects));
        let _ = write!(out, "errors: {}", list(&self.errors));
        out
    }
}

/// What the server said about the run, or that it was not asked.
fn server_line(server: Option<&ServerFigures>) -> String {
    let Some(s) = server else {
        return "server: not asked (give --server-admin for its missed ticks and tick times)"
            .to_owned();
    };
    format!(
        "server (its admin endpoint): {} missed ticks, {} of {} rounds overran; zone tick p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} Hz, {} workers",
        s.missed_ticks,
        s.overruns,
        s.rounds,
        s.zone_tick_ms.p50,
        s.zone_tick_ms.p99,
        s.zone_tick_ms.max,
        s.tick_hz,
        s.workers
    )
}

fn list(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    let items: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
    items.join(", ")
}

/// What the progress line shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Time since the run started.
    pub elapsed: Duration,
    /// The run's length.
    pub duration: Duration,
    /// Sessions open now.
    pub connected_now: u64,
    /// Bots in the run.
    pub n_bots: u32,
    /// Inputs per second over the last interval.
    pub inputs_per_s: f64,
    /// Input-to-visible p99 so far, in ms (`None` before any sample).
    pub p99_ms: Option<f64>,
    /// Errors so far.
    pub n_errors: u64,
}

impl Progress {
    /// One line, without terminal control characters.
    pub fn line(&self) -> String {
        let p99 = self
            .p99_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
        format!(
            "[{:>6.1}/{:.0} s] connected {}/{} | inputs {:.0}/s | input-to-visible p99 {} | errors {}",
            self.elapsed.as_secs_f64(),
            self.duration.as_secs_f64(),
            self.connected_now,
            self.n_bots,
            self.inputs_per_s,
            p99,
            self.n_errors
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_set() -> MetricSet {
        let mut set = MetricSet::new();
        for ms in 1..=100 {
            set.record_duration(Metric::InputToVisible, Duration::from_millis(ms));
        }
        set.record_duration(Metric::Connect, Duration::from_millis(12));
        set.record(Metric::SnapshotsPerSecondMilli, 20_000);
        set.record(Metric::SnapshotsPerSecondMilli, 10_000);
        set.record(Metric::BytesDownPerSecond, 4000);
        set.counters.bots_requested = 2;
        set.counters.bots_connected = 2;
        set.counters.error("connect_timeout");
        set.counters.redirects = 3;
        set.counters.node_changes = 2;
        set.counters.moves = 1;
        set.counters.bots_per_server.insert("127.0.0.1:1".into(), 2);
        set.counters.session_on("127.0.0.1:9");
        set
    }

    #[test]
    fn percentiles_are_in_milliseconds() {
        let r = Report::build(&sample_set(), Duration::from_secs(3), true);
        let p = r.input_to_visible_ms;
        assert_eq!(p.count, 100);
        assert!((p.p50 - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p99 - 99.0).abs() < 0.1, "{p:?}");
        assert!((p.max - 100.0).abs() < 0.1, "{p:?}");
        assert!((r.connect_ms.p50 - 12.0).abs() < 0.02);
        assert_eq!(
            r.first_snapshot_ms,
            Percentiles::default(),
            "empty is all zero"
        );
        assert!((r.snapshots_per_bot_per_s - 15.0).abs() < 0.05);
        assert!((r.bytes_down_per_bot_per_s - 4000.0).abs() < 4.0);
        assert_eq!(r.bytes_up_per_bot_per_s, 0.0);
    }

    #[test]
    fn json_has_the_documented_keys() {
        let r = Report::build(&sample_set(), Duration::from_secs(3), true);
        let json = serde_json::to_value(&r).expect("serialisable");
        for key in [
            "bots_requested",
            "bots_connected",
            "bots_failed",
            "disconnects",
            "connect_ms",
            "first_snapshot_ms",
            "input_to_visible_ms",
            "jitter_ms",
            "snapshots_per_bot_per_s",
            "bytes_down_per_bot_per_s",
            "bytes_up_per_bot_per_s",
            "errors",
            "server",
            "redirects",
            "node_changes",
            "moves",
            "bots_per_server",
            "sessions_per_server",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(
                json["input_to_visible_ms"].get(key).is_some(),
                "missing {key}"
            );
        }
        assert_eq!(json["errors"]["connect_timeout"], 1);
        assert_eq!(
            (json["redirects"].as_u64(), json["node_changes"].as_u64()),
            (Some(3), Some(2))
        );
        assert_eq!(json["bots_per_server"]["127.0.0.1:1"], 2);
        assert_eq!(json["sessions_per_server"]["127.0.0.1:9"], 1);
    }

    #[test]
    fn table_lists_every_latency_and_the_errors() {
        let table = Report::build(&sample_set(), Duration::from_secs(3), false).table();
        for needle in [
            "connect",
            "first snapshot",
            "input to visible",
            "snapshot jitter",
            "connect_timeout 1",
            "counters incomplete",
            "disconnects: none",
            "server: not asked",
            "routing: 3 redirects followed, 2 node changes (1 moves mid-session)",
            "bots per server: 127.0.0.1:1 2; sessions per server: 127.0.0.1:9 1",
        ] {
            assert!(table.contains(needle), "{needle:?} missing from\n{table}");
        }
    }

    #[test]
    fn progress_line_reads_naturally() {
        let p = Progress {
            elapsed: Duration::from_millis(2500),
            duration: Duration::from_secs(10),
            connected_now: 40,
            n_bots: 50,
            inputs_per_s: 800.0,
            p99_ms: None,
            n_errors: 0,
        };
        assert_eq!(
            p.line(),
            "[   2.5/10 s] connected 40/50 | inputs 800/s | input-to-visible p99 - | errors 0"
        );
        let with_p99 = Progress {
            p99_ms: Some(12.34),
            ..p
        };
        assert!(with_p99.line().contains("p99 12.3 ms"));
    }
}
