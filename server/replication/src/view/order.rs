//! Hands out this tick's candidates highest priority first, sorting only as many as
//! can still be sent. Most candidates of a busy view are deferred (the byte budget
//! takes a few hundred of a thousand), so a full sort would mostly order records that
//! never go out.
//!
//! Each round drops the candidates that can no longer fit (a record ruled out by the
//! packer stays ruled out for the rest of the tick: the budget only shrinks), then
//! selects the best of the rest, about as many as the remaining budget could hold, and
//! sorts just those. The records placed are exactly those of sending every candidate
//! in priority order.

use super::pack::{Packer, Placement};
use super::plan::{Candidate, candidate_index};
use std::cmp::Reverse;
use std::mem;

/// Fewest candidates a round orders, so that a poor length estimate costs few rounds.
const ROUND_MIN: usize = 16;

/// The sort keys not handed out yet.
pub(crate) struct Rounds<'k> {
    rest: &'k mut [u64],
    /// Sum of all candidates' smallest lengths, until the first round: when all of
    /// them might fit, that round takes them all without filtering.
    len_min_sum: Option<usize>,
}

impl<'k> Rounds<'k> {
    /// Rounds over `keys`, whose candidates' smallest lengths add up to `len_min_sum`.
    pub(crate) fn new(keys: &'k mut [u64], len_min_sum: usize) -> Self {
        Self {
            rest: keys,
            len_min_sum: Some(len_min_sum),
        }
    }

    /// The next round of sort keys, highest priority first, or `None` when no
    /// candidate can be placed any more. Candidates dropped because they cannot fit
    /// are passed to `dropped` with the packer's verdict.
    pub(crate) fn next(
        &mut self,
        candidates: &[Candidate],
        packer: &Packer<'_>,
        mut dropped: impl FnMut(&Candidate, Placement),
    ) -> Option<&'k mut [u64]> {
        let keys = mem::take(&mut self.rest);
        let (keys, len_sum) = match self.len_min_sum.take() {
            // Filtering only saves work later; the sender checks each record anyway.
            Some(sum) if sum <= packer.budget_left() => (keys, sum),
            _ => {
                let (n_kept, sum) = keep_placeable(keys, candidates, packer, &mut dropped);
                (&mut keys[..n_kept], sum)
            }
        };
        if keys.is_empty() {
            return None;
        }
        let n_round = round_len(keys.len(), packer.budget_left(), len_sum);
        if n_round < keys.len() {
            keys.select_nth_unstable_by_key(n_round - 1, |&k| Reverse(k));
        }
        let (round, later) = keys.split_at_mut(n_round);
        round.sort_unstable_by_key(|&k| Reverse(k));
        self.rest = later;
        Some(round)
    }
}

/// Moves the keys of candidates that might still be placed to the front of `keys`
/// (order not kept); returns how many, and the sum of their smallest lengths.
fn keep_placeable(
    keys: &mut [u64],
    candidates: &[Candidate],
    packer: &Packer<'_>,
    dropped: &mut impl FnMut(&Candidate, Placement),
) -> (usize, usize) {
    let (mut n_kept, mut len_sum) = (0, 0);
    for i in 0..keys.len() {
        let c = &candidates[candidate_index(keys[i])];
        if let Some(verdict) = packer.rules_out(c.len_min) {
            dropped(c, verdict);
            continue;
        }
        len_sum += c.len_min;
        keys.swap(n_kept, i);
        n_kept += 1;
    }
    (n_kept, len_sum)
}

/// Candidates to order this round: about as many as `budget_left` holds at their
/// mean smallest length (lengths are lower bounds, so this tends to be generous).
fn round_len(n_keys: usize, budget_left: usize, len_sum: usize) -> usize {
    let len_mean = (len_sum / n_keys).max(1);
    (budget_left / len_mean + ROUND_MIN).min(n_keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_generous_but_bounded() {
        assert_eq!(round_len(1000, 4000, 1000 * 20), 216);
        assert_eq!(round_len(10, 4000, 10 * 20), 10);
        assert_eq!(round_len(1000, 0, 0), ROUND_MIN);
    }
}
