//! Fixed-rate tick clock, sans-IO: the caller passes the current time and sleeps until
//! the deadline it gets back, so the policy is unit-tested without real time.
//!
//! Policy when a tick overruns: the simulation never speeds up to "catch up" (that
//! would make a slow server slower), and it never hides the loss either. Deadlines that
//! passed while the previous tick was running are *missed ticks*: counted, reported in
//! the zone status, and the schedule realigns to the next future deadline on the
//! original grid. Each simulated tick always advances the game by one fixed `dt`.

use std::time::{Duration, Instant};

/// The outcome of finishing one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickPlan {
    /// When the next tick should start.
    pub next_at: Instant,
    /// Deadlines skipped because this tick finished after them.
    pub missed: u64,
}

/// A fixed-period schedule anchored at its start time.
#[derive(Debug, Clone)]
pub struct TickClock {
    period: Duration,
    next_at: Instant,
    missed_total: u64,
}

impl TickClock {
    /// A clock ticking every `period`, first tick at `start`.
    pub fn new(start: Instant, period: Duration) -> Self {
        Self {
            period: period.max(Duration::from_micros(100)),
            next_at: start,
            missed_total: 0,
        }
    }

    /// The period for `hz` ticks per second (at least 1 Hz).
    pub fn period_for_hz(hz: u16) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(hz.max(1)))
    }

    /// When the upcoming tick is due.
    pub fn next_at(&self) -> Instant {
        self.next_at
    }

    /// Missed ticks so far.
    pub fn missed_total(&self) -> u64 {
        self.missed_total
    }

    /// Records that the tick due at `next_at` finished at `now` and plans the next one.
    pub fn finish_tick(&mut self, now: Instant) -> TickPlan {
        let mut next = self.next_at + self.period;
        let mut missed = 0;
        if now >= next {
            let behind = now.duration_since(next);
            // Whole periods fully elapsed past the deadline are missed; the tick in
            // progress at `now` is missed as well, so start at the next future one.
            let skipped = behind.as_nanos() / self.period.as_nanos() + 1;
            missed = u64::try_from(skipped).unwrap_or(u64::MAX);
            next += self.period * u32::try_from(skipped).unwrap_or(u32::MAX);
        }
        self.missed_total = self.missed_total.saturating_add(missed);
        self.next_at = next;
        TickPlan {
            next_at: next,
            missed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_millis(50);

    #[test]
    fn on_time_ticks_follow_the_grid() {
        let t0 = Instant::now();
        let mut c = TickClock::new(t0, P);
        let plan = c.finish_tick(t0 + Duration::from_millis(5));
        assert_eq!(
            plan,
            TickPlan {
                next_at: t0 + P,
                missed: 0
            }
        );
        let plan = c.finish_tick(t0 + P + Duration::from_millis(49));
        assert_eq!(
            plan,
            TickPlan {
                next_at: t0 + 2 * P,
                missed: 0
            }
        );
        assert_eq!(c.missed_total(), 0);
    }

    #[test]
    fn overrun_counts_missed_ticks_and_realigns() {
        let t0 = Instant::now();
        let mut c = TickClock::new(t0, P);
        // The first tick ran for 130 ms: deadlines at 50 and 100 passed.
        let plan = c.finish_tick(t0 + Duration::from_millis(130));
        assert_eq!(plan.missed, 2);
        assert_eq!(plan.next_at, t0 + 3 * P);
        assert_eq!(c.missed_total(), 2);
    }

    #[test]
    fn finishing_exactly_on_the_next_deadline_misses_it() {
        let t0 = Instant::now();
        let mut c = TickClock::new(t0, P);
        let plan = c.finish_tick(t0 + P);
        assert_eq!(plan.missed, 1);
        assert_eq!(plan.next_at, t0 + 2 * P);
    }

    #[test]
    fn period_for_hz_handles_zero() {
        assert_eq!(TickClock::period_for_hz(20), Duration::from_millis(50));
        assert_eq!(TickClock::period_for_hz(0), Duration::from_secs(1));
    }
}
