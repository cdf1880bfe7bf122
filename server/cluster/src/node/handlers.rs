//! The inputs of [`NodeCore`]: membership events, node messages, store replies and
//! timeouts.

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

use super::{ActiveZone, NodeCore, NodeEvent};
use crate::Millis;
use crate::lease::LeaseChange;
use crate::membership::MembershipEvent;
use crate::msg::{Envelope, LeaseGrant, LookupAnswer, NodeMsg, StoreCall, StoreReply};
use crate::ring::Ring;

/// Nodes after a zone's directory owner on the ring that report its host's death.
const N_DEPUTIES: usize = 2;
/// Times an activation is retried after the store said a live node holds the zone.
const MAX_HELD_RETRIES: u32 = 2;

impl NodeCore {
    /// Folds a membership event in. When the set of live members changes: the ring is
    /// rebuilt, the directory drops what it no longer owns and brings back zones whose
    /// host died, this node re-registers its zones whose directory owner changed, and
    /// the store is asked which zones a departed run held.
    pub fn handle_membership(&mut self, now: Millis, event: MembershipEvent) {
        self.handle_membership_batch(now, [event]);
    }

    /// Folds several membership events in at once, rebuilding the ring once (a node
    /// learning a large cluster at start gets hundreds of events together).
    pub fn handle_membership_batch(
        &mut self,
        now: Millis,
        events: impl IntoIterator<Item = MembershipEvent>,
    ) {
        let mut changed = false;
        for event in events {
            let gone = match event {
                MembershipEvent::Up(member) => self
                    .view
                    .member(member.node.id)
                    .map(|known| known.node)
                    .filter(|known| known.incarnation < member.node.incarnation),
                MembershipEvent::Down(node) => self.view.is_live(node).then_some(node),
            };
            if self.view.apply(event) {
                changed = true;
                if let Some(gone) = gone {
                    self.store_calls
                        .push_back(StoreCall::ZonesHeldBy { node: gone });
                }
            }
        }
        if !changed {
            return;
        }
        let old_ring = std::mem::replace(
            &mut self.ring,
            Ring::new(self.view.members().map(|m| m.node), self.config.ring),
        );
        self.after_view_change(now, &old_ring);
        self.drain_local(now);
    }

    fn after_view_change(&mut self, now: Millis, old_ring: &Ring) {
        let orphaned = self
            .directory
            .on_view_change(now, self.me, &self.view, &self.ring);
        for zone in orphaned {
            self.bring_back(now, zone);
        }
        let view = &self.view;
        self.cache.retain(|_, (host, _)| view.is_live(*host));
        let moved: Vec<(ZoneId, u64)> = self
            .active_zones()
            .filter(|(zone, _)| old_ring.owner(*zone) != self.ring.owner(*zone))
            .collect();
        for (zone, epoch) in moved {
            self.register_here(zone, epoch);
        }
        // Lookups sent to an owner of the old ring are asked again of the new one.
        let pending: Vec<ZoneId> = self.lookups.keys().copied().collect();
        for zone in pending {
            if old_ring.owner(zone) != self.ring.owner(zone) {
                self.send_lookup(now, zone);
            }
        }
    }

    /// Places `zone` again (its host died) and asks the chosen node to activate it.
    fn bring_back(&mut self, now: Millis, zone: ZoneId) {
        self.bring_back_without(now, zone, None);
    }

    fn bring_back_without(&mut self, now: Millis, zone: ZoneId, dead: Option<NodeRef>) {
        if self.ring.owner(zone) != Some(self.me) {
            return;
        }
        match self
            .directory
            .place_excluding(now, zone, None, &self.view, dead)
        {
            Some(host) if host == self.me => self.start_activation(now, zone),
            Some(host) => self.send(host, NodeMsg::Activate { zone }),
            None => {}
        }
    }

    /// Handles a message from another node.
    pub fn handle_message(&mut self, now: Millis, envelope: Envelope) {
        self.dispatch(now, envelope);
        self.drain_local(now);
    }

    pub(super) fn dispatch(&mut self, now: Millis, envelope: Envelope) {
        if envelope.to != self.me {
            self.counters.n_misaddressed += 1;
            return;
        }
        let from = envelope.from;
        match envelope.msg {
            NodeMsg::Lookup { zone } => self.answer_lookup(now, from, zone),
            NodeMsg::LookupReply { zone, answer } => self.handle_lookup_reply(now, zone, answer),
            NodeMsg::Register { zone, host, epoch } => {
                if self.ring.owner(zone) == Some(self.me) {
                    self.directory.register(now, zone, host, epoch);
                }
            }
            NodeMsg::Unregister { zone, host, epoch } => {
                self.directory.unregister(zone, host, epoch)
            }
            NodeMsg::Activate { zone } => self.start_activation(now, zone),
            NodeMsg::HostDied { zone, host } => self.bring_back_if_held_by(now, zone, host),
            NodeMsg::Load { load } => self.record_load(now, from, load),
            NodeMsg::Peek { zone } => {
                let host = self.peek_directory(now, zone);
                self.send(from, NodeMsg::PeekReply { zone, host });
            }
            NodeMsg::PeekReply { zone, host } => {
                if let Some((host, _)) = host
                    && self.view.is_live(host)
                {
                    self.remember_host(now, zone, host);
                }
            }
        }
    }

    /// What this node's directory part says about `zone` (nothing if it does not own
    /// the zone's range in its view).
    pub(super) fn peek_directory(&self, now: Millis, zone: ZoneId) -> Option<(NodeRef, u64)> {
        (self.ring.owner(zone) == Some(self.me))
            .then(|| self.directory.peek(now, zone, &self.view))
            .flatten()
    }

    fn answer_lookup(&mut self, now: Millis, from: NodeRef, zone: ZoneId) {
        let answer = if self.ring.owner(zone) == Some(self.me) {
            self.directory.lookup(now, zone, from, &self.view)
        } else {
            LookupAnswer::NotOwner
        };
        self.send(from, NodeMsg::LookupReply { zone, answer });
    }

    fn handle_lookup_reply(&mut self, now: Millis, zone: ZoneId, answer: LookupAnswer) {
        match answer {
            LookupAnswer::Host { host, .. } => {
                self.lookups.remove(&zone);
                if !self.view.is_live(host) {
                    return;
                }
                self.remember_host(now, zone, host);
                if host == self.me {
                    self.start_activation(now, zone);
                }
            }
            LookupAnswer::NotOwner | LookupAnswer::Retry => {
                if let Some(pending) = self.lookups.get_mut(&zone) {
                    pending.resend_at = now + self.config.limits.lookup_retry_ms;
                }
            }
        }
    }

    /// Handles the store's answer to a call from [`poll_store_call`](Self::poll_store_call).
    pub fn handle_store_reply(&mut self, now: Millis, reply: StoreReply) {
        match reply {
            StoreReply::Lease { request, grant } => self.handle_lease(now, request, grant),
            StoreReply::Activated {
                zone,
                epoch,
                lease_generation,
                attempt,
            } => {
                self.handle_activated(zone, epoch, lease_generation, attempt);
            }
            StoreReply::Held {
                zone,
                holder,
                epoch,
                lease_left_ms,
            } => {
                self.handle_held(now, zone, holder, epoch, lease_left_ms);
            }
            StoreReply::NoLease { zone } => {
                if !self.refuse_handoff_activation(zone) {
                    self.retry_activation_later(now, zone);
                }
            }
            StoreReply::Released { .. } => {}
            StoreReply::ZonesHeld {
                node,
                zones,
                truncated,
            } => {
                if !self.view.is_live(node) {
                    for zone in zones {
                        self.handle_orphan(now, zone, node);
                    }
                    if truncated {
                        // The listed zones leave the dead run's list as they are
                        // activated elsewhere; asking again later lists the rest.
                        self.defer(now, StoreCall::ZonesHeldBy { node });
                    }
                }
            }
            StoreReply::Unavailable { call } => self.defer(now, call),
        }
        self.drain_local(now);
    }

    /// A zone whose holder `dead` died: its directory owner brings it back; its two
    /// deputies (the next nodes on the ring) tell the owner, so a death the owner has
    /// not noticed yet (SWIM spreads news to most nodes fast, to the last ones
    /// sometimes only after a full probe round) does not hold the zone up.
    fn handle_orphan(&mut self, now: Millis, zone: ZoneId, dead: NodeRef) {
        let successors = self.ring.successors(zone, N_DEPUTIES + 1);
        match successors.iter().position(|n| *n == self.me) {
            Some(0) => self.bring_back_if_held_by(now, zone, dead),
            Some(_) => self.send(successors[0], NodeMsg::HostDied { zone, host: dead }),
            None => {}
        }
    }

    fn bring_back_if_held_by(&mut self, now: Millis, zone: ZoneId, dead: NodeRef) {
        let held_by_dead = self.directory.entry(zone).is_none_or(|e| e.host == dead);
        if held_by_dead {
            self.bring_back_without(now, zone, Some(dead));
        }
    }

    fn handle_lease(&mut self, now: Millis, request: u64, grant: Option<LeaseGrant>) {
        match self.lease.handle_reply(request, grant) {
            LeaseChange::Renewed | LeaseChange::Ignored => {}
            LeaseChange::Lapsed { generation } => self.drop_zones_of_older_leases(now, generation),
            LeaseChange::Superseded => {
                self.stopping = true;
                let zones: Vec<ZoneId> = self.active.keys().copied().collect();
                self.active.clear();
                self.activating.clear();
                for zone in zones {
                    self.events.push_back(NodeEvent::ZoneLost { zone });
                }
                self.events.push_back(NodeEvent::Superseded);
            }
        }
    }

    /// The lease ran out by this node's clock (the store has not answered renewals):
    /// the zones stop accepting inputs anyway, so they are given up, and their
    /// directory entries removed, so that players are placed elsewhere as soon as the
    /// store lets another node in, instead of being sent to a node that cannot serve
    /// them until its store comes back.
    fn give_up_zones_without_lease(&mut self) {
        let zones: Vec<(ZoneId, u64)> = self.active_zones().collect();
        for (zone, epoch) in zones {
            self.active.remove(&zone);
            self.events.push_back(NodeEvent::ZoneLost { zone });
            let host = self.me;
            self.send_to_owner(zone, NodeMsg::Unregister { zone, host, epoch });
            self.cache.remove(&zone);
        }
    }

    /// After a lapse, zones activated under an older lease may belong to someone else
    /// now: they are dropped and activated again (the store says whether they still
    /// are ours).
    fn drop_zones_of_older_leases(&mut self, now: Millis, generation: u64) {
        let stale: Vec<ZoneId> = self
            .active
            .iter()
            .filter(|(_, active)| active.lease_generation != generation)
            .map(|(zone, _)| *zone)
            .collect();
        for zone in stale {
            self.active.remove(&zone);
            self.events.push_back(NodeEvent::ZoneLost { zone });
            self.start_activation(now, zone);
        }
    }

    fn handle_activated(&mut self, zone: ZoneId, epoch: u64, lease_generation: u64, attempt: u64) {
        if self.active.get(&zone).is_some_and(|a| a.attempt == attempt) {
            // A repeat of the call that made the zone ours: the store answered it with
            // the same epoch. Nothing changes.
            return;
        }
        let current_attempt = self
            .activating
            .get(&zone)
            .is_some_and(|a| a.attempt == attempt);
        let current_lease = self
            .lease
            .generation()
            .is_none_or(|g| g <= lease_generation);
        if !current_attempt || !current_lease || self.stopping {
            // An answer to an attempt this node gave up (a late or duplicated reply),
            // or granted under a lease that has since lapsed: hand the epoch straight
            // back. The store ignores the release if the zone moved on since.
            self.store_calls
                .push_back(StoreCall::Release { zone, epoch });
            if current_attempt {
                self.activating.remove(&zone);
            }
            return;
        }
        self.activating.remove(&zone);
        self.active.insert(
            zone,
            ActiveZone {
                epoch,
                lease_generation,
                attempt,
            },
        );
        self.events.push_back(NodeEvent::ZoneActive { zone, epoch });
        self.register_here(zone, epoch);
    }

    /// Tells the zone's directory owner that this node holds it at `epoch`.
    fn register_here(&mut self, zone: ZoneId, epoch: u64) {
        let host = self.me;
        self.send_to_owner(zone, NodeMsg::Register { zone, host, epoch });
    }

    fn handle_held(
        &mut self,
        now: Millis,
        zone: ZoneId,
        holder: NodeRef,
        epoch: u64,
        lease_left_ms: u64,
    ) {
        if !self.activating.contains_key(&zone) {
            return;
        }
        if self.refuse_handoff_activation(zone) {
            self.remember_host(now, zone, holder);
            return;
        }
        if self.view.is_live(holder) {
            // The holder is alive: tell the directory the truth and send players there.
            // It may be alive but cut off from the store, its lease running out (it
            // then gives the zone up); so this node, which the directory chose, asks
            // again when that lease would end, a bounded number of times.
            self.remember_host(now, zone, holder);
            self.send_to_owner(
                zone,
                NodeMsg::Register {
                    zone,
                    host: holder,
                    epoch,
                },
            );
            let retry = self
                .activating
                .get_mut(&zone)
                .filter(|a| a.n_held_live < MAX_HELD_RETRIES);
            match retry {
                Some(activating) => {
                    activating.n_held_live += 1;
                    activating.retry_at = now + lease_left_ms + 1;
                }
                None => {
                    self.activating.remove(&zone);
                }
            }
        } else {
            // The holder is unknown to our view but its lease still runs: it is dead,
            // or alive and not yet in our view. Ask again when the lease ends, or sooner
            // (by then our view may know it and players can be sent there).
            let wait_ms = (lease_left_ms + 1).min(self.config.limits.activation_timeout_ms);
            if let Some(activating) = self.activating.get_mut(&zone) {
                activating.retry_at = now + wait_ms;
            }
        }
    }

    /// Ends a handoff's activation the store refused (true), reporting it; other
    /// activations are retried (false).
    fn refuse_handoff_activation(&mut self, zone: ZoneId) -> bool {
        if !self.activating.get(&zone).is_some_and(|a| a.handoff) {
            return false;
        }
        self.activating.remove(&zone);
        self.events
            .push_back(NodeEvent::HandoffActivationRefused { zone });
        true
    }

    fn retry_activation_later(&mut self, now: Millis, zone: ZoneId) {
        if let Some(activating) = self.activating.get_mut(&zone) {
            activating.retry_at = now + self.config.limits.activation_retry_ms;
        }
    }

    fn defer(&mut self, now: Millis, call: StoreCall) {
        match call {
            StoreCall::Activate { zone, .. } => self.retry_activation_later(now, zone),
            // The next renewal is already scheduled.
            StoreCall::RenewLease { .. } => {}
            StoreCall::Release { .. } | StoreCall::ZonesHeldBy { .. } => {
                if self.deferred.len() >= self.config.limits.max_deferred_calls {
                    self.deferred.pop_front();
                }
                self.deferred
                    .push_back((now + self.config.limits.activation_retry_ms, call));
            }
        }
    }

    /// Runs what is due: lease renewal, activation retries, lookup resends, deferred
    /// store calls.
    pub fn handle_timeout(&mut self, now: Millis) {
        if !self.active.is_empty() && !self.lease.is_valid(now) {
            self.give_up_zones_without_lease();
        }
        if let Some(request) = self.lease.poll_renewal(now) {
            self.store_calls
                .push_back(StoreCall::RenewLease { request });
        }
        let due: Vec<ZoneId> = self
            .activating
            .iter()
            .filter(|(_, activating)| activating.retry_at <= now)
            .map(|(zone, _)| *zone)
            .collect();
        for zone in due {
            self.ask_store_to_activate(now, zone);
        }
        let resend: Vec<ZoneId> = self
            .lookups
            .iter()
            .filter(|(_, p)| p.resend_at <= now)
            .map(|(zone, _)| *zone)
            .collect();
        for zone in resend {
            self.send_lookup(now, zone);
        }
        while self.deferred.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, call)) = self.deferred.pop_front() {
                self.store_calls.push_back(call);
            }
        }
        self.drain_local(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let activations = self.activating.values().map(|a| a.retry_at);
        let lookups = self.lookups.values().map(|p| p.resend_at);
        let deferred = self.deferred.front().map(|(at, _)| *at);
        // While zones are held, the moment the lease runs out locally is a deadline:
        // the zones are given up then.
        let lease_end = self.lease.valid_until().filter(|_| !self.active.is_empty());
        self.lease
            .next_renewal()
            .into_iter()
            .chain(lease_end)
            .chain(activations)
            .chain(lookups)
            .chain(deferred)
            .min()
    }
}
