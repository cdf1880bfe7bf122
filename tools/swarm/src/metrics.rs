//! What a swarm measures: the [`Metric`] histograms and [`Counters`] of a
//! [`MetricSet`], and the [`Hub`] that bots record into.
//!
//! Bots do not own histograms (one HdrHistogram covering an hour in microseconds at 3
//! significant digits is ~190 KB; 20 000 bots would need gigabytes). Instead a fixed
//! number of mutex-protected shards hold them; bot `i` records into shard `i % n`, so
//! contention stays low without per-bot memory. The collector drains every shard once
//! per interval (the interval log entry) and adds it into the run's totals.

use hdrhistogram::Histogram;
use hdrhistogram::errors::AdditionError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Largest value a histogram holds: an hour in microseconds. Larger values are recorded
/// as this (saturating), never dropped.
pub const VALUE_MAX: u64 = 3_600_000_000;
/// Significant decimal digits kept by every histogram.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Shards bots record into (see the module comment).
pub const SHARDS: usize = 8;
/// Most distinct server addresses `sessions_per_server` keeps; sessions on further
/// ones (a cluster redirecting over very many nodes) are counted under `other`.
pub const SERVER_KEYS_MAX: usize = 256;

/// One histogram a swarm records. Latencies are in microseconds; per-bot rates are
/// recorded once per session when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// From a bot's intended start to `Welcome`, retries and redirects included (µs).
    Connect,
    /// From a session's intended start to its first snapshot applied, connect included
    /// (µs).
    FirstSnapshot,
    /// From an input's intended send time to the first snapshot acknowledging it (µs).
    InputToVisible,
    /// Snapshot inter-arrival jitter against the server's tick clock (µs).
    Jitter,
    /// Snapshot datagrams per second of one session, times 1000.
    SnapshotsPerSecondMilli,
    /// UDP bytes received per second of one session.
    BytesDownPerSecond,
    /// UDP bytes sent per second of one session.
    BytesUpPerSecond,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Self; 7] = [
        Self::Connect,
        Self::FirstSnapshot,
        Self::InputToVisible,
        Self::Jitter,
        Self::SnapshotsPerSecondMilli,
        Self::BytesDownPerSecond,
        Self::BytesUpPerSecond,
    ];

    /// The interval-log tag; names carry the unit.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Connect => "connect_us",
            Self::FirstSnapshot => "first_snapshot_us",
            Self::InputToVisible => "input_to_visible_us",
            Self::Jitter => "jitter_us",
            Self::SnapshotsPerSecondMilli => "snapshots_per_bot_per_s_x1000",
            Self::BytesDownPerSecond => "bytes_down_per_bot_per_s",
            Self::BytesUpPerSecond => "bytes_up_per_bot_per_s",
        }
    }

    /// The metric an interval-log tag names.
    pub fn from_tag(tag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.tag() == tag)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts that are not distributions. Keys of the maps come from closed sets (error
/// kinds and disconnect codes), so the maps stay small.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
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
    /// Inputs acknowledged by a snapshot (each gives one latency sample per slot).
    pub inputs_acknowledged: u64,
    /// `ZoneChanged` events: border crossings.
    pub zone_changes: u64,
    /// `Redirect` answers the SDK followed, summed over sessions: while connecting,
    /// and mid-session (each move to another node).
    #[serde(default)]
    pub redirects: u64,
    /// Sessions moving to another node: the SDK's node changes while connecting, each
    /// mid-session move (a player crossing into a zone on another node), and each
    /// session that landed on another address than the bot's previous one.
    #[serde(default)]
    pub node_changes: u64,
    /// Mid-session moves to another node (border crossings between nodes).
    #[serde(default)]
    pub moves: u64,
    /// Bots assigned to each `--server` address (round-robin by bot index).
    #[serde(default)]
    pub bots_per_server: BTreeMap<String, u64>,
    /// Sessions by the address they were welcomed on (after redirects).
    #[serde(default)]
    pub sessions_per_server: BTreeMap<String, u64>,
    /// Sessions the server or network ended, by `code/kind`.
    pub disconnects: BTreeMap<String, u64>,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
}

impl Counters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Self) {
        self.bots_requested += other.bots_requested;
        self.bots_connected += other.bots_connected;
        self.bots_failed += other.bots_failed;
        self.sessions += other.sessions;
        self.inputs_sent += other.inputs_sent;
        self.inputs_acknowledged += other.inputs_acknowledged;
        self.zone_changes += other.zone_changes;
        self.redirects += other.redirects;
        self.node_changes += other.node_changes;
        self.moves += other.moves;
        add_map(&mut self.bots_per_server, &other.bots_per_server);
        add_map(&mut self.sessions_per_server, &other.sessions_per_server);
        add_map(&mut self.disconnects, &other.disconnects);
        add_map(&mut self.errors, &other.errors);
    }

    /// Counts one failure of `kind`.
    pub fn error(&mut self, kind: &str) {
        self.errors_n(kind, 1);
    }

    /// Counts `n` failures of `kind`.
    pub fn errors_n(&mut self, kind: &str, n: u64) {
        if n > 0 {
            *self.errors.entry(kind.to_owned()).or_default() += n;
        }
    }

    /// Counts one session ended for `reason`.
    pub fn disconnect(&mut self, reason: &str) {
        *self.disconnects.entry(reason.to_owned()).or_default() += 1;
    }

    /// Counts one session welcomed on `server` (bounded: see [`SERVER_KEYS_MAX`]).
    pub fn session_on(&mut self, server: &str) {
        let known = self.sessions_per_server.contains_key(server);
        let key = if known || self.sessions_per_server.len() < SERVER_KEYS_MAX {
            server
        } else {
            "other"
        };
        *self.sessions_per_server.entry(key.to_owned()).or_default() += 1;
    }

    /// Total failures of every kind.
    pub fn n_errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

fn add_map(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// A histogram per [`Metric`] and the [`Counters`].
#[derive(Debug, Clone)]
pub struct MetricSet {
    histograms: Vec<Histogram<u64>>,
    /// The counters.
    pub counters: Counters,
}

impl Default for MetricSet {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricSet {
    /// Empty histograms and zero counters.
    pub fn new() -> Self {
        Self {
            histograms: Metric::ALL.iter().map(|_| new_histogram()).collect(),
            counters: Counters::default(),
        }
    }

    /// Records `value` (saturating at [`VALUE_MAX`]).
    pub fn record(&mut self, metric: Metric, value: u64) {
        self.histograms[metric.index()].saturating_record(value.clamp(1, VALUE_MAX));
    }

    /// Records a duration in microseconds.
    pub fn record_duration(&mut self, metric: Metric, d: Duration) {
        self.record(metric, u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// The histogram of `metric`.
    pub fn histogram(&self, metric: Metric) -> &Histogram<u64> {
        &self.histograms[metric.index()]
    }

    /// Adds a histogram (from a log) into `metric`'s.
    pub fn add_histogram(
        &mut self,
        metric: Metric,
        h: &Histogram<u64>,
    ) -> Result<(), AdditionError> {
        self.histograms[metric.index()].add(h)
    }

    /// Adds everything in `other` into `self`.
    pub fn add(&mut self, other: &Self) {
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            // Same bounds on both sides (both from `new_histogram`), so it fits.
            let fits = mine.add(theirs);
            assert!(fits.is_ok(), "histograms with equal bounds must add");
        }
        self.counters.add(&other.counters);
    }

    /// Back to empty, keeping the allocations.
    pub fn reset(&mut self) {
        self.histograms.iter_mut().for_each(Histogram::reset);
        self.counters = Counters::default();
    }
}

fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, VALUE_MAX, SIGNIFICANT_DIGITS) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e:?}"),
    }
}

/// Where bots record: [`SHARDS`] metric sets, plus the live gauge of connected bots.
#[derive(Debug)]
pub struct Hub {
    shards: Vec<Mutex<MetricSet>>,
    connected_now: AtomicU64,
}

impl Hub {
    /// A hub with empty shards.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| Mutex::new(MetricSet::new())).collect(),
            connected_now: AtomicU64::new(0),
        })
    }

    /// The recorder for bot `index`.
    pub fn recorder(self: &Arc<Self>, index: u32) -> Recorder {
        let shard = usize::try_from(index).unwrap_or(0) % SHARDS;
        Recorder {
            hub: Arc::clone(self),
            shard,
        }
    }

    /// Adds every shard into `out` and empties the shards.
    pub fn drain_into(&self, out: &mut MetricSet) {
        for shard in &self.shards {
            let mut set = lock(shard);
            out.add(&set);
            set.reset();
        }
    }

    /// Sessions open right now.
    pub fn connected_now(&self) -> u64 {
        self.connected_now.load(Ordering::Relaxed)
    }
}

/// A bot's handle on its shard.
#[derive(Debug, Clone)]
pub struct Recorder {
    hub: Arc<Hub>,
    shard: usize,
}

impl Recorder {
    /// Runs `f` with the shard locked; keep `f` short (it blocks the shard's bots).
    pub fn with<R>(&self, f: impl FnOnce(&mut MetricSet) -> R) -> R {
        f(&mut lock(&self.hub.shards[self.shard]))
    }

    /// Records a duration.
    pub fn duration(&self, metric: Metric, d: Duration) {
        self.with(|set| set.record_duration(metric, d));
    }

    /// Updates the counters.
    pub fn count(&self, f: impl FnOnce(&mut Counters)) {
        self.with(|set| f(&mut set.counters));
    }

    /// A session opened (live gauge).
    pub fn session_opened(&self) {
        self.hub.connected_now.fetch_add(1, Ordering::Relaxed);
    }

    /// A session closed (live gauge).
    pub fn session_closed(&self) {
        self.hub.connected_now.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Locks a shard. A bot that panicked while holding it left a metric set that is at
/// worst missing one sample, so the data is still worth using.
fn lock(m: &Mutex<MetricSet>) -> MutexGuard<'_, MetricSet> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_are_unique() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_tag(m.tag()), Some(m));
        }
        assert_eq!(Metric::from_tag("nope"), None);
    }

    #[test]
    fn values_saturate_instead_of_failing() {
        let mut set = MetricSet::new();
        set.record(Metric::Connect, u64::MAX);
        set.record(Metric::Connect, 0);
        set.record_duration(Metric::Jitter, Duration::from_millis(3));
        let h = set.histogram(Metric::Connect);
        assert_eq!(h.len(), 2);
        assert!(h.max() >= VALUE_MAX && h.min() == 1);
        assert_eq!(
            set.histogram(Metric::Jitter).value_at_quantile(0.5) / 10,
            300
        );
    }

    #[test]
    fn draining_moves_every_shard_into_the_output() {
        let hub = Hub::new();
        for i in 0..20 {
            let r = hub.recorder(i);
            r.duration(
                Metric::InputToVisible,
                Duration::from_millis(u64::from(i) + 1),
            );
            r.count(|c| c.error("x"));
        }
        let mut out = MetricSet::new();
        hub.drain_into(&mut out);
        assert_eq!(out.histogram(Metric::InputToVisible).len(), 20);
        assert_eq!(out.counters.errors.get("x"), Some(&20));
        let mut again = MetricSet::new();
        hub.drain_into(&mut again);
        assert!(again.histogram(Metric::InputToVisible).is_empty());
        assert_eq!(again.counters, Counters::default());
    }

    #[test]
    fn sessions_per_server_stay_bounded() {
        let mut c = Counters::default();
        for port in 0..SERVER_KEYS_MAX + 10 {
            c.session_on(&format!("127.0.0.1:{port}"));
        }
        c.session_on("127.0.0.1:0");
        assert_eq!(c.sessions_per_server.len(), SERVER_KEYS_MAX + 1);
        assert_eq!(c.sessions_per_server.get("other"), Some(&10));
        assert_eq!(c.sessions_per_server.get("127.0.0.1:0"), Some(&2));
    }

    #[test]
    fn counters_from_an_older_log_line_still_parse() {
        let old = r#"{"bots_requested":1,"bots_connected":1,"bots_failed":0,"sessions":1,
            "inputs_sent":0,"inputs_acknowledged":0,"zone_changes":0,"disconnects":{},"errors":{}}"#;
        let c: Counters = serde_json::from_str(old).expect("parses");
        assert_eq!((c.redirects, c.node_changes), (0, 0));
        assert!(c.sessions_per_server.is_empty());
    }

    #[test]
    fn counters_add_maps_by_key() {
        let mut a = Counters::default();
        a.error("connect_timeout");
        a.disconnect("SlowClient/Server");
        let mut b = a.clone();
        b.errors_n("connect_timeout", 2);
        b.errors_n("unused", 0);
        a.add(&b);
        assert_eq!(a.errors.get("connect_timeout"), Some(&4));
        assert_eq!(a.disconnects.get("SlowClient/Server"), Some(&2));
        assert!(!a.errors.contains_key("unused"));
        assert_eq!(a.n_errors(), 4);
    }
}
