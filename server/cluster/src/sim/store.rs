//! The simulated store: the contract the real stores implement for clusters, as a
//! linearizable in-memory model. Node leases by run, zone rows with epoch and holder,
//! activation only when no other run holds the zone with a live lease; player claims
//! (one session per player), taken over when the holder's lease has lapsed or when the
//! caller names the holder's run as the one it takes over from (a crossing); durable
//! actions, committed once per id under the epoch of the player's zone (the fence
//! refuses a stale epoch) and never forgotten.

use std::collections::BTreeMap;

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::{Incarnation, NodeId, NodeRef};

use crate::Millis;
use crate::msg::{LeaseGrant, StoreCall, StoreReply};

#[derive(Debug, Clone, Copy)]
struct LeaseRow {
    expires: Millis,
    generation: u64,
}

/// A zone's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZoneRow {
    /// Latest epoch handed out.
    pub epoch: u64,
    /// The run holding it, if any.
    pub holder: Option<NodeRef>,
    /// The activation attempt that made the holder hold it.
    pub attempt: u64,
}

/// The store model.
#[derive(Debug, Clone)]
pub struct SimStore {
    lease_ms: u64,
    leases: BTreeMap<NodeRef, LeaseRow>,
    newest: BTreeMap<NodeId, Incarnation>,
    zones: BTreeMap<ZoneId, ZoneRow>,
    n_activations: u64,
    respects_leases: bool,
    zones_per_read: usize,
    /// Player (by index) → the run and session holding it.
    claims: BTreeMap<usize, (NodeRef, u64)>,
    /// Durable action id → its player (by index) and how many commits created its
    /// record (1, unless the idempotency rule is broken).
    actions: BTreeMap<u64, (usize, u32)>,
    /// The first action whose record was created twice, and its player.
    committed_twice: Option<(u64, usize)>,
    dedupes_actions: bool,
}

/// What committing a durable action did (the real stores' `ActionCommit`, with the
/// fence's refusal folded in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionCommit {
    /// The record is new.
    Committed,
    /// A record with this id exists: a repeat, acknowledged again.
    AlreadyCommitted,
    /// The writer's epoch is not the zone's latest: a stale owner.
    StaleEpoch,
}

/// What a claim did (the real stores' `PlayerClaim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The player is now the caller's.
    Claimed,
    /// Another run's session holds it.
    HeldBy(NodeRef, u64),
}

impl SimStore {
    /// A store granting leases of `lease_ms`.
    pub fn new(lease_ms: u64) -> Self {
        Self {
            lease_ms,
            leases: BTreeMap::new(),
            newest: BTreeMap::new(),
            zones: BTreeMap::new(),
            n_activations: 0,
            respects_leases: true,
            zones_per_read: usize::MAX,
            claims: BTreeMap::new(),
            actions: BTreeMap::new(),
            committed_twice: None,
            dedupes_actions: true,
        }
    }

    /// Commits `player`'s durable action `id` under `zone`'s `epoch`: refused for an
    /// epoch other than the zone's latest (checked first, as the real stores do), a
    /// repeat if the id exists, else a new record.
    pub fn commit_action(
        &mut self,
        zone: ZoneId,
        epoch: u64,
        id: u64,
        player: usize,
    ) -> ActionCommit {
        if self.zone(zone).epoch != epoch {
            return ActionCommit::StaleEpoch;
        }
        let (_, n_commits) = self.actions.entry(id).or_insert((player, 0));
        if *n_commits > 0 && self.dedupes_actions {
            return ActionCommit::AlreadyCommitted;
        }
        *n_commits += 1;
        if *n_commits > 1 {
            self.committed_twice.get_or_insert((id, player));
        }
        ActionCommit::Committed
    }

    /// Whether durable action `id` is committed.
    pub fn has_action(&self, id: u64) -> bool {
        self.actions.contains_key(&id)
    }

    /// The first durable action whose record was created more than once, if any,
    /// and its player.
    pub fn action_committed_twice(&self) -> Option<(u64, usize)> {
        self.committed_twice
    }

    /// Durable actions committed.
    pub fn n_actions(&self) -> u64 {
        self.actions.len() as u64
    }

    /// Claims `player` for `(node, session)` at store time `now`: granted when no
    /// claim exists, when it is `node`'s own (any session), when it is held by the
    /// `takeover` run, or when its holder's lease has lapsed (the real stores' rule).
    pub fn claim_player(
        &mut self,
        now: Millis,
        player: usize,
        node: NodeRef,
        session: u64,
        takeover: Option<NodeRef>,
    ) -> Claim {
        match self.claims.get(&player) {
            Some(&(holder, held))
                if holder != node
                    && Some(holder) != takeover
                    && self.live_lease(now, holder).is_some() =>
            {
                Claim::HeldBy(holder, held)
            }
            _ => {
                self.claims.insert(player, (node, session));
                Claim::Claimed
            }
        }
    }

    /// Who holds `player`'s claim, if anyone.
    pub fn claim_of(&self, player: usize) -> Option<(NodeRef, u64)> {
        self.claims.get(&player).copied()
    }

    /// Gives `player`'s claim to `(node, session)` whoever holds it (the unsafe rule
    /// `SimConfig::take_over_unseen_claims` turns on).
    pub fn force_claim(&mut self, player: usize, node: NodeRef, session: u64) {
        self.claims.insert(player, (node, session));
    }

    /// Ends `player`'s claim if it is `(node, session)`.
    pub fn release_player(&mut self, player: usize, node: NodeRef, session: u64) {
        if self.claims.get(&player) == Some(&(node, session)) {
            self.claims.remove(&player);
        }
    }

    /// Lists at most `n` zones per `ZonesHeldBy` answer (and says it truncated), as the
    /// real stores do for very large nodes.
    pub fn set_zones_per_read(&mut self, n: usize) {
        self.zones_per_read = n.max(1);
    }

    /// Turns the holder check off (a deliberately broken store, to show the checker
    /// catches what it would cause).
    pub fn set_respects_leases(&mut self, respects: bool) {
        self.respects_leases = respects;
    }

    /// Turns the idempotency of action commits off (a deliberately broken store, to
    /// show the checker catches an action committed twice).
    pub fn set_dedupes_actions(&mut self, dedupes: bool) {
        self.dedupes_actions = dedupes;
    }

    /// Carries out `call` from `from` at store time `now`.
    pub fn call(&mut self, now: Millis, from: NodeRef, call: StoreCall) -> StoreReply {
        match call {
            StoreCall::RenewLease { request } => StoreReply::Lease {
                request,
                grant: self.renew(now, from),
            },
            StoreCall::Activate { zone, attempt } => self.activate(now, from, zone, attempt),
            StoreCall::Release { zone, epoch } => {
                let row = self.zones.entry(zone).or_default();
                if row.epoch == epoch && row.holder == Some(from) {
                    row.holder = None;
                }
                StoreReply::Released { zone }
            }
            StoreCall::ZonesHeldBy { node } => {
                let mut zones = self.zones_held_by(node);
                let truncated = zones.len() > self.zones_per_read;
                zones.truncate(self.zones_per_read);
                StoreReply::ZonesHeld {
                    node,
                    zones,
                    truncated,
                }
            }
        }
    }

    fn renew(&mut self, now: Millis, from: NodeRef) -> Option<LeaseGrant> {
        let newest = self.newest.entry(from.id).or_insert(from.incarnation);
        if *newest > from.incarnation {
            return None;
        }
        *newest = from.incarnation;
        let expires = now + self.lease_ms;
        let row = self.leases.entry(from).or_insert(LeaseRow {
            expires,
            generation: 0,
        });
        // A lease that ran out (expiry is exclusive) may have let others take this
        // run's zones: the new grant gets a new generation so the run drops them.
        if row.expires <= now {
            row.generation += 1;
        }
        row.expires = expires;
        Some(LeaseGrant {
            duration_ms: self.lease_ms,
            generation: row.generation,
        })
    }

    fn live_lease(&self, now: Millis, node: NodeRef) -> Option<LeaseRow> {
        self.leases.get(&node).copied().filter(|l| l.expires > now)
    }

    fn activate(&mut self, now: Millis, from: NodeRef, zone: ZoneId, attempt: u64) -> StoreReply {
        let Some(own) = self.live_lease(now, from) else {
            return StoreReply::NoLease { zone };
        };
        let row = self.zones.get(&zone).copied().unwrap_or_default();
        if row.holder == Some(from) && row.attempt == attempt {
            // A repeat of the call that made this run the holder.
            return StoreReply::Activated {
                zone,
                epoch: row.epoch,
                lease_generation: own.generation,
                attempt,
            };
        }
        let other_holder = row.holder.filter(|h| *h != from && self.respects_leases);
        if let Some((holder, lease)) =
            other_holder.and_then(|h| Some((h, self.live_lease(now, h)?)))
        {
            return StoreReply::Held {
                zone,
                holder,
                epoch: row.epoch,
                lease_left_ms: lease.expires.since(now).as_millis() as u64,
            };
        }
        let epoch = row.epoch + 1;
        self.zones.insert(
            zone,
            ZoneRow {
                epoch,
                holder: Some(from),
                attempt,
            },
        );
        self.n_activations += 1;
        StoreReply::Activated {
            zone,
            epoch,
            lease_generation: own.generation,
            attempt,
        }
    }

    /// The zones `node` holds.
    pub fn zones_held_by(&self, node: NodeRef) -> Vec<ZoneId> {
        self.zones
            .iter()
            .filter(|(_, row)| row.holder == Some(node))
            .map(|(zone, _)| *zone)
            .collect()
    }

    /// The zone's row.
    pub fn zone(&self, zone: ZoneId) -> ZoneRow {
        self.zones.get(&zone).copied().unwrap_or_default()
    }

    /// Activations granted so far.
    pub fn n_activations(&self) -> u64 {
        self.n_activations
    }
}
