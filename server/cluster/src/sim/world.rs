//! The simulated world: node slots (each holding the current run of one node, or
//! nothing while it is down), the store, the network, the players, and the fault
//! schedule; [`run`] drives it from a seed. Players crossing into zones on other
//! nodes are in [`crossing`]; their durable actions in [`actions`]; what the checker
//! and failure reports read is in [`observe`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

mod actions;
mod crossing;
mod observe;

use actions::ClientActions;
pub use crossing::CrossingConfig;
use crossing::Crossings;
use observe::Trace;

use super::check::{Violation, check_actions, check_owners, check_players, check_single_entity};
use super::net::{Endpoint, Net, NetFaults, Packet};
use super::rng::SimRng;
use super::store::{Claim, SimStore};
use crate::Millis;
use crate::admission::Admission;
use crate::membership::Member;
use crate::membership::swim::{Swim, lan_config};
use crate::msg::Envelope;
use crate::node::{NodeConfig, NodeCore};

/// What one simulation run does.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Drives every random choice.
    pub seed: u64,
    /// Node slots.
    pub n_nodes: usize,
    /// Zones players ask for.
    pub n_zones: u32,
    /// Players.
    pub n_players: usize,
    /// How long faults are injected.
    pub fault_ms: u64,
    /// After the faults, how long the cluster has to serve every player.
    pub settle_ms: u64,
    /// Network faults during the fault phase (after it: no loss, same delays).
    pub net: NetFaults,
    /// Chance per second of the fault phase that a node crashes.
    pub crash_chance: f64,
    /// Chance per second that a link (node–node or node–store) is cut.
    pub partition_chance: f64,
    /// Chance per second that one cut heals.
    pub heal_chance: f64,
    /// The node cores' settings.
    pub node: NodeConfig,
    /// Most steps before the run is declared stuck.
    pub max_steps: u64,
    /// Whether the store refuses to activate a zone whose holder's lease is live.
    /// Only turned off to show that the checker catches the resulting double owners.
    pub store_respects_leases: bool,
    /// Nodes take a player's claim over when its holder is not in their view (a rule
    /// the server must not use: a node cut off from them may still serve the player).
    /// Only turned on to show that the checker catches the resulting double entities.
    pub take_over_unseen_claims: bool,
    /// Start every node knowing every other (a cluster long up) instead of joining
    /// through the seeds; large clusters are measured this way.
    pub bootstrap: bool,
    /// At time zero, have a random node ask for every zone, so all are active.
    pub warm_zones: bool,
    /// Check safety after every step (true) or once per simulated second (large runs,
    /// where a check over every zone after every packet would dominate).
    pub check_every_step: bool,
    /// Players first ask between these times (ms).
    pub players_start_ms: (u64, u64),
    /// Zones the store lists per `ZonesHeldBy` answer. The fault runs use a tiny limit
    /// so that truncated answers are exercised; the real stores list 10,000.
    pub store_zones_per_read: usize,
    /// How players cross into zones on other nodes.
    pub crossing: CrossingConfig,
    /// Nodes answer a durable action `ActionCommitted` when they send it to the store,
    /// before the store confirmed it (a rule the server must not use: the action is
    /// lost if the call is, or the node crashes first). Only turned on to show that
    /// the checker catches the resulting lost actions.
    pub acknowledges_before_commit: bool,
    /// Whether the store commits a durable action id once (a repeat is answered as
    /// committed). Only turned off to show that the checker catches double commits.
    pub store_dedupes_actions: bool,
}

impl SimConfig {
    /// A small cluster with every kind of fault: 3–5 nodes, 12 zones, 40 players,
    /// 40 s of faults and 30 s to settle. The node count follows from the seed.
    pub fn with_faults(seed: u64) -> Self {
        Self {
            seed,
            n_nodes: 3 + (seed % 3) as usize,
            n_zones: 12,
            n_players: 40,
            fault_ms: 40_000,
            settle_ms: 30_000,
            net: NetFaults {
                loss: 0.05,
                min_delay_ms: 1,
                max_delay_ms: 40,
                duplicate: 0.01,
            },
            crash_chance: 0.04,
            partition_chance: 0.05,
            heal_chance: 0.15,
            node: NodeConfig::default(),
            max_steps: 5_000_000,
            store_respects_leases: true,
            take_over_unseen_claims: false,
            bootstrap: false,
            warm_zones: false,
            check_every_step: true,
            players_start_ms: (0, 3_000),
            store_zones_per_read: 3,
            crossing: CrossingConfig::default(),
            acknowledges_before_commit: false,
            store_dedupes_actions: true,
        }
    }

    /// No faults at all: `n_nodes` nodes, `n_players` players over `n_zones` zones, 20 s.
    pub fn calm(seed: u64, n_nodes: usize, n_zones: u32, n_players: usize) -> Self {
        Self {
            n_nodes,
            n_zones,
            n_players,
            fault_ms: 0,
            settle_ms: 20_000,
            net: NetFaults {
                loss: 0.0,
                min_delay_ms: 1,
                max_delay_ms: 5,
                duplicate: 0.0,
            },
            crash_chance: 0.0,
            partition_chance: 0.0,
            heal_chance: 0.0,
            ..Self::with_faults(seed)
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Steps taken.
    pub n_steps: u64,
    /// Activations the store granted.
    pub n_activations: u64,
    /// Node crashes injected.
    pub n_crashes: u64,
    /// Links cut.
    pub n_cuts: u64,
    /// Gossip bytes sent by all nodes.
    pub n_gossip_bytes: u64,
    /// Node-to-node directory messages sent.
    pub n_node_messages: u64,
    /// Players redirected.
    pub n_redirects: u64,
    /// Crossing messages (offers, repeats and answers) sent.
    pub n_crossing_messages: u64,
    /// Players who walked into another zone of the same node.
    pub n_local_moves: u64,
    /// Players offered to other nodes (each transfer once, however often repeated).
    pub n_offers: u64,
    /// Offers accepted (a repeat handled anew counts again).
    pub n_accepted: u64,
    /// Redirected clients that reached their waiting players.
    pub n_clients_arrived: u64,
    /// Waiting players whose clients did not come in time.
    pub n_arrivals_expired: u64,
    /// Transfers ended by taking the player back (refused, unreachable or silent).
    pub n_taken_back: u64,
    /// Of those, players that could not be put back (claimed elsewhere, zone gone,
    /// client gone) and were saved instead.
    pub n_dropped: u64,
    /// Durable actions clients started (each id once).
    pub n_actions: u64,
    /// Sends of durable actions to nodes, first sends and resends.
    pub n_action_sends: u64,
    /// Durable actions whose `ActionCommitted` reached their clients.
    pub n_actions_acked: u64,
    /// `ActionRejected{Busy}` answers that reached clients (who resend).
    pub n_actions_refused: u64,
    /// Durable actions the store committed.
    pub n_actions_committed: u64,
}

/// A failed run: which seed, when, and what broke.
#[derive(Debug, Clone)]
pub struct SimFailure {
    /// The seed that replays it.
    pub seed: u64,
    /// The step at which the check failed.
    pub step: u64,
    /// Simulated time of the failure.
    pub at: Millis,
    /// What broke.
    pub violation: Violation,
    /// The nodes' and the store's state at the failure, for reading the failure.
    pub state: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} failed at step {} ({}): {}\n  replay: cargo run -p zonemesh-cluster --release --bin cluster-sim -- --seed {}",
            self.seed, self.step, self.at, self.violation, self.seed
        )?;
        write!(f, "\n{}", self.state)
    }
}

struct Run {
    core: NodeCore,
    swim: Swim,
    /// Players in this run's worlds (by index), as the server's zones hold them.
    entities: BTreeMap<usize, Entity>,
    /// Players on their way to or from other nodes.
    crossings: Crossings,
}

/// A player's entity on a node: in which zone, for which session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entity {
    pub(super) zone: ZoneId,
    pub(super) session: u64,
}

impl Run {
    /// Whether this run holds `player` in a session other than `session`, in a zone
    /// or waiting for its client.
    fn holds_other_session(&self, player: usize, session: u64) -> bool {
        let in_zone = self
            .entities
            .get(&player)
            .is_some_and(|e| e.session != session);
        let waiting = self
            .crossings
            .arrivals
            .iter()
            .any(|(s, a)| a.player == player && *s != session);
        in_zone || waiting
    }
}

struct Slot {
    run: Option<Run>,
    incarnation: u64,
    restart_at: Option<Millis>,
}

#[derive(Debug, Clone, Copy)]
enum PlayerState {
    Asking {
        slot: usize,
        at: Millis,
        hops: u32,
        redirected: bool,
    },
    Playing {
        slot: usize,
        node: NodeRef,
        check_at: Millis,
        /// The zone the player is walking into and how often it tried, while it
        /// waits at the border.
        heading: Option<(ZoneId, u32)>,
    },
    /// Connected to `node`, whose transfer carries the player to another node.
    InTransfer {
        slot: usize,
        node: NodeRef,
        check_at: Millis,
    },
    /// Sent on to `node`, where the player waits: reaches it at `at`, or (`arrives`
    /// false) gives up then and logs in anew.
    Following {
        slot: usize,
        node: NodeRef,
        at: Millis,
        arrives: bool,
    },
}

struct Player {
    zone: ZoneId,
    state: PlayerState,
    /// The player's latest session (0 before the first).
    session: u64,
    /// The latest things that happened to it, for reading a failure.
    trace: VecDeque<(Millis, Trace)>,
    /// Its client's durable actions.
    actions: ClientActions,
}

/// Redirects a player follows before starting over at a random node.
const MAX_HOPS: u32 = 4;
/// Chance, at each check while faults run, that a playing player moves to another
/// zone (a crossing, or a login whose record names another zone); its old session
/// stays open on its old node until that node is asked to end it.
const MOVE_CHANCE: f64 = 0.1;
/// How long a player whose session is still open elsewhere waits before asking again.
const CLAIM_RETRY_MS: u64 = 200;
/// How often a playing player checks that its node still serves it.
const PLAY_CHECK_MS: u64 = 500;
/// Mixed into the seed for the durable actions' generator.
const ACTION_SEED: u64 = 0xac71_0a5d_0000_0001;
/// Slots every node announces itself to.
const N_SEEDS: usize = 3;
/// Base port of the slots' (fictional) addresses.
const BASE_PORT: u16 = 7000;

/// The simulated world.
pub struct World {
    config: SimConfig,
    rng: SimRng,
    now: Millis,
    slots: Vec<Slot>,
    store: SimStore,
    net: Net,
    players: Vec<Player>,
    next_fault_at: Millis,
    faults: NetFaults,
    faults_stopped: bool,
    warmed: bool,
    next_check_at: Millis,
    report: SimReport,
    next_session: u64,
    /// Draws the durable actions' choices (and their packets' fates), apart from
    /// `rng` so that they leave the other choices of a seed as they were.
    action_rng: SimRng,
    /// Acknowledgements that reached clients since the last check.
    acks_to_check: Vec<(usize, u64)>,
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("seed", &self.config.seed)
            .field("now", &self.now)
            .finish()
    }
}

/// Runs one seeded simulation to the end, checking after every step.
pub fn run(config: SimConfig) -> Result<SimReport, SimFailure> {
    let mut world = World::new(config);
    world.run()
}

/// Whether the run in `slot` has `node` in its view.
fn run_sees(slot: &Slot, node: NodeRef) -> bool {
    slot.run
        .as_ref()
        .is_some_and(|r| r.core.view().is_live(node))
}

fn node_id(slot: usize) -> u64 {
    (slot as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

fn slot_addr(slot: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], BASE_PORT + slot as u16))
}

fn slot_member(slot: usize, incarnation: u64) -> Member {
    Member {
        node: NodeRef::new(node_id(slot), incarnation),
        addr: slot_addr(slot),
        client_addr: SocketAddr::from(([127, 0, 0, 2], BASE_PORT + slot as u16)),
    }
}

impl World {
    /// A world at time zero with every node started and joining through slot 0.
    pub fn new(config: SimConfig) -> Self {
        let mut rng = SimRng::new(config.seed);
        let action_rng = SimRng::new(config.seed ^ ACTION_SEED);
        let players = (0..config.n_players)
            .map(|_| Player {
                zone: ZoneId(rng.index(config.n_zones as usize) as u32),
                state: PlayerState::Asking {
                    slot: rng.index(config.n_nodes),
                    at: Millis(rng.range(config.players_start_ms.0, config.players_start_ms.1)),
                    hops: 0,
                    redirected: false,
                },
                session: 0,
                trace: VecDeque::new(),
                actions: ClientActions::default(),
            })
            .collect();
        let slots = (0..config.n_nodes)
            .map(|_| Slot {
                run: None,
                incarnation: 0,
                restart_at: Some(Millis(0)),
            })
            .collect();
        let mut store = SimStore::new(config.node.lease.duration_ms);
        store.set_respects_leases(config.store_respects_leases);
        store.set_zones_per_read(config.store_zones_per_read);
        store.set_dedupes_actions(config.store_dedupes_actions);
        Self {
            faults: config.net,
            report: SimReport {
                seed: config.seed,
                ..SimReport::default()
            },
            next_fault_at: Millis(1_000),
            faults_stopped: false,
            warmed: false,
            next_check_at: Millis(0),
            config,
            rng,
            now: Millis(0),
            slots,
            store,
            net: Net::default(),
            next_session: 0,
            action_rng,
            acks_to_check: Vec::new(),
            players,
        }
    }

    fn run(&mut self) -> Result<SimReport, SimFailure> {
        let end = Millis(self.config.fault_ms + self.config.settle_ms);
        self.run_until(end)?;
        self.check_served()?;
        self.check_actions_settled()?;
        Ok(self.report())
    }

    /// What the run measured so far.
    pub fn report(&self) -> SimReport {
        SimReport {
            n_activations: self.store.n_activations(),
            n_gossip_bytes: self.net.n_gossip_bytes,
            n_node_messages: self.net.n_node_messages,
            n_crossing_messages: self.net.n_crossing_messages,
            n_actions_committed: self.store.n_actions(),
            ..self.report.clone()
        }
    }

    /// Runs every event due up to `end`, then sets the clock to `end`.
    pub fn run_until(&mut self, end: Millis) -> Result<(), SimFailure> {
        let fault_end = Millis(self.config.fault_ms);
        while self.now < end {
            self.report.n_steps += 1;
            if self.report.n_steps > self.config.max_steps {
                return Err(self.failure(Violation::StepLimit));
            }
            if !self.faults_stopped && self.now >= fault_end {
                self.stop_faults();
                self.faults_stopped = true;
            }
            self.step()?;
            self.now = self.next_time().min(end).max(self.now);
        }
        Ok(())
    }

    /// Handles everything due at `now`, checking the invariants after each handler.
    fn step(&mut self) -> Result<(), SimFailure> {
        while let Some(packet) = self.net.pop_due(self.now) {
            // A durable action's commit or answer changes only the store's actions
            // and a client's: only the actions' invariants can break.
            let only_actions = matches!(packet, Packet::Action { .. } | Packet::ActionDone { .. });
            self.deliver(packet);
            if only_actions {
                self.check_durability()?;
            } else {
                self.check()?;
            }
        }
        for slot in 0..self.slots.len() {
            if self.restart_if_due(slot) | self.fire_timers(slot) | self.drive_crossings(slot) {
                self.check()?;
            }
        }
        if self.config.warm_zones && !self.warmed {
            self.warm_all_zones();
            self.check()?;
        }
        for slot in 0..self.slots.len() {
            if self.drop_lost_entities(slot) {
                self.check()?;
            }
        }
        for i in 0..self.players.len() {
            if self.step_player(i) {
                self.check()?;
            }
        }
        if self.now >= self.next_fault_at && self.now < Millis(self.config.fault_ms) {
            self.inject_faults();
            self.next_fault_at = self.now + 1_000;
            self.check()?;
        }
        Ok(())
    }

    fn next_time(&self) -> Millis {
        let timers = self.slots.iter().filter_map(|slot| {
            let run = slot.run.as_ref()?;
            [run.core.poll_timeout(), run.swim.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
        });
        let restarts = self.slots.iter().filter_map(|s| s.restart_at);
        let players = self.players.iter().map(|p| match p.state {
            PlayerState::Asking { at, .. } | PlayerState::Following { at, .. } => at,
            PlayerState::Playing { check_at, .. } | PlayerState::InTransfer { check_at, .. } => {
                check_at
            }
        });
        let crossings = self
            .slots
            .iter()
            .filter_map(|s| s.run.as_ref()?.crossings.next_due());
        let faults = (self.now < Millis(self.config.fault_ms)).then_some(self.next_fault_at);
        timers
            .chain(crossings)
            .chain(restarts)
            .chain(players)
            .chain(faults)
            .chain(self.net.next_arrival())
            .min()
            .unwrap_or(self.now + 1_000)
    }

    fn check(&mut self) -> Result<(), SimFailure> {
        if !self.config.check_every_step {
            if self.now < self.next_check_at {
                return Ok(());
            }
            self.next_check_at = self.now + 1_000;
        }
        let cores = self
            .slots
            .iter()
            .filter_map(|s| s.run.as_ref().map(|r| &r.core));
        check_owners(self.now, cores, &self.store).map_err(|v| self.failure(v))?;
        check_single_entity(self.live_entities()).map_err(|v| self.failure(v))?;
        check_players(self.attachments()).map_err(|v| self.failure(v))?;
        self.check_durability()
    }

    /// Checks the durable actions' invariants over the acknowledgements since the
    /// last check.
    fn check_durability(&mut self) -> Result<(), SimFailure> {
        if self.acks_to_check.is_empty() && self.store.action_committed_twice().is_none() {
            return Ok(());
        }
        let acked = std::mem::take(&mut self.acks_to_check);
        check_actions(acked.into_iter(), &self.store).map_err(|v| self.failure(v))
    }

    fn failure(&self, violation: Violation) -> SimFailure {
        let player = match &violation {
            Violation::TwoEntities { player, .. }
            | Violation::Lost { player, .. }
            | Violation::HeldTwice { player, .. }
            | Violation::LostAction { player, .. }
            | Violation::ActionCommittedTwice { player, .. }
            | Violation::ActionsPending { player, .. } => Some(*player),
            _ => None,
        };
        let mut zones = match &violation {
            Violation::TwoOwners { zone, .. } | Violation::NotTheHolder { zone, .. } => vec![*zone],
            Violation::Unserved { zones, .. } => zones.clone(),
            Violation::TwoEntities { zones, .. } => zones.clone(),
            Violation::Lost { player, .. } | Violation::HeldTwice { player, .. } => {
                vec![self.players[*player].zone]
            }
            Violation::StepLimit
            | Violation::LostAction { .. }
            | Violation::ActionCommittedTwice { .. }
            | Violation::ActionsPending { .. } => Vec::new(),
        };
        zones.sort_unstable();
        zones.dedup();
        let mut state = self.dump(&zones);
        if let Some(i) = player {
            state.push_str(&self.dump_player(i));
        }
        SimFailure {
            seed: self.config.seed,
            step: self.report.n_steps,
            at: self.now,
            state,
            violation,
        }
    }

    /// The state around `zones`, one line per node plus the store's rows (for test
    /// failure messages).
    pub fn dump(&self, zones: &[ZoneId]) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(run) = &slot.run else {
                let _ = writeln!(out, "  slot {i}: down");
                continue;
            };
            let core = &run.core;
            let owners: Vec<String> = zones
                .iter()
                .map(|z| core.describe_zone(self.now, *z))
                .collect();
            let active: Vec<u32> = core.active_zones().map(|(z, _)| z.0).collect();
            let _ = writeln!(
                out,
                "  slot {i} {}: view {:?} v{}, swim {} members, active {active:?}, {owners:?}",
                core.me(),
                core.view()
                    .members()
                    .map(|m| m.node.to_string())
                    .collect::<Vec<_>>(),
                core.view().version(),
                run.swim.n_members(),
            );
        }
        for zone in zones {
            let _ = writeln!(out, "  store {}: {:?}", zone.0, self.store.zone(*zone));
        }
        let asking: Vec<String> = self
            .players
            .iter()
            .filter(|p| zones.contains(&p.zone))
            .map(|p| format!("{}:{:?}", p.zone.0, p.state))
            .take(6)
            .collect();
        let _ = writeln!(out, "  players {asking:?}");
        out
    }

    fn check_served(&self) -> Result<(), SimFailure> {
        let unserved: Vec<ZoneId> = self
            .players
            .iter()
            .filter(|p| !self.is_served(p))
            .map(|p| p.zone)
            .collect();
        if unserved.is_empty() {
            return Ok(());
        }
        let zones = unserved.iter().take(5).copied().collect();
        Err(self.failure(Violation::Unserved {
            n_players: unserved.len(),
            zones,
        }))
    }

    fn is_served(&self, player: &Player) -> bool {
        let PlayerState::Playing { slot, node, .. } = player.state else {
            return false;
        };
        self.slots[slot].run.as_ref().is_some_and(|run| {
            run.core.me() == node && run.core.accepts_inputs(self.now, player.zone)
        })
    }

    fn deliver(&mut self, packet: Packet) {
        let now = self.now;
        match packet {
            Packet::Gossip { to, bytes } => {
                if let Some(run) = self.slots[to].run.as_mut() {
                    // A packet foca rejects is dropped, as a real driver would.
                    let _ = run.swim.handle_data(now, &bytes);
                    self.flush(to);
                }
            }
            Packet::Node { to, bytes } => {
                let Ok(envelope) = Envelope::decode(&bytes) else {
                    return;
                };
                if let Some(run) = self.slots[to].run.as_mut() {
                    run.core.handle_message(now, envelope);
                    self.flush(to);
                }
            }
            Packet::Call { from, node, call } => {
                let reply = self.store.call(now, node, call);
                let packet = Packet::Reply {
                    to: from,
                    node,
                    reply,
                };
                self.net
                    .send(now, Endpoint::Store, packet, self.faults, &mut self.rng);
            }
            Packet::Crossing { to, from, bytes } => self.deliver_crossing(to, from, &bytes),
            Packet::Action { from, node, action } => self.commit_action(from, node, action),
            Packet::ActionDone {
                to,
                node,
                action,
                commit,
            } => self.answer_action(to, node, action, commit),
            Packet::Reply { to, node, reply } => {
                if let Some(run) = self.slots[to].run.as_mut().filter(|r| r.core.me() == node) {
                    run.core.handle_store_reply(now, reply);
                    self.flush(to);
                }
            }
        }
    }

    /// Fires the slot's due timers; returns whether any fired.
    fn fire_timers(&mut self, slot: usize) -> bool {
        let now = self.now;
        let Some(run) = self.slots[slot].run.as_mut() else {
            return false;
        };
        let swim_due = run.swim.poll_timeout().is_some_and(|t| t <= now);
        if swim_due {
            run.swim.handle_timeout(now);
        }
        let core_due = run.core.poll_timeout().is_some_and(|t| t <= now);
        if core_due {
            run.core.handle_timeout(now);
        }
        self.flush(slot);
        swim_due || core_due
    }

    /// Moves everything a node produced onto the network (and membership events from
    /// its SWIM core into its node core).
    fn flush(&mut self, slot: usize) {
        let now = self.now;
        let from = Endpoint::Node(slot);
        let n_slots = self.slots.len();
        let Some(run) = self.slots[slot].run.as_mut() else {
            return;
        };
        // Bounded: each pass drains queues that only grow from the handlers above.
        for _ in 0..64 {
            let events: Vec<_> = std::iter::from_fn(|| run.swim.poll_event()).collect();
            let mut moved = !events.is_empty();
            if moved {
                run.core.handle_membership_batch(now, events);
            }
            while let Some((addr, bytes)) = run.swim.poll_transmit() {
                let to = usize::from(addr.port() - BASE_PORT);
                self.net.send(
                    now,
                    from,
                    Packet::Gossip { to, bytes },
                    self.faults,
                    &mut self.rng,
                );
                moved = true;
            }
            while let Some(envelope) = run.core.poll_message() {
                let to = slot_of(envelope.to, n_slots);
                let packet = Packet::Node {
                    to,
                    bytes: envelope.encode(),
                };
                self.net.send(now, from, packet, self.faults, &mut self.rng);
                moved = true;
            }
            while let Some(call) = run.core.poll_store_call() {
                let packet = Packet::Call {
                    from: slot,
                    node: run.core.me(),
                    call,
                };
                self.net.send(now, from, packet, self.faults, &mut self.rng);
                moved = true;
            }
            while run.core.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }

    /// Starts a new run in the slot if one is due; returns whether it did.
    fn restart_if_due(&mut self, slot: usize) -> bool {
        if self.slots[slot].restart_at.is_none_or(|at| at > self.now) {
            return false;
        }
        let s = &mut self.slots[slot];
        s.restart_at = None;
        s.incarnation += 1;
        let me = slot_member(slot, s.incarnation);
        let n_nodes = self.config.n_nodes as u32;
        let mut swim = Swim::new(me, lan_config(n_nodes), self.rng.next_u64());
        // A few seeds, as a real deployment lists: announcing to every node would
        // cost N² packets in a large cluster.
        let seeds: Vec<SocketAddr> = (0..self.slots.len().min(N_SEEDS))
            .filter(|&i| i != slot)
            .map(slot_addr)
            .collect();
        // Joining and bootstrapping fail only for an oversized packet, which neither
        // sends.
        let _ = swim.join(self.now, &seeds);
        if self.config.bootstrap && self.now == Millis(0) {
            let everyone: Vec<Member> = (0..self.slots.len()).map(|i| slot_member(i, 1)).collect();
            let _ = swim.bootstrap(self.now, &everyone);
        }
        let core = NodeCore::new(me, self.config.node);
        self.slots[slot].run = Some(Run {
            core,
            swim,
            entities: BTreeMap::new(),
            crossings: Crossings::default(),
        });
        self.flush(slot);
        true
    }

    /// Ends the entities of zones the run in `slot` no longer accepts inputs for (the
    /// zone sends its players away) and releases their claims if the store answers;
    /// returns whether any ended.
    fn drop_lost_entities(&mut self, slot: usize) -> bool {
        let now = self.now;
        let store_reachable = !self.net.is_cut(Endpoint::Node(slot), Endpoint::Store);
        let Some(run) = self.slots[slot].run.as_mut() else {
            return false;
        };
        let lost: Vec<(usize, Entity)> = run
            .entities
            .iter()
            .filter(|(_, e)| !run.core.accepts_inputs(now, e.zone))
            .map(|(p, e)| (*p, *e))
            .collect();
        let me = run.core.me();
        for (player, entity) in &lost {
            run.entities.remove(player);
            if store_reachable {
                self.store.release_player(*player, me, entity.session);
            }
        }
        for (player, entity) in &lost {
            self.note(*player, "zone lost", me, entity.session);
            // The zone sends its client away: it asks anew.
            let p = &self.players[*player];
            let attached = matches!(p.state, PlayerState::Playing { node, .. } if node == me);
            if attached && p.session == entity.session {
                let state = self.ask_anew(200);
                self.set_state(*player, state);
            }
        }
        !lost.is_empty()
    }

    /// Lets player `i` into the run in `slot`, which serves its zone, once the store
    /// grants it the player's claim; a session open on another live run is asked to
    /// end first, and the player asks again shortly.
    fn enter(&mut self, i: usize, slot: usize) -> PlayerState {
        let now = self.now;
        let retry = PlayerState::Asking {
            slot,
            at: now + CLAIM_RETRY_MS,
            hops: 0,
            redirected: false,
        };
        if self.net.is_cut(Endpoint::Node(slot), Endpoint::Store) {
            return retry;
        }
        let Some(run) = self.slots[slot].run.as_ref() else {
            return self.ask_anew(500);
        };
        // A transfer of the player's previous session may still take the claim over
        // from this run or claim it back: the player waits until it is decided.
        if self.config.crossing.guards_stale_sessions && run.crossings.is_sending(i) {
            return retry;
        }
        let me = run.core.me();
        self.next_session += 1;
        let session = self.next_session;
        match self.store.claim_player(now, i, me, session, None) {
            Claim::Claimed => self.enter_claimed(i, slot, me, session),
            Claim::HeldBy(holder, _)
                if self.config.take_over_unseen_claims && !run_sees(&self.slots[slot], holder) =>
            {
                self.store.force_claim(i, me, session);
                self.enter_claimed(i, slot, me, session)
            }
            Claim::HeldBy(holder, held) => {
                self.end_session(slot, holder, i, held);
                retry
            }
        }
    }

    /// Puts player `i`'s entity for `session` into the run in `slot`, whose claim it is.
    fn enter_claimed(&mut self, i: usize, slot: usize, me: NodeRef, session: u64) -> PlayerState {
        let zone = self.players[i].zone;
        self.players[i].session = session;
        self.note(i, "entered", me, session);
        let end_arrivals = self.config.crossing.sessions_end_arrivals;
        if let Some(run) = self.slots[slot].run.as_mut() {
            run.entities.insert(i, Entity { zone, session });
            // The new session takes the place of a copy waiting here for its client
            // (the claim stays this run's).
            if end_arrivals {
                run.crossings.end_arrivals(i, None);
            }
        }
        self.playing(slot, me, None)
    }

    /// The run in `from` asks run `holder` to end player `player`'s session `session`
    /// (delivered at once unless the two are cut apart); the holder ends it and
    /// releases the claim if the store answers it.
    fn end_session(&mut self, from: usize, holder: NodeRef, player: usize, session: u64) {
        let to = slot_of(holder, self.slots.len());
        if self.net.is_cut(Endpoint::Node(from), Endpoint::Node(to)) {
            return;
        }
        let store_reachable = !self.net.is_cut(Endpoint::Node(to), Endpoint::Store);
        if self.slots[to]
            .run
            .as_ref()
            .is_some_and(|r| r.core.me() == holder)
        {
            self.note(player, "asked to end", holder, session);
        }
        let Some(run) = self.slots[to]
            .run
            .as_mut()
            .filter(|r| r.core.me() == holder)
        else {
            return;
        };
        if run
            .entities
            .get(&player)
            .is_some_and(|e| e.session == session)
        {
            run.entities.remove(&player);
        }
        // A session whose player is in a transfer loses its client; the transfer
        // carries on (the runtime's behaviour).
        if let Some(id) = run.crossings.transfer_of(player, session) {
            run.crossings.close_link(id);
        }
        if self.config.crossing.sessions_end_arrivals {
            run.crossings.end_arrivals(player, Some(session));
        }
        if store_reachable {
            self.store.release_player(player, holder, session);
        }
    }

    /// Moves player `i` if it is due; returns whether it did.
    fn step_player(&mut self, i: usize) -> bool {
        let now = self.now;
        let zone = self.players[i].zone;
        match self.players[i].state {
            PlayerState::Asking {
                slot,
                at,
                hops,
                redirected,
            } if at <= now => {
                let state = self.ask(i, slot, zone, hops, redirected);
                self.set_state(i, state);
                true
            }
            PlayerState::Playing {
                slot,
                node,
                check_at,
                heading,
            } if check_at <= now => {
                let still = self.slots[slot]
                    .run
                    .as_ref()
                    .is_some_and(|r| r.core.me() == node && r.core.accepts_inputs(now, zone));
                if still {
                    self.send_actions(i, slot, node);
                }
                let state = if !still {
                    self.ask_anew(200)
                } else if let Some((target, tries)) = heading {
                    self.cross(i, slot, target, tries)
                } else if !self.faults_stopped && self.rng.chance(MOVE_CHANCE) {
                    self.move_player(i, slot, node)
                } else {
                    self.playing(slot, node, None)
                };
                self.set_state(i, state);
                true
            }
            PlayerState::InTransfer {
                slot,
                node,
                check_at,
            } if check_at <= now => {
                let state = self.check_in_transfer(i, slot, node);
                self.set_state(i, state);
                true
            }
            PlayerState::Following {
                slot,
                node,
                at,
                arrives,
            } if at <= now => {
                let state = if arrives {
                    self.arrive(i, slot, node)
                } else {
                    self.ask_anew(0)
                };
                self.set_state(i, state);
                true
            }
            _ => false,
        }
    }

    /// Player `i`, playing on run `node` in `slot`, moves to a random zone: it walks
    /// across a border, or logs in anew for a zone its record names (its old session
    /// stays open on its old node until that node is asked to end it).
    fn move_player(&mut self, i: usize, slot: usize, node: NodeRef) -> PlayerState {
        let target = ZoneId(self.rng.index(self.config.n_zones as usize) as u32);
        if !self.rng.chance(self.config.crossing.cross_share) {
            self.players[i].zone = target;
            return self.ask_anew(0);
        }
        if target == self.players[i].zone {
            return self.playing(slot, node, None);
        }
        self.cross(i, slot, target, 0)
    }

    fn ask(
        &mut self,
        i: usize,
        slot: usize,
        zone: ZoneId,
        hops: u32,
        redirected: bool,
    ) -> PlayerState {
        let now = self.now;
        let Some(run) = self.slots[slot].run.as_mut() else {
            return self.ask_anew(500);
        };
        let answer = run.core.admit(now, zone, redirected);
        self.flush(slot);
        match answer {
            Admission::Welcome { .. } => self.enter(i, slot),
            Admission::Redirect { to } if hops < MAX_HOPS => {
                self.report.n_redirects += 1;
                let slot = slot_of(to, self.slots.len());
                PlayerState::Asking {
                    slot,
                    at: now + 2,
                    hops: hops + 1,
                    redirected: true,
                }
            }
            Admission::Redirect { .. } | Admission::Busy { .. } | Admission::Refuse(_) => {
                self.ask_anew(500)
            }
            Admission::Loading { retry_after_ms } => PlayerState::Asking {
                slot,
                at: now + u64::from(retry_after_ms),
                hops,
                redirected: false,
            },
        }
    }

    /// The simulated time.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Crashes the run in `slot` (it is not restarted) and returns which run it was.
    pub fn kill(&mut self, slot: usize) -> NodeRef {
        let s = &mut self.slots[slot];
        s.restart_at = None;
        let run = s.run.take();
        self.report.n_crashes += 1;
        run.map_or(NodeRef::new(node_id(slot), s.incarnation), |r| r.core.me())
    }

    /// Cuts the run in `slot` off from the store (both ways) until the end of the run,
    /// leaving its links to other nodes intact; returns which run it is.
    pub fn cut_from_store(&mut self, slot: usize) -> Option<NodeRef> {
        self.net.cut(Endpoint::Node(slot), Endpoint::Store);
        self.report.n_cuts += 1;
        self.slots[slot].run.as_ref().map(|r| r.core.me())
    }

    /// Whether the run `node` accepts inputs for any zone now.
    pub fn accepts_any(&self, node: NodeRef) -> bool {
        self.slots.iter().filter_map(|s| s.run.as_ref()).any(|r| {
            r.core.me() == node
                && r.core
                    .active_zones()
                    .any(|(zone, _)| r.core.accepts_inputs(self.now, zone))
        })
    }

    /// Whether every player is playing on a node that accepts inputs for its zone.
    pub fn all_players_served(&self) -> bool {
        self.players.iter().all(|p| self.is_served(p))
    }

    /// The zones the store says `node` holds.
    pub fn zones_held_by(&self, node: NodeRef) -> Vec<ZoneId> {
        self.store.zones_held_by(node)
    }

    /// How many live runs no longer have `node` in their view, and how many are live.
    pub fn views_without(&self, node: NodeRef) -> (usize, usize) {
        let live: Vec<&NodeCore> = self
            .slots
            .iter()
            .filter_map(|s| s.run.as_ref().map(|r| &r.core))
            .collect();
        let without = live
            .iter()
            .filter(|core| !core.view().is_live(node))
            .count();
        (without, live.len())
    }

    /// Whether every zone in `zones` is held, per the store, by a live run that
    /// accepts inputs for it.
    pub fn all_served(&self, zones: &[ZoneId]) -> bool {
        zones.iter().all(|zone| {
            let Some(holder) = self.store.zone(*zone).holder else {
                return false;
            };
            self.slots
                .iter()
                .filter_map(|s| s.run.as_ref())
                .any(|r| r.core.me() == holder && r.core.accepts_inputs(self.now, *zone))
        })
    }

    /// Has a random live node ask for every zone (keep-warm at start).
    fn warm_all_zones(&mut self) {
        self.warmed = true;
        for zone in 0..self.config.n_zones {
            let slot = self.rng.index(self.slots.len());
            if let Some(run) = self.slots[slot].run.as_mut() {
                run.core.admit(self.now, ZoneId(zone), false);
                self.flush(slot);
            }
        }
    }

    fn ask_anew(&mut self, after_ms: u64) -> PlayerState {
        PlayerState::Asking {
            slot: self.rng.index(self.slots.len()),
            at: self.now + after_ms,
            hops: 0,
            redirected: false,
        }
    }

    fn inject_faults(&mut self) {
        let n = self.slots.len();
        if self.rng.chance(self.config.crash_chance) {
            let slot = self.rng.index(n);
            if self.slots[slot].run.take().is_some() {
                self.report.n_crashes += 1;
                self.slots[slot].restart_at = Some(self.now + self.rng.range(1_000, 8_000));
            }
        }
        if self.rng.chance(self.config.partition_chance) {
            let a = Endpoint::Node(self.rng.index(n));
            let b = if self.rng.chance(0.3) {
                Endpoint::Store
            } else {
                Endpoint::Node(self.rng.index(n))
            };
            if a != b {
                self.net.cut(a, b);
                self.report.n_cuts += 1;
            }
        }
        if self.rng.chance(self.config.heal_chance) {
            self.net.heal_one(&mut self.rng);
        }
    }

    fn stop_faults(&mut self) {
        self.net.heal_all();
        self.faults.loss = 0.0;
        self.faults.duplicate = 0.0;
        for slot in &mut self.slots {
            if slot.run.is_none() {
                slot.restart_at = Some(self.now);
            }
        }
    }
}

/// The slot of a node run (slots are numbered by node id).
fn slot_of(node: NodeRef, n_slots: usize) -> usize {
    (0..n_slots).find(|&s| node_id(s) == node.id.0).unwrap_or(0)
}
