//! Test support shared by the integration tests: a strict model client that decodes
//! and applies snapshots as `zonemesh_shared::datagram` specifies, a lossy reordering
//! link with delayed acknowledgements, and a harness stepping a `ClientView` through
//! ticks while checking per-tick invariants (datagram size, budget, decodability).
//!
//! Each test binary uses a subset of these helpers.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use zonemesh_replication::{
    BuildStats, ClientView, ReplicatedState, SnapshotFrame, SpatialGrid, ViewConfig,
};
use zonemesh_shared::datagram::{
    Ack, ComponentValue, EntityRecord, POSITION_HISTORY, PosField, Snapshot,
};
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::{POSITION_STEP, QPos, Vec2};

/// What the client holds for one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shown {
    pub(crate) kind: u16,
    pub(crate) pos: QPos,
    pub(crate) components: Vec<ComponentValue>,
}

#[derive(Debug)]
struct ClientEntity {
    shown: Shown,
    /// `(seq, position)` of the last records applied, newest last.
    history: VecDeque<(u32, QPos)>,
    last_seq: u32,
}

/// A client following the datagram contract to the letter; any contract breach by the
/// server panics (fails the test).
#[derive(Debug, Default)]
pub(crate) struct ModelClient {
    entities: HashMap<NetId, ClientEntity>,
    /// Sequence number of the despawn applied for an entity no longer held.
    tombstones: HashMap<NetId, u32>,
    pub(crate) ack: Ack,
    pub(crate) last_header_input_ack: Option<u32>,
}

/// True if `a` is newer than `b` in wrapping sequence space.
fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl ModelClient {
    /// Decodes and applies one datagram; returns it decoded.
    pub(crate) fn receive(&mut self, datagram: &[u8]) -> Snapshot {
        let snap = Snapshot::decode(datagram).expect("server datagrams always decode");
        let seq = snap.header.seq;
        self.ack.record(seq);
        self.last_header_input_ack = Some(snap.header.input_ack);
        for record in &snap.records {
            self.apply(seq, record);
        }
        snap
    }

    fn apply(&mut self, seq: u32, record: &EntityRecord) {
        let id = record.id();
        let last = self
            .entities
            .get(&id)
            .map(|e| e.last_seq)
            .or_else(|| self.tombstones.get(&id).copied());
        if last.is_some_and(|last| !newer(seq, last)) {
            return; // late or duplicate
        }
        match record {
            EntityRecord::Despawn { .. } => {
                self.entities.remove(&id);
                self.tombstones.insert(id, seq);
            }
            EntityRecord::Update {
                spawn_kind: Some(kind),
                pos,
                components,
                ..
            } => self.spawn(id, seq, *kind, pos, components),
            EntityRecord::Update {
                spawn_kind: None,
                pos,
                components,
                ..
            } => self.update(id, seq, pos, components),
        }
    }

    fn spawn(
        &mut self,
        id: NetId,
        seq: u32,
        kind: u16,
        pos: &PosField,
        components: &[ComponentValue],
    ) {
        let PosField::Absolute(pos) = *pos else {
            panic!("spawn of {id} at seq {seq} without an absolute position: {pos:?}");
        };
        self.tombstones.remove(&id);
        let shown = Shown {
            kind,
            pos,
            components: components.to_vec(),
        };
        let history = VecDeque::from([(seq, pos)]);
        self.entities.insert(
            id,
            ClientEntity {
                shown,
                history,
                last_seq: seq,
            },
        );
    }

    fn update(&mut self, id: NetId, seq: u32, pos: &PosField, components: &[ComponentValue]) {
        let Some(e) = self.entities.get_mut(&id) else {
            panic!("update of {id} at seq {seq}, which the client does not hold");
        };
        e.shown.pos = match *pos {
            PosField::Unchanged => e.shown.pos,
            PosField::Absolute(p) => p,
            PosField::Delta {
                baseline_back,
                dx,
                dy,
            } => {
                let base_seq = seq.wrapping_sub(baseline_back);
                // Strict: behave as a client that stores the new record before looking
                // up its baseline, so only the newest 15 stored records count.
                let base = e
                    .history
                    .iter()
                    .rev()
                    .take(POSITION_HISTORY - 1)
                    .find(|(s, _)| *s == base_seq)
                    .map(|(_, p)| *p);
                let Some(base) = base else {
                    panic!(
                        "delta of {id} at seq {seq} against seq {base_seq} not in history {:?}",
                        e.history
                    );
                };
                QPos {
                    x: base.x.checked_add(dx).expect("delta in range"),
                    y: base.y.checked_add(dy).expect("delta in range"),
                }
            }
        };
        if !components.is_empty() {
            e.shown.components = components.to_vec();
        }
        e.history.push_back((seq, e.shown.pos));
        if e.history.len() > POSITION_HISTORY {
            e.history.pop_front();
        }
        e.last_seq = seq;
    }

    /// Everything the client currently shows.
    pub(crate) fn shown(&self) -> HashMap<NetId, Shown> {
        self.entities
            .iter()
            .map(|(id, e)| (*id, e.shown.clone()))
            .collect()
    }
}

/// Deterministic pseudo-random numbers (splitmix64), seeded by tests.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// How the link treats traffic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkConditions {
    /// Probability a snapshot datagram is lost.
    pub(crate) loss: f64,
    /// Largest extra delay of a datagram in ticks (uniform; reorders datagrams).
    pub(crate) jitter_ticks: u64,
    /// Probability an acknowledgement is lost.
    pub(crate) ack_loss: f64,
    /// Delay of acknowledgements in ticks.
    pub(crate) ack_delay_ticks: u64,
}

impl LinkConditions {
    /// No loss, no delay: each tick's datagrams arrive and are acknowledged at once.
    pub(crate) const PERFECT: Self = Self {
        loss: 0.0,
        jitter_ticks: 0,
        ack_loss: 0.0,
        ack_delay_ticks: 0,
    };
}

/// One tick's result.
#[derive(Debug)]
pub(crate) struct TickReport {
    pub(crate) stats: BuildStats,
    /// This tick's datagrams, decoded (whether or not the link delivered them).
    pub(crate) sent: Vec<Snapshot>,
}

/// Drives a view, a link and a model client tick by tick.
#[derive(Debug)]
pub(crate) struct Harness {
    pub(crate) view: ClientView,
    pub(crate) client: ModelClient,
    pub(crate) states: Vec<ReplicatedState>,
    pub(crate) viewer: Vec2,
    pub(crate) tick: u64,
    pub(crate) mtu: usize,
    pub(crate) input_ack: u32,
    pub(crate) link: LinkConditions,
    pub(crate) rng: Rng,
    grid: SpatialGrid,
    visible: Vec<u32>,
    datagrams_in_flight: Vec<(u64, Vec<u8>)>,
    acks_in_flight: Vec<(u64, Ack)>,
    /// Wire seq -> ids with an update record in it, for the last 64 datagrams.
    updates_by_seq: VecDeque<(u32, Vec<NetId>)>,
    /// Ids with an update known acknowledged to the view (the view could delta).
    pub(crate) acknowledged: HashSet<NetId>,
}

impl Harness {
    pub(crate) fn new(config: ViewConfig, states: Vec<ReplicatedState>, seed: u64) -> Self {
        Self::with_view(ClientView::new(config), states, seed)
    }

    pub(crate) fn with_view(view: ClientView, states: Vec<ReplicatedState>, seed: u64) -> Self {
        let grid = SpatialGrid::new(view.config().aoi_radius.max(1.0));
        Self {
            mtu: view.config().datagram_max_bytes,
            view,
            client: ModelClient::default(),
            states,
            viewer: Vec2::ZERO,
            tick: 0,
            input_ack: 0,
            link: LinkConditions::PERFECT,
            rng: Rng::new(seed),
            grid,
            visible: Vec::new(),
            datagrams_in_flight: Vec::new(),
            acks_in_flight: Vec::new(),
            updates_by_seq: VecDeque::new(),
            acknowledged: HashSet::new(),
        }
    }

    /// Builds, checks, transmits and acknowledges one tick.
    pub(crate) fn step(&mut self) -> TickReport {
        self.tick += 1;
        self.grid.rebuild(&self.states);
        self.grid.query(
            self.viewer,
            self.view.config().aoi_radius,
            &mut self.visible,
        );
        let frame = SnapshotFrame {
            tick: self.tick,
            input_ack: self.input_ack,
            viewer: self.viewer,
            states: &self.states,
            visible: &self.visible,
            mtu: self.mtu,
        };
        let mut out = Vec::new();
        let stats = self.view.build_snapshot(&frame, &mut out);
        let sent = self.check_tick(&out, &stats);
        self.transmit(out);
        self.deliver();
        TickReport { stats, sent }
    }

    /// Per-tick invariants: sizes, budget, counts, decodability, tracking bound.
    fn check_tick(&mut self, out: &[Vec<u8>], stats: &BuildStats) -> Vec<Snapshot> {
        let config = self.view.config();
        let limit = self.mtu.min(config.datagram_max_bytes);
        let total: usize = out.iter().map(Vec::len).sum();
        for d in out {
            assert!(
                d.len() <= limit,
                "datagram of {} bytes over the limit {limit}",
                d.len()
            );
        }
        assert!(
            total <= config.budget_bytes_per_tick,
            "{total} bytes over budget"
        );
        assert_eq!(total, stats.bytes);
        assert_eq!(out.len(), stats.datagrams);
        assert!(self.view.tracked() <= config.max_tracked_entities);
        let sent: Vec<Snapshot> = out
            .iter()
            .map(|d| Snapshot::decode(d).expect("decodes"))
            .collect();
        let n_records: usize = sent.iter().map(|s| s.records.len()).sum();
        assert_eq!(n_records, stats.records);
        for s in &sent {
            assert_eq!(s.header.tick, self.tick);
            assert_eq!(s.header.input_ack, self.input_ack);
            self.note_sent(s);
        }
        sent
    }

    /// Remembers which ids each datagram updated (the view's own log holds 64).
    fn note_sent(&mut self, snap: &Snapshot) {
        let ids = snap
            .records
            .iter()
            .filter(|r| matches!(r, EntityRecord::Update { .. }))
            .map(EntityRecord::id)
            .collect();
        self.updates_by_seq.push_back((snap.header.seq, ids));
        if self.updates_by_seq.len() > 64 {
            self.updates_by_seq.pop_front();
        }
    }

    fn transmit(&mut self, out: Vec<Vec<u8>>) {
        for d in out {
            if self.rng.chance(self.link.loss) {
                continue;
            }
            let delay = self.rng.below(self.link.jitter_ticks + 1);
            self.datagrams_in_flight.push((self.tick + delay, d));
        }
    }

    fn deliver(&mut self) {
        let tick = self.tick;
        let (due, later): (Vec<_>, Vec<_>) = self
            .datagrams_in_flight
            .drain(..)
            .partition(|(t, _)| *t <= tick);
        self.datagrams_in_flight = later;
        let mut order: Vec<_> = due.into_iter().map(|(_, d)| d).collect();
        // Shuffle same-tick arrivals too.
        for i in (1..order.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        for d in &order {
            self.client.receive(d);
        }
        // Clients send an input datagram, with their acknowledgement, every tick.
        if self.client.ack.any && !self.rng.chance(self.link.ack_loss) {
            self.acks_in_flight
                .push((tick + self.link.ack_delay_ticks, self.client.ack));
        }
        let (due, later): (Vec<_>, Vec<_>) =
            self.acks_in_flight.drain(..).partition(|(t, _)| *t <= tick);
        self.acks_in_flight = later;
        for (_, ack) in due {
            self.acknowledge(ack);
        }
    }

    /// Takes the datagrams still on their way to the client (to deliver them late, say
    /// after the client moved to another node's view).
    pub(crate) fn take_in_flight(&mut self) -> Vec<Vec<u8>> {
        self.datagrams_in_flight.drain(..).map(|(_, d)| d).collect()
    }

    /// Hands an acknowledgement to the view, noting which ids it confirms.
    pub(crate) fn acknowledge(&mut self, ack: Ack) {
        for (seq, ids) in &self.updates_by_seq {
            if ack.covers(*seq) {
                self.acknowledged.extend(ids.iter().copied());
            }
        }
        self.view.handle_ack(ack);
    }

    /// What the client should show: the nearest `max_tracked_entities` entities within
    /// the area of interest (ties by id), as their current states.
    pub(crate) fn expected(&self) -> HashMap<NetId, Shown> {
        let config = self.view.config();
        let r = f64::from(config.aoi_radius);
        let mut near: Vec<(f64, NetId, &ReplicatedState)> = self
            .states
            .iter()
            .map(|s| (distance_squared(self.viewer, s.pos), s.id, s))
            .filter(|(d, _, _)| *d <= r * r)
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        near.truncate(config.max_tracked_entities);
        near.into_iter()
            .map(|(_, id, s)| {
                let shown = Shown {
                    kind: s.kind,
                    pos: s.pos,
                    components: s.components.to_vec(),
                };
                (id, shown)
            })
            .collect()
    }

    /// True when the client shows exactly the expected states.
    pub(crate) fn converged(&self) -> bool {
        self.client.shown() == self.expected()
    }

    /// Steps with a perfect link until converged; panics after `ticks_max` ticks.
    pub(crate) fn settle(&mut self, ticks_max: usize) -> usize {
        self.link = LinkConditions::PERFECT;
        for n in 0..ticks_max {
            if self.converged() && n > 0 {
                return n;
            }
            self.step();
        }
        assert!(
            self.converged(),
            "no convergence after {ticks_max} ticks:\nclient {:?}\nexpected {:?}",
            self.client.shown(),
            self.expected()
        );
        ticks_max
    }
}

/// Squared distance from `viewer` to `pos` in world units, computed as the view does.
pub(crate) fn distance_squared(viewer: Vec2, pos: QPos) -> f64 {
    let step = f64::from(POSITION_STEP);
    let dx = f64::from(pos.x) * step - f64::from(viewer.x);
    let dy = f64::from(pos.y) * step - f64::from(viewer.y);
    dx * dx + dy * dy
}

/// A component list of one component with the given bytes.
pub(crate) fn comps(bytes: &[u8]) -> Vec<ComponentValue> {
    vec![ComponentValue {
        id: 1,
        bytes: bytes.to_vec(),
    }]
}

/// An entity state at world position `(x, y)`.
pub(crate) fn entity(id: u64, x: f32, y: f32, component: &[u8]) -> ReplicatedState {
    ReplicatedState::new(
        NetId(id),
        1,
        QPos::from_world(Vec2::new(x, y)),
        comps(component),
    )
}

/// Moves entity `i` by `(dx, dy)` quantisation steps.
pub(crate) fn nudge(states: &mut [ReplicatedState], i: usize, dx: i32, dy: i32) {
    states[i].pos.x += dx;
    states[i].pos.y += dy;
}

/// Replaces entity `i`'s components.
pub(crate) fn set_components(
    states: &mut [ReplicatedState],
    i: usize,
    components: Vec<ComponentValue>,
) {
    let s = &states[i];
    states[i] = ReplicatedState::new(s.id, s.kind, s.pos, components);
}
