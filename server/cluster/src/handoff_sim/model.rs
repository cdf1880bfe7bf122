//! What the handoff simulation models around the cores: a zone's state (with the
//! record of everything its lineage applied, which the checks read), the store's side
//! of the zone, and the players' clients.

use std::collections::{BTreeMap, BTreeSet};

use zonemesh_shared::codec::{DecodeError, Reader, Writer};
use zonemesh_shared::node::NodeRef;

use crate::Millis;
use crate::handoff::Snapshot;

/// A player; also its session id in forwarded items.
pub(super) type Player = u64;

/// A durable action: its player and its number among that player's actions.
pub(super) type ActionId = (Player, u32);

/// Most entries of one kind a snapshot may carry (the model's are far smaller).
const SNAPSHOT_ENTRIES_MAX: usize = 1 << 16;

/// A zone's state as a node holds it in memory, saves it and ships it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ZoneState {
    /// Changes applied so far: the snapshot's tick, and the order of one activation's
    /// checkpoints.
    pub(super) version: u64,
    /// Each player's newest applied input: what the real zone keeps so that it applies
    /// an input at most once (it applies only newer ones).
    pub(super) last_applied: BTreeMap<Player, u32>,
    /// Every input this state's lineage applied. The real zone keeps no such record:
    /// the model carries it with the state (in checkpoints and snapshots) so the checks
    /// can tell a second application on one lineage from a re-application after a
    /// crash lost the first.
    pub(super) inputs: BTreeSet<(Player, u32)>,
    /// Every durable action whose effect this lineage applied (a record for the
    /// checks, like `inputs`).
    pub(super) effects: BTreeSet<ActionId>,
}

impl ZoneState {
    /// The newest input of `player` applied.
    pub(super) fn last_applied(&self, player: Player) -> u32 {
        self.last_applied.get(&player).copied().unwrap_or(0)
    }

    /// The state as the source ships it, in a handoff's `State` message.
    pub(super) fn to_snapshot(&self) -> Snapshot {
        let mut w = Writer::with_capacity(64);
        w.varint(self.version);
        w.varint(self.last_applied.len() as u64);
        for (player, seq) in &self.last_applied {
            w.varint(*player);
            w.u32(*seq);
        }
        encode_pairs(&mut w, &self.inputs);
        encode_pairs(&mut w, &self.effects);
        Snapshot(w.into_vec())
    }

    /// Reads what [`Self::to_snapshot`] wrote.
    pub(super) fn from_snapshot(snapshot: &Snapshot) -> Result<Self, DecodeError> {
        let mut r = Reader::new(&snapshot.0);
        let version = r.varint()?;
        let n = r.count("last applied", SNAPSHOT_ENTRIES_MAX)?;
        let mut last_applied = BTreeMap::new();
        for _ in 0..n {
            last_applied.insert(r.varint()?, r.u32()?);
        }
        let inputs = decode_pairs(&mut r)?;
        let effects = decode_pairs(&mut r)?;
        r.finish()?;
        Ok(Self {
            version,
            last_applied,
            inputs,
            effects,
        })
    }
}

fn encode_pairs(w: &mut Writer, pairs: &BTreeSet<(Player, u32)>) {
    w.varint(pairs.len() as u64);
    for (player, n) in pairs {
        w.varint(*player);
        w.u32(*n);
    }
}

fn decode_pairs(r: &mut Reader<'_>) -> Result<BTreeSet<(Player, u32)>, DecodeError> {
    let n = r.count("pairs", SNAPSHOT_ENTRIES_MAX)?;
    let mut pairs = BTreeSet::new();
    for _ in 0..n {
        pairs.insert((r.varint()?, r.u32()?));
    }
    Ok(pairs)
}

/// What the store answers a durable action's commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Commit {
    /// Committed now: the node hands the action to its zone.
    New,
    /// Committed before (a repeat): acknowledged again, not applied again.
    Again,
    /// Not committed: the writer does not hold the zone at its epoch.
    Stale,
}

/// The store's side of the one zone, by the rules of `SimStore` and
/// `store/src/cluster.rs`: a zone is granted to a run with the next epoch only while
/// that run's lease is live and no other run holds it under a live lease; a release
/// by the holder frees it at once; writes carry the writer's epoch and the store
/// refuses stale ones; an action id is committed once.
#[derive(Debug)]
pub(super) struct Store {
    /// The run the zone is granted to (until a release, or its lease lapses).
    pub(super) holder: Option<NodeRef>,
    /// The newest activation's epoch.
    pub(super) epoch: u64,
    /// Every activation ever granted: (run, epoch).
    pub(super) grants: BTreeSet<(NodeRef, u64)>,
    /// The last checkpoint saved.
    pub(super) checkpoint: ZoneState,
    /// How many records each committed durable action has (one, or a bug).
    pub(super) records: BTreeMap<ActionId, usize>,
    /// When the lease of each crashed run lapses, by the store's clock (a live run
    /// renews its lease, so its lapse is never reached).
    lapses: BTreeMap<NodeRef, Millis>,
}

impl Store {
    /// The zone held by `holder` at `epoch`, saved empty.
    pub(super) fn new(holder: NodeRef, epoch: u64) -> Self {
        Self {
            holder: Some(holder),
            epoch,
            grants: BTreeSet::from([(holder, epoch)]),
            checkpoint: ZoneState::default(),
            records: BTreeMap::new(),
            lapses: BTreeMap::new(),
        }
    }

    /// Whether `run`'s lease is live at `now`.
    pub(super) fn lease_live(&self, run: NodeRef, now: Millis) -> bool {
        self.lapses.get(&run).is_none_or(|at| now < *at)
    }

    /// The holder, if its lease is live.
    pub(super) fn live_holder(&self, now: Millis) -> Option<NodeRef> {
        self.holder.filter(|run| self.lease_live(*run, now))
    }

    /// `run` crashed: it renews its lease no more, which lapses at `at`.
    pub(super) fn crashed(&mut self, run: NodeRef, at: Millis) {
        self.lapses.insert(run, at);
    }

    /// A new incarnation of node `id` renewed its lease: older runs of the node are
    /// superseded for good.
    pub(super) fn superseded(&mut self, id: u64, incarnation: u64, now: Millis) {
        for (run, at) in &mut self.lapses {
            if run.id.0 == id && run.incarnation.0 < incarnation {
                *at = (*at).min(now);
            }
        }
    }

    /// Grants the zone to `run` with the next epoch, if the rule allows.
    pub(super) fn activate(&mut self, run: NodeRef, now: Millis) -> Option<u64> {
        if !self.lease_live(run, now) || self.live_holder(now).is_some_and(|h| h != run) {
            return None;
        }
        self.holder = Some(run);
        self.epoch += 1;
        self.grants.insert((run, self.epoch));
        Some(self.epoch)
    }

    /// Whether `run` holds the zone at `epoch` under a live lease (a write's fence).
    pub(super) fn fenced(&self, run: NodeRef, epoch: u64, now: Millis) -> bool {
        self.live_holder(now) == Some(run) && self.epoch == epoch
    }

    /// Saves `state` as `run`'s checkpoint at `epoch`, if fenced and not older than
    /// the saved one (a node writes one zone's checkpoints in order).
    pub(super) fn save(
        &mut self,
        run: NodeRef,
        epoch: u64,
        now: Millis,
        state: &ZoneState,
    ) -> bool {
        let ok = self.fenced(run, epoch, now) && state.version >= self.checkpoint.version;
        if ok {
            self.checkpoint = state.clone();
        }
        ok
    }

    /// Releases the zone held by `run` at `epoch`.
    pub(super) fn release(&mut self, run: NodeRef, epoch: u64) -> bool {
        let ok = self.holder == Some(run) && self.epoch == epoch;
        if ok {
            self.holder = None;
        }
        ok
    }

    /// Commits durable action `id` written by `run` at `epoch`.
    pub(super) fn commit(&mut self, id: ActionId, run: NodeRef, epoch: u64, now: Millis) -> Commit {
        if self.records.contains_key(&id) {
            return Commit::Again;
        }
        if !self.fenced(run, epoch, now) {
            return Commit::Stale;
        }
        *self.records.entry(id).or_default() += 1;
        Commit::New
    }
}

/// A player's client: it numbers its inputs 1, 2, 3, ... and sends every one not yet
/// acknowledged in each datagram (as the SDK's input redundancy does), to the run it
/// believes holds the zone; and it sends durable actions one at a time, again until
/// answered.
#[derive(Debug)]
pub(super) struct Client {
    /// The player.
    pub(super) player: Player,
    /// The run it is connected to.
    pub(super) node: Option<NodeRef>,
    /// Inputs sent so far: numbered `1..=sent`.
    pub(super) sent: u32,
    /// Inputs it sends over the run.
    pub(super) total: u32,
    /// The newest input acknowledged (the highest acknowledgement heard).
    pub(super) acked: u32,
    /// Durable actions made so far: numbered `1..=made`.
    pub(super) made: u32,
    /// Durable actions it makes over the run.
    pub(super) actions_total: u32,
    /// The action waiting for its answer, and when to send it (again).
    pub(super) pending: Option<(u32, Millis)>,
    /// Actions answered as committed.
    pub(super) committed: BTreeSet<u32>,
}

impl Client {
    /// A client that sends `total` inputs and `actions_total` actions.
    pub(super) fn new(player: Player, node: NodeRef, total: u32, actions_total: u32) -> Self {
        Self {
            player,
            node: Some(node),
            sent: 0,
            total,
            acked: 0,
            made: 0,
            actions_total,
            pending: None,
            committed: BTreeSet::new(),
        }
    }

    /// The inputs not yet acknowledged, oldest first.
    pub(super) fn unacked(&self) -> Vec<u32> {
        (self.acked + 1..=self.sent).collect()
    }

    /// Whether it still has something to send or to hear about.
    pub(super) fn busy(&self) -> bool {
        self.sent < self.total
            || self.acked < self.sent
            || self.made < self.actions_total
            || self.pending.is_some()
    }
}
