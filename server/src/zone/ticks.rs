//! Node-wide tick figures: each worker records its rounds here (rounds, overruns,
//! missed ticks, zone tick and round times), and [`TickLedger::totals`] adds the
//! workers up for the status document. Unlike a zone's own status, these survive the
//! zone leaving memory, so they are the node's cumulative truth since start.

use crate::link::lock;
use hdrhistogram::Histogram;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zonemesh_shared::status::{BucketCounts, TickTotals};

/// Longest duration the histograms resolve (longer ones are recorded as this).
const DURATION_MAX_US: u64 = 60_000_000;

/// One worker's figures since the node started.
#[derive(Debug, Clone)]
struct WorkerTicks {
    rounds: u64,
    overruns: u64,
    missed_ticks: u64,
    zone_ticks: u64,
    zone_tick_us: Histogram<u64>,
    round_us: Histogram<u64>,
}

impl WorkerTicks {
    fn new() -> Self {
        Self {
            rounds: 0,
            overruns: 0,
            missed_ticks: 0,
            zone_ticks: 0,
            zone_tick_us: new_histogram(),
            round_us: new_histogram(),
        }
    }
}

/// A histogram of microseconds, 1 µs .. 60 s, two significant digits (1 %: enough for
/// tick times, and the status document stays small).
fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts: not reachable from input.
    Histogram::new_with_bounds(1, DURATION_MAX_US, 2).expect("constant histogram bounds are valid")
}

fn record(histogram: &mut Histogram<u64>, took: Duration) {
    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(us.clamp(1, DURATION_MAX_US));
}

/// Where one worker writes its rounds (once per round, an uncontended lock).
#[derive(Debug, Clone)]
pub(crate) struct WorkerTickRecorder(Arc<Mutex<WorkerTicks>>);

impl WorkerTickRecorder {
    /// Records a round: each zone's tick time, the round's own time, and the
    /// deadlines it passed.
    pub(crate) fn record_round(&self, zone_times: &[Duration], round: Duration, missed: u64) {
        let mut w = lock(&self.0);
        w.rounds += 1;
        w.zone_ticks += zone_times.len() as u64;
        if missed > 0 {
            w.overruns += 1;
            w.missed_ticks = w.missed_ticks.saturating_add(missed);
        }
        for &took in zone_times {
            record(&mut w.zone_tick_us, took);
        }
        record(&mut w.round_us, round);
    }
}

/// Every worker's figures.
#[derive(Debug, Default)]
pub(crate) struct TickLedger {
    workers: Vec<Arc<Mutex<WorkerTicks>>>,
}

impl TickLedger {
    /// A recorder for one more worker.
    pub(crate) fn add_worker(&mut self) -> WorkerTickRecorder {
        let ticks = Arc::new(Mutex::new(WorkerTicks::new()));
        self.workers.push(Arc::clone(&ticks));
        WorkerTickRecorder(ticks)
    }

    /// The sum over workers.
    pub(crate) fn totals(&self) -> TickTotals {
        let mut sum = WorkerTicks::new();
        for worker in &self.workers {
            // Copy under the lock, add outside it: a worker waits at most for a clone.
            let w = lock(worker).clone();
            sum.rounds += w.rounds;
            sum.overruns += w.overruns;
            sum.missed_ticks = sum.missed_ticks.saturating_add(w.missed_ticks);
            sum.zone_ticks += w.zone_ticks;
            // Same bounds and precision on both sides: adding cannot fail.
            let _ = sum.zone_tick_us.add(&w.zone_tick_us);
            let _ = sum.round_us.add(&w.round_us);
        }
        TickTotals {
            rounds: sum.rounds,
            overruns: sum.overruns,
            missed_ticks: sum.missed_ticks,
            zone_ticks: sum.zone_ticks,
            zone_tick_us: buckets(&sum.zone_tick_us),
            round_us: buckets(&sum.round_us),
        }
    }
}

/// The occupied buckets of `histogram`, each named by its highest equivalent value
/// (the value hdrhistogram's own quantiles report).
fn buckets(histogram: &Histogram<u64>) -> BucketCounts {
    BucketCounts(
        histogram
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn rounds_of_several_workers_add_up() {
        let mut ledger = TickLedger::default();
        let a = ledger.add_worker();
        let b = ledger.add_worker();
        a.record_round(&[MS, 2 * MS], 3 * MS, 0);
        a.record_round(&[MS, 70 * MS], 71 * MS, 2);
        b.record_round(&[MS], MS, 0);
        let t = ledger.totals();
        assert_eq!(t.rounds, 3);
        assert_eq!(t.overruns, 1);
        assert_eq!(t.missed_ticks, 2);
        assert_eq!(t.zone_ticks, 5);
        assert_eq!(t.zone_tick_us.len(), 5);
        assert_eq!(t.round_us.len(), 3);
        // Two significant digits: 70 ms lands within 1 % of itself.
        let max = t.zone_tick_us.max();
        assert!((69_300..=70_700).contains(&max), "{max}");
        let median = t.zone_tick_us.value_at_quantile(0.5);
        assert!((990..=1010).contains(&median), "{median}");
    }

    #[test]
    fn an_empty_ledger_reports_zeros() {
        let t = TickLedger::default().totals();
        assert_eq!(t, TickTotals::default());
    }
}
