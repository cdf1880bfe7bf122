//! Seeded simulation of the rebalancer ([`Rebalancer`](crate::rebalance::Rebalancer)):
//! a cluster of 2 to 8 nodes whose zones' costs change at every load report for two
//! minutes and then stay put, the rebalancer deciding every 2 s from the published
//! loads, and its moves carried out as live handoffs would be: most take up to
//! 1.5 s, a tenth up to the handoff's longest waits (17 s), and while the load
//! changes some fail (the zone stays). Load reports lag: a zone shows on its new
//! node only in the second report after it arrived. About a third of the seeds use the
//! default settings, the others vary the cap, the cooldown and the ratios.
//!
//! Two drivers are simulated:
//! - **One rebalancer** carrying out every move it returns, deciding nothing for
//!   2.5 s after a move ended (until the reports show it: without that pause, a
//!   plan made from reports older than a move piles zones onto the node that just
//!   received one, and they flap back and forth every cooldown). Checked after
//!   every step: the core never has more moves in progress than its cap, and
//!   exactly those the driver carries out; no two moves run off one node; every
//!   move starts from the node that holds the zone, is a strict improvement by its
//!   own figures, and moves a zone that is not moving and whose last move ended at
//!   least its cooldown ago. Checked at the end: once the load stays put, the last
//!   move starts within [`CONVERGE_ROUNDS`] rounds (four minutes) and none starts
//!   in the six minutes after (six cooldowns and more), and no move is in progress.
//! - **One rebalancer per node**, as `server/src/cluster/rebalance.rs` runs them:
//!   each node carries out only the first move of a plan, and only if it is off
//!   itself (the plan's other moves are counted as ended at once), decides nothing
//!   while its own move runs or for 2.5 s after a move ended there, and a zone's
//!   cooldown starts on its source when the move ends and on its target when it
//!   arrives. The same checks hold after every step, each core within its own cap,
//!   and the same settling at the end. Carrying out a plan's later moves too was
//!   the driver's first form: each node's rebalancer keeps its own balancing state,
//!   and one that started balancing while the hottest node's did not went on
//!   carrying out the later moves of plans whose first move, off the hottest node,
//!   that node never made; zones then kept moving under a static load in about 1 %
//!   of the seeds. The cluster-wide cap is not asserted for this driver (each node
//!   counts only its own moves).
//!
//! [`SEEDS`] seeds per driver; `REBALANCE_SIM_SEEDS=N` runs N, `REBALANCE_SIM_SEED=S`
//! only seed S, and `REBALANCE_SIM_TRACE=1` prints every move started.

use std::collections::BTreeMap;

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

use crate::Millis;
use crate::rebalance::{Move, NodeCost, RebalanceConfig, Rebalancer, ZoneCost};
use crate::sim::SimRng;

/// Seeds per driver.
const SEEDS: u64 = 400;
/// How often the rebalancer decides (the driver's interval).
const ROUND_MS: u64 = 2_000;
/// How often every node publishes its load.
const REPORT_MS: u64 = 1_000;
/// How long the driver decides nothing after a move ended (on its source and its
/// target, with one rebalancer per node).
const SETTLE_AFTER_MOVE_MS: u64 = 2_500;
/// How long the load changes (and moves may fail).
const NOISY_MS: u64 = 120_000;
/// How long the load then stays put.
const STATIC_MS: u64 = 600_000;
/// Rounds after the load stopped changing by which the last move has started (one
/// rebalancer). Measured over 6,000 seeds of each kind: at most 60 rounds with
/// varied settings, 78 with the defaults (a slow move the next plans do not know
/// about makes its target take more, which later moves even out).
const CONVERGE_ROUNDS: u64 = 120;
/// The share of moves that fail while the load changes.
const FAIL_SHARE: f64 = 0.15;

/// Who runs the rebalancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// One rebalancer; every move it returns is carried out.
    Central,
    /// One per node, each starting only the moves off its own node.
    PerNode,
}

/// Something that happens at a given time.
#[derive(Debug)]
enum Event {
    /// Rebalancer `k` decides.
    Round(usize),
    /// Every node publishes its load.
    Report,
    /// The move of `zone` ended, moved or not.
    Done { zone: ZoneId, ok: bool },
}

#[derive(Debug)]
struct Zone {
    /// The node holding it, by index.
    node: usize,
    /// What it costs once the load stays put (µs/s).
    base_us_per_s: u64,
    /// What it costs now.
    us_per_s: u64,
}

#[derive(Debug)]
struct Cluster {
    seed: u64,
    rng: SimRng,
    now: Millis,
    driver: Driver,
    config: RebalanceConfig,
    nodes: Vec<NodeRef>,
    zones: BTreeMap<ZoneId, Zone>,
    /// The last published loads.
    view: Vec<NodeCost>,
    /// Where the zones were at the previous report: what the next one shows.
    shown: BTreeMap<ZoneId, usize>,
    /// One rebalancer, or one per node.
    cores: Vec<Rebalancer>,
    /// Moves in progress.
    moving: BTreeMap<ZoneId, Move>,
    /// When each zone's last move ended.
    ended: BTreeMap<ZoneId, Millis>,
    /// Per rebalancer, until when it decides nothing.
    settle_until: Vec<Millis>,
    events: BTreeMap<(Millis, u64), Event>,
    n_events: u64,
    /// When the last move started.
    last_start: Option<Millis>,
}

impl Cluster {
    fn new(seed: u64, driver: Driver) -> Self {
        let mut rng = SimRng::new(seed);
        let n_nodes = 2 + rng.index(7);
        let nodes: Vec<NodeRef> = (1..=n_nodes as u64).map(|id| NodeRef::new(id, 1)).collect();
        let config = random_config(&mut rng);
        let zones = random_zones(&mut rng, n_nodes);
        let shown = zones.iter().map(|(z, zone)| (*z, zone.node)).collect();
        let n_cores = if driver == Driver::Central {
            1
        } else {
            n_nodes
        };
        Self {
            seed,
            rng,
            now: Millis(0),
            driver,
            config,
            nodes,
            zones,
            view: Vec::new(),
            shown,
            cores: (0..n_cores).map(|_| Rebalancer::new(config)).collect(),
            moving: BTreeMap::new(),
            ended: BTreeMap::new(),
            settle_until: vec![Millis(0); n_nodes],
            events: BTreeMap::new(),
            n_events: 0,
            last_start: None,
        }
    }

    fn later(&mut self, ms: u64, event: Event) {
        self.n_events += 1;
        self.events.insert((self.now + ms, self.n_events), event);
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "seed {} ({:?}): {what} at {} with {:?}",
            self.seed, self.driver, self.now, self.config
        )
    }

    fn noisy(&self) -> bool {
        self.now.0 < NOISY_MS
    }

    /// Runs to the end, checking after every step.
    fn run(&mut self) {
        self.later(0, Event::Report);
        for k in 0..self.cores.len() {
            let first = self.rng.range(1, ROUND_MS);
            self.later(first, Event::Round(k));
        }
        let end = Millis(NOISY_MS + STATIC_MS);
        while let Some(entry) = self.events.first_entry() {
            if entry.key().0 > end {
                break;
            }
            let ((at, _), event) = entry.remove_entry();
            self.now = at;
            match event {
                Event::Round(k) => self.round(k),
                Event::Report => self.report(),
                Event::Done { zone, ok } => self.done(zone, ok),
            }
            self.check();
        }
        self.check_converged();
    }

    /// Every node publishes its load; while the load changes, every zone's cost
    /// wanders around its base, now and then spiking.
    fn report(&mut self) {
        self.later(REPORT_MS, Event::Report);
        let noisy = self.noisy();
        for zone in self.zones.values_mut() {
            zone.us_per_s = if !noisy {
                zone.base_us_per_s
            } else if self.rng.chance(0.02) {
                zone.base_us_per_s * 4
            } else {
                zone.base_us_per_s * (60 + self.rng.range(0, 80)) / 100
            };
        }
        self.view = (0..self.nodes.len())
            .map(|i| NodeCost {
                node: self.nodes[i],
                zones: self
                    .zones
                    .iter()
                    .filter(|(z, _)| self.shown[*z] == i)
                    .map(|(z, zone)| ZoneCost {
                        zone: *z,
                        us_per_s: zone.us_per_s,
                    })
                    .collect(),
            })
            .collect();
        self.shown = self.zones.iter().map(|(z, zone)| (*z, zone.node)).collect();
    }

    /// Rebalancer `k` decides; the driver starts the moves it may.
    fn round(&mut self, k: usize) {
        self.later(ROUND_MS, Event::Round(k));
        let me = self.nodes[k];
        if self.now < self.settle_until[k]
            || (self.driver == Driver::PerNode && self.moving.values().any(|m| m.from == me))
        {
            return;
        }
        let mut moves = self.cores[k].plan(self.now, &self.view);
        if self.driver == Driver::PerNode && moves.len() > 1 {
            // As the server's driver: only a plan's first move is carried out.
            for m in moves.split_off(1) {
                self.cores[k].move_finished(self.now, m.zone);
            }
        }
        for m in moves {
            if self.driver == Driver::PerNode && m.from != me {
                // The node it is from decides the same and moves it.
                self.cores[k].move_finished(self.now, m.zone);
                continue;
            }
            self.check_move(&m);
            if std::env::var_os("REBALANCE_SIM_TRACE").is_some() {
                eprintln!("{} rebalancer {k}: {m:?}", self.now);
            }
            self.start(m);
        }
    }

    fn start(&mut self, m: Move) {
        // Most handoffs take milliseconds; a slow one runs into its timeouts.
        let ms = if self.rng.chance(0.9) {
            self.rng.range(20, 1_500)
        } else {
            self.rng.range(2_000, 17_000)
        };
        let ok = !(self.noisy() && self.rng.chance(FAIL_SHARE));
        self.later(ms, Event::Done { zone: m.zone, ok });
        self.moving.insert(m.zone, m);
        self.last_start = Some(self.now);
    }

    /// A move ended: the zone is on its target if it moved, and its cooldown starts
    /// where the driver starts it.
    fn done(&mut self, zone: ZoneId, ok: bool) {
        let m = self.moving.remove(&zone).expect("a move in progress ended");
        let (from, to) = (self.index(m.from), self.index(m.to));
        if ok {
            self.zones.get_mut(&zone).expect("a zone").node = to;
        }
        self.ended.insert(zone, self.now);
        match self.driver {
            Driver::Central => {
                self.cores[0].move_finished(self.now, zone);
                self.settle_until[0] = self.now + SETTLE_AFTER_MOVE_MS;
            }
            Driver::PerNode => {
                let moved = if ok { vec![from, to] } else { vec![from] };
                for i in moved {
                    self.cores[i].move_finished(self.now, zone);
                    self.settle_until[i] = self.now + SETTLE_AFTER_MOVE_MS;
                }
            }
        }
    }

    fn index(&self, node: NodeRef) -> usize {
        self.nodes
            .iter()
            .position(|n| *n == node)
            .unwrap_or_else(|| self.fail(&format!("{node} is not in the cluster")))
    }

    /// What must hold of a move the driver is about to start.
    fn check_move(&self, m: &Move) {
        let zone = self.zones.get(&m.zone);
        if m.from == m.to || zone.map(|z| self.nodes[z.node]) != Some(m.from) {
            self.fail(&format!("{m:?} does not start from the zone's node"));
        }
        if self.moving.contains_key(&m.zone) {
            self.fail(&format!("{m:?} moves a zone already moving"));
        }
        if self.moving.values().any(|other| other.from == m.from) {
            self.fail(&format!("{m:?} is a second move off its node"));
        }
        let cooled = self.ended.get(&m.zone).is_none_or(|at| {
            self.now.since(*at).as_millis() >= u128::from(self.config.zone_cooldown_ms)
        });
        if !cooled {
            self.fail(&format!("{m:?} moves the zone again within its cooldown"));
        }
        let r = m.reason;
        if r.to_cost + r.zone_cost >= r.from_cost {
            self.fail(&format!("{m:?} is no improvement"));
        }
    }

    /// The caps, after every step.
    fn check(&self) {
        let cap = self.config.max_concurrent_moves;
        if let Some(core) = self.cores.iter().find(|c| c.in_flight() > cap) {
            self.fail(&format!(
                "{} moves in progress, over the cap",
                core.in_flight()
            ));
        }
        if self.driver == Driver::Central && self.cores[0].in_flight() != self.moving.len() {
            self.fail(&format!(
                "the core counts {} moves in progress, the driver carries out {}",
                self.cores[0].in_flight(),
                self.moving.len()
            ));
        }
    }

    /// Once the load stays put, the moves stop, and stay stopped.
    fn check_converged(&self) {
        let bound = Millis(NOISY_MS + CONVERGE_ROUNDS * ROUND_MS);
        if let Some(at) = self.last_start.filter(|at| *at > bound) {
            self.fail(&format!("still moving zones at {at}"));
        }
        if !self.moving.is_empty() {
            self.fail("moves still in progress at the end");
        }
    }

    /// Rounds from the load's last change to the last move's start.
    fn rounds_to_converge(&self) -> u64 {
        self.last_start
            .map_or(0, |at| at.0.saturating_sub(NOISY_MS).div_ceil(ROUND_MS))
    }
}

/// The defaults, or settings around them: the cap, the cooldown and the ratios vary.
fn random_config(rng: &mut SimRng) -> RebalanceConfig {
    if rng.chance(1.0 / 3.0) {
        return RebalanceConfig::default();
    }
    let start_ratio = 1.15 + rng.range(0, 35) as f64 / 100.0;
    let stop_ratio = 1.05 + rng.range(0, ((start_ratio - 1.1) * 100.0) as u64) as f64 / 100.0;
    RebalanceConfig {
        start_ratio,
        stop_ratio,
        max_concurrent_moves: 1 + rng.index(3),
        zone_cooldown_ms: [10_000, 30_000, 60_000][rng.index(3)],
        ..RebalanceConfig::default()
    }
}

/// 4 to 60 zones with heavy-tailed costs, most of them on one or two nodes.
fn random_zones(rng: &mut SimRng, n_nodes: usize) -> BTreeMap<ZoneId, Zone> {
    let n_zones = 4 + rng.index(57);
    let skewed = rng.chance(0.7);
    (0..n_zones as u32)
        .map(|z| {
            let tail = u64::from(1 + z % 7).pow(2);
            let base = rng.range(0, 20_000) * tail;
            let node = if skewed {
                rng.index(n_nodes.min(2))
            } else {
                rng.index(n_nodes)
            };
            let zone = Zone {
                node,
                base_us_per_s: base,
                us_per_s: base,
            };
            (ZoneId(z), zone)
        })
        .collect()
}

/// The seeds to run.
fn seeds() -> Vec<u64> {
    let var = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    match (var("REBALANCE_SIM_SEED"), var("REBALANCE_SIM_SEEDS")) {
        (Some(seed), _) => vec![seed],
        (None, n) => (0..n.unwrap_or(SEEDS)).collect(),
    }
}

/// Runs every seed with `driver`; returns how many runs moved a zone after the load
/// stopped changing.
fn simulate(driver: Driver) -> usize {
    let mut moved_late = 0;
    for seed in seeds() {
        let mut cluster = Cluster::new(seed, driver);
        cluster.run();
        moved_late += usize::from(cluster.rounds_to_converge() > 0);
    }
    moved_late
}

#[test]
fn rebalance_sim_one_rebalancer_keeps_its_caps_and_settles() {
    let moved_late = simulate(Driver::Central);
    // The seeds make the rebalancer work on after the load stopped changing.
    assert!(
        seeds().len() < SEEDS as usize || moved_late > 50,
        "{moved_late} runs moved a zone once the load stayed put"
    );
}

#[test]
fn rebalance_sim_one_rebalancer_per_node_keeps_its_caps_and_settles() {
    simulate(Driver::PerNode);
}
