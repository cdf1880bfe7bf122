//! Identifiers that cross the wire: zones, replicated entities and players.

use std::fmt;

/// A zone: the unit of ownership, placement and handoff. Grid zones pack their
/// column and row into the id so neighbours can be found without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ZoneId(pub u32);

impl ZoneId {
    /// The grid zone at column `x`, row `y`.
    pub const fn grid(x: u16, y: u16) -> Self {
        Self(((y as u32) << 16) | x as u32)
    }

    /// Column of a grid zone.
    pub const fn x(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// Row of a grid zone.
    pub const fn y(self) -> u16 {
        (self.0 >> 16) as u16
    }
}

impl fmt::Display for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zone({},{})", self.x(), self.y())
    }
}

/// A replicated entity's network identity. Stable for the entity's whole life, including
/// when it moves between zones, so clients never see a player duplicated or renamed.
/// The high 32 bits are the zone that created the entity, the low 32 a counter in that
/// zone, so zones on different nodes allocate ids without coordination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetId(pub u64);

impl NetId {
    /// The `counter`-th id allocated by `zone`.
    pub const fn new(zone: ZoneId, counter: u32) -> Self {
        Self(((zone.0 as u64) << 32) | counter as u64)
    }
}

impl fmt::Display for NetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:x}", self.0)
    }
}

/// Longest accepted player name, in bytes.
pub const PLAYER_NAME_MAX: usize = 32;

/// Checks a player name: 1..=32 bytes of ASCII letters, digits, `-`, `_` or `.`.
pub fn validate_player_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > PLAYER_NAME_MAX {
        return Err("player name must be 1 to 32 bytes");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.chars().all(allowed) {
        return Err("player name may hold only ASCII letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_zone_roundtrips_coordinates() {
        let z = ZoneId::grid(3, 65_000);
        assert_eq!((z.x(), z.y()), (3, 65_000));
    }

    #[test]
    fn net_ids_from_different_zones_differ() {
        assert_ne!(
            NetId::new(ZoneId::grid(0, 0), 1),
            NetId::new(ZoneId::grid(1, 0), 1)
        );
    }

    #[test]
    fn player_names_are_validated() {
        assert!(validate_player_name("alice_01").is_ok());
        assert!(validate_player_name("").is_err());
        assert!(validate_player_name("a b").is_err());
        assert!(validate_player_name(&"x".repeat(33)).is_err());
    }
}
