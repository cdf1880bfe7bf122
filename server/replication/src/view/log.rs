//! The log of records sent in the last [`LOG_SEQS`] snapshots, so acknowledgements can
//! be turned into per-entity baselines. Older snapshots are forgotten: an
//! acknowledgement that late is treated as a loss (their entities are re-sent).

use super::entity::Sent;
use zonemesh_shared::datagram::Ack;
use zonemesh_shared::ids::NetId;
use zonemesh_shared::quant::QPos;

/// Snapshots remembered. Acknowledgements cover 33 sequence numbers back from the
/// client's newest; 64 leaves room for several datagrams per tick in flight.
pub(crate) const LOG_SEQS: usize = 64;

/// One record as logged for acknowledgement (32 bytes: a moving scene logs one per
/// entity per tick, kept for [`LOG_SEQS`] snapshots).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoggedRecord {
    pub(crate) id: NetId,
    /// For an update, the state it left the client in; unused for a despawn.
    pub(crate) pos: QPos,
    pub(crate) hash: u64,
    pub(crate) ordinal: u32,
    pub(crate) despawn: bool,
}

impl LoggedRecord {
    /// A despawn of `id`.
    pub(crate) fn despawn(id: NetId) -> Self {
        Self {
            id,
            pos: QPos::default(),
            hash: 0,
            ordinal: 0,
            despawn: true,
        }
    }

    /// An update of `id` leaving the client at `pos` with components `hash`.
    pub(crate) fn update(id: NetId, pos: QPos, hash: u64, ordinal: u32) -> Self {
        Self {
            id,
            pos,
            hash,
            ordinal,
            despawn: false,
        }
    }
}

/// One snapshot's records.
#[derive(Debug, Default)]
struct Slot {
    seq: u64,
    tick: u64,
    /// False when empty or already acknowledged (each is processed once).
    pending: bool,
    records: Vec<LoggedRecord>,
}

/// Ring of the last [`LOG_SEQS`] snapshots, indexed by sequence number.
#[derive(Debug)]
pub(crate) struct SentLog {
    slots: Vec<Slot>,
}

impl Default for SentLog {
    fn default() -> Self {
        Self {
            slots: (0..LOG_SEQS).map(|_| Slot::default()).collect(),
        }
    }
}

impl SentLog {
    /// Starts logging snapshot `seq`, forgetting the one [`LOG_SEQS`] before it.
    pub(crate) fn open(&mut self, seq: u64, tick: u64) {
        let slot = &mut self.slots[slot_of(seq)];
        slot.seq = seq;
        slot.tick = tick;
        slot.pending = true;
        slot.records.clear();
    }

    /// Logs a record sent in snapshot `seq` (which must be the latest opened).
    pub(crate) fn push(&mut self, seq: u64, record: LoggedRecord) {
        let slot = &mut self.slots[slot_of(seq)];
        debug_assert_eq!(slot.seq, seq, "records go into the snapshot being built");
        slot.records.push(record);
    }

    /// Calls `f` with every logged record of every snapshot `ack` covers that was not
    /// acknowledged before, with the record's sequence number and tick.
    pub(crate) fn acknowledge(&mut self, ack: Ack, mut f: impl FnMut(&LoggedRecord, Sent)) {
        if !ack.any {
            return;
        }
        for slot in &mut self.slots {
            if !slot.pending || !ack.covers(slot.seq as u32) {
                continue;
            }
            slot.pending = false;
            for r in slot.records.drain(..) {
                let sent = Sent {
                    seq: slot.seq,
                    tick: slot.tick,
                    pos: r.pos,
                    hash: r.hash,
                    ordinal: r.ordinal,
                };
                f(&r, sent);
            }
        }
    }
}

fn slot_of(seq: u64) -> usize {
    (seq % LOG_SEQS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> LoggedRecord {
        LoggedRecord::despawn(NetId(id))
    }

    #[test]
    fn logged_records_stay_small() {
        assert!(size_of::<LoggedRecord>() <= 32);
    }

    fn acked_ids(log: &mut SentLog, ack: Ack) -> Vec<(u64, u64)> {
        let mut seen = Vec::new();
        log.acknowledge(ack, |r, s| seen.push((r.id.0, s.seq)));
        seen.sort_unstable();
        seen
    }

    #[test]
    fn acknowledges_each_snapshot_once_across_the_wrap() {
        let mut log = SentLog::default();
        let first = u64::from(u32::MAX) - 1;
        for seq in first..first + 4 {
            log.open(seq, 7);
            log.push(seq, record(seq));
        }
        let mut ack = Ack::default();
        ack.record(first as u32);
        ack.record((first + 2) as u32); // wire seq 0 after the wrap
        let expect = vec![(first, first), (first + 2, first + 2)];
        assert_eq!(acked_ids(&mut log, ack), expect);
        assert!(acked_ids(&mut log, ack).is_empty(), "already processed");
    }

    #[test]
    fn forgets_snapshots_beyond_the_window_and_ignores_unknown_seqs() {
        let mut log = SentLog::default();
        log.open(0, 0);
        log.push(0, record(1));
        for seq in 1..=LOG_SEQS as u64 {
            log.open(seq, 0);
        }
        let mut ack = Ack::default();
        ack.record(0);
        assert!(acked_ids(&mut log, ack).is_empty());
        let mut unknown = Ack::default();
        unknown.record(123_456);
        assert!(acked_ids(&mut log, unknown).is_empty());
        assert!(acked_ids(&mut log, Ack::default()).is_empty());
    }
}
