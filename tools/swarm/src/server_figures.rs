//! The server's own figures over a swarm run: its admin endpoint's status document
//! read when the run starts and when its load phase ends, and the difference. This is
//! the only way the swarm reports anything about the server (missed ticks, tick
//! times): what clients see (snapshot gaps, jitter) is reported as what clients see.

use crate::report::Percentiles;
use serde::Serialize;
use std::time::Duration;
use zonemesh_ctl::AdminClient;
use zonemesh_shared::status::{BucketCounts, NodeStatusReport};

/// What the server reported about the window of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerFigures {
    /// The window between the two readings, seconds.
    pub window_s: f64,
    /// The server's tick rate.
    pub tick_hz: u16,
    /// Its zone worker threads.
    pub workers: usize,
    /// Worker rounds in the window (each ticks every zone of one worker once).
    pub rounds: u64,
    /// Rounds that ended after the next one was due.
    pub overruns: u64,
    /// Ticks the server fell behind by (deadlines its overrunning rounds passed).
    pub missed_ticks: u64,
    /// Zone ticks simulated in the window.
    pub zone_ticks: u64,
    /// One zone's tick time, milliseconds.
    pub zone_tick_ms: Percentiles,
    /// One worker round's time, milliseconds.
    pub round_ms: Percentiles,
}

impl ServerFigures {
    /// The figures between two readings of one server, `before` taken first; an error
    /// when `after` is not a later reading of the same server (it restarted).
    pub fn between(
        before: &NodeStatusReport,
        after: &NodeStatusReport,
        window: Duration,
    ) -> Result<Self, String> {
        let ticks = after.ticks.since(&before.ticks).ok_or_else(|| {
            format!(
                "the server's counters went backwards (up {:.1} s, then {:.1} s): it restarted during the run",
                before.uptime_s, after.uptime_s
            )
        })?;
        Ok(Self {
            window_s: window.as_secs_f64(),
            tick_hz: after.tick_hz,
            workers: after.workers,
            rounds: ticks.rounds,
            overruns: ticks.overruns,
            missed_ticks: ticks.missed_ticks,
            zone_ticks: ticks.zone_ticks,
            zone_tick_ms: percentiles_ms(&ticks.zone_tick_us),
            round_ms: percentiles_ms(&ticks.round_us),
        })
    }
}

/// Percentiles of bucket counts in microseconds, in milliseconds.
fn percentiles_ms(us: &BucketCounts) -> Percentiles {
    if us.is_empty() {
        return Percentiles::default();
    }
    let ms = |v: u64| v as f64 / 1000.0;
    let count = us.len();
    let sum: f64 = us.0.iter().map(|&(v, n)| v as f64 * n as f64).sum();
    Percentiles {
        count,
        p50: ms(us.value_at_quantile(0.5)),
        p90: ms(us.value_at_quantile(0.9)),
        p99: ms(us.value_at_quantile(0.99)),
        p999: ms(us.value_at_quantile(0.999)),
        max: ms(us.max()),
        mean: sum / count as f64 / 1000.0,
    }
}

/// Reads the status document without blocking the runtime's threads.
pub(crate) async fn read_status(client: &AdminClient) -> Result<NodeStatusReport, String> {
    let client = client.clone();
    tokio::task::spawn_blocking(move || client.status())
        .await
        .map_err(|e| format!("the status request did not finish: {e}"))?
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonemesh_shared::status::TickTotals;

    fn reading(uptime_s: f64, ticks: TickTotals) -> NodeStatusReport {
        NodeStatusReport {
            version: "0".into(),
            uptime_s,
            tick_hz: 20,
            workers: 1,
            sessions: 7,
            busy_answers: 0,
            inbox_input_drops: 0,
            ticks,
            zones: Vec::new(),
            cluster: None,
        }
    }

    #[test]
    fn the_window_is_the_difference_of_two_readings() {
        let before = reading(
            3.0,
            TickTotals {
                rounds: 60,
                zone_ticks: 60,
                zone_tick_us: BucketCounts(vec![(500, 60)]),
                round_us: BucketCounts(vec![(510, 60)]),
                ..TickTotals::default()
            },
        );
        let after = reading(
            8.0,
            TickTotals {
                rounds: 150,
                overruns: 2,
                missed_ticks: 5,
                zone_ticks: 150,
                zone_tick_us: BucketCounts(vec![(500, 140), (90_000, 10)]),
                round_us: BucketCounts(vec![(510, 140), (91_000, 10)]),
            },
        );
        let f = ServerFigures::between(&before, &after, Duration::from_secs(5)).unwrap();
        assert_eq!((f.rounds, f.overruns, f.missed_ticks), (90, 2, 5));
        assert_eq!(f.zone_ticks, 90);
        assert_eq!(f.zone_tick_ms.count, 90);
        assert!((f.zone_tick_ms.p50 - 0.5).abs() < 1e-9);
        assert!((f.zone_tick_ms.max - 90.0).abs() < 1e-9);
        assert!((f.round_ms.p99 - 91.0).abs() < 1e-9);
    }

    #[test]
    fn a_restarted_server_is_an_error() {
        let before = reading(
            60.0,
            TickTotals {
                rounds: 1000,
                ..TickTotals::default()
            },
        );
        let after = reading(2.0, TickTotals::default());
        let e = ServerFigures::between(&before, &after, Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("restarted"), "{e}");
    }
}
