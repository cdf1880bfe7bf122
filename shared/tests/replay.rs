//! The replay guard: single use, expiry, capacity and pruning, a clock that steps back,
//! and a model-based property test against a plain list.

use proptest::prelude::*;
use zonemesh_shared::replay::{ReplayError, ReplayGuard};

#[test]
fn a_nonce_is_accepted_once_while_unexpired() {
    let mut g = ReplayGuard::new(4);
    assert_eq!(g.check_and_remember(1, 100, 0), Ok(()));
    assert_eq!(g.check_and_remember(1, 100, 50), Err(ReplayError::Replayed));
    assert_eq!(g.check_and_remember(2, 100, 50), Ok(()));
    assert_eq!(g.len(), 2);
}

#[test]
fn an_expired_token_is_refused_and_not_remembered() {
    let mut g = ReplayGuard::new(4);
    assert_eq!(g.check_and_remember(1, 100, 100), Err(ReplayError::Expired));
    assert_eq!(g.check_and_remember(2, 100, 101), Err(ReplayError::Expired));
    assert!(g.is_empty());
}

#[test]
fn a_full_guard_refuses_new_nonces_but_still_reports_replays() {
    let mut g = ReplayGuard::new(2);
    g.check_and_remember(1, 100, 0).unwrap();
    g.check_and_remember(2, 200, 0).unwrap();
    assert_eq!(
        g.check_and_remember(3, 300, 10),
        Err(ReplayError::Full { capacity: 2 })
    );
    assert_eq!(g.check_and_remember(1, 100, 10), Err(ReplayError::Replayed));
    assert_eq!((g.len(), g.capacity()), (2, 2));
}

#[test]
fn expiry_makes_room_again_soonest_first() {
    let mut g = ReplayGuard::new(2);
    g.check_and_remember(1, 200, 0).unwrap();
    g.check_and_remember(2, 100, 0).unwrap();
    assert_eq!(g.check_and_remember(3, 300, 100), Ok(()));
    assert_eq!(
        g.check_and_remember(1, 200, 150),
        Err(ReplayError::Replayed)
    );
    g.forget_expired(200);
    assert_eq!(g.len(), 1);
    g.forget_expired(300);
    assert!(g.is_empty());
}

#[test]
fn a_clock_stepping_back_cannot_revive_a_forgotten_nonce() {
    let mut g = ReplayGuard::new(4);
    g.check_and_remember(1, 200, 100).unwrap();
    g.forget_expired(250);
    assert!(g.is_empty());
    // The wall clock stepped back to before the token's expiry.
    assert_eq!(g.check_and_remember(1, 200, 150), Err(ReplayError::Expired));
}

#[derive(Debug, Clone)]
struct Op {
    nonce: u64,
    lifetime_ms: u64,
    advance_ms: u64,
}

fn op() -> impl Strategy<Value = Op> {
    (0..8u64, 0..50u64, 0..20u64).prop_map(|(nonce, lifetime_ms, advance_ms)| Op {
        nonce,
        lifetime_ms,
        advance_ms,
    })
}

/// The obvious, unbounded-time reference: remembered `(nonce, expiry)` pairs in a list.
fn model_check(
    live: &mut Vec<(u64, u64)>,
    capacity: usize,
    op: &Op,
    now: u64,
) -> Result<(), ReplayError> {
    live.retain(|&(_, expires)| expires > now);
    let expires = now + op.lifetime_ms;
    if expires <= now {
        return Err(ReplayError::Expired);
    }
    if live.iter().any(|&(n, _)| n == op.nonce) {
        return Err(ReplayError::Replayed);
    }
    if live.len() >= capacity {
        return Err(ReplayError::Full { capacity });
    }
    live.push((op.nonce, expires));
    Ok(())
}

proptest! {
    #[test]
    fn the_guard_behaves_like_a_list_of_live_nonces(
        capacity in 1..6usize,
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let mut g = ReplayGuard::new(capacity);
        let mut live = Vec::new();
        let mut now = 0;
        for op in &ops {
            now += op.advance_ms;
            let expected = model_check(&mut live, capacity, op, now);
            prop_assert_eq!(g.check_and_remember(op.nonce, now + op.lifetime_ms, now), expected);
            prop_assert_eq!(g.len(), live.len());
            prop_assert!(g.len() <= capacity);
        }
    }
}
