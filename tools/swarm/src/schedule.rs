//! [`InputSchedule`]: the fixed timetable a bot sends inputs on (sans-IO, time passed
//! in).
//!
//! Latency is measured from when an input *should* have been sent, not from when the
//! bot got round to sending it (coordinated omission: a stalled bot would otherwise
//! stop measuring exactly while things are slow). So the schedule hands out *slots*:
//! each slot has an intended time; a bot that wakes late gets every slot it missed in
//! one [`DueSlots`] and sends one input standing for all of them.

use std::time::{Duration, Instant};

/// Most slots one input stands for. A bot further behind than this skips the oldest
/// slots (reported in [`DueSlots::n_skipped`]) so one late wake never records an
/// unbounded number of samples; at 20 Hz this is 12.8 s of stall.
pub const SLOTS_PER_INPUT_MAX: u32 = 256;

/// The slots due at one wake: consecutive intended times starting at
/// `first_intended`, one input period apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueSlots {
    /// Intended send time of the oldest slot kept.
    pub first_intended: Instant,
    /// Slots the next input stands for (1..=[`SLOTS_PER_INPUT_MAX`]).
    pub n_slots: u32,
    /// Older slots given up because the bot was too far behind.
    pub n_skipped: u64,
}

/// A bot's input timetable: one slot every `period` from `start`.
#[derive(Debug, Clone)]
pub struct InputSchedule {
    /// Intended time of the next slot not yet handed out.
    next: Instant,
    period: Duration,
}

impl InputSchedule {
    /// A timetable whose first slot is at `start`.
    pub fn new(start: Instant, period: Duration) -> Self {
        assert!(
            !period.is_zero(),
            "an input schedule needs a positive period"
        );
        Self {
            next: start,
            period,
        }
    }

    /// When the next slot falls due.
    pub fn next_due(&self) -> Instant {
        self.next
    }

    /// The time between slots.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Every slot due at `now` (intended time at or before it), or `None` if the next
    /// slot is still in the future.
    pub fn poll_due(&mut self, now: Instant) -> Option<DueSlots> {
        let behind = now.checked_duration_since(self.next)?;
        let n_due = u64::try_from(behind.as_nanos() / self.period.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let n_slots = n_due.min(u64::from(SLOTS_PER_INPUT_MAX));
        let n_skipped = n_due - n_slots;
        let first_intended = self.next + self.periods(n_skipped);
        self.next = first_intended + self.periods(n_slots);
        Some(DueSlots {
            first_intended,
            n_slots: u32::try_from(n_slots).unwrap_or(SLOTS_PER_INPUT_MAX),
            n_skipped,
        })
    }

    /// `n` periods as a duration, saturating (only reached after centuries of stall).
    fn periods(&self, n: u64) -> Duration {
        let nanos = self.period.as_nanos().saturating_mul(u128::from(n));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn on_time_wakes_get_one_slot_each() {
        let t0 = Instant::now();
        let mut s = InputSchedule::new(t0, 50 * MS);
        assert_eq!(s.poll_due(t0 - MS), None);
        let due = s.poll_due(t0).expect("first slot is due at the start");
        assert_eq!((due.first_intended, due.n_slots, due.n_skipped), (t0, 1, 0));
        assert_eq!(s.next_due(), t0 + 50 * MS);
        assert_eq!(s.poll_due(t0 + 49 * MS), None);
        let due = s.poll_due(t0 + 51 * MS).expect("second slot");
        assert_eq!((due.first_intended, due.n_slots), (t0 + 50 * MS, 1));
    }

    #[test]
    fn a_late_wake_gets_every_missed_slot_from_its_intended_time() {
        let t0 = Instant::now();
        let mut s = InputSchedule::new(t0, 50 * MS);
        // Woken 220 ms late: slots at 0, 50, 100, 150 and 200 ms are all owed.
        let due = s.poll_due(t0 + 220 * MS).expect("due");
        assert_eq!((due.first_intended, due.n_slots, due.n_skipped), (t0, 5, 0));
        // The timetable does not drift: the next slot is still on the 50 ms grid.
        assert_eq!(s.next_due(), t0 + 250 * MS);
    }

    #[test]
    fn a_very_late_wake_skips_the_oldest_slots() {
        let t0 = Instant::now();
        let mut s = InputSchedule::new(t0, 10 * MS);
        let n_due = u64::from(SLOTS_PER_INPUT_MAX) + 4;
        let due = s.poll_due(t0 + 10 * MS * (n_due as u32 - 1)).expect("due");
        assert_eq!(due.n_slots, SLOTS_PER_INPUT_MAX);
        assert_eq!(due.n_skipped, 4);
        assert_eq!(due.first_intended, t0 + 40 * MS);
        assert_eq!(s.next_due(), t0 + 10 * MS * n_due as u32);
    }
}
