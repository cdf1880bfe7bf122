//! Players crossing into zones held by other nodes, as the runtime moves them
//! (`server/src/cluster/crossing.rs`), over the simulated network:
//! 1. The source run takes the player out of its zone into a transfer and offers it
//!    (`Offer{id}`), repeating every [`CrossingConfig::offer_resend_ms`] while the
//!    target is in its view, until answered.
//! 2. The target answers a repeat of `(sender, id)` with its first answer (it remembers
//!    [`CrossingConfig::answers_remembered`]); a new offer is `NotHere` unless the zone
//!    is active there, `Busy` without the store, `Claimed` if the store refuses the
//!    claim taken over from the sender, else the player waits in the zone for its
//!    client and the answer is `Accepted`.
//! 3. On `Accepted` the source sends the client on; the client arrives after a random
//!    delay, late or never (then it logs in anew somewhere). A waiting player whose
//!    client does not come within [`CrossingConfig::arrival_wait_ms`] is saved and its
//!    claim released.
//! 4. On a refusal, a target gone from the view (at once if never sent to, else after
//!    [`CrossingConfig::offer_patience_ms`]) or silent for
//!    [`CrossingConfig::offer_give_up_ms`], the source claims the player back, taking
//!    the claim over from the target, and returns it to its zone; if the claim is held
//!    by a third run or the zone is gone, the player is dropped (saved).
//!
//! Without three rules the protocol lets a player be in two worlds (the checker found
//! each); the runtime follows them, and a [`CrossingConfig`] flag turns each off (the
//! tests show the checker catching each):
//! a source that gives up waits for any copy the host made from its last offer to
//! stop waiting before it takes the player back
//! ([`CrossingConfig::take_back_at_once`]); a login on the host, or a request to end
//! the session there, ends the player's waiting copy
//! ([`CrossingConfig::sessions_end_arrivals`]); and an old session's transfer never
//! takes the claim of a newer session of the player
//! ([`CrossingConfig::guards_stale_sessions`]).
//!
//! Player claims are one atomic store step each, done at once unless the node is cut
//! off from the store (as the sim's logins do), so the runtime's "offer in progress"
//! state (a repeat arriving while the claim is in flight) does not arise here.

mod host;

use std::collections::{BTreeMap, VecDeque};

use zonemesh_shared::ids::{NetId, ZoneId};
use zonemesh_shared::node::NodeRef;

use super::{Entity, PlayerState, World, slot_of};
use crate::Millis;
use crate::admission::Admission;
use crate::crossing::{CarriedPlayer, CrossingMsg, OfferOutcome};
use crate::sim::net::{Endpoint, Packet};
use crate::sim::store::Claim;

/// The crossing protocol's timings and memory (the runtime's constants by default),
/// and how often players cross. Changing a timing away from its default breaks the
/// protocol only where its doc says so; the tests do that to show the checker
/// catches it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossingConfig {
    /// How often an unanswered offer is repeated (`OFFER_RESEND`).
    pub offer_resend_ms: u64,
    /// How long an offer to a node gone from the sender's view is kept up
    /// (`OFFER_PATIENCE`).
    pub offer_patience_ms: u64,
    /// How long an offer to a silent node is kept up at most (`OFFER_GIVE_UP`).
    /// With `take_back_at_once` a bound shorter than `arrival_wait_ms` brings players
    /// back while their accepted copies still wait on the target.
    pub offer_give_up_ms: u64,
    /// How long an accepted player waits for its client (`ARRIVAL_WAIT`).
    pub arrival_wait_ms: u64,
    /// Offers whose answers a node remembers (`ANSWERS_REMEMBERED`); 0 remembers
    /// none, so every repeat is handled anew.
    pub answers_remembered: usize,
    /// Share of players' moves that walk across a border (the rest log in anew for
    /// another zone).
    pub cross_share: f64,
    /// Whether a player's waiting arrival ends when its session is ended here (asked
    /// by another node letting the player in) or when the player logs in here anew.
    /// The runtime does both (a waiting link is among the node's sessions, and
    /// `end_session` ends it). Without it a login here claims its own run's claim and
    /// the waiting copy stays in its zone beside the new session; `false` models that,
    /// and the checker catches it.
    pub sessions_end_arrivals: bool,
    /// Whether nodes keep an old session's transfer from taking the player's claim
    /// from a newer session. Claims name runs, not sessions: a run's claim for any
    /// session is its own, and a takeover takes whatever claim the named run holds.
    /// So (1) a node lets a player in (a login retries, an offer is answered `Busy`)
    /// only when no transfer of the player is in flight from it, else the old
    /// transfer's host takes the new session's claim over; (2) a host refuses
    /// (`Claimed`) an offer of a player it already holds in another session, else it
    /// takes its own session's claim; (3) a source whose transfer's client has left
    /// ends the transfer without claiming the player back, else it takes the claim
    /// from a newer session on itself or the host, which is then never asked to end.
    /// The runtime does all three (`Crossings::in_transit`, `has_other_session` and
    /// `take_back`); `false` models a runtime without them, and the checker catches
    /// the player live twice.
    pub guards_stale_sessions: bool,
    /// Whether a source that gives up on an offer takes the player back at once (the
    /// runtime waits, `TAKE_BACK_AFTER`). Safe only if the host never accepted: a host that
    /// accepted an offer (sent up to the last repeat) keeps its copy waiting for
    /// `arrival_wait_ms`, and a host that left the source's view after 5 s
    /// (`offer_patience_ms`) or first heard a repeat late in the 30 s
    /// (`offer_give_up_ms`) may still have it, so the player is in two worlds. By
    /// default the source stops offering and takes the player back only once such a
    /// copy is gone (`arrival_wait_ms` and a margin after the last offer sent).
    pub take_back_at_once: bool,
}

impl Default for CrossingConfig {
    fn default() -> Self {
        Self {
            offer_resend_ms: 250,
            offer_patience_ms: 5_000,
            offer_give_up_ms: 30_000,
            arrival_wait_ms: 11_000,
            answers_remembered: 8_192,
            cross_share: 0.6,
            sessions_end_arrivals: true,
            guards_stale_sessions: true,
            take_back_at_once: false,
        }
    }
}

/// Transfers one run drives at once (`MAX_OFFERS_IN_FLIGHT`); more players wait at
/// the border.
const MAX_OFFERS_IN_FLIGHT: usize = 1_024;
/// Players one run keeps waiting for their clients (`MAX_WAITING_ARRIVALS`); more
/// offers are answered `Busy`.
const MAX_WAITING_ARRIVALS: usize = 4_096;
/// How long a player at the border waits before trying to cross again.
const BORDER_RETRY_MS: u64 = 100;
/// How much longer than its arrival wait a host's copy of a player may live after the
/// offer that made it was sent (more than the network's longest delay).
const ARRIVAL_MARGIN_MS: u64 = 1_000;
/// Tries to cross before the player turns away from the border.
const BORDER_TRIES_MAX: u32 = 20;
/// Chance a redirected client never reaches the node it was sent to (it logs in
/// anew somewhere after a while).
const CLIENT_LOST: f64 = 0.1;
/// Chance a redirected client arrives only after its player stopped waiting.
const CLIENT_LATE: f64 = 0.05;
/// Chance, at each check, that the client of a player in a transfer loses its
/// connection and logs in anew.
const CLIENT_DROP: f64 = 0.02;

/// A player on its way to another node, as its source run drives it.
#[derive(Debug, Clone, Copy)]
pub(in crate::sim) struct Transfer {
    pub(in crate::sim) player: usize,
    pub(in crate::sim) session: u64,
    from_zone: ZoneId,
    zone: ZoneId,
    host: NodeRef,
    started: Millis,
    /// When the next offer goes out (or, once offering stopped, when the host's
    /// copies are surely gone).
    next_send: Millis,
    /// When an offer last went out, if ever.
    last_sent: Option<Millis>,
    /// Whether offering stopped (the transfer only waits for an answer now).
    stopped: bool,
    /// Whether the client is still connected to the source (a closed link's
    /// transfer carries on, as the runtime's does).
    link_open: bool,
}

/// A player accepted from another node, waiting in a zone for its client.
#[derive(Debug, Clone, Copy)]
pub(in crate::sim) struct Arrival {
    pub(in crate::sim) player: usize,
    pub(in crate::sim) zone: ZoneId,
    /// The zone's activation the player was put into (a later activation of the zone
    /// starts without it).
    pub(in crate::sim) epoch: u64,
    expires: Millis,
}

/// One run's crossing state.
#[derive(Debug, Default)]
pub(in crate::sim) struct Crossings {
    next_offer: u64,
    /// Offers in flight by id.
    pub(in crate::sim) transfers: BTreeMap<u64, Transfer>,
    /// Players waiting for their clients, by session.
    pub(in crate::sim) arrivals: BTreeMap<u64, Arrival>,
    answers: BTreeMap<(NodeRef, u64), OfferOutcome>,
    answer_order: VecDeque<(NodeRef, u64)>,
}

impl Crossings {
    fn remember(&mut self, key: (NodeRef, u64), outcome: OfferOutcome, limit: usize) {
        if limit == 0 {
            return;
        }
        while self.answer_order.len() >= limit {
            if let Some(oldest) = self.answer_order.pop_front() {
                self.answers.remove(&oldest);
            }
        }
        self.answers.insert(key, outcome);
        self.answer_order.push_back(key);
    }

    /// The earliest time something here is due.
    pub(in crate::sim) fn next_due(&self) -> Option<Millis> {
        let sends = self.transfers.values().map(|t| t.next_send);
        let expiries = self.arrivals.values().map(|a| a.expires);
        sends.chain(expiries).min()
    }

    /// The transfer of `player`'s `session`, if one is in flight.
    pub(in crate::sim) fn transfer_of(&self, player: usize, session: u64) -> Option<u64> {
        self.transfers
            .iter()
            .find(|(_, t)| t.player == player && t.session == session)
            .map(|(id, _)| *id)
    }

    /// Marks transfer `id`'s client as gone.
    pub(in crate::sim) fn close_link(&mut self, id: u64) {
        if let Some(t) = self.transfers.get_mut(&id) {
            t.link_open = false;
        }
    }

    /// Whether any transfer of `player` is in flight.
    pub(in crate::sim) fn is_sending(&self, player: usize) -> bool {
        self.transfers.values().any(|t| t.player == player)
    }

    /// Ends the waiting arrivals of `player` (of `session` only, if given).
    pub(in crate::sim) fn end_arrivals(&mut self, player: usize, session: Option<u64>) {
        self.arrivals
            .retain(|s, a| a.player != player || session.is_some_and(|own| own != *s));
    }
}

/// The wire form of player `i` (its index travels as its network id).
fn carried(player: usize, session: u64) -> CarriedPlayer {
    CarriedPlayer {
        session,
        name: format!("p{player}"),
        net_id: NetId(player as u64),
        position: [0.0, 0.0],
        velocity: [0.0, 0.0],
        max_speed: 5.0,
        last_input_seq: 0,
        components: Vec::new(),
        next_record_version: 1,
        view: Vec::new(),
    }
}

impl World {
    /// Player `i`, playing on run `node` in `slot`, walks into `target`: a local move
    /// if the run serves it, a transfer if another node holds it, else the player
    /// waits at the border while the zone is looked up (or loaded).
    pub(super) fn cross(
        &mut self,
        i: usize,
        slot: usize,
        target: ZoneId,
        tries: u32,
    ) -> PlayerState {
        let now = self.now;
        let Some(run) = self.slots[slot].run.as_mut() else {
            return self.ask_anew(200);
        };
        let me = run.core.me();
        if run.core.accepts_inputs(now, target) {
            if let Some(entity) = run.entities.get_mut(&i) {
                entity.zone = target;
            }
            self.players[i].zone = target;
            self.report.n_local_moves += 1;
            return self.playing(slot, me, None);
        }
        let mut host = run.core.locate(now, target);
        if host.is_none()
            && let Admission::Redirect { to } = run.core.admit(now, target, false)
        {
            host = Some(to);
        }
        let full = run.crossings.transfers.len() >= MAX_OFFERS_IN_FLIGHT;
        self.flush(slot);
        match host.filter(|h| *h != me) {
            Some(host) if !full => self.start_transfer(i, slot, target, host),
            _ if tries < BORDER_TRIES_MAX => self.playing(slot, me, Some((target, tries + 1))),
            _ => self.playing(slot, me, None),
        }
    }

    /// A player playing on `node` in `slot`, checked again soon if at the border.
    pub(super) fn playing(
        &self,
        slot: usize,
        node: NodeRef,
        heading: Option<(ZoneId, u32)>,
    ) -> PlayerState {
        let after_ms = if heading.is_some() {
            BORDER_RETRY_MS
        } else {
            super::PLAY_CHECK_MS
        };
        PlayerState::Playing {
            slot,
            node,
            check_at: self.now + after_ms,
            heading,
        }
    }

    /// Takes player `i` out of its zone on the run in `slot` into a transfer to `host`.
    fn start_transfer(
        &mut self,
        i: usize,
        slot: usize,
        zone: ZoneId,
        host: NodeRef,
    ) -> PlayerState {
        let now = self.now;
        let session = self.players[i].session;
        let from_zone = self.players[i].zone;
        let Some(run) = self.slots[slot].run.as_mut() else {
            return self.ask_anew(200);
        };
        let me = run.core.me();
        let removed = run.entities.remove(&i);
        assert_eq!(
            removed.map(|e| e.session),
            Some(session),
            "a playing player has its entity"
        );
        let id = run.crossings.next_offer;
        run.crossings.next_offer += 1;
        run.crossings.transfers.insert(
            id,
            Transfer {
                player: i,
                session,
                from_zone,
                zone,
                host,
                started: now,
                next_send: now,
                last_sent: None,
                stopped: false,
                link_open: true,
            },
        );
        self.report.n_offers += 1;
        self.note(i, "offered", me, session);
        PlayerState::InTransfer {
            slot,
            node: me,
            check_at: now + super::PLAY_CHECK_MS,
        }
    }

    /// Repeats the due offers of the run in `slot`, gives up on those past patience,
    /// and lets go of arrivals whose clients did not come; returns whether anything
    /// changed.
    pub(super) fn drive_crossings(&mut self, slot: usize) -> bool {
        let now = self.now;
        let Some(run) = self.slots[slot].run.as_ref() else {
            return false;
        };
        let due: Vec<u64> = run
            .crossings
            .transfers
            .iter()
            .filter(|(_, t)| t.next_send <= now)
            .map(|(id, _)| *id)
            .collect();
        let expired: Vec<u64> = run
            .crossings
            .arrivals
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(session, _)| *session)
            .collect();
        for id in &due {
            self.drive_offer(slot, *id);
        }
        for session in &expired {
            self.expire_arrival(slot, *session);
        }
        !due.is_empty() || !expired.is_empty()
    }

    /// One turn of the runtime's `drive_offer` loop: send if the host is in view, give
    /// up if it is not (or has been silent too long), else wait for the next repeat.
    /// Giving up takes the player back at once if no offer ever went out; else, unless
    /// [`CrossingConfig::take_back_at_once`], only once any copy the host made from
    /// the last offer has stopped waiting (an answer meanwhile still counts).
    fn drive_offer(&mut self, slot: usize, id: u64) {
        let now = self.now;
        let config = self.config.crossing;
        let Some(run) = self.slots[slot].run.as_mut() else {
            return;
        };
        let me = run.core.me();
        let Some(t) = run.crossings.transfers.get_mut(&id) else {
            return;
        };
        if t.stopped {
            self.take_back(slot, id);
            return;
        }
        let in_view = run.core.view().is_live(t.host);
        if in_view {
            t.last_sent = Some(now);
        }
        let waited_ms = now.0 - t.started.0;
        let give_up = (!in_view
            && (t.last_sent.is_none() || waited_ms >= config.offer_patience_ms))
            || waited_ms >= config.offer_give_up_ms;
        t.next_send = now + config.offer_resend_ms;
        if give_up && let Some(last_sent) = t.last_sent.filter(|_| !config.take_back_at_once) {
            t.stopped = true;
            t.next_send = last_sent + config.arrival_wait_ms + ARRIVAL_MARGIN_MS;
        }
        let t = *t;
        if in_view {
            let offer = CrossingMsg::Offer {
                id,
                to: t.host,
                from_zone: t.from_zone,
                zone: t.zone,
                player: carried(t.player, t.session),
            };
            self.send_crossing(slot, me, t.host, &offer);
        }
        if give_up && !t.stopped {
            self.take_back(slot, id);
        }
    }

    fn send_crossing(&mut self, slot: usize, me: NodeRef, to: NodeRef, msg: &CrossingMsg) {
        let packet = Packet::Crossing {
            to: slot_of(to, self.slots.len()),
            from: me,
            bytes: msg.encode(),
        };
        self.net.send(
            self.now,
            Endpoint::Node(slot),
            packet,
            self.faults,
            &mut self.rng,
        );
    }

    /// A crossing message from run `from` for the run in `slot`.
    pub(super) fn deliver_crossing(&mut self, slot: usize, from: NodeRef, bytes: &[u8]) {
        let Ok(msg) = CrossingMsg::decode(bytes) else {
            return;
        };
        let Some(run) = self.slots[slot].run.as_ref() else {
            return;
        };
        if msg.to() != run.core.me() {
            return;
        }
        match msg {
            CrossingMsg::Offer {
                id, zone, player, ..
            } => self.on_offer(slot, from, id, zone, &player),
            CrossingMsg::Answer { id, outcome, .. } => self.on_answer(slot, id, outcome),
            CrossingMsg::Ghosts(_) => {}
        }
    }

    fn on_answer(&mut self, slot: usize, id: u64, outcome: OfferOutcome) {
        let Some(run) = self.slots[slot].run.as_mut() else {
            return;
        };
        let Some(t) = run.crossings.transfers.get(&id).copied() else {
            return;
        };
        let me = run.core.me();
        self.note(t.player, outcome_name(outcome), me, t.session);
        let Some(run) = self.slots[slot].run.as_mut() else {
            return;
        };
        match outcome {
            OfferOutcome::Accepted => {
                run.crossings.transfers.remove(&id);
                self.send_client_on(slot, t);
            }
            OfferOutcome::NotHere | OfferOutcome::Claimed | OfferOutcome::Busy => {
                self.take_back(slot, id);
            }
        }
    }

    /// The player of `t` is the host's now: its client, if still connected here, is
    /// told where to go (or, if the host left the view meanwhile, to log in anew).
    fn send_client_on(&mut self, slot: usize, t: Transfer) {
        let Some(run) = self.slots[slot].run.as_ref() else {
            return;
        };
        let in_view = run.core.view().is_live(t.host);
        if !self.client_attached(t.player, slot, run.core.me(), t.session) || !t.link_open {
            return;
        }
        self.players[t.player].zone = t.zone;
        let state = if in_view {
            self.follow(t.host)
        } else {
            self.ask_anew(200)
        };
        self.set_state(t.player, state);
    }

    /// A client redirected to `host`: when and whether it gets there.
    fn follow(&mut self, host: NodeRef) -> PlayerState {
        let wait_ms = self.config.crossing.arrival_wait_ms;
        let (after_ms, arrives) = if self.rng.chance(CLIENT_LOST) {
            (self.rng.range(500, wait_ms + 4_000), false)
        } else if self.rng.chance(CLIENT_LATE) {
            (self.rng.range(wait_ms, wait_ms + 2_000), true)
        } else {
            (self.rng.range(5, 2_000), true)
        };
        PlayerState::Following {
            slot: slot_of(host, self.slots.len()),
            node: host,
            at: self.now + after_ms,
            arrives,
        }
    }

    /// Whether player `i`'s client is connected to run `node` in `slot` for `session`
    /// and waits there for its transfer.
    fn client_attached(&self, i: usize, slot: usize, node: NodeRef, session: u64) -> bool {
        let player = &self.players[i];
        player.session == session
            && matches!(player.state, PlayerState::InTransfer { slot: s, node: n, .. } if s == slot && n == node)
    }

    /// The runtime's `take_back`: claims the player of transfer `id` back, taking the
    /// claim over from the host, and returns it to its zone; drops it (saved) if the
    /// claim is another's, the zone is gone, or its client left (then, unless
    /// `guards_stale_sessions` is off, without claiming it).
    fn take_back(&mut self, slot: usize, id: u64) {
        let now = self.now;
        let store_reachable = !self.net.is_cut(Endpoint::Node(slot), Endpoint::Store);
        let Some(run) = self.slots[slot].run.as_mut() else {
            return;
        };
        let Some(t) = run.crossings.transfers.remove(&id) else {
            return;
        };
        let me = run.core.me();
        let zone_here = run.core.accepts_inputs(now, t.from_zone);
        self.report.n_taken_back += 1;
        let attached = t.link_open && self.client_attached(t.player, slot, me, t.session);
        let claims = attached || !self.config.crossing.guards_stale_sessions;
        let claimed = claims
            && store_reachable
            && self
                .store
                .claim_player(now, t.player, me, t.session, Some(t.host))
                == Claim::Claimed;
        if claimed
            && attached
            && zone_here
            && let Some(run) = self.slots[slot].run.as_mut()
        {
            run.entities.insert(
                t.player,
                Entity {
                    zone: t.from_zone,
                    session: t.session,
                },
            );
            self.note(t.player, "taken back", me, t.session);
            let state = self.playing(slot, me, None);
            self.set_state(t.player, state);
            return;
        }
        self.note(t.player, "dropped", me, t.session);
        if attached {
            // The client is sent away: its session ends and gives back what it holds.
            if store_reachable {
                self.store.release_player(t.player, me, t.session);
            }
            let state = self.ask_anew(200);
            self.set_state(t.player, state);
        }
        self.report.n_dropped += 1;
    }

    /// Checks on a client whose player is in a transfer: its node may have died, or
    /// its connection may drop (the transfer carries on without it).
    pub(super) fn check_in_transfer(
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
            return self.ask_anew(200);
        };
        if !self.rng.chance(CLIENT_DROP) {
            return PlayerState::InTransfer {
                slot,
                node,
                check_at: self.now + super::PLAY_CHECK_MS,
            };
        }
        if let Some(id) = run.crossings.transfer_of(i, session) {
            run.crossings.close_link(id);
        }
        self.note(i, "link dropped", node, session);
        // The session ends; its player is not yet another node's, so its claim is
        // given back.
        if store_reachable {
            self.store.release_player(i, node, session);
        }
        self.ask_anew(0)
    }
}

fn outcome_name(outcome: OfferOutcome) -> &'static str {
    match outcome {
        OfferOutcome::Accepted => "answer: accepted",
        OfferOutcome::NotHere => "answer: not here",
        OfferOutcome::Claimed => "answer: claimed",
        OfferOutcome::Busy => "answer: busy",
    }
}
