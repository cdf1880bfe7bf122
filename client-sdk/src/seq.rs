//! Serial-number arithmetic for wrapping `u32` sequence numbers (RFC 1982 style).
//!
//! Snapshot and input sequence numbers wrap, so "newer" means "less than half the
//! number space ahead". Everything that orders sequence numbers goes through here so
//! wraparound is handled in exactly one place.

/// Half the `u32` space: distances at or beyond it count as "behind".
const HALF: u32 = 1 << 31;

/// True when `a` is strictly newer than `b`.
pub(crate) fn newer(a: u32, b: u32) -> bool {
    let ahead = a.wrapping_sub(b);
    ahead != 0 && ahead < HALF
}

/// How many sequence numbers `older` lies behind `newer_seq` (0 if it is not behind).
pub(crate) fn behind(newer_seq: u32, older: u32) -> u32 {
    if newer(newer_seq, older) {
        newer_seq.wrapping_sub(older)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_handles_wraparound() {
        assert!(newer(1, 0));
        assert!(!newer(0, 1));
        assert!(!newer(5, 5));
        assert!(newer(0, u32::MAX));
        assert!(newer(3, u32::MAX - 3));
        assert!(!newer(u32::MAX, 0));
    }

    #[test]
    fn behind_counts_only_older_numbers() {
        assert_eq!(behind(10, 7), 3);
        assert_eq!(behind(2, u32::MAX), 3);
        assert_eq!(behind(7, 10), 0);
        assert_eq!(behind(7, 7), 0);
    }
}
