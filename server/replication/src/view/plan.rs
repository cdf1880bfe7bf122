//! Lists this tick's candidate records and orders them by priority.

use super::entity::{Life, Plan};
use super::{ClientView, SnapshotFrame, distance_squared, size};
use zonemesh_shared::ids::NetId;

/// Nearness weight range: staleness counts between 1x (edge of the area of interest)
/// and 2x (at the viewer), so at equal staleness nearer wins, and a far entity waits
/// at most about twice as long as a near one.
const WEIGHT_FAR: u64 = 16;
const WEIGHT_NEAR: u64 = 32;

/// Despawns outrank every update: they are tiny and stop the client showing an entity
/// that is gone.
const DESPAWN_PRIORITY: u32 = u32::MAX;

/// Staleness beyond this many ticks ranks the same (keeps priorities in 32 bits).
const STALENESS_RANKED_MAX: u64 = 1 << 26;

/// One record the view would like to send this tick.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub(crate) id: NetId,
    /// The entity's slot in the view's tracked set (stable for the build).
    pub(crate) slot: u32,
    /// Index of the entity's state in the frame (unused for despawns).
    pub(crate) state_index: u32,
    /// What to send; `None` for a despawn.
    pub(crate) plan: Option<Plan>,
    /// The record's length can be no less (see `size`): the sender skips candidates
    /// that cannot fit without encoding them.
    pub(crate) len_min: usize,
}

impl ClientView {
    /// Fills `scratch.candidates` and `scratch.order`, the candidates' sort keys
    /// (unordered; the sender orders what it can send, see `order`). Ordering packed
    /// `u64` keys (priority above index) rather than the candidates themselves keeps
    /// it cheap.
    pub(super) fn plan(&mut self, frame: &SnapshotFrame<'_>) {
        let (tick, next_seq) = (frame.tick, self.next_seq);
        let resend = self.config.resend_after_ticks;
        let aoi = f64::from(self.config.aoi_radius);
        let (candidates, order) = (&mut self.scratch.candidates, &mut self.scratch.order);
        candidates.clear();
        order.clear();
        let mut len_min_sum = 0;
        for (slot, id, t) in self.entities.iter_mut() {
            if let Life::Leaving { .. } = t.life {
                if t.despawn_due(tick, resend) {
                    let c = Candidate {
                        id,
                        slot,
                        state_index: 0,
                        plan: None,
                        len_min: size::despawn_len(id),
                    };
                    len_min_sum += push(candidates, order, DESPAWN_PRIORITY, c);
                }
                continue;
            }
            let Some(s) = frame.states.get(t.state_index as usize) else {
                continue;
            };
            let Some(plan) = t.plan(s, tick, next_seq, resend) else {
                continue;
            };
            let nearness = nearness(distance_squared(frame.viewer, s.pos), aoi);
            let priority = priority(t.staleness(tick), nearness);
            let known_len = t.section.len(s.components_hash);
            let c = Candidate {
                id,
                slot,
                state_index: t.state_index,
                plan: Some(plan),
                len_min: size::update_len_min(s, plan, next_seq, known_len),
            };
            len_min_sum += push(candidates, order, priority, c);
        }
        self.scratch.len_min_sum = len_min_sum;
    }
}

/// Appends candidate `c` with its sort key; returns its smallest length.
fn push(
    candidates: &mut Vec<Candidate>,
    order: &mut Vec<u64>,
    priority: u32,
    c: Candidate,
) -> usize {
    order.push(sort_key(priority, candidates.len()));
    candidates.push(c);
    c.len_min
}

/// Sort key of candidate `index`: priority in the high half, so a descending sort
/// yields highest priority first.
fn sort_key(priority: u32, index: usize) -> u64 {
    (u64::from(priority) << 32) | index as u64
}

/// Index of the candidate a sort key stands for.
pub(crate) fn candidate_index(key: u64) -> usize {
    (key & u64::from(u32::MAX)) as usize
}

/// 1 at the viewer down to 0 at (or beyond) the edge of the area of interest; 0 when
/// either is not a number.
fn nearness(distance_squared: f64, aoi_radius: f64) -> f64 {
    let ratio = distance_squared.sqrt() / aoi_radius;
    if ratio.is_nan() {
        return 0.0;
    }
    (1.0 - ratio).clamp(0.0, 1.0)
}

/// Priority of an update: staleness (plus one, so fresh changes still rank by
/// nearness) times a weight growing with nearness. Always below [`DESPAWN_PRIORITY`].
pub(crate) fn priority(staleness_ticks: u64, nearness: f64) -> u32 {
    // `nearness` is within 0..=1; adding a half and truncating rounds it.
    let weight = WEIGHT_FAR + ((WEIGHT_NEAR - WEIGHT_FAR) as f64 * nearness + 0.5) as u64;
    let ranked = staleness_ticks.min(STALENESS_RANKED_MAX) + 1;
    // At most 2^26 * 32 = 2^31, below the despawn priority.
    (ranked * weight) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staler_wins_and_nearness_breaks_ties() {
        assert!(priority(5, 0.0) > priority(4, 0.0));
        assert!(priority(3, 0.9) > priority(3, 0.1));
        // Near entities age up to twice as fast.
        assert!(priority(3, 1.0) > priority(6, 0.0));
        assert!(priority(8, 0.0) > priority(3, 1.0));
        assert!(priority(u64::MAX, 1.0) < DESPAWN_PRIORITY);
        assert!(priority(u64::MAX, 1.0) > priority(1000, 1.0));
    }

    #[test]
    fn sort_keys_order_by_priority_then_keep_the_index() {
        let mut keys = [
            sort_key(5, 0),
            sort_key(DESPAWN_PRIORITY, 1),
            sort_key(7, 2),
        ];
        keys.sort_unstable_by(|a, b| b.cmp(a));
        let order: Vec<usize> = keys.iter().map(|&k| candidate_index(k)).collect();
        assert_eq!(order, vec![1, 2, 0]);
    }

    #[test]
    fn nearness_is_bounded() {
        assert_eq!(nearness(0.0, 64.0), 1.0);
        assert_eq!(nearness(128.0 * 128.0, 64.0), 0.0);
        assert_eq!(nearness(f64::NAN, 64.0), 0.0);
        assert_eq!(nearness(0.0, 0.0), 0.0);
        assert!((nearness(32.0 * 32.0, 64.0) - 0.5).abs() < 1e-9);
    }
}
