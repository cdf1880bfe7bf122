//! Sans-IO retry schedule: exponential backoff with full jitter, server hints and an
//! overall deadline. Time and randomness are passed in, so the schedule is tested
//! without sleeping.

use rand::Rng;
use rand::rngs::StdRng;
use std::time::{Duration, Instant};

/// Exponential backoff with full jitter (AWS "Exponential Backoff and Jitter").
///
/// The n-th delay (from 0) is drawn uniformly from `[0, min(max, initial * 2^n)]`, so
/// many clients refused at the same moment spread their retries instead of returning
/// together. A server's `retry_after` hint is a floor: the delay is
/// `max(hint, jittered backoff)`.
#[derive(Debug, Clone)]
pub struct Backoff<R = StdRng> {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: R,
}

impl<R: Rng> Backoff<R> {
    /// A schedule starting at `initial` and never exceeding `max` (before hints).
    /// `max` below `initial` is raised to `initial`.
    pub fn new(initial: Duration, max: Duration, rng: R) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng,
        }
    }

    /// Upper bound of the next delay's jitter range: `min(max, initial * 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        // Past 2^20 the product exceeds any sensible max; saturate instead of overflowing.
        let factor = 1u32 << self.attempt.min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Delays handed out so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The next delay: jittered backoff, raised to `hint` if the server asked for more.
    pub fn next_delay(&mut self, hint: Option<Duration>) -> Duration {
        let ceiling = self.ceiling();
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(self.rng.random_range(0..=nanos));
        self.attempt = self.attempt.saturating_add(1);
        jittered.max(hint.unwrap_or(Duration::ZERO))
    }

    /// The next delay if waiting it out still ends before `deadline`, else `None`
    /// (the caller gives up rather than retrying after the deadline).
    pub fn next_delay_before(
        &mut self,
        now: Instant,
        deadline: Instant,
        hint: Option<Duration>,
    ) -> Option<Duration> {
        let delay = self.next_delay(hint);
        let resume = now.checked_add(delay)?;
        (resume < deadline).then_some(delay)
    }

    /// Starts the schedule over (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const MS: Duration = Duration::from_millis(1);

    fn backoff(seed: u64) -> Backoff {
        Backoff::new(100 * MS, 2000 * MS, StdRng::seed_from_u64(seed))
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let mut b = backoff(1);
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            ceilings.push(b.ceiling());
            b.next_delay(None);
        }
        let expected = [100, 200, 400, 800, 1600, 2000, 2000, 2000].map(|m| m * MS);
        assert_eq!(ceilings, expected);
        assert_eq!(b.attempts(), 8);
    }

    #[test]
    fn delays_stay_within_jitter_range_and_spread() {
        for seed in 0..50 {
            let mut b = backoff(seed);
            for _ in 0..10 {
                let ceiling = b.ceiling();
                let d = b.next_delay(None);
                assert!(d <= ceiling, "seed {seed}: {d:?} > {ceiling:?}");
            }
        }
        // Full jitter: the same step differs between clients.
        let firsts: std::collections::HashSet<_> =
            (0..20).map(|s| backoff(s).next_delay(None)).collect();
        assert!(firsts.len() > 10, "jitter is not spreading: {firsts:?}");
    }

    #[test]
    fn server_hint_is_a_floor() {
        let mut b = backoff(7);
        assert!(b.next_delay(Some(1500 * MS)) >= 1500 * MS);
        let mut late = backoff(7);
        for _ in 0..10 {
            late.next_delay(None);
        }
        assert!(late.next_delay(Some(5 * MS)) <= 2000 * MS);
    }

    #[test]
    fn same_seed_gives_same_schedule() {
        let (mut a, mut b) = (backoff(42), backoff(42));
        for _ in 0..10 {
            assert_eq!(a.next_delay(None), b.next_delay(None));
        }
    }

    #[test]
    fn deadline_stops_retries_that_would_end_too_late() {
        let now = Instant::now();
        let mut b = backoff(3);
        assert_eq!(b.next_delay_before(now, now + 10 * MS, Some(50 * MS)), None);
        let d = b.next_delay_before(now, now + 10_000 * MS, None);
        assert!(d.is_some_and(|d| d <= 200 * MS));
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.ceiling(), 100 * MS);
    }

    #[test]
    fn max_below_initial_is_raised() {
        let b = Backoff::new(300 * MS, 10 * MS, StdRng::seed_from_u64(0));
        assert_eq!(b.ceiling(), 300 * MS);
    }
}
