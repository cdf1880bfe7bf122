//! World-space vectors and their quantised wire form.
//!
//! Positions travel as integers in units of [`POSITION_STEP`] world units, so a delta
//! between two nearby snapshots is a small integer that fits in one or two varint bytes.

use std::ops::{Add, Mul, Sub};

/// Size of one quantisation step in world units (1/16 of a unit, about 6 cm if a unit is
/// a metre): finer than any game renders, coarse enough that deltas stay small.
pub const POSITION_STEP: f32 = 1.0 / 16.0;

/// A 2D vector in world units.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Vec2 {
    /// East-west coordinate.
    pub x: f32,
    /// North-south coordinate.
    pub y: f32,
}

impl Vec2 {
    /// The zero vector.
    pub const ZERO: Self = Self { x: 0.0, y: 0.0 };

    /// A vector from its coordinates.
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }

    /// Euclidean length.
    pub fn length(self) -> f32 {
        self.length_squared().sqrt()
    }

    /// Squared length (no square root, for comparisons).
    pub fn length_squared(self) -> f32 {
        self.x * self.x + self.y * self.y
    }

    /// Distance to `other`.
    pub fn distance(self, other: Self) -> f32 {
        (self - other).length()
    }

    /// This vector shortened to at most `max` long, direction kept.
    pub fn clamp_length(self, max: f32) -> Self {
        let len = self.length();
        if len > max && len > 0.0 {
            self * (max / len)
        } else {
            self
        }
    }

    /// Linear interpolation: `self` at `t = 0`, `other` at `t = 1`.
    pub fn lerp(self, other: Self, t: f32) -> Self {
        self + (other - self) * t
    }

    /// True when both coordinates are finite (not NaN or infinite).
    pub fn is_finite(self) -> bool {
        self.x.is_finite() && self.y.is_finite()
    }
}

impl Add for Vec2 {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self::new(self.x + o.x, self.y + o.y)
    }
}

impl Sub for Vec2 {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self::new(self.x - o.x, self.y - o.y)
    }
}

impl Mul<f32> for Vec2 {
    type Output = Self;
    fn mul(self, k: f32) -> Self {
        Self::new(self.x * k, self.y * k)
    }
}

/// A position quantised to [`POSITION_STEP`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QPos {
    /// Quantised x.
    pub x: i32,
    /// Quantised y.
    pub y: i32,
}

impl QPos {
    /// Rounds a world position to the nearest step (saturating at the i32 range).
    pub fn from_world(v: Vec2) -> Self {
        let q = |c: f32| (c / POSITION_STEP).round() as i32;
        Self {
            x: q(v.x),
            y: q(v.y),
        }
    }

    /// The world position this quantised value stands for.
    pub fn to_world(self) -> Vec2 {
        Vec2::new(self.x as f32 * POSITION_STEP, self.y as f32 * POSITION_STEP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_error_is_at_most_half_a_step() {
        for i in 0..1000 {
            let v = Vec2::new(i as f32 * 0.37 - 100.0, i as f32 * -1.13);
            let back = QPos::from_world(v).to_world();
            assert!((back.x - v.x).abs() <= POSITION_STEP / 2.0 + f32::EPSILON * 200.0);
            assert!((back.y - v.y).abs() <= POSITION_STEP / 2.0 + f32::EPSILON * 200.0);
        }
    }

    #[test]
    fn clamp_length_keeps_direction() {
        let v = Vec2::new(3.0, 4.0).clamp_length(1.0);
        assert!((v.length() - 1.0).abs() < 1e-6);
        assert!((v.x - 0.6).abs() < 1e-6);
    }
}
