//! The swarm's own CPU over its load phase, and whether the swarm, rather than the
//! server, may be what limits a run's figures: a swarm that used nearly all of its
//! cores delivers inputs late and reads snapshots late, and the latencies it reports
//! are then partly its own.

use serde::Serialize;
use std::time::{Duration, Instant};

/// Share of its cores above which the swarm counts as saturated.
pub const SATURATED_SHARE: f64 = 0.9;

/// What the swarm used of its machine during a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OwnCpu {
    /// CPU the swarm's process used, in cores (CPU seconds per second of the run).
    pub cores_used: f64,
    /// Cores the swarm may run on (its affinity mask).
    pub cores_available: u32,
    /// True when `cores_used` reached [`SATURATED_SHARE`] of `cores_available`.
    pub saturated: bool,
}

impl OwnCpu {
    /// Judges `cpu` seconds used over `wall` seconds on `cores` cores.
    pub fn judge(cpu: Duration, wall: Duration, cores: u32) -> Self {
        let cores = cores.max(1);
        let cores_used = if wall.is_zero() {
            0.0
        } else {
            cpu.as_secs_f64() / wall.as_secs_f64()
        };
        Self {
            cores_used,
            cores_available: cores,
            saturated: cores_used >= SATURATED_SHARE * f64::from(cores),
        }
    }

    /// One line for the report's table; a saturated swarm says so and what to do.
    pub fn line(&self) -> String {
        let used = format!(
            "swarm: {:.2} of {} core(s)",
            self.cores_used, self.cores_available
        );
        if self.saturated {
            format!(
                "{used}. WARNING: the swarm, not only the server, limited this run (its \
                 latencies include its own delays); run fewer bots per swarm process, or \
                 give it more cores"
            )
        } else {
            used
        }
    }
}

/// Measures the process's CPU from its start.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    cpu: Duration,
    wall: Instant,
}

impl CpuClock {
    /// Starts measuring now.
    pub fn start() -> Self {
        Self {
            cpu: process_cpu_time(),
            wall: Instant::now(),
        }
    }

    /// What the process used since [`CpuClock::start`].
    pub fn finish(&self) -> OwnCpu {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        OwnCpu::judge(
            process_cpu_time().saturating_sub(self.cpu),
            self.wall.elapsed(),
            u32::try_from(cores).unwrap_or(u32::MAX),
        )
    }
}

/// CPU time every thread of this process has used so far.
fn process_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swarm_near_all_its_cores_is_saturated() {
        let secs = Duration::from_secs;
        let busy = OwnCpu::judge(secs(19), secs(20), 1);
        assert!(busy.saturated);
        assert!((busy.cores_used - 0.95).abs() < 1e-9);
        assert!(busy.line().contains("WARNING"));
        let spare = OwnCpu::judge(secs(19), secs(20), 2);
        assert!(!spare.saturated, "0.95 of 2 cores leaves room");
        assert!(!spare.line().contains("WARNING"));
        assert_eq!(OwnCpu::judge(secs(1), Duration::ZERO, 0).cores_used, 0.0);
    }

    #[test]
    fn the_clock_counts_this_process_working() {
        let clock = CpuClock::start();
        let mut x = 0u64;
        let until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let used = clock.finish();
        assert!(used.cores_used > 0.0, "{used:?}");
        assert!(used.cores_available >= 1);
    }
}
