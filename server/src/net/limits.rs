//! Per-connection limits, sans-IO (the caller passes the time): the input rate limiter
//! and the slow-client detector.

use std::time::{Duration, Instant};

/// Settings of a [`RateLimiter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained messages per second allowed.
    pub per_second: f64,
    /// Messages allowed in a burst above the sustained rate.
    pub burst: f64,
    /// Messages over the limit within one second that mark the client as flooding.
    pub flood_after: u32,
}

impl RateLimit {
    /// `per_second` sustained, bursts of twice that, flooding past twice that in a
    /// second: the shape of the reliable-event limit (30 gives the default).
    pub fn per_second_with_double_burst(per_second: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: 2.0 * f64::from(per_second),
            flood_after: per_second.saturating_mul(2),
        }
    }
}

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Within the limit: process it.
    Allow,
    /// Over the limit: drop it (the client stays connected).
    Drop,
    /// Persistently over the limit: end the session.
    Flood,
}

/// A token bucket plus a count of recent excess, per client.
///
/// Policy: messages beyond the bucket are dropped; a client whose excess within one
/// second reaches `flood_after` is disconnected (`InputFlood`). Honest clients send
/// far below the rate, so only misbehaving ones are ever dropped.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limit: RateLimit,
    tokens: f64,
    refilled_at: Instant,
    window_start: Instant,
    excess_in_window: u32,
    dropped_total: u64,
}

impl RateLimiter {
    /// A full bucket at `now`.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: limit.burst,
            refilled_at: now,
            window_start: now,
            excess_in_window: 0,
            dropped_total: 0,
        }
    }

    /// Judges one message arriving at `now`.
    pub fn check(&mut self, now: Instant) -> RateVerdict {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limit.per_second).min(self.limit.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return RateVerdict::Allow;
        }
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.excess_in_window = 0;
        }
        self.excess_in_window += 1;
        self.dropped_total += 1;
        if self.excess_in_window >= self.limit.flood_after {
            RateVerdict::Flood
        } else {
            RateVerdict::Drop
        }
    }

    /// Messages dropped so far.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }
}

/// Spots a client whose connection cannot carry its snapshots.
///
/// Policy: each time snapshots are sent the connection reports whether it is
/// congested (QUIC's datagram send buffer nearly full, or a snapshot replaced before it
/// could be sent). Stale snapshots are simply dropped (newest wins); only congestion
/// that lasts `grace` without a break ends the session with `SlowClient`.
#[derive(Debug, Clone)]
pub struct SlowClientDetector {
    grace: Duration,
    congested_since: Option<Instant>,
}

impl SlowClientDetector {
    /// A detector tolerating `grace` of continuous congestion.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            congested_since: None,
        }
    }

    /// Records one observation; true when the client must be disconnected.
    pub fn observe(&mut self, now: Instant, congested: bool) -> bool {
        if !congested {
            self.congested_since = None;
            return false;
        }
        let since = *self.congested_since.get_or_insert(now);
        now.saturating_duration_since(since) >= self.grace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        per_second: 10.0,
        burst: 5.0,
        flood_after: 20,
    };

    #[test]
    fn burst_then_sustained_rate_is_allowed() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(LIMIT, t0);
        for _ in 0..5 {
            assert_eq!(r.check(t0), RateVerdict::Allow);
        }
        assert_eq!(r.check(t0), RateVerdict::Drop);
        // 100 ms later one token is back.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(r.check(t1), RateVerdict::Allow);
        assert_eq!(r.check(t1), RateVerdict::Drop);
        assert_eq!(r.dropped_total(), 2);
    }

    #[test]
    fn steady_client_at_the_rate_is_never_dropped() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(LIMIT, t0);
        for i in 0..1000 {
            let t = t0 + Duration::from_millis(100 * i);
            assert_eq!(r.check(t), RateVerdict::Allow);
        }
    }

    #[test]
    fn sustained_excess_is_a_flood() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(LIMIT, t0);
        let verdicts: Vec<_> = (0..40).map(|_| r.check(t0)).collect();
        assert_eq!(
            verdicts
                .iter()
                .filter(|v| **v == RateVerdict::Allow)
                .count(),
            5
        );
        assert_eq!(verdicts[5 + 19], RateVerdict::Flood);
        assert!(verdicts[5..5 + 19].iter().all(|v| *v == RateVerdict::Drop));
    }

    #[test]
    fn excess_spread_over_windows_is_not_a_flood() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(LIMIT, t0);
        for s in 0..10u64 {
            let t = t0 + Duration::from_secs(s);
            // Drain the bucket, then 10 over the limit: below flood_after each second.
            for _ in 0..15 {
                assert_ne!(r.check(t), RateVerdict::Flood);
            }
        }
    }

    #[test]
    fn slow_client_needs_continuous_congestion() {
        let t0 = Instant::now();
        let mut d = SlowClientDetector::new(Duration::from_secs(2));
        assert!(!d.observe(t0, true));
        assert!(!d.observe(t0 + Duration::from_millis(1500), true));
        assert!(!d.observe(t0 + Duration::from_millis(1600), false));
        assert!(!d.observe(t0 + Duration::from_millis(3000), true));
        assert!(!d.observe(t0 + Duration::from_millis(4900), true));
        assert!(d.observe(t0 + Duration::from_millis(5000), true));
    }
}
