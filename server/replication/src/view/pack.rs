//! Packs encoded records into snapshot datagrams without exceeding the datagram size
//! or the client's byte budget for the tick.
//!
//! Each datagram is a [`SnapshotHeader`] followed by records, as `Snapshot::decode`
//! expects (records run to the end of the datagram; there is no count). Sequence
//! numbers are taken only when a datagram is started, so a tick that sends nothing
//! leaves no gap.

use super::log::SentLog;
use zonemesh_shared::codec::Writer;
use zonemesh_shared::datagram::SnapshotHeader;

/// Most datagrams one client gets per tick. Keeps a tick's snapshots well inside the
/// acknowledgement log ([`super::log::LOG_SEQS`]) whatever the configured budget.
pub(crate) const DATAGRAMS_PER_TICK_MAX: usize = 16;

/// Smallest possible record (a one-byte id and the flags byte).
const RECORD_BYTES_MIN: usize = 2;

/// Where a record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Into the datagram with this sequence number.
    Placed(u64),
    /// Larger than an empty datagram can hold: can never be sent at this size.
    Oversized,
    /// Would exceed the tick's byte budget (or datagram count): try next tick.
    OverBudget,
}

/// Builds one tick's datagrams for one client.
#[derive(Debug)]
pub(crate) struct Packer<'o> {
    out: &'o mut Vec<Vec<u8>>,
    tick: u64,
    input_ack: u32,
    /// Largest datagram, header included.
    mtu: usize,
    header_len: usize,
    budget_left: usize,
    /// The datagram being filled and its sequence number.
    current: Option<(u64, Vec<u8>)>,
    /// Sequence number of the next datagram started.
    next_seq: u64,
    /// Datagrams handed to `out`, or being filled.
    n_datagrams: usize,
    /// Bytes of the datagrams handed out.
    bytes: usize,
}

impl<'o> Packer<'o> {
    /// A packer appending to `out`, numbering datagrams from `next_seq`.
    pub(crate) fn new(
        out: &'o mut Vec<Vec<u8>>,
        tick: u64,
        input_ack: u32,
        mtu: usize,
        budget: usize,
        next_seq: u64,
    ) -> Self {
        let mut w = Writer::with_capacity(32);
        header(0, tick, input_ack).encode(&mut w);
        Self {
            out,
            tick,
            input_ack,
            mtu,
            header_len: w.len(),
            budget_left: budget,
            current: None,
            next_seq,
            n_datagrams: 0,
            bytes: 0,
        }
    }

    /// Bytes the tick's budget still allows.
    pub(crate) fn budget_left(&self) -> usize {
        self.budget_left
    }

    /// True when not even the smallest record could be placed any more.
    pub(crate) fn exhausted(&self) -> bool {
        let room_new = self.n_datagrams < DATAGRAMS_PER_TICK_MAX
            && self.header_len + RECORD_BYTES_MIN <= self.budget_left.min(self.mtu);
        let room_current = self.current.is_some() && self.budget_left >= RECORD_BYTES_MIN;
        !room_new && !room_current
    }

    /// The verdict `place` would surely reach for a record of at least `len_min`
    /// bytes, or `None` when it might be placed. Lets the sender skip encoding records
    /// that cannot fit; a record ruled out this way while it is in fact larger than a
    /// datagram counts as over budget (it is then found oversized on a later tick).
    pub(crate) fn rules_out(&self, len_min: usize) -> Option<Placement> {
        if self.exhausted() {
            return Some(Placement::OverBudget);
        }
        if self.header_len + len_min > self.mtu {
            return Some(Placement::Oversized);
        }
        if len_min > self.budget_left {
            return Some(Placement::OverBudget);
        }
        if let Some((_, buf)) = &self.current
            && buf.len() + len_min <= self.mtu
        {
            return None;
        }
        let can_start = self.n_datagrams < DATAGRAMS_PER_TICK_MAX
            && self.header_len + len_min <= self.budget_left;
        (!can_start).then_some(Placement::OverBudget)
    }

    /// Places one record: what `encode(seq, w)` writes, then `tail`. `encode` must
    /// write the record's start as it reads in snapshot `seq` into `w` (clearing it
    /// first); it may be called twice, since a delta's `baseline_back` depends on the
    /// datagram the record ends up in.
    pub(crate) fn place(
        &mut self,
        log: &mut SentLog,
        rec: &mut Writer,
        tail: &[u8],
        mut encode: impl FnMut(u64, &mut Writer),
    ) -> Placement {
        if let Some((seq, buf)) = &mut self.current {
            encode(*seq, rec);
            let len = rec.len() + tail.len();
            // A later sequence number never makes a record shorter, so these verdicts
            // hold for a new datagram too.
            if self.header_len + len > self.mtu {
                return Placement::Oversized;
            }
            if len > self.budget_left {
                return Placement::OverBudget;
            }
            if buf.len() + len <= self.mtu {
                buf.extend_from_slice(rec.as_slice());
                buf.extend_from_slice(tail);
                self.budget_left -= len;
                return Placement::Placed(*seq);
            }
        }
        let seq = self.next_seq;
        encode(seq, rec);
        let need = self.header_len + rec.len() + tail.len();
        if need > self.mtu {
            return Placement::Oversized;
        }
        if need > self.budget_left || !self.start(log) {
            return Placement::OverBudget;
        }
        self.append_new(rec, tail);
        Placement::Placed(seq)
    }

    /// Sends an empty snapshot (header only) if the budget and datagram size allow.
    pub(crate) fn heartbeat(&mut self, log: &mut SentLog) -> bool {
        self.start(log)
    }

    /// Hands out the datagram being filled; returns (datagrams, bytes) of the tick.
    pub(crate) fn finish(mut self) -> (usize, usize) {
        self.flush();
        (self.n_datagrams, self.bytes)
    }

    /// Starts a datagram with the next sequence number, if a header fits the budget,
    /// the datagram size and the per-tick datagram count.
    fn start(&mut self, log: &mut SentLog) -> bool {
        let fits = self.header_len <= self.budget_left.min(self.mtu)
            && self.n_datagrams < DATAGRAMS_PER_TICK_MAX;
        if !fits {
            return false;
        }
        self.flush();
        let seq = self.next_seq;
        let mut w = Writer::with_capacity(self.mtu);
        header(seq, self.tick, self.input_ack).encode(&mut w);
        self.current = Some((seq, w.into_vec()));
        self.next_seq += 1;
        self.n_datagrams += 1;
        self.budget_left -= self.header_len;
        log.open(seq, self.tick);
        true
    }

    fn append_new(&mut self, rec: &Writer, tail: &[u8]) {
        if let Some((_, buf)) = &mut self.current {
            buf.extend_from_slice(rec.as_slice());
            buf.extend_from_slice(tail);
            self.budget_left -= rec.len() + tail.len();
        }
    }

    fn flush(&mut self) {
        if let Some((_, buf)) = self.current.take() {
            self.bytes += buf.len();
            self.out.push(buf);
        }
    }

    /// Sequence number the next datagram will get.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

fn header(seq: u64, tick: u64, input_ack: u32) -> SnapshotHeader {
    SnapshotHeader {
        // Wire sequence numbers are the low 32 bits and wrap.
        seq: seq as u32,
        tick,
        input_ack,
    }
}
