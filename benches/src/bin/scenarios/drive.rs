//! Running a load child to completion while sampling both it and the server under
//! test from /proc, and the pure arithmetic over those samples (CPU over a window).

use crate::child::ChildGuard;
use crate::procfs::{self, Sample};
use anyhow::bail;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Time between samples.
const SAMPLE_PERIOD: Duration = Duration::from_millis(250);
/// Bounded wait for a zombie to be reaped after it was seen exiting.
const REAP_TRIES: u32 = 40;

/// One sample, relative to the start of the load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Point {
    /// Seconds since the load started.
    pub(crate) t_s: f64,
    /// CPU seconds of the process so far.
    pub(crate) cpu_s: f64,
    /// Resident set now, KiB (absent for an exited process).
    pub(crate) rss_kib: Option<u64>,
    /// Peak resident set so far, KiB.
    pub(crate) hwm_kib: Option<u64>,
}

impl Point {
    fn of(sample: &Sample, start: Instant) -> Self {
        Self {
            t_s: sample.at.duration_since(start).as_secs_f64(),
            cpu_s: sample.cpu_s,
            rss_kib: sample.memory.map(|m| m.rss_kib),
            hwm_kib: sample.memory.map(|m| m.hwm_kib),
        }
    }
}

/// Samples of a whole load run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Driven {
    /// The server under test, until after the load exited.
    pub(crate) server: Vec<Point>,
    /// The load process, the last one taken after it exited (a zombie's CPU times
    /// are final).
    pub(crate) load: Vec<Point>,
    /// Whether the load exited successfully.
    pub(crate) load_ok: bool,
}

/// Samples `server` and the `load` child every [`SAMPLE_PERIOD`] until the load
/// exits, at most `limit`.
pub(crate) fn drive(
    server: &mut dyn FnMut() -> anyhow::Result<Sample>,
    load: &mut ChildGuard,
    clk_tck: u64,
    limit: Duration,
) -> anyhow::Result<Driven> {
    let start = Instant::now();
    let mut out = Driven::default();
    loop {
        out.server.push(Point::of(&server()?, start));
        match procfs::sample(load.pid(), clk_tck) {
            Ok(s) => {
                out.load.push(Point::of(&s, start));
                if s.state == 'Z' {
                    break;
                }
            }
            // Gone from /proc: it exited and was reaped (not by us; unexpected).
            Err(_) => break,
        }
        if start.elapsed() > limit {
            bail!("the load did not finish within {limit:?}");
        }
        std::thread::sleep(SAMPLE_PERIOD);
    }
    out.server.push(Point::of(&server()?, start));
    out.load_ok = reap(load)?;
    Ok(out)
}

/// Reaps an exited child, waiting a little (bounded) for it.
fn reap(child: &mut ChildGuard) -> anyhow::Result<bool> {
    for _ in 0..REAP_TRIES {
        if let Some(ok) = child.try_reap()? {
            return Ok(ok);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the load child did not exit after it was seen exiting")
}

/// CPU seconds and wall seconds between the first sample at or after `start_s` and
/// the last at or before `end_s`; `None` when the window holds fewer than two.
pub(crate) fn cpu_over(points: &[Point], start_s: f64, end_s: f64) -> Option<(f64, f64)> {
    let first = points.iter().find(|p| p.t_s >= start_s)?;
    let last = points.iter().rev().find(|p| p.t_s <= end_s)?;
    let wall = last.t_s - first.t_s;
    (wall > 0.0).then_some((last.cpu_s - first.cpu_s, wall))
}

/// The largest `hwm_kib` seen.
pub(crate) fn peak_hwm_kib(points: &[Point]) -> Option<u64> {
    points.iter().filter_map(|p| p.hwm_kib).max()
}

/// The last `rss_kib` seen.
pub(crate) fn last_rss_kib(points: &[Point]) -> Option<u64> {
    points.iter().rev().find_map(|p| p.rss_kib)
}

/// The CPU seconds of the last point (final for an exited process).
pub(crate) fn last_cpu_s(points: &[Point]) -> f64 {
    points.last().map_or(0.0, |p| p.cpu_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t_s: f64, cpu_s: f64) -> Point {
        Point {
            t_s,
            cpu_s,
            rss_kib: Some(1000 + t_s as u64),
            hwm_kib: Some(2000 + t_s as u64),
        }
    }

    #[test]
    fn window_takes_the_samples_inside_it() {
        let pts: Vec<_> = (0..=10)
            .map(|i| p(f64::from(i), f64::from(i) * 0.5))
            .collect();
        let (cpu, wall) = cpu_over(&pts, 2.5, 8.2).unwrap();
        assert!((wall - 5.0).abs() < 1e-9, "{wall}");
        assert!((cpu - 2.5).abs() < 1e-9, "{cpu}");
    }

    #[test]
    fn window_without_two_samples_is_none() {
        let pts = vec![p(0.0, 0.0), p(5.0, 1.0)];
        assert_eq!(cpu_over(&pts, 1.0, 4.0), None);
        assert_eq!(cpu_over(&pts, 4.0, 6.0), None);
        assert_eq!(cpu_over(&[], 0.0, 1.0), None);
    }

    #[test]
    fn memory_helpers() {
        let mut pts = vec![p(0.0, 0.0), p(3.0, 1.0)];
        pts.push(Point {
            t_s: 4.0,
            cpu_s: 1.5,
            rss_kib: None,
            hwm_kib: None,
        });
        assert_eq!(peak_hwm_kib(&pts), Some(2003));
        assert_eq!(last_rss_kib(&pts), Some(1003));
        assert!((last_cpu_s(&pts) - 1.5).abs() < 1e-9);
    }
}
