//! What a node says about itself to programs: the JSON document its admin endpoint
//! serves at `/status`, read by the swarm, the scenario runner and operators' tools.
//!
//! Counters are cumulative since the node started, so a reader measures a window by
//! taking the document twice and subtracting ([`TickTotals::since`]). Tick times are
//! sent as histograms (every occupied bucket with its count) rather than as
//! percentiles, because percentiles of a window cannot be computed from percentiles of
//! two cumulative documents, while histograms subtract exactly.

use serde::{Deserialize, Serialize};

/// The `/status` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatusReport {
    /// The server's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Seconds since the node started.
    pub uptime_s: f64,
    /// Simulation rate every zone ticks at.
    pub tick_hz: u16,
    /// Zone worker threads.
    pub workers: usize,
    /// Authenticated sessions now.
    pub sessions: usize,
    /// Connections answered `Busy` because the node was full, since start.
    pub busy_answers: u64,
    /// Inputs dropped because a zone inbox was full, since start.
    pub inbox_input_drops: u64,
    /// Tick counters and tick-time histograms over every zone, since start.
    pub ticks: TickTotals,
    /// The zones in memory now.
    pub zones: Vec<ZoneStatusReport>,
    /// The node's place in its cluster; absent for a single node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatusReport>,
}

/// A node's view of its cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatusReport {
    /// This node run, as `node-id/incarnation`.
    pub node: String,
    /// Whether the node's lease is live by its own clock (it may accept inputs).
    pub lease_valid: bool,
    /// The live members as this node sees them, itself included.
    pub members: Vec<MemberReport>,
    /// The zones the cluster holds here, with their epochs.
    pub held_zones: Vec<HeldZoneReport>,
    /// Players this node redirected to another node, since start.
    pub redirects: u64,
    /// Bytes this node sent to other nodes (gossip, directory, probes), since start.
    #[serde(default)]
    pub node_bytes_sent: u64,
    /// Bytes this node received from other nodes, since start.
    #[serde(default)]
    pub node_bytes_received: u64,
    /// Players and ghosts crossing borders between this node and others, since start.
    #[serde(default)]
    pub crossings: CrossingReport,
    /// The node is draining: moving its zones to other nodes before a stop.
    #[serde(default)]
    pub draining: bool,
    /// The drain is over: the node holds no zone and may be stopped.
    #[serde(default)]
    pub drained: bool,
}

/// Players and ghosts that crossed between a node's zones and other nodes' zones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrossingReport {
    /// Players another node took, whose clients were sent there.
    pub players_out: u64,
    /// Players taken from other nodes.
    pub players_in: u64,
    /// Players offered to another node that were taken back (refused, or the node was
    /// unreachable) and kept at the border.
    pub players_taken_back: u64,
    /// Players taken from other nodes whose clients never came (saved and let go).
    pub arrivals_expired: u64,
    /// Ghost batches sent to zones on other nodes.
    pub ghost_batches_out: u64,
    /// Ghost batches from other nodes handed to zones here.
    pub ghost_batches_in: u64,
}

/// Live zone moves a node started (`GET /moves`), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovesReport {
    /// Moves in progress and the most recent ones.
    pub moves: Vec<MoveReport>,
}

/// The answer to a request to move a zone (`POST /zones/X/Y/move-to/NODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveStarted {
    /// The move's id, as `GET /moves` lists it.
    pub id: u64,
}

/// One live zone move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveReport {
    /// The handoff's id.
    pub id: u64,
    /// The zone.
    pub zone: u32,
    /// The node run it goes to, as `node-id/incarnation`.
    pub to: String,
    /// Why it was started (an operator's command, a drain, the rebalancer's figures).
    pub reason: String,
    /// Players in the zone when it started.
    pub players: u64,
    /// Milliseconds since it started.
    pub age_ms: u64,
    /// Whether it is still under way.
    pub in_progress: bool,
    /// How it ended (`moved (epoch N)` or `not moved: REASON`).
    pub outcome: Option<String>,
    /// Milliseconds the zone was frozen (no ticks, no inputs), once ended.
    pub pause_ms: Option<u64>,
    /// Milliseconds from start to end, once ended.
    pub took_ms: Option<u64>,
    /// When it started, microseconds since the Unix epoch by this node's clock (to
    /// line the steps up with what clients saw on the same machine).
    #[serde(default)]
    pub started_unix_us: u64,
    /// The source's steps so far, in order, each with the time since the start:
    /// `frozen`, `saved` (final checkpoint), `released` (store), `activated` (the
    /// target's answer: its restore, claims and activation), `redirected`.
    #[serde(default)]
    pub steps: Vec<MoveStep>,
}

/// One step of a live zone move, as its source saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveStep {
    /// What happened.
    pub step: String,
    /// Microseconds from the move's start.
    pub at_us: u64,
}

/// One member of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberReport {
    /// The member's run, as `node-id/incarnation`.
    pub node: String,
    /// Where its node endpoint listens.
    pub node_addr: String,
    /// Where its players connect.
    pub client_addr: String,
    /// The load it published last, if this node has a fresh report.
    #[serde(default)]
    pub load: Option<LoadReport>,
}

/// A node's published load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Zones in memory.
    pub zones: u32,
    /// Players connected.
    pub players: u32,
    /// Entities in its zones.
    pub entities: u32,
    /// The slowest zone's 99th-percentile tick time, microseconds.
    pub tick_p99_us: u32,
    /// Tick time of all its zones per second, microseconds (1,000,000 is a core).
    #[serde(default)]
    pub tick_us_per_s: u32,
    /// Its costliest zones, costliest first.
    #[serde(default)]
    pub costliest_zones: Vec<ZoneCostReport>,
    /// It is draining (no new zones go there).
    #[serde(default)]
    pub draining: bool,
}

/// What one zone's ticks cost its node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneCostReport {
    /// The zone's id.
    pub zone: u32,
    /// Tick time per second, microseconds.
    pub us_per_s: u32,
}

/// A zone held by a node, and the epoch it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldZoneReport {
    /// The zone's id.
    pub zone: u32,
    /// The activation's epoch.
    pub epoch: u64,
}

/// Tick figures of a node, cumulative since it started (zones that left memory
/// included).
///
/// A worker thread ticks each of its zones once per *round*. When a round ends after
/// the next round was due, the deadlines it passed are *missed ticks*: every zone of
/// that worker simulated that many ticks fewer than its rate asks for (the simulation
/// never speeds up to catch up). `missed_ticks` counts them once per worker, not once
/// per zone, so it reads as "ticks the node fell behind by".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TickTotals {
    /// Worker rounds completed.
    pub rounds: u64,
    /// Rounds that ended after the next one was due.
    pub overruns: u64,
    /// Deadlines passed by overrunning rounds (see above).
    pub missed_ticks: u64,
    /// Zone ticks simulated (one per zone per round).
    pub zone_ticks: u64,
    /// How long one zone's tick took, microseconds.
    pub zone_tick_us: BucketCounts,
    /// How long one worker round (every zone of the worker) took, microseconds.
    pub round_us: BucketCounts,
}

impl TickTotals {
    /// The figures of the window between `earlier` and `self` (two documents of the
    /// same node, `earlier` taken first). `None` when `earlier` is not older: a
    /// different or restarted node.
    pub fn since(&self, earlier: &Self) -> Option<Self> {
        Some(Self {
            rounds: self.rounds.checked_sub(earlier.rounds)?,
            overruns: self.overruns.checked_sub(earlier.overruns)?,
            missed_ticks: self.missed_ticks.checked_sub(earlier.missed_ticks)?,
            zone_ticks: self.zone_ticks.checked_sub(earlier.zone_ticks)?,
            zone_tick_us: self.zone_tick_us.since(&earlier.zone_tick_us)?,
            round_us: self.round_us.since(&earlier.round_us)?,
        })
    }
}

/// A histogram as its occupied buckets: `(value, count)` pairs in increasing value
/// order, each value standing for every sample within its bucket (the server's
/// histograms keep two significant digits, so within 1 %).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketCounts(pub Vec<(u64, u64)>);

impl BucketCounts {
    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|&(_, n)| n).sum()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at quantile `q` (0..=1): the smallest bucket value with at least
    /// `q` of the samples at or below it; 0 when empty.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        let total = self.len();
        if total == 0 {
            return 0;
        }
        // Nearest-rank: the ceil(q * total)-th sample, at least the first.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(value, n) in &self.0 {
            seen += n;
            if seen >= rank {
                return value;
            }
        }
        self.max()
    }

    /// The largest bucket value with a sample; 0 when empty.
    pub fn max(&self) -> u64 {
        self.0
            .iter()
            .rev()
            .find(|&&(_, n)| n > 0)
            .map_or(0, |&(v, _)| v)
    }

    /// The buckets of `self` minus those of `earlier`; `None` when `earlier` holds a
    /// bucket `self` lacks or counts more in one (it is not an earlier state of the
    /// same histogram).
    pub fn since(&self, earlier: &Self) -> Option<Self> {
        let mut out = Vec::with_capacity(self.0.len());
        let mut old = earlier.0.iter().peekable();
        for &(value, n) in &self.0 {
            let mut before = 0;
            while let Some(&&(v, m)) = old.peek() {
                if v > value {
                    break;
                }
                if v < value && m > 0 {
                    return None;
                }
                if v == value {
                    before = m;
                }
                old.next();
            }
            let left = n.checked_sub(before)?;
            if left > 0 {
                out.push((value, left));
            }
        }
        if old.any(|&(_, m)| m > 0) {
            return None;
        }
        Some(Self(out))
    }
}

/// One zone in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneStatusReport {
    /// Grid column.
    pub x: u16,
    /// Grid row.
    pub y: u16,
    /// Ticks this zone simulated since it was loaded.
    pub ticks: u64,
    /// Ticks this zone fell behind by since it was loaded (its worker's overruns).
    pub missed_ticks: u64,
    /// Median tick time since it was loaded, milliseconds.
    pub tick_p50_ms: f64,
    /// 99th-percentile tick time since it was loaded, milliseconds.
    pub tick_p99_ms: f64,
    /// Connected players in the zone.
    pub players: usize,
    /// Entities with a network identity (players included).
    pub entities: usize,
    /// Inputs the zone applied over its life, on every node that held it.
    #[serde(default)]
    pub inputs_applied: u64,
    /// Inputs the zone passed over for a newer one of the same player, over its life.
    /// Applied plus superseded counts each input its players sent once.
    #[serde(default)]
    pub inputs_superseded: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(u64, u64)]) -> BucketCounts {
        BucketCounts(pairs.to_vec())
    }

    #[test]
    fn quantiles_use_nearest_rank() {
        let b = buckets(&[(10, 50), (20, 49), (900, 1)]);
        assert_eq!(b.len(), 100);
        assert_eq!(b.value_at_quantile(0.0), 10);
        assert_eq!(b.value_at_quantile(0.5), 10);
        assert_eq!(b.value_at_quantile(0.51), 20);
        assert_eq!(b.value_at_quantile(0.99), 20);
        assert_eq!(b.value_at_quantile(0.999), 900);
        assert_eq!(b.max(), 900);
        assert_eq!(BucketCounts::default().value_at_quantile(0.5), 0);
        assert_eq!(BucketCounts::default().max(), 0);
    }

    #[test]
    fn a_window_subtracts_bucket_by_bucket() {
        let start = buckets(&[(10, 5), (30, 1)]);
        let end = buckets(&[(10, 7), (20, 3), (30, 1), (40, 2)]);
        assert_eq!(
            end.since(&start),
            Some(buckets(&[(10, 2), (20, 3), (40, 2)]))
        );
        assert_eq!(end.since(&end), Some(BucketCounts::default()));
    }

    #[test]
    fn a_later_histogram_is_not_an_earlier_one() {
        let a = buckets(&[(10, 5)]);
        let b = buckets(&[(10, 4), (20, 1)]);
        assert_eq!(a.since(&b), None, "fewer in a bucket");
        assert_eq!(buckets(&[(20, 1)]).since(&buckets(&[(10, 1)])), None);
        assert_eq!(
            buckets(&[(10, 1)]).since(&buckets(&[(10, 1), (20, 1)])),
            None
        );
    }

    #[test]
    fn totals_of_a_window_and_of_a_restarted_node() {
        let earlier = TickTotals {
            rounds: 10,
            overruns: 1,
            missed_ticks: 3,
            zone_ticks: 40,
            zone_tick_us: buckets(&[(100, 40)]),
            round_us: buckets(&[(400, 10)]),
        };
        let later = TickTotals {
            rounds: 30,
            overruns: 2,
            missed_ticks: 8,
            zone_ticks: 120,
            zone_tick_us: buckets(&[(100, 100), (5000, 20)]),
            round_us: buckets(&[(400, 25), (60000, 5)]),
        };
        let window = later.since(&earlier).expect("same node");
        assert_eq!(window.rounds, 20);
        assert_eq!(window.overruns, 1);
        assert_eq!(window.missed_ticks, 5);
        assert_eq!(window.zone_ticks, 80);
        assert_eq!(window.zone_tick_us, buckets(&[(100, 60), (5000, 20)]));
        assert_eq!(window.round_us, buckets(&[(400, 15), (60000, 5)]));
        assert_eq!(earlier.since(&later), None);
    }

    #[test]
    fn the_document_round_trips_through_json() {
        let report = NodeStatusReport {
            version: "0.1.0".into(),
            uptime_s: 1.5,
            tick_hz: 20,
            workers: 2,
            sessions: 3,
            busy_answers: 0,
            inbox_input_drops: 4,
            ticks: TickTotals {
                zone_tick_us: buckets(&[(7, 1)]),
                ..TickTotals::default()
            },
            zones: vec![ZoneStatusReport {
                x: 1,
                y: 2,
                ticks: 9,
                missed_ticks: 0,
                tick_p50_ms: 0.1,
                tick_p99_ms: 0.2,
                players: 1,
                entities: 5,
                inputs_applied: 7,
                inputs_superseded: 1,
            }],
            cluster: None,
        };
        let json = serde_json::to_string(&report).expect("serialises");
        assert!(
            !json.contains("cluster"),
            "a single node says nothing of clusters"
        );
        assert!(json.contains(r#""zone_tick_us":[[7,1]]"#), "{json}");
        let back: NodeStatusReport = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, report);

        let clustered = NodeStatusReport {
            cluster: Some(ClusterStatusReport {
                node: "00000000000000aa/3".into(),
                lease_valid: true,
                members: vec![MemberReport {
                    node: "00000000000000aa/3".into(),
                    node_addr: "127.0.0.1:7433".into(),
                    client_addr: "127.0.0.1:4433".into(),
                    load: Some(LoadReport {
                        zones: 1,
                        players: 3,
                        entities: 40,
                        tick_p99_us: 900,
                        tick_us_per_s: 12_000,
                        costliest_zones: vec![ZoneCostReport {
                            zone: 4,
                            us_per_s: 12_000,
                        }],
                        draining: false,
                    }),
                }],
                held_zones: vec![HeldZoneReport { zone: 4, epoch: 2 }],
                redirects: 7,
                node_bytes_sent: 1200,
                node_bytes_received: 900,
                crossings: CrossingReport {
                    players_out: 2,
                    ghost_batches_in: 40,
                    ..CrossingReport::default()
                },
                draining: true,
                drained: false,
            }),
            ..report
        };
        let json = serde_json::to_string(&clustered).expect("serialises");
        let back: NodeStatusReport = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, clustered);
    }
}
