//! The fencing rule, in one pure function both backends call inside their write
//! transactions.
//!
//! A write fenced by `(zone, attempted)` is allowed only when `attempted` is the zone's
//! latest epoch. An older epoch means a newer owner took the zone (`StaleEpoch`); an
//! epoch the store never handed out means a caller bug (`EpochNotGranted`). Rejecting
//! the second case too keeps the invariant simple: only the current owner writes.

use crate::StoreError;

/// Checks a write of `zone` carrying epoch `attempted` against the zone's latest epoch
/// `current` (`None` when the zone was never activated).
pub(crate) fn check(zone: u32, current: Option<u64>, attempted: u64) -> Result<(), StoreError> {
    match current {
        Some(current) if attempted == current => Ok(()),
        Some(current) if attempted < current => Err(StoreError::StaleEpoch {
            zone,
            current,
            attempted,
        }),
        _ => Err(StoreError::EpochNotGranted {
            zone,
            current,
            attempted,
        }),
    }
}

/// The epoch an activation takes: one past the latest, starting at 1.
pub(crate) fn next_epoch(current: Option<u64>) -> Result<u64, StoreError> {
    match current {
        None => Ok(1),
        Some(current) => current
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt(format!("zone epoch {current} cannot grow"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_epoch_may_write() {
        assert!(check(1, Some(3), 3).is_ok());
        assert!(matches!(
            check(1, Some(3), 2),
            Err(StoreError::StaleEpoch {
                zone: 1,
                current: 3,
                attempted: 2
            })
        ));
        assert!(matches!(
            check(1, Some(3), 4),
            Err(StoreError::EpochNotGranted {
                current: Some(3),
                ..
            })
        ));
        assert!(matches!(
            check(1, None, 1),
            Err(StoreError::EpochNotGranted { current: None, .. })
        ));
    }

    #[test]
    fn epochs_start_at_one_and_never_wrap() {
        assert_eq!(next_epoch(None).ok(), Some(1));
        assert_eq!(next_epoch(Some(7)).ok(), Some(8));
        assert!(matches!(
            next_epoch(Some(u64::MAX)),
            Err(StoreError::Corrupt(_))
        ));
    }
}
