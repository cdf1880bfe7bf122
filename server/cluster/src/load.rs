//! The load a node publishes to the others: what least-loaded placement (and later the
//! rebalancer) decides from. Each node sends its [`NodeLoad`] to every live member
//! once a second ([`crate::msg::NodeMsg::Load`]); a directory owner places a new zone
//! on the member with the fewest [`NodeLoad::units`], counting the zones it placed
//! there since that member's last report, so a burst of placements between two
//! reports still spreads.

use zonemesh_shared::codec::{DecodeError, Reader, Writer};
use zonemesh_shared::ids::ZoneId;

/// How often a node publishes its load.
pub const LOAD_INTERVAL_MS: u64 = 1_000;
/// Zones whose cost a report lists: the costliest ones (the rebalancer moves those;
/// the rest count in the node's total only).
pub const ZONE_COSTS_MAX: usize = 32;
/// A report older than this is not used (the member stopped publishing: its load is
/// unknown and counts as zero plus what was placed there since).
pub const LOAD_MAX_AGE_MS: u64 = 5 * LOAD_INTERVAL_MS;

/// One node's load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLoad {
    /// Zones in memory.
    pub zones: u32,
    /// Players connected to them.
    pub players: u32,
    /// Entities in them (players, NPCs, items).
    pub entities: u32,
    /// The 99th percentile of its zones' tick times, microseconds (the slowest zone's).
    pub tick_p99_us: u32,
    /// Tick time of all its zones per second of wall time, microseconds (a core's
    /// worth is 1,000,000), over the last report interval.
    pub tick_us_per_s: u32,
    /// The costliest zones (at most [`ZONE_COSTS_MAX`]), each with its tick time per
    /// second, costliest first.
    pub zone_costs: Vec<(ZoneId, u32)>,
    /// The node is draining (moving its zones away to be stopped): no new zone is
    /// placed on it.
    pub draining: bool,
}

impl NodeLoad {
    /// The figure placement compares: one unit per player, four per zone (a zone costs
    /// a tick and memory even when empty), one per 64 entities, and one per 250 µs of
    /// p99 tick time (a zone ticking 1 ms adds what four zones do), so a node whose
    /// zones tick slowly looks busier than its head count says.
    pub fn units(&self) -> u64 {
        u64::from(self.players)
            + 4 * u64::from(self.zones)
            + u64::from(self.entities) / 64
            + u64::from(self.tick_p99_us) / 250
    }

    /// The wire form (varints).
    pub fn encode(&self, w: &mut Writer) {
        let fields = [
            self.zones,
            self.players,
            self.entities,
            self.tick_p99_us,
            self.tick_us_per_s,
        ];
        for v in fields {
            w.varint(u64::from(v));
        }
        let costs = &self.zone_costs[..self.zone_costs.len().min(ZONE_COSTS_MAX)];
        w.varint(costs.len() as u64);
        for (zone, cost) in costs {
            w.u32(zone.0);
            w.varint(u64::from(*cost));
        }
        w.u8(u8::from(self.draining));
    }

    /// Reads the wire form.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let zones = r.varint_u32("zones")?;
        let players = r.varint_u32("players")?;
        let entities = r.varint_u32("entities")?;
        let tick_p99_us = r.varint_u32("tick_p99_us")?;
        let tick_us_per_s = r.varint_u32("tick_us_per_s")?;
        let n = r.count("zone costs", ZONE_COSTS_MAX)?;
        let zone_costs = (0..n)
            .map(|_| Ok((ZoneId(r.u32()?), r.varint_u32("zone cost")?)))
            .collect::<Result<_, DecodeError>>()?;
        let draining = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::InvalidValue("draining flag")),
        };
        Ok(Self {
            zones,
            players,
            entities,
            tick_p99_us,
            tick_us_per_s,
            zone_costs,
            draining,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_weigh_players_zones_entities_and_tick_time() {
        let idle = NodeLoad::default();
        assert_eq!(idle.units(), 0);
        let busy = NodeLoad {
            zones: 2,
            players: 10,
            entities: 640,
            tick_p99_us: 1_000,
            ..NodeLoad::default()
        };
        assert_eq!(busy.units(), 10 + 8 + 10 + 4);
    }

    #[test]
    fn round_trips_and_refuses_truncation() {
        let load = NodeLoad {
            zones: 3,
            players: u32::MAX,
            entities: 7,
            tick_p99_us: 2_500,
            tick_us_per_s: 40_000,
            zone_costs: vec![(ZoneId(4), 30_000), (ZoneId(1), 10_000)],
            draining: true,
        };
        let mut w = Writer::with_capacity(16);
        load.encode(&mut w);
        let bytes = w.into_vec();
        assert_eq!(NodeLoad::decode(&mut Reader::new(&bytes)), Ok(load));
        for cut in 0..bytes.len() {
            assert!(NodeLoad::decode(&mut Reader::new(&bytes[..cut])).is_err());
        }
    }
}
