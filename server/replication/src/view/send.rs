//! Sends this tick's candidates in priority order within the budget, logging each
//! record for acknowledgement, then a heartbeat if the client would otherwise hear
//! nothing for too long.

use super::entity::{Plan, Tracked};
use super::log::{LoggedRecord, SentLog};
use super::order::Rounds;
use super::pack::{Packer, Placement};
use super::plan::{Candidate, candidate_index};
use super::record::{
    components_sendable, sends_components, write_components, write_despawn, write_update_head,
};
use super::tracked_set::TrackedSet;
use super::{BuildStats, ClientView, Scratch, SnapshotFrame};
use zonemesh_shared::codec::Writer;

impl ClientView {
    /// Packs the candidates into datagrams appended to `out`, updating `stats`; returns
    /// the sequence number the next datagram will get.
    pub(super) fn pack(
        &mut self,
        frame: &SnapshotFrame<'_>,
        mtu: usize,
        out: &mut Vec<Vec<u8>>,
        stats: &mut BuildStats,
    ) -> u64 {
        let heartbeat_due = self.last_datagram_tick.is_none_or(|t| {
            frame.tick.saturating_sub(t) >= u64::from(self.config.heartbeat_ticks.max(1))
        });
        let budget = self.config.budget_bytes_per_tick;
        let mut packer = Packer::new(out, frame.tick, frame.input_ack, mtu, budget, self.next_seq);
        let Self {
            entities,
            log,
            scratch,
            ..
        } = self;
        let Scratch {
            candidates,
            order,
            len_min_sum,
            record,
            section,
            ..
        } = scratch;
        let mut sender = Sender {
            packer: &mut packer,
            log,
            record,
            section,
            frame,
        };
        let mut rounds = Rounds::new(order, *len_min_sum);
        while let Some(round) = rounds.next(candidates, sender.packer, |c, verdict| {
            tally(verdict, c, stats);
        }) {
            for &key in round.iter() {
                sender.offer(&candidates[candidate_index(key)], entities, stats);
            }
        }
        if stats.records == 0 && heartbeat_due {
            packer.heartbeat(log);
        }
        let next_seq = packer.next_seq();
        (stats.datagrams, stats.bytes) = packer.finish();
        next_seq
    }
}

/// The parts of a view one record needs on its way out.
struct Sender<'a, 'o> {
    packer: &'a mut Packer<'o>,
    log: &'a mut SentLog,
    record: &'a mut Writer,
    section: &'a mut Writer,
    frame: &'a SnapshotFrame<'a>,
}

impl Sender<'_, '_> {
    /// Sends candidate `c` unless it can no longer fit, counting the outcome.
    fn offer(&mut self, c: &Candidate, entities: &mut TrackedSet, stats: &mut BuildStats) {
        if let Some(verdict) = self.packer.rules_out(c.len_min) {
            tally(verdict, c, stats);
            return;
        }
        if let Some(t) = entities.at_mut(c.slot, c.id) {
            self.send(c, t, stats);
        }
    }

    /// Tries to send candidate `c` for tracked entity `t`, counting the outcome.
    fn send(&mut self, c: &Candidate, t: &mut Tracked, stats: &mut BuildStats) {
        let placement = match c.plan {
            None => self.despawn(c, t),
            Some(plan) => self.update(c, plan, t),
        };
        tally(placement, c, stats);
    }

    fn despawn(&mut self, c: &Candidate, t: &mut Tracked) -> Placement {
        let placement = self.packer.place(self.log, self.record, &[], |_, w| {
            write_despawn(c.id, w);
            debug_assert_eq!(w.len(), c.len_min, "despawn length");
        });
        if let Placement::Placed(seq) = placement {
            t.on_despawn_sent(self.frame.tick);
            self.log.push(seq, LoggedRecord::despawn(c.id));
        }
        placement
    }

    fn update(&mut self, c: &Candidate, plan: Plan, t: &mut Tracked) -> Placement {
        let Some(s) = self.frame.states.get(c.state_index as usize) else {
            return Placement::Oversized;
        };
        let tail = if !sends_components(plan) {
            &[][..]
        } else if let Some(kept) = t.section.bytes(s.components_hash) {
            kept
        } else {
            if !components_sendable(&s.components) {
                return Placement::Oversized;
            }
            self.section.truncate(0);
            write_components(&s.components, self.section);
            t.section.store(s.components_hash, self.section.as_slice());
            self.section.as_slice()
        };
        let with_section = !tail.is_empty();
        let placement = self.packer.place(self.log, self.record, tail, |seq, w| {
            write_update_head(s, plan, seq, with_section, w);
            // Skipping records by `len_min` is exact only if it never overestimates.
            debug_assert!(w.len() + tail.len() >= c.len_min, "len_min too large");
        });
        if let Placement::Placed(seq) = placement {
            let spawn = matches!(plan, Plan::Full);
            let ordinal = t.on_sent(seq, self.frame.tick, spawn, s.pos, s.components_hash);
            let logged = LoggedRecord::update(c.id, s.pos, s.components_hash, ordinal);
            self.log.push(seq, logged);
        }
        placement
    }
}

/// Counts where candidate `c` went.
fn tally(placement: Placement, c: &Candidate, stats: &mut BuildStats) {
    match placement {
        Placement::Placed(_) => {
            stats.records += 1;
            match c.plan {
                None => {}
                Some(Plan::Full) => stats.full_records += 1,
                Some(Plan::Update { .. }) => stats.delta_records += 1,
            }
        }
        Placement::Oversized => stats.oversized += 1,
        Placement::OverBudget => stats.deferred += 1,
    }
}
