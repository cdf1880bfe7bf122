//! Versions of a player's saved records, so the store can refuse a stale write (see
//! `Store` in `zonemesh-store`): a record replaces the stored one only if its version
//! is strictly higher.
//!
//! A version is `(generation << 32) | sequence`. A session takes the generation after
//! the one of the record it loaded when it was admitted, and numbers the records it
//! produces for its player from sequence 0. So one session's saves increase, and a
//! session admitted after another session's save was visible saves above all of that
//! session's records: once the newer session has saved, the older one's late writes
//! are refused. The counter travels with the player between zones.

use zonemesh_store::limits::MAX_STORED_U64;

/// Bits of a version below the generation.
const SEQUENCE_BITS: u32 = 32;
/// The highest generation whose versions still fit the store (`i64::MAX`).
pub const MAX_GENERATION: u64 = MAX_STORED_U64 >> SEQUENCE_BITS;

/// The versions one session gives its player's records, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordVersions {
    /// The version the next record gets.
    next: u64,
}

impl RecordVersions {
    /// The versions of a session whose player's newest record had `loaded` (`None`
    /// for a new player): the next generation, from sequence 0.
    ///
    /// Past [`MAX_GENERATION`] (2^31 sessions of one player) the generation stops
    /// growing; that session's saves are then refused rather than wrapping around.
    pub fn after(loaded: Option<u64>) -> Self {
        let generation = loaded.map_or(1, |version| (version >> SEQUENCE_BITS) + 1);
        Self {
            next: generation.min(MAX_GENERATION) << SEQUENCE_BITS,
        }
    }

    /// Versions continuing from `next` (a player arriving from another node carries
    /// the counter of the session it continues).
    pub fn continuing_from(next: u64) -> Self {
        Self {
            next: next.min(MAX_STORED_U64),
        }
    }

    /// The version the next record will get.
    pub fn peek_next(&self) -> u64 {
        self.next
    }

    /// The session's generation.
    pub fn generation(&self) -> u64 {
        self.next >> SEQUENCE_BITS
    }

    /// The version of the next record, advancing the sequence. After 2^32 records
    /// (centuries of checkpoints) the sequence carries into the generation, which
    /// keeps this session's versions increasing; at the store's maximum it stays put.
    pub fn next_version(&mut self) -> u64 {
        let version = self.next;
        self.next = self.next.saturating_add(1).min(MAX_STORED_U64);
        version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_player_starts_at_generation_one() {
        let mut versions = RecordVersions::after(None);
        assert_eq!(versions.generation(), 1);
        assert_eq!(versions.next_version(), 1 << 32);
        assert_eq!(versions.next_version(), (1 << 32) | 1);
    }

    #[test]
    fn a_session_starts_above_every_record_of_the_loaded_generation() {
        for loaded in [0, 7, (3 << 32), (3 << 32) | u64::from(u32::MAX)] {
            let mut versions = RecordVersions::after(Some(loaded));
            let first = versions.next_version();
            assert!(first > loaded, "{loaded:#x}");
            assert_eq!(first >> 32, (loaded >> 32) + 1);
            assert_eq!(first & u64::from(u32::MAX), 0, "sequence 0");
            // Every record of the loaded generation is below this session's first.
            assert!(first > (loaded | u64::from(u32::MAX)));
        }
    }

    #[test]
    fn saves_of_one_session_increase() {
        let mut versions = RecordVersions::after(Some(5 << 32));
        let saves: Vec<u64> = (0..100).map(|_| versions.next_version()).collect();
        assert!(saves.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn the_sequence_carries_into_the_generation() {
        let mut versions = RecordVersions {
            next: (2 << 32) | u64::from(u32::MAX),
        };
        let last = versions.next_version();
        assert!(versions.next_version() > last);
        assert_eq!(versions.generation(), 3);
    }

    #[test]
    fn versions_never_exceed_what_the_store_keeps() {
        let mut top = RecordVersions::after(Some(MAX_STORED_U64));
        assert_eq!(top.generation(), MAX_GENERATION);
        for _ in 0..3 {
            assert!(top.next_version() <= MAX_STORED_U64);
        }
        let mut end = RecordVersions {
            next: MAX_STORED_U64,
        };
        assert_eq!(end.next_version(), MAX_STORED_U64);
        assert_eq!(end.next_version(), MAX_STORED_U64);
    }
}
