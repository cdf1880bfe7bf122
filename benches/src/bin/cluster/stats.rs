//! Order statistics of a handful of durations (medians, percentiles, maxima) and how
//! the tables print them.

use std::time::Duration;

/// The value at quantile `q` (0..=1) by nearest rank: the smallest sample with at
/// least `q` of the samples at or below it. `None` when there are no samples.
pub(crate) fn quantile(samples: &[Duration], q: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // Nearest rank: the ceil(q * n)-th sample, at least the first.
    let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

/// The median (the lower middle sample of an even count, by nearest rank).
pub(crate) fn median(samples: &[Duration]) -> Option<Duration> {
    quantile(samples, 0.5)
}

/// The largest sample.
pub(crate) fn max(samples: &[Duration]) -> Option<Duration> {
    samples.iter().max().copied()
}

/// Milliseconds with `decimals` places, or `—` for nothing.
pub(crate) fn ms(d: Option<Duration>, decimals: usize) -> String {
    d.map_or_else(
        || "—".to_owned(),
        |d| format!("{:.decimals$}", d.as_secs_f64() * 1e3),
    )
}

/// `a − b` in milliseconds with `decimals` places and a sign when negative (a
/// redirected connect can be faster than a direct one at some quantile: noise that
/// a clamped difference would hide as 0), or `—` when either is missing.
pub(crate) fn ms_difference(a: Option<Duration>, b: Option<Duration>, decimals: usize) -> String {
    a.zip(b).map_or_else(
        || "—".to_owned(),
        |(a, b)| format!("{:.decimals$}", (a.as_secs_f64() - b.as_secs_f64()) * 1e3),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn nearest_rank_quantiles() {
        let s = millis(&[5, 1, 4, 2, 3]);
        assert_eq!(median(&s), Some(Duration::from_millis(3)));
        assert_eq!(quantile(&s, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(quantile(&s, 0.99), Some(Duration::from_millis(5)));
        assert_eq!(max(&s), Some(Duration::from_millis(5)));
        assert_eq!(
            median(&millis(&[1, 2, 3, 4])),
            Some(Duration::from_millis(2))
        );
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn milliseconds_print_with_their_decimals() {
        assert_eq!(ms(Some(Duration::from_micros(1_234_567)), 0), "1235");
        assert_eq!(ms(Some(Duration::from_micros(1_500)), 2), "1.50");
        assert_eq!(ms(None, 1), "—");
        let (a, b) = (Duration::from_micros(64_200), Duration::from_micros(69_510));
        assert_eq!(ms_difference(Some(a), Some(b), 2), "-5.31");
        assert_eq!(ms_difference(Some(b), Some(a), 2), "5.31");
        assert_eq!(ms_difference(None, Some(a), 2), "—");
    }
}
