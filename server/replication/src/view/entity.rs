//! What a view remembers about one entity it shows a client: the records it sent,
//! the newest acknowledged one (the baseline), and the decision of what to send next.
//!
//! # What the client may hold
//! The client holds the state of the newest record it applied, which is the baseline
//! or any record sent after it (acknowledgements lag). A field may be left out of a
//! record ("unchanged") only if *every* such record carried the current value: a
//! record omitting a field keeps whatever the client had, so the client ends with the
//! current value either way. Each sent record is logged with the values the client
//! holds after applying it, which by that rule is always the entity's current value.
//! Runs of equal values among the sent records are tracked by the sequence number the
//! run started at, which makes the check O(1).

use super::section::SectionCache;
use crate::state::ReplicatedState;
use zonemesh_shared::datagram::POSITION_HISTORY;
use zonemesh_shared::quant::QPos;

/// Most records sent from the baseline (inclusive) up to a new record for the new one
/// to be a delta. The client keeps the positions of its last [`POSITION_HISTORY`]
/// records; with at most 15 before it, the baseline is still among the 16 newest even
/// counting the new record, whether the client looks the baseline up before or after
/// storing the record that refers to it.
const DELTA_RECORDS_MAX: u64 = POSITION_HISTORY as u64 - 1;

/// A delta's `baseline_back` must be unambiguous modulo 2^32 for the client.
const BASELINE_BACK_MAX: u64 = (u32::MAX / 2) as u64;

/// One record sent for an entity, with the state the client holds after applying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Snapshot sequence number, unwrapped.
    pub(crate) seq: u64,
    /// Tick of the snapshot.
    pub(crate) tick: u64,
    /// Position the client holds after it.
    pub(crate) pos: QPos,
    /// Components hash the client holds after it.
    pub(crate) hash: u64,
    /// How many records had been sent for the entity in this life before this one
    /// (wrapping; only compared with recent ones).
    pub(crate) ordinal: u32,
}

/// Whether the client may still see the entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    /// Shown: in the area of interest and among the nearest tracked.
    Shown,
    /// Left the view; a despawn is owed until one is acknowledged.
    Leaving {
        /// Tick the last despawn record went out, `None` before the first.
        sent_tick: Option<u64>,
    },
}

/// What to put in the next record for a shown entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Spawn record: kind, absolute position, every component.
    Full,
    /// Update against what the client holds.
    Update {
        /// Leave the position out: every state the client may hold has it.
        pos_unchanged: bool,
        /// Baseline `(seq, pos)` to delta against, `None` for an absolute position.
        delta_from: Option<(u64, QPos)>,
        /// Send the component list: some state the client may hold differs.
        components: bool,
    },
}

/// A view's bookkeeping for one entity.
#[derive(Debug, Clone)]
pub(crate) struct Tracked {
    /// Kind the client was (or is being) told about.
    pub(crate) kind: u16,
    pub(crate) life: Life,
    /// First sequence number of the current life: records of an earlier life (before
    /// a re-spawn) may still be acknowledged and must not become baselines.
    pub(crate) since_seq: u64,
    /// Newest acknowledged record of this life.
    pub(crate) baseline: Option<Sent>,
    /// Newest record sent in this life.
    pub(crate) last: Option<Sent>,
    /// Records sent in this life (wrapping: a baseline 2^32 records old is rejected by
    /// its sequence distance before the count could alias).
    pub(crate) n_sent: u32,
    /// Sequence number of the newest spawn record sent in this life. A client may
    /// start an entity's history afresh when it applies a spawn, so deltas only
    /// reference records from here on.
    spawn_seq: u64,
    /// Sequence number starting the run of sent records with `last.pos`.
    pos_run_since: u64,
    /// Sequence number starting the run of sent records with `last.hash`.
    hash_run_since: u64,
    /// Last tick at which the baseline matched the entity's state, or the tick the
    /// entity entered the view; staleness counts from here.
    fresh_tick: u64,
    /// True once any record went out in any life: the client may hold the entity, so
    /// it must be despawned rather than silently forgotten.
    pub(crate) client_may_hold: bool,
    /// Build (see `ClientView::generation`) that last selected the entity for the view;
    /// older means it left. Also dedups an id listed twice in one frame.
    pub(crate) seen: u64,
    /// Index of its state in this tick's frame (valid when `seen` is the current build).
    pub(crate) state_index: u32,
    /// The component section last written, so the sender can size and send a
    /// record without reading the components.
    pub(crate) section: SectionCache,
}

impl Tracked {
    /// A newly shown entity, its first record still to be sent.
    pub(crate) fn new(kind: u16, next_seq: u64, tick: u64, state_index: u32, seen: u64) -> Self {
        Self {
            kind,
            life: Life::Shown,
            since_seq: next_seq,
            baseline: None,
            last: None,
            n_sent: 0,
            spawn_seq: 0,
            pos_run_since: 0,
            hash_run_since: 0,
            fresh_tick: tick,
            client_may_hold: false,
            seen,
            state_index,
            section: SectionCache::default(),
        }
    }

    /// An entity the client may hold from another view (another node's): this view
    /// sent nothing about it, so it is treated exactly as an entity that left the view
    /// with its despawn owed. If a frame selects it, it comes back with a new life and
    /// a spawn record (see `ClientView::select`); otherwise the despawn goes out.
    pub(crate) fn carried(kind: u16, next_seq: u64) -> Self {
        // `seen` 0 is no build's generation (the first build is 1), and `state_index`
        // and `fresh_tick` are set when a frame selects it.
        let mut t = Self::new(kind, next_seq, 0, 0, 0);
        t.life = Life::Leaving { sent_tick: None };
        t.client_may_hold = true;
        t
    }

    /// Starts a new life: forgets every baseline so the next record is a spawn. Used
    /// when the entity comes back while its despawn is owed, or when the client must
    /// be reset (kind changed, components emptied).
    pub(crate) fn restart(&mut self, kind: u16, next_seq: u64, tick: u64) {
        let (client_may_hold, section) = (self.client_may_hold, self.section);
        *self = Self::new(kind, next_seq, tick, self.state_index, self.seen);
        self.client_may_hold = client_may_hold;
        self.section = section;
    }

    /// Ticks since the client's acknowledged state was current.
    pub(crate) fn staleness(&self, tick: u64) -> u64 {
        let since = self
            .baseline
            .map_or(self.fresh_tick, |b| b.tick.max(self.fresh_tick));
        tick.saturating_sub(since)
    }

    /// Decides what to send for shown entity `s` this tick, `None` for nothing.
    /// `next_seq` is the sequence number the next datagram will get.
    pub(crate) fn plan(
        &mut self,
        s: &ReplicatedState,
        tick: u64,
        next_seq: u64,
        resend_after_ticks: u32,
    ) -> Option<Plan> {
        if s.kind != self.kind {
            // The wire sends the kind only on spawn: start over so the client re-spawns.
            self.restart(s.kind, next_seq, tick);
        }
        let Some(base) = self.baseline else {
            return (!self.in_flight(s, tick, resend_after_ticks)).then_some(Plan::Full);
        };
        if base.pos == s.pos && base.hash == s.components_hash {
            self.fresh_tick = tick;
        }
        let pos_unchanged = self.pos_settled(s.pos);
        let components = !self.hash_settled(s.components_hash);
        if (pos_unchanged && !components) || self.in_flight(s, tick, resend_after_ticks) {
            return None;
        }
        if components && s.components.is_empty() {
            // An update cannot say "all components removed" (an empty list means
            // "unchanged"), so start over with a spawn carrying the empty list.
            self.restart(s.kind, next_seq, tick);
            return Some(Plan::Full);
        }
        Some(Plan::Update {
            pos_unchanged,
            delta_from: self.delta_base(next_seq),
            components,
        })
    }

    /// True when every state the client may hold has position `pos`.
    fn pos_settled(&self, pos: QPos) -> bool {
        match (self.baseline, self.last) {
            (Some(b), Some(l)) => l.pos == pos && b.seq >= self.pos_run_since,
            _ => false,
        }
    }

    /// True when every state the client may hold has components hash `hash`.
    fn hash_settled(&self, hash: u64) -> bool {
        match (self.baseline, self.last) {
            (Some(b), Some(l)) => l.hash == hash && b.seq >= self.hash_run_since,
            _ => false,
        }
    }

    /// True when the newest record is unacknowledged, already carries `s`, and was sent
    /// too recently to presume it lost.
    fn in_flight(&self, s: &ReplicatedState, tick: u64, resend_after_ticks: u32) -> bool {
        let Some(last) = self.last else {
            return false;
        };
        let acked = self.baseline.is_some_and(|b| b.seq == last.seq);
        !acked
            && last.pos == s.pos
            && last.hash == s.components_hash
            && tick.saturating_sub(last.tick) < u64::from(resend_after_ticks)
    }

    /// The baseline to delta the position against, if the client surely still holds
    /// it and `baseline_back` stays unambiguous.
    fn delta_base(&self, next_seq: u64) -> Option<(u64, QPos)> {
        let b = self.baseline?;
        let records_since = u64::from(self.n_sent.wrapping_sub(b.ordinal));
        let close = records_since <= DELTA_RECORDS_MAX
            && b.seq >= self.spawn_seq
            && next_seq.saturating_sub(b.seq) <= BASELINE_BACK_MAX;
        close.then_some((b.seq, b.pos))
    }

    /// Notes that a record (a spawn if `spawn`) carrying `pos` and `hash` went out in
    /// snapshot `seq`; returns the record's ordinal.
    pub(crate) fn on_sent(
        &mut self,
        seq: u64,
        tick: u64,
        spawn: bool,
        pos: QPos,
        hash: u64,
    ) -> u32 {
        if spawn {
            self.spawn_seq = seq;
        }
        if self.last.is_none_or(|l| l.pos != pos) {
            self.pos_run_since = seq;
        }
        if self.last.is_none_or(|l| l.hash != hash) {
            self.hash_run_since = seq;
        }
        let ordinal = self.n_sent;
        self.last = Some(Sent {
            seq,
            tick,
            pos,
            hash,
            ordinal,
        });
        self.n_sent = self.n_sent.wrapping_add(1);
        self.client_may_hold = true;
        ordinal
    }

    /// Notes that the client received record `sent`; it becomes the baseline if it
    /// belongs to this life and is newer than the current one.
    pub(crate) fn on_acked(&mut self, sent: Sent) {
        if sent.seq < self.since_seq || self.baseline.is_some_and(|b| b.seq >= sent.seq) {
            return;
        }
        self.baseline = Some(sent);
    }

    /// Marks the entity as having left the view. Returns false when the client never
    /// received anything about it, so it can simply be forgotten.
    pub(crate) fn leave(&mut self) -> bool {
        if matches!(self.life, Life::Shown) {
            self.life = Life::Leaving { sent_tick: None };
        }
        self.client_may_hold
    }

    /// True once the entity left the view (a despawn is owed or in flight).
    pub(crate) fn is_leaving(&self) -> bool {
        matches!(self.life, Life::Leaving { .. })
    }

    /// Notes that a despawn record went out this tick.
    pub(crate) fn on_despawn_sent(&mut self, tick: u64) {
        self.life = Life::Leaving {
            sent_tick: Some(tick),
        };
        self.client_may_hold = true;
    }

    /// True when a despawn record should go out this tick.
    pub(crate) fn despawn_due(&self, tick: u64, resend_after_ticks: u32) -> bool {
        match self.life {
            Life::Shown => false,
            Life::Leaving { sent_tick: None } => true,
            Life::Leaving { sent_tick: Some(t) } => {
                tick.saturating_sub(t) >= u64::from(resend_after_ticks)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonemesh_shared::datagram::ComponentValue;
    use zonemesh_shared::ids::NetId;

    fn state(x: i32, comp: u8) -> ReplicatedState {
        let c = vec![ComponentValue {
            id: 1,
            bytes: vec![comp],
        }];
        ReplicatedState::new(NetId(1), 2, QPos { x, y: 0 }, c)
    }

    /// Sends `s` in snapshot `seq` at tick `seq` and returns the logged record.
    fn send(t: &mut Tracked, s: &ReplicatedState, seq: u64) -> Sent {
        let ordinal = t.on_sent(seq, seq, t.baseline.is_none(), s.pos, s.components_hash);
        Sent {
            seq,
            tick: seq,
            pos: s.pos,
            hash: s.components_hash,
            ordinal,
        }
    }

    #[test]
    fn no_baseline_means_full_records_until_acknowledged() {
        let mut t = Tracked::new(2, 0, 0, 0, 0);
        let s = state(0, 0);
        assert_eq!(t.plan(&s, 0, 0, 3), Some(Plan::Full));
        let sent = send(&mut t, &s, 0);
        assert_eq!(t.plan(&s, 1, 1, 3), None, "in flight");
        assert_eq!(t.plan(&s, 3, 1, 3), Some(Plan::Full), "presumed lost");
        t.on_acked(sent);
        assert_eq!(t.plan(&s, 4, 1, 3), None, "client is current");
    }

    #[test]
    fn unacknowledged_change_back_is_still_sent() {
        // Components go a -> b -> a: the client may hold b, so "a" must be re-sent.
        let mut t = Tracked::new(2, 0, 0, 0, 0);
        let a = state(0, 0);
        let acked = send(&mut t, &a, 0);
        t.on_acked(acked);
        send(&mut t, &state(0, 1), 1);
        let plan = t.plan(&a, 2, 2, 3);
        assert_eq!(
            plan,
            Some(Plan::Update {
                pos_unchanged: true,
                delta_from: Some((0, a.pos)),
                components: true
            })
        );
    }

    #[test]
    fn delta_needs_the_baseline_within_the_client_history() {
        let mut t = Tracked::new(2, 0, 0, 0, 0);
        let acked = send(&mut t, &state(0, 0), 0);
        t.on_acked(acked);
        for seq in 1..=DELTA_RECORDS_MAX - 1 {
            send(&mut t, &state(seq as i32, 0), seq);
        }
        let next = DELTA_RECORDS_MAX;
        let Some(Plan::Update { delta_from, .. }) = t.plan(&state(100, 0), next, next, 0) else {
            panic!("expected an update");
        };
        assert_eq!(delta_from, Some((0, QPos { x: 0, y: 0 })));
        send(&mut t, &state(100, 0), next);
        let Some(Plan::Update { delta_from, .. }) = t.plan(&state(101, 0), next + 1, next + 1, 0)
        else {
            panic!("expected an update");
        };
        assert_eq!(
            delta_from, None,
            "baseline may have left the client's history"
        );
    }

    #[test]
    fn no_delta_against_a_record_older_than_the_newest_spawn() {
        // Two spawns go out; the first is acknowledged: the client may have reset its
        // history when it applied the second, so the position goes absolute.
        let mut t = Tracked::new(2, 0, 0, 0, 0);
        let first = send(&mut t, &state(0, 0), 0);
        send(&mut t, &state(1, 0), 1);
        t.on_acked(first);
        let Some(Plan::Update { delta_from, .. }) = t.plan(&state(2, 0), 2, 2, 3) else {
            panic!("expected an update");
        };
        assert_eq!(delta_from, None);
    }

    #[test]
    fn acks_from_an_earlier_life_are_ignored() {
        let mut t = Tracked::new(2, 0, 0, 0, 0);
        let old = send(&mut t, &state(0, 0), 0);
        t.restart(2, 5, 5);
        t.on_acked(old);
        assert!(t.baseline.is_none());
        assert!(t.client_may_hold);
    }

    #[test]
    fn carried_entities_owe_a_despawn_or_come_back_with_a_spawn() {
        let mut t = Tracked::carried(2, 40);
        assert!(t.despawn_due(0, 3));
        assert!(t.leave(), "the client may hold it: it must be despawned");
        t.restart(2, 41, 7);
        assert!(t.client_may_hold);
        assert_eq!(t.plan(&state(0, 0), 7, 41, 3), Some(Plan::Full));
    }

    #[test]
    fn emptied_components_restart_with_a_spawn() {
        let mut t = Tracked::new(2, 0, 0, 0, 0);
        let acked = send(&mut t, &state(0, 0), 0);
        t.on_acked(acked);
        let empty = ReplicatedState::new(NetId(1), 2, QPos::default(), vec![]);
        assert_eq!(t.plan(&empty, 1, 1, 3), Some(Plan::Full));
        assert!(t.baseline.is_none());
    }
}
