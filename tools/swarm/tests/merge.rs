//! Merging interval logs: two logs written from separate recordings merge into exactly
//! what one recording of everything would hold.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use zonemesh_swarm::histlog::{HistLogWriter, RunSummary, merge_logs};
use zonemesh_swarm::metrics::{Metric, MetricSet};

/// Records `n_intervals` random intervals; returns them and their sum.
fn record(rng: &mut StdRng, n_intervals: usize) -> (Vec<MetricSet>, MetricSet) {
    let mut total = MetricSet::new();
    let intervals: Vec<MetricSet> = (0..n_intervals)
        .map(|_| {
            let mut set = MetricSet::new();
            for metric in Metric::ALL {
                for _ in 0..rng.random_range(0..200) {
                    // Wide spread, up to a minute in µs, to cover many buckets.
                    set.record(metric, rng.random_range(1..60_000_000));
                }
            }
            set.counters.inputs_sent = rng.random_range(0..1000);
            set.counters.error("connect/attempt_timeout");
            total.add(&set);
            set
        })
        .collect();
    (intervals, total)
}

fn write_log(path: &Path, intervals: &[MetricSet], summary: &RunSummary) {
    let file = std::fs::File::create(path).expect("create log");
    let mut log =
        HistLogWriter::begin(std::io::BufWriter::new(file), SystemTime::now()).expect("begin log");
    for (i, set) in intervals.iter().enumerate() {
        let start = Duration::from_secs(i as u64);
        log.write_interval(set, start, Duration::from_secs(1))
            .expect("write interval");
    }
    log.write_summary(summary).expect("write summary");
    log.finish().expect("flush");
}

#[test]
fn merging_two_logs_equals_the_combined_recording() {
    let seed = 20240611;
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let (a_intervals, a) = record(&mut rng, 5);
    let (b_intervals, b) = record(&mut rng, 3);
    let paths: Vec<PathBuf> = ["a.hlog", "b.hlog"]
        .iter()
        .map(|n| dir.path().join(n))
        .collect();
    let summary = |set: &MetricSet, duration_s| RunSummary {
        duration_s,
        counters: set.counters.clone(),
    };
    write_log(&paths[0], &a_intervals, &summary(&a, 5.0));
    write_log(&paths[1], &b_intervals, &summary(&b, 3.0));

    let merged = merge_logs(&paths).expect("logs merge");

    let mut combined = a;
    combined.add(&b);
    for metric in Metric::ALL {
        assert!(
            merged.set.histogram(metric) == combined.histogram(metric),
            "seed {seed}: {metric:?} differs after merging"
        );
    }
    assert_eq!(merged.set.counters, combined.counters, "seed {seed}");
    assert!(merged.counters_complete);
    assert_eq!(merged.duration, Duration::from_secs(5), "the longest run");
    assert_eq!(merged.n_unknown_intervals, 0);
}
