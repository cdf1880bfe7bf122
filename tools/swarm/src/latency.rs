//! Sans-IO latency trackers of one session: [`InputTracker`] (input-to-visible
//! latency, resolved by the server's input acknowledgements) and [`JitterTracker`]
//! (snapshot inter-arrival jitter).
//!
//! An input is *visible* once a snapshot arrives whose input acknowledgement
//! (`SnapshotHeader::input_ack`, surfaced as `ClientStats::last_input_ack`: the newest
//! input sequence the server had applied in the tick the snapshot describes) is at or
//! past the input's sequence number. The server applies the newest input it has, so an
//! acknowledgement of a later input also covers earlier ones.

use crate::schedule::DueSlots;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Inputs awaiting acknowledgement per session. At 20 Hz this is 51 s of silence; when
/// full, the oldest input is given up and reported (see [`InputTracker::handle_sent`]).
pub const PENDING_INPUTS_MAX: usize = 1024;

/// Half the `u32` space: serial-number arithmetic for wrapping sequence numbers.
const SEQ_HALF: u32 = 1 << 31;

/// True when `a` is at or after `b` in wrapping sequence order.
fn seq_at_or_after(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) < SEQ_HALF
}

/// One sent input and the schedule slots it stands for.
#[derive(Debug, Clone, Copy)]
struct Pending {
    seq: u32,
    first_intended: Instant,
    n_slots: u32,
}

/// Maps input sequence numbers to their intended send times and turns
/// acknowledgements into latency samples.
///
/// Driving contract: call [`handle_sent`](Self::handle_sent) with every input's
/// sequence number (rising, as the SDK numbers them) and the slots it stands for, and
/// [`handle_ack`](Self::handle_ack) with the acknowledgement after every snapshot. A
/// new session numbers from 1 again: use a new tracker.
#[derive(Debug)]
pub struct InputTracker {
    /// Oldest first; sequence numbers strictly rising.
    pending: VecDeque<Pending>,
    capacity: usize,
    period: Duration,
}

impl InputTracker {
    /// A tracker for inputs whose slots are `period` apart, holding at most `capacity`
    /// unacknowledged inputs.
    pub fn new(period: Duration, capacity: usize) -> Self {
        assert!(capacity > 0, "the pending-input bound must be positive");
        Self {
            pending: VecDeque::with_capacity(capacity.min(64)),
            capacity,
            period,
        }
    }

    /// Records input `seq`, sent for `due`. Returns the schedule slots given up to stay
    /// within the bound (the oldest pending input's, when full): those inputs were
    /// never acknowledged and get no latency sample.
    pub fn handle_sent(&mut self, seq: u32, due: &DueSlots) -> u32 {
        if let Some(last) = self.pending.back() {
            assert!(
                seq != last.seq && seq_at_or_after(seq, last.seq),
                "input sequence numbers must rise: {seq} after {}",
                last.seq
            );
        }
        let mut n_evicted = 0;
        if self.pending.len() == self.capacity
            && let Some(oldest) = self.pending.pop_front()
        {
            n_evicted = oldest.n_slots;
        }
        self.pending.push_back(Pending {
            seq,
            first_intended: due.first_intended,
            n_slots: due.n_slots,
        });
        n_evicted
    }

    /// Resolves every input at or before `input_ack`, calling `record` with one
    /// latency per slot (from the slot's intended time to `now`). Returns how many
    /// inputs were resolved.
    pub fn handle_ack(
        &mut self,
        input_ack: u32,
        now: Instant,
        mut record: impl FnMut(Duration),
    ) -> usize {
        // 0 means "nothing applied yet"; the SDK numbers inputs from 1.
        if input_ack == 0 {
            return 0;
        }
        let mut n_resolved = 0;
        while let Some(p) = self.pending.front().copied() {
            if !seq_at_or_after(input_ack, p.seq) {
                break;
            }
            self.pending.pop_front();
            n_resolved += 1;
            for i in 0..p.n_slots {
                let intended = p.first_intended + self.period * i;
                record(now.saturating_duration_since(intended));
            }
        }
        n_resolved
    }

    /// Inputs not yet acknowledged.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when no input awaits acknowledgement.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Snapshot inter-arrival jitter, corrected for the server's clock: for two snapshots
/// of ticks `a < b` arriving at `ra` and `rb`, the sample is
/// `|(rb - ra) - (b - a) / tick_hz|` (RFC 3550's transit-time difference, with the
/// tick number as the sender timestamp). Skipped ticks therefore cost nothing; only
/// delivery that is irregular relative to the simulation counts.
#[derive(Debug)]
pub struct JitterTracker {
    tick_interval: Duration,
    /// Tick and arrival time of the newest snapshot seen.
    last: Option<(u64, Instant)>,
}

impl JitterTracker {
    /// A tracker for a server ticking at `tick_hz` (0 is treated as 1).
    pub fn new(tick_hz: u16) -> Self {
        Self {
            tick_interval: Duration::from_secs(1) / u32::from(tick_hz.max(1)),
            last: None,
        }
    }

    /// Notes that the newest snapshot is of `tick`, seen at `now`; returns a jitter
    /// sample when the tick is newer than the last one seen.
    pub fn handle_snapshot(&mut self, tick: u64, now: Instant) -> Option<Duration> {
        let sample = match self.last {
            Some((last_tick, _)) if tick <= last_tick => return None,
            Some((last_tick, last_at)) => {
                let ticks = u32::try_from(tick - last_tick).unwrap_or(u32::MAX);
                let expected = self.tick_interval.saturating_mul(ticks);
                let actual = now.saturating_duration_since(last_at);
                Some(actual.abs_diff(expected))
            }
            None => None,
        };
        self.last = Some((tick, now));
        sample
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn due(first_intended: Instant, n_slots: u32) -> DueSlots {
        DueSlots {
            first_intended,
            n_slots,
            n_skipped: 0,
        }
    }

    fn ack(t: &mut InputTracker, input_ack: u32, now: Instant) -> Vec<Duration> {
        let mut samples = Vec::new();
        t.handle_ack(input_ack, now, |d| samples.push(d));
        samples
    }

    #[test]
    fn latency_runs_from_the_intended_time_to_the_acknowledging_snapshot() {
        let t0 = Instant::now();
        let mut t = InputTracker::new(50 * MS, 8);
        assert_eq!(t.handle_sent(1, &due(t0, 1)), 0);
        assert_eq!(t.handle_sent(2, &due(t0 + 50 * MS, 1)), 0);
        assert!(
            ack(&mut t, 0, t0 + 60 * MS).is_empty(),
            "0 acknowledges nothing"
        );
        assert_eq!(ack(&mut t, 1, t0 + 70 * MS), vec![70 * MS]);
        assert_eq!(t.len(), 1);
        assert!(
            ack(&mut t, 1, t0 + 90 * MS).is_empty(),
            "a repeat changes nothing"
        );
        assert_eq!(ack(&mut t, 2, t0 + 120 * MS), vec![70 * MS]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_later_acknowledgement_resolves_every_earlier_input() {
        let t0 = Instant::now();
        let mut t = InputTracker::new(50 * MS, 8);
        for seq in 1..=3 {
            t.handle_sent(seq, &due(t0 + 50 * MS * (seq - 1), 1));
        }
        assert_eq!(
            ack(&mut t, 3, t0 + 150 * MS),
            vec![150 * MS, 100 * MS, 50 * MS]
        );
    }

    #[test]
    fn a_late_input_counts_every_slot_it_stood_for() {
        // The bot stalled: slots at 0, 50 and 100 ms went out together at 100 ms. A
        // stall must show as three slow samples, not one fast one.
        let t0 = Instant::now();
        let mut t = InputTracker::new(50 * MS, 8);
        t.handle_sent(1, &due(t0, 3));
        assert_eq!(
            ack(&mut t, 1, t0 + 130 * MS),
            vec![130 * MS, 80 * MS, 30 * MS]
        );
    }

    #[test]
    fn when_full_the_oldest_input_is_given_up() {
        let t0 = Instant::now();
        let mut t = InputTracker::new(50 * MS, 2);
        t.handle_sent(1, &due(t0, 2));
        t.handle_sent(2, &due(t0 + 100 * MS, 1));
        assert_eq!(t.handle_sent(3, &due(t0 + 150 * MS, 1)), 2);
        assert_eq!(t.len(), 2);
        assert_eq!(ack(&mut t, 3, t0 + 200 * MS), vec![100 * MS, 50 * MS]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t0 = Instant::now();
        let mut t = InputTracker::new(50 * MS, 8);
        t.handle_sent(u32::MAX, &due(t0, 1));
        t.handle_sent(1, &due(t0 + 50 * MS, 1));
        assert_eq!(ack(&mut t, u32::MAX, t0 + 60 * MS), vec![60 * MS]);
        assert_eq!(ack(&mut t, 1, t0 + 70 * MS), vec![20 * MS]);
    }

    #[test]
    fn falling_sequence_numbers_break_the_contract() {
        // The forbidden case: the SDK numbers inputs in rising order, so a falling one
        // means the bot fed the tracker wrongly and must not be silently accepted.
        let t0 = Instant::now();
        let result = std::panic::catch_unwind(|| {
            let mut t = InputTracker::new(50 * MS, 8);
            t.handle_sent(5, &due(t0, 1));
            t.handle_sent(4, &due(t0, 1));
        });
        assert!(result.is_err());
    }

    #[test]
    fn jitter_compares_arrival_gaps_with_tick_gaps() {
        let t0 = Instant::now();
        let mut j = JitterTracker::new(20);
        assert_eq!(j.handle_snapshot(10, t0), None, "first snapshot has no gap");
        assert_eq!(j.handle_snapshot(11, t0 + 50 * MS), Some(Duration::ZERO));
        assert_eq!(j.handle_snapshot(11, t0 + 60 * MS), None, "same tick again");
        // Two ticks later (100 ms of simulation) but 130 ms of wall time.
        assert_eq!(j.handle_snapshot(13, t0 + 180 * MS), Some(30 * MS));
        // Early arrival counts as much as late.
        assert_eq!(j.handle_snapshot(14, t0 + 210 * MS), Some(20 * MS));
    }
}
