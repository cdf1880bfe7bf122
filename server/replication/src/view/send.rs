//! Sends this tick's candidates in priority order within the budget, logging each
//! record for acknowledgement, then a heartbeat if the client would otherwise hear
//! nothing for too long.

use super::entity::{Plan, Tracked};
use super::log::{LoggedRecord, SentLog};
use super::pack::{Packer, Placement};
use super::plan::{Candidate, candidate_index};
use super::record::{RecordEncoder, components_sendable};
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
            encoder,
            record,
            ..
        } = scratch;
        let mut sender = Sender {
            packer: &mut packer,
            log,
            encoder,
            record,
            frame,
        };
        for &key in order.iter() {
            let c = &candidates[candidate_index(key)];
            if sender.packer.exhausted() {
                stats.deferred += 1;
                continue;
            }
            if let Some(t) = entities.get_mut(&c.id) {
                sender.send(c, t, stats);
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
    encoder: &'a mut RecordEncoder,
    record: &'a mut Writer,
    frame: &'a SnapshotFrame<'a>,
}

impl Sender<'_, '_> {
    /// Tries to send candidate `c` for tracked entity `t`, counting the outcome.
    fn send(&mut self, c: &Candidate, t: &mut Tracked, stats: &mut BuildStats) {
        let placement = match c.plan {
            None => self.despawn(c, t),
            Some(plan) => self.update(c, plan, t),
        };
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

    fn despawn(&mut self, c: &Candidate, t: &mut Tracked) -> Placement {
        let encoder = &mut *self.encoder;
        let placement = self.packer.place(self.log, self.record, |_, w| {
            encoder.despawn(c.id, w);
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
        let with_components = matches!(
            plan,
            Plan::Full
                | Plan::Update {
                    components: true,
                    ..
                }
        );
        if with_components && !components_sendable(&s.components) {
            return Placement::Oversized;
        }
        let encoder = &mut *self.encoder;
        let placement = self.packer.place(self.log, self.record, |seq, w| {
            encoder.update(s, plan, seq, w);
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
