//! The simulated world: three nodes (A gives the zone to B; C takes it over after a
//! crash, or by a later handoff), the store, the clients and the event queue, all
//! driven by one seed. One step is one event, one timer or one action a core returned; a
//! crash may come before any of them, and the checks run after each.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

use super::model::{ActionId, Client, Player, Store, ZoneState};
use super::zone::{CHECKPOINT_MS, FAILOVER_MS};
use crate::Millis;
use crate::handoff::{HandoffMsg, HandoffOutcome, RefuseReason, SourceHandoffs, TargetHandoffs};
use crate::sim::SimRng;

/// The zone.
pub(super) const Z: ZoneId = ZoneId(7);
/// Its epoch when the run starts (held by A).
pub(super) const EPOCH: u64 = 5;
/// The source (A), the target (B) and a bystander (C), by index.
pub(super) const A: usize = 0;
pub(super) const B: usize = 1;
const N_NODES: usize = 3;
/// The longest a crashed run's lease runs on (it may have just been renewed).
const LEASE_MS: u64 = 6_000;
/// How long a run goes on after a crash: the lease lapses within 6 s, a prepared
/// target waits 10 s for a state that will not come, then the failover and the
/// clients' return take a few seconds.
const SETTLE_AFTER_CRASH_MS: u64 = 25_000;
/// Actions one drain may carry out: the cores return a handful per input.
const DRAIN_ACTIONS_MAX: usize = 10_000;

/// A crash to inject.
#[derive(Debug, Clone, Copy)]
pub(super) struct Crash {
    /// Before which step, counted from the first handoff's start (0: before A starts
    /// it).
    pub(super) step: u64,
    /// Which node (by index).
    pub(super) node: usize,
    /// Whether it comes back (as a new run) a little later.
    pub(super) restart: bool,
}

/// What a node is doing with the zone.
#[derive(Debug)]
pub(super) enum Slot {
    /// Nothing.
    Empty,
    /// It asked the store for the zone after its host died.
    Loading,
    /// Prewarmed for handoff `id`.
    Prewarmed(u64),
    /// Restored from handoff `id`'s state, released at `epoch`, waiting for the
    /// store's grant.
    Restored {
        id: u64,
        epoch: u64,
        state: ZoneState,
    },
    /// Holding the zone at `epoch`.
    Live {
        state: ZoneState,
        epoch: u64,
        mode: Mode,
    },
}

/// A held zone's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Applying inputs, taking durable actions.
    Accepting,
    /// Still applying inputs, refusing new durable actions; it freezes for handoff
    /// `id` once none is in flight, at a tick's end.
    Freezing(u64),
    /// Frozen for handoff `id`: inputs wait in the inbox.
    Frozen(u64),
}

impl Mode {
    /// Whether the zone applies inputs.
    pub(super) fn accepts_inputs(self) -> bool {
        matches!(self, Mode::Accepting | Mode::Freezing(_))
    }
}

/// One run of a node: everything lost when it crashes.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) me: NodeRef,
    pub(super) source: SourceHandoffs,
    pub(super) target: TargetHandoffs,
    pub(super) slot: Slot,
    /// Input datagrams the frozen zone received, as (player, inputs).
    pub(super) inbox_inputs: Vec<(Player, Vec<u32>)>,
    /// Durable actions committed while the zone was frozen, waiting for it.
    pub(super) inbox_effects: Vec<ActionId>,
    /// Durable actions between their commit call and its answer.
    pub(super) actions_in_flight: usize,
    /// Whether a checkpoint is being written.
    pub(super) saving: bool,
    /// The version of the zone last sent to be saved (an unchanged zone is not
    /// saved again).
    pub(super) saved_version: Option<u64>,
}

impl Run {
    fn new(me: NodeRef, first_id: u64, slot: Slot) -> Self {
        Self {
            me,
            source: SourceHandoffs::new(me, first_id),
            target: TargetHandoffs::new(me),
            slot,
            inbox_inputs: Vec::new(),
            inbox_effects: Vec::new(),
            actions_in_flight: 0,
            saving: false,
            saved_version: None,
        }
    }
}

/// A node: its current run, if up.
#[derive(Debug)]
pub(super) struct Node {
    id: u64,
    incarnation: u64,
    pub(super) run: Option<Run>,
}

/// Something that happens at a given time.
#[derive(Debug)]
pub(super) enum Event {
    /// A handoff message reaches its node.
    Handoff(HandoffMsg),
    /// A client's input datagram reaches a node.
    Input {
        to: NodeRef,
        player: Player,
        seqs: Vec<u32>,
    },
    /// A zone's acknowledgement of `player`'s inputs up to `last`.
    Ack { player: Player, last: u32 },
    /// A client's durable action reaches a node.
    Action { to: NodeRef, id: ActionId },
    /// A node's answer to a durable action.
    ActionAnswer { id: ActionId, committed: bool },
    /// A node tells `player`'s client the zone is on `to` now.
    Redirect { player: Player, to: NodeRef },
    /// A client's tick.
    ClientTick(Player),
    /// The nodes save the zones they hold.
    CheckpointTick,
    /// The directory looks for a zone whose host died.
    FailoverTick,
    /// A crashed node comes back.
    Restart(usize),
    /// A starts the handoff.
    Start,
    /// The zone froze for handoff `id`.
    Frozen { run: NodeRef, id: u64 },
    /// The store answers the final checkpoint and release.
    Released {
        run: NodeRef,
        id: u64,
        epoch: u64,
        state: ZoneState,
    },
    /// The store answers a handoff target's activation.
    HandoffActivation { run: NodeRef, attempt: u64 },
    /// The store answers the source's reactivation.
    Reactivation { run: NodeRef, id: u64 },
    /// The store answers an activation after the zone's host died.
    FailoverActivation { run: NodeRef },
    /// The store answers a checkpoint.
    Saved {
        run: NodeRef,
        epoch: u64,
        state: ZoneState,
    },
    /// The store answers a durable action's commit.
    Committed {
        run: NodeRef,
        epoch: u64,
        id: ActionId,
    },
}

/// The nodes' first runs, A holding the zone.
fn first_runs(rng: &mut SimRng) -> Vec<Node> {
    (0..N_NODES)
        .map(|i| {
            let id = i as u64 + 1;
            let slot = if i == A {
                Slot::Live {
                    state: ZoneState::default(),
                    epoch: EPOCH,
                    mode: Mode::Accepting,
                }
            } else {
                Slot::Empty
            };
            let run = Run::new(NodeRef::new(id, 1), rng.next_u64() >> 16, slot);
            Node {
                id,
                incarnation: 1,
                run: Some(run),
            }
        })
        .collect()
}

/// One to three players on `a`, each sending 20 to 60 inputs and up to 5 durable
/// actions.
fn clients(rng: &mut SimRng, a: NodeRef) -> Vec<Client> {
    let n_players = 1 + rng.index(3) as u64;
    (0..n_players)
        .map(|p| {
            let inputs = 20 + rng.range(0, 40) as u32;
            let actions = rng.range(0, 5) as u32;
            Client::new(p, a, inputs, actions)
        })
        .collect()
}

/// What one simulated run is set up with.
#[derive(Debug, Clone)]
pub(super) struct Setup {
    /// The seed every choice is drawn from.
    pub(super) seed: u64,
    /// Crashes, in step order.
    pub(super) crashes: Vec<Crash>,
    /// When the run ends.
    pub(super) limit: Millis,
    /// Whether every activation of a handoff's target takes longer than the source
    /// waits for it, and a second handoff follows the first at once.
    pub(super) slow_activations: bool,
}

/// The whole simulated world.
#[derive(Debug)]
pub(super) struct World {
    pub(super) seed: u64,
    pub(super) rng: SimRng,
    pub(super) now: Millis,
    /// When the run ends (a crash puts it off).
    pub(super) limit: Millis,
    pub(super) nodes: Vec<Node>,
    pub(super) store: Store,
    pub(super) clients: Vec<Client>,
    /// What happens next, by time and then order of scheduling.
    events: BTreeMap<(Millis, u64), Event>,
    n_events: u64,
    /// Steps taken (events, timers and actions).
    pub(super) step: u64,
    crashes: VecDeque<Crash>,
    /// The step A starts the handoff at, from which crashes are counted.
    start_step: Option<u64>,
    /// The share of handoff messages the network loses.
    pub(super) loss: f64,
    /// Whether B refuses the handoff (full).
    pub(super) target_full: bool,
    /// Whether the store grants B its handoff activation.
    pub(super) grant: bool,
    /// See [`Setup::slow_activations`].
    pub(super) slow_activations: bool,
    /// Grants of a handoff's zone that were not the first since the release its
    /// state came from (the zone is then loaded from the store).
    pub(super) stale_grants: usize,
    /// Whether a node crashed in this run.
    pub(super) crashed: bool,
    /// Every input applied anywhere, while no node crashed: without crashes no state
    /// is lost, so one applied on two lineages is applied twice.
    pub(super) applied_ever: BTreeSet<(Player, u32)>,
    /// Likewise every durable action's effect.
    pub(super) effects_ever: BTreeSet<ActionId>,
    /// Handoffs still to start (after the first ends, its zone's holder may move it
    /// on to another node).
    pub(super) handoffs_left: u32,
    /// Handoffs started.
    pub(super) started: usize,
    /// Handoffs ended, by source run and id.
    pub(super) finished: BTreeSet<(NodeRef, u64)>,
    /// How each ended, in order.
    pub(super) outcomes: Vec<HandoffOutcome>,
    /// Where the source and the target were in the handoff (for crash coverage).
    pub(super) stages: [&'static str; 2],
    /// Each crash: the node, the step (counted from the handoff's start) and the
    /// node's stage in the handoff then.
    pub(super) crashes_seen: Vec<(usize, u64, &'static str)>,
    trace: bool,
}

impl World {
    /// A world set up for `setup`; its random choices come from the seed.
    pub(super) fn new(setup: &Setup) -> Self {
        let mut rng = SimRng::new(setup.seed);
        let nodes = first_runs(&mut rng);
        let a = nodes[A].run.as_ref().expect("up").me;
        let clients = clients(&mut rng, a);
        let loss = [0.0, 0.1, 0.3, 0.6][rng.index(4)];
        let target_full = rng.chance(0.05);
        let grant = !rng.chance(0.05);
        let handoffs_left = 1 + u32::from(setup.slow_activations || rng.chance(0.4));
        Self {
            seed: setup.seed,
            rng,
            now: Millis(0),
            limit: setup.limit,
            nodes,
            store: Store::new(a, EPOCH),
            clients,
            events: BTreeMap::new(),
            n_events: 0,
            step: 0,
            crashes: setup.crashes.iter().copied().collect(),
            start_step: None,
            loss,
            target_full,
            grant,
            slow_activations: setup.slow_activations,
            stale_grants: 0,
            crashed: false,
            applied_ever: BTreeSet::new(),
            effects_ever: BTreeSet::new(),
            handoffs_left,
            started: 0,
            finished: BTreeSet::new(),
            outcomes: Vec::new(),
            stages: ["before", "before"],
            crashes_seen: Vec::new(),
            trace: std::env::var_os("HANDOFF_SIM_TRACE").is_some(),
        }
    }

    /// Runs until the limit, checking the invariants after every step.
    pub(super) fn run(&mut self) {
        let start = self.rng.range(300, 2_000);
        self.later(start, Event::Start);
        self.later(CHECKPOINT_MS, Event::CheckpointTick);
        self.later(FAILOVER_MS, Event::FailoverTick);
        for p in 0..self.clients.len() as u64 {
            let first = self.rng.range(0, 100);
            self.later(first, Event::ClientTick(p));
        }
        while self.step_once() {}
    }

    /// One event or timer, if one is due by the limit.
    fn step_once(&mut self) -> bool {
        let next_event = self.events.keys().next().map(|(at, _)| *at);
        let next_timer = self.next_timer();
        let next = [next_event, next_timer].into_iter().flatten().min();
        let Some(next) = next.filter(|at| *at <= self.limit) else {
            return false;
        };
        self.now = self.now.max(next);
        if next_event == Some(next) {
            let (_, event) = self.events.pop_first().expect("an event is due");
            if let (Event::Start, None) = (&event, self.start_step) {
                self.start_step = Some(self.step + 1);
            }
            self.begin_step();
            if self.trace {
                eprintln!("{} #{} {event:?}", self.now, self.step);
            }
            self.on_event(event);
        } else {
            self.begin_step();
            self.fire_timers();
        }
        self.check();
        self.drain();
        true
    }

    fn next_timer(&self) -> Option<Millis> {
        self.runs()
            .flat_map(|r| [r.source.poll_timeout(), r.target.poll_timeout()])
            .flatten()
            .min()
    }

    fn fire_timers(&mut self) {
        let now = self.now;
        for node in &mut self.nodes {
            if let Some(run) = &mut node.run {
                if run.source.poll_timeout().is_some_and(|at| at <= now) {
                    run.source.handle_timeout(now);
                }
                if run.target.poll_timeout().is_some_and(|at| at <= now) {
                    run.target.handle_timeout(now);
                }
            }
        }
    }

    /// Carries out every action the cores return, one step each.
    fn drain(&mut self) {
        for _ in 0..DRAIN_ACTIONS_MAX {
            let Some((i, source, target)) = self.next_actions() else {
                return;
            };
            self.begin_step();
            // The crash before this step took the actions with the core.
            if self.nodes[i].run.is_none() {
                continue;
            }
            if self.trace {
                eprintln!(
                    "{} #{} node {i}: {source:?} {target:?}",
                    self.now, self.step
                );
            }
            if let Some(action) = source {
                self.source_action(i, action);
            }
            if let Some(action) = target {
                self.target_action(i, action);
            }
            self.check();
        }
        panic!("seed {}: the cores never stop returning actions", self.seed);
    }

    fn next_actions(
        &mut self,
    ) -> Option<(
        usize,
        Option<crate::handoff::SourceAction>,
        Option<crate::handoff::TargetAction>,
    )> {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if let Some(run) = &mut node.run {
                let source = run.source.poll_action();
                let target = run.target.poll_action();
                if source.is_some() || target.is_some() {
                    return Some((i, source, target));
                }
            }
        }
        None
    }

    /// Counts a step, crashing first the nodes due to crash before it.
    fn begin_step(&mut self) {
        self.step += 1;
        let Some(start) = self.start_step else {
            return;
        };
        while let Some(crash) = self.crashes.front().copied() {
            if start + crash.step > self.step {
                break;
            }
            self.crashes.pop_front();
            self.crash(crash, self.step - start);
        }
    }

    fn crash(&mut self, crash: Crash, step: u64) {
        let Some(run) = self.nodes[crash.node].run.take() else {
            return;
        };
        if self.trace {
            eprintln!("{} #{} crash of {}", self.now, self.step, run.me);
        }
        let stage = self.stages.get(crash.node).copied().unwrap_or("bystander");
        self.crashes_seen.push((crash.node, step, stage));
        self.crashed = true;
        let lapse = self.rng.range(1_000, LEASE_MS);
        self.store.crashed(run.me, self.now + lapse);
        // Time to settle after it: the lease, the failover and the clients' return.
        self.limit = self.limit.max(self.now + SETTLE_AFTER_CRASH_MS);
        if crash.restart {
            let after = self.rng.range(100, 3_000);
            self.later(after, Event::Restart(crash.node));
        }
    }

    pub(super) fn restart(&mut self, i: usize) {
        let first_id = self.rng.next_u64() >> 16;
        let node = &mut self.nodes[i];
        if node.run.is_some() {
            return;
        }
        node.incarnation += 1;
        let me = NodeRef::new(node.id, node.incarnation);
        node.run = Some(Run::new(me, first_id, Slot::Empty));
        self.store.superseded(node.id, node.incarnation, self.now);
    }

    /// The live runs.
    pub(super) fn runs(&self) -> impl Iterator<Item = &Run> {
        self.nodes.iter().filter_map(|n| n.run.as_ref())
    }

    /// The index of the node whose live run is `run`.
    pub(super) fn node_of(&self, run: NodeRef) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.run.as_ref().is_some_and(|r| r.me == run))
    }

    /// The live run `run`.
    pub(super) fn run_mut(&mut self, run: NodeRef) -> Option<&mut Run> {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.run.as_mut())
            .find(|r| r.me == run)
    }

    /// The node's current (or last) run.
    pub(super) fn current_run(&self, i: usize) -> NodeRef {
        NodeRef::new(self.nodes[i].id, self.nodes[i].incarnation)
    }

    pub(super) fn later(&mut self, ms: u64, event: Event) {
        self.n_events += 1;
        self.events.insert((self.now + ms, self.n_events), event);
    }

    /// What `admit` answers a new `Prepare` on node `i`.
    pub(super) fn admission(&self, i: usize) -> Result<(), RefuseReason> {
        match self.nodes[i].run.as_ref().map(|r| &r.slot) {
            _ if self.target_full => Err(RefuseReason::Full),
            Some(Slot::Empty) => Ok(()),
            Some(_) => Err(RefuseReason::AlreadyHolds),
            None => Err(RefuseReason::Stopping),
        }
    }

    /// Stops the run with a broken invariant, saying how to replay it.
    pub(super) fn fail(&self, what: &str) -> ! {
        panic!(
            "seed {}: {what} at {} (step {}); HANDOFF_SIM_SEED={} HANDOFF_SIM_TRACE=1 \
             replays it step by step",
            self.seed, self.now, self.step, self.seed
        )
    }
}
