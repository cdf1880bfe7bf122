//! The node lease: how long a node may accept inputs for its zones without hearing from
//! the store.
//!
//! The store grants a run a lease of `duration` counted from when the store received
//! the renewal. The node counts it from when it *sent* the renewal, which is earlier,
//! minus a drift margin, so the node's own deadline always passes before the store's.
//! The store lets another node activate a zone only once the holder's lease has run out
//! by the store's clock; by then the holder has stopped accepting inputs by its own
//! clock. Only clock *rates* matter (bounded by the margin), never clock offsets.
//!
//! Bound, stated for the docs: a node cut off from the store stops accepting inputs at
//! most `duration - margin` after the last renewal it sent that the store answered, and
//! its zones can be activated elsewhere once `duration` has passed since the store
//! granted that renewal.

use std::collections::VecDeque;

use crate::Millis;
use crate::msg::LeaseGrant;

/// Lease timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Length of a granted lease (the store's setting; the node uses what the store
    /// says, this is only the default the store is configured with).
    pub duration_ms: u64,
    /// How often the node renews; a third of the duration survives two lost renewals.
    pub renew_every_ms: u64,
    /// Subtracted from the lease on the node's side to cover clock-rate drift between
    /// node and store (10% is far above real drift, which is parts per million).
    pub drift_margin_ms: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            duration_ms: 6_000,
            renew_every_ms: 2_000,
            drift_margin_ms: 600,
        }
    }
}

/// Renewals in flight remembered at once; an answer to an older one is ignored (a
/// later renewal will be answered too).
const MAX_IN_FLIGHT: usize = 4;

/// What the lease core says after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseChange {
    /// Renewed; nothing else changed.
    Renewed,
    /// Renewed after a lapse: zones activated under an older generation must go.
    Lapsed {
        /// The new generation.
        generation: u64,
    },
    /// A newer run of this node id exists: this run must stop serving.
    Superseded,
    /// The answer matched no renewal in flight.
    Ignored,
}

/// One node run's lease, sans-IO.
#[derive(Debug, Clone)]
pub struct Lease {
    config: LeaseConfig,
    /// Renewals sent and not answered: `(request, sent_at)`.
    in_flight: VecDeque<(u64, Millis)>,
    next_request: u64,
    next_renewal: Millis,
    valid_until: Option<Millis>,
    generation: Option<u64>,
    superseded: bool,
}

impl Lease {
    /// A lease not yet granted; the first renewal is due at once.
    pub fn new(config: LeaseConfig) -> Self {
        Self {
            config,
            in_flight: VecDeque::new(),
            next_request: 1,
            next_renewal: Millis(0),
            valid_until: None,
            generation: None,
            superseded: false,
        }
    }

    /// A renewal to send now, if one is due (returns its request number).
    pub fn poll_renewal(&mut self, now: Millis) -> Option<u64> {
        if self.superseded || now < self.next_renewal {
            return None;
        }
        let request = self.next_request;
        self.next_request += 1;
        if self.in_flight.len() == MAX_IN_FLIGHT {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back((request, now));
        self.next_renewal = now + self.config.renew_every_ms;
        Some(request)
    }

    /// When the next renewal is due.
    pub fn next_renewal(&self) -> Option<Millis> {
        (!self.superseded).then_some(self.next_renewal)
    }

    /// Folds in the store's answer to renewal `request`.
    pub fn handle_reply(&mut self, request: u64, grant: Option<LeaseGrant>) -> LeaseChange {
        let Some(pos) = self.in_flight.iter().position(|&(r, _)| r == request) else {
            return LeaseChange::Ignored;
        };
        let (_, sent_at) = self.in_flight[pos];
        // Answers to older renewals are useless once this one is in.
        self.in_flight.drain(..=pos);
        let Some(grant) = grant else {
            self.superseded = true;
            self.valid_until = None;
            return LeaseChange::Superseded;
        };
        let usable = grant
            .duration_ms
            .saturating_sub(self.config.drift_margin_ms);
        let until = sent_at + usable;
        self.valid_until = Some(self.valid_until.map_or(until, |v| v.max(until)));
        let lapsed = self.generation.is_some_and(|g| g != grant.generation);
        self.generation = Some(grant.generation);
        if lapsed {
            LeaseChange::Lapsed {
                generation: grant.generation,
            }
        } else {
            LeaseChange::Renewed
        }
    }

    /// Whether the node may accept inputs at `now`.
    pub fn is_valid(&self, now: Millis) -> bool {
        self.valid_until.is_some_and(|until| now < until)
    }

    /// The generation of the last grant.
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// Whether a newer run of this node exists.
    pub fn is_superseded(&self) -> bool {
        self.superseded
    }

    /// When the lease runs out on the node's side.
    pub fn valid_until(&self) -> Option<Millis> {
        self.valid_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(generation: u64) -> Option<LeaseGrant> {
        Some(LeaseGrant {
            duration_ms: 6_000,
            generation,
        })
    }

    #[test]
    fn the_lease_counts_from_sending_minus_the_margin() {
        let mut lease = Lease::new(LeaseConfig::default());
        let request = lease.poll_renewal(Millis(100)).expect("due at once");
        assert!(!lease.is_valid(Millis(100)));
        assert_eq!(lease.handle_reply(request, grant(0)), LeaseChange::Renewed);
        assert!(lease.is_valid(Millis(5_499)));
        assert!(!lease.is_valid(Millis(5_500)));
    }

    #[test]
    fn renewals_are_paced_and_old_answers_ignored() {
        let mut lease = Lease::new(LeaseConfig::default());
        let first = lease.poll_renewal(Millis(0)).expect("due");
        assert_eq!(lease.poll_renewal(Millis(1_999)), None);
        let second = lease.poll_renewal(Millis(2_000)).expect("due");
        assert_eq!(lease.handle_reply(second, grant(0)), LeaseChange::Renewed);
        assert_eq!(lease.handle_reply(first, grant(0)), LeaseChange::Ignored);
        assert_eq!(lease.valid_until(), Some(Millis(7_400)));
    }

    #[test]
    fn a_new_generation_reports_a_lapse() {
        let mut lease = Lease::new(LeaseConfig::default());
        let a = lease.poll_renewal(Millis(0)).expect("due");
        lease.handle_reply(a, grant(0));
        let b = lease.poll_renewal(Millis(9_000)).expect("due");
        assert_eq!(
            lease.handle_reply(b, grant(1)),
            LeaseChange::Lapsed { generation: 1 }
        );
    }

    #[test]
    fn a_superseded_run_stops_for_good() {
        let mut lease = Lease::new(LeaseConfig::default());
        let a = lease.poll_renewal(Millis(0)).expect("due");
        assert_eq!(lease.handle_reply(a, None), LeaseChange::Superseded);
        assert!(!lease.is_valid(Millis(1)));
        assert_eq!(lease.poll_renewal(Millis(10_000)), None);
    }
}
