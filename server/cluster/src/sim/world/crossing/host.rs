//! The host's half of a crossing: offers handled once (repeats answered from the
//! answer memory), players taken in with the claim taken over from the source, and
//! players waiting for their clients, who arrive or do not.

use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;

use super::{Arrival, MAX_WAITING_ARRIVALS};
use crate::crossing::{CarriedPlayer, CrossingMsg, OfferOutcome};
use crate::sim::net::Endpoint;
use crate::sim::store::Claim;
use crate::sim::world::{Entity, PlayerState, World};

impl World {
    pub(super) fn on_offer(
        &mut self,
        slot: usize,
        from: NodeRef,
        id: u64,
        zone: ZoneId,
        p: &CarriedPlayer,
    ) {
        let limit = self.config.crossing.answers_remembered;
        let Some(run) = self.slots[slot].run.as_ref() else {
            return;
        };
        let me = run.core.me();
        let outcome = match run.crossings.answers.get(&(from, id)) {
            Some(outcome) => *outcome,
            None => {
                let outcome = self.admit_player(slot, from, zone, p.net_id.0 as usize, p.session);
                if let Some(run) = self.slots[slot].run.as_mut() {
                    run.crossings.remember((from, id), outcome, limit);
                }
                outcome
            }
        };
        let Some(run) = self.slots[slot].run.as_ref() else {
            return;
        };
        // The runtime answers through its view: a sender it does not see hears nothing.
        if run.core.view().is_live(from) {
            let answer = CrossingMsg::Answer {
                id,
                to: from,
                outcome,
            };
            self.send_crossing(slot, me, from, &answer);
        }
    }

    /// The runtime's `admit_player`: takes player `player`'s `session`, offered by run
    /// `from`, into `zone` on the run in `slot`.
    fn admit_player(
        &mut self,
        slot: usize,
        from: NodeRef,
        zone: ZoneId,
        player: usize,
        session: u64,
    ) -> OfferOutcome {
        let now = self.now;
        let store_reachable = !self.net.is_cut(Endpoint::Node(slot), Endpoint::Store);
        let expires = now + self.config.crossing.arrival_wait_ms;
        let Some(run) = self.slots[slot].run.as_mut() else {
            return OfferOutcome::Busy;
        };
        let Some(epoch) = run
            .core
            .active_zones()
            .find(|(z, _)| *z == zone)
            .map(|(_, e)| e)
        else {
            return OfferOutcome::NotHere;
        };
        let guarded = self.config.crossing.guards_stale_sessions;
        let sending = guarded && run.crossings.is_sending(player);
        if run.crossings.arrivals.len() >= MAX_WAITING_ARRIVALS || !store_reachable || sending {
            return OfferOutcome::Busy;
        }
        let me = run.core.me();
        if guarded && run.holds_other_session(player, session) {
            self.note(player, "refused: here already", me, session);
            return OfferOutcome::Claimed;
        }
        match self
            .store
            .claim_player(now, player, me, session, Some(from))
        {
            Claim::HeldBy(..) => {
                self.note(player, "refused: claimed", me, session);
                OfferOutcome::Claimed
            }
            Claim::Claimed => {
                run.crossings.arrivals.insert(
                    session,
                    Arrival {
                        player,
                        zone,
                        epoch,
                        expires,
                    },
                );
                self.report.n_accepted += 1;
                self.note(player, "accepted", me, session);
                OfferOutcome::Accepted
            }
        }
    }

    pub(super) fn expire_arrival(&mut self, slot: usize, session: u64) {
        let store_reachable = !self.net.is_cut(Endpoint::Node(slot), Endpoint::Store);
        let Some(run) = self.slots[slot].run.as_mut() else {
            return;
        };
        let Some(arrival) = run.crossings.arrivals.remove(&session) else {
            return;
        };
        self.report.n_arrivals_expired += 1;
        let me = run.core.me();
        if store_reachable {
            self.store.release_player(arrival.player, me, session);
        }
        self.note(arrival.player, "arrival expired", me, session);
    }

    /// A redirected client reaches run `node` in `slot`: it attaches to its waiting
    /// player, or (gone, expired, or its zone's activation ended) logs in anew.
    pub(in crate::sim::world) fn arrive(
        &mut self,
        i: usize,
        slot: usize,
        node: NodeRef,
    ) -> PlayerState {
        let session = self.players[i].session;
        let store_reachable = !self.net.is_cut(Endpoint::Node(slot), Endpoint::Store);
        let Some(run) = self.slots[slot]
            .run
            .as_mut()
            .filter(|r| r.core.me() == node)
        else {
            return self.ask_anew(0);
        };
        let Some(arrival) = run.crossings.arrivals.remove(&session) else {
            return self.ask_anew(0);
        };
        let zone_epoch = run
            .core
            .active_zones()
            .find(|(z, _)| *z == arrival.zone)
            .map(|(_, e)| e);
        if zone_epoch != Some(arrival.epoch) {
            if store_reachable {
                self.store.release_player(i, node, session);
            }
            return self.ask_anew(0);
        }
        run.entities.insert(
            i,
            Entity {
                zone: arrival.zone,
                session,
            },
        );
        self.report.n_clients_arrived += 1;
        self.note(i, "client arrived", node, session);
        self.playing(slot, node, None)
    }
}
