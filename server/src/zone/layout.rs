//! Geometry of a grid world: which zone owns a point, a zone's bounds and neighbours.

use crate::game::Rect;
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::quant::Vec2;

/// A square-celled grid of zones starting at the origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorldLayout {
    /// Zones along x.
    pub zones_x: u16,
    /// Zones along y.
    pub zones_y: u16,
    /// Side of one zone, world units.
    pub zone_size: f32,
}

impl WorldLayout {
    /// Checks the layout is usable (at least one zone, positive finite size).
    pub fn validate(&self) -> Result<(), String> {
        if self.zones_x == 0 || self.zones_y == 0 {
            return Err("world must have at least one zone in each direction".into());
        }
        if !(self.zone_size.is_finite() && self.zone_size >= 1.0) {
            return Err(format!(
                "zone size must be a finite number >= 1, got {}",
                self.zone_size
            ));
        }
        Ok(())
    }

    /// Every zone of the grid, row by row.
    pub fn zones(&self) -> impl Iterator<Item = ZoneId> + '_ {
        (0..self.zones_y).flat_map(move |y| (0..self.zones_x).map(move |x| ZoneId::grid(x, y)))
    }

    /// Number of zones.
    pub fn n_zones(&self) -> usize {
        usize::from(self.zones_x) * usize::from(self.zones_y)
    }

    /// True when `zone` is on this grid.
    pub fn contains_zone(&self, zone: ZoneId) -> bool {
        zone.x() < self.zones_x && zone.y() < self.zones_y
    }

    /// The whole world's area.
    pub fn world_bounds(&self) -> Rect {
        Rect {
            min: Vec2::ZERO,
            max: Vec2::new(
                f32::from(self.zones_x) * self.zone_size,
                f32::from(self.zones_y) * self.zone_size,
            ),
        }
    }

    /// The area `zone` owns.
    pub fn bounds(&self, zone: ZoneId) -> Rect {
        let min = Vec2::new(
            f32::from(zone.x()) * self.zone_size,
            f32::from(zone.y()) * self.zone_size,
        );
        Rect {
            min,
            max: min + Vec2::new(self.zone_size, self.zone_size),
        }
    }

    /// The zone owning `p` (points outside the world map to the nearest edge zone).
    pub fn zone_at(&self, p: Vec2) -> ZoneId {
        let cell = |c: f32, n: u16| {
            let i = (c / self.zone_size).floor();
            if i.is_nan() || i < 0.0 {
                0
            } else {
                (i as u32).min(u32::from(n) - 1) as u16
            }
        };
        ZoneId::grid(cell(p.x, self.zones_x), cell(p.y, self.zones_y))
    }

    /// The up to 8 zones touching `zone`, with their direction (-1, 0 or 1 per axis).
    pub fn neighbours(&self, zone: ZoneId) -> Vec<(ZoneId, i8, i8)> {
        let mut out = Vec::with_capacity(8);
        for dy in -1i8..=1 {
            for dx in -1i8..=1 {
                if dx == 0 && dy == 0 {
                    continue;
                }
                let x = i32::from(zone.x()) + i32::from(dx);
                let y = i32::from(zone.y()) + i32::from(dy);
                if (0..i32::from(self.zones_x)).contains(&x)
                    && (0..i32::from(self.zones_y)).contains(&y)
                {
                    out.push((ZoneId::grid(x as u16, y as u16), dx, dy));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: WorldLayout = WorldLayout {
        zones_x: 4,
        zones_y: 3,
        zone_size: 100.0,
    };

    #[test]
    fn zone_at_matches_bounds() {
        for z in L.zones() {
            let b = L.bounds(z);
            assert_eq!(L.zone_at(b.min), z);
            assert_eq!(L.zone_at(b.max - Vec2::new(0.01, 0.01)), z);
        }
        assert_eq!(L.n_zones(), 12);
    }

    #[test]
    fn outside_points_map_to_edge_zones() {
        assert_eq!(L.zone_at(Vec2::new(-5.0, -5.0)), ZoneId::grid(0, 0));
        assert_eq!(L.zone_at(Vec2::new(1e9, 1e9)), ZoneId::grid(3, 2));
        assert_eq!(L.zone_at(Vec2::new(f32::NAN, 50.0)), ZoneId::grid(0, 0));
    }

    #[test]
    fn corner_has_three_neighbours_and_middle_eight() {
        assert_eq!(L.neighbours(ZoneId::grid(0, 0)).len(), 3);
        assert_eq!(L.neighbours(ZoneId::grid(1, 1)).len(), 8);
    }

    #[test]
    fn invalid_layouts_are_refused() {
        assert!(WorldLayout { zones_x: 0, ..L }.validate().is_err());
        assert!(
            WorldLayout {
                zone_size: f32::NAN,
                ..L
            }
            .validate()
            .is_err()
        );
    }
}
