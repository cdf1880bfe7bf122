//! Bot behaviours ([`Behavior`]) and the sans-IO [`Steering`] that turns one into the
//! velocity of each input, with time and the bot's own position passed in and a seeded
//! RNG, so every path is reproducible.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use zonemesh_client::Vec2;

/// Walking speed in world units per second: just under the demo's maximum of 8, so the
/// server never has to clamp (and count) a bot's input.
pub const SPEED: f32 = 7.5;
/// Slowest wandering speed.
const WANDER_SPEED_MIN: f32 = 2.0;
/// A wandering bot changes direction after a random time in this range, in seconds.
const WANDER_TURN_S: std::ops::Range<f32> = 1.0..3.0;
/// A wandering bot further than this from where it first appeared heads back, so bots
/// stay spread over the world instead of piling up at its edges.
const WANDER_RADIUS: f32 = 48.0;
/// A crossing bot walks straight this long before turning back: 225 units, most of a
/// default 256-unit zone, so legs cross zone borders.
const CROSS_LEG: Duration = Duration::from_secs(30);
/// How often a moving bot checks that it is getting anywhere.
const STUCK_CHECK: Duration = Duration::from_secs(1);
/// Moving less than this in [`STUCK_CHECK`] while walking means a wall (the world's
/// edge): turn.
const STUCK_DISTANCE: f32 = 0.5;

/// What the bots do once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    /// Stand still, sending zero-velocity inputs on schedule.
    Idle,
    /// Random walk around the spawn point, turning every 1-3 s.
    Wander,
    /// Long straight walks back and forth, crossing zone borders.
    Cross,
    /// Wander, and leave and rejoin every churn period.
    Churn,
}

/// A bot's seeded decisions: the velocity of each input, the phase of its input
/// schedule, and (when churning) how long each session lasts.
#[derive(Debug)]
pub struct Steering {
    behavior: Behavior,
    rng: StdRng,
    velocity: Vec2,
    /// When the current direction expires; `None` before the first input.
    next_turn: Option<Instant>,
    /// Where the bot was first seen; wandering is tethered to it.
    home: Option<Vec2>,
    /// Last progress checkpoint: when and where.
    checkpoint: Option<(Instant, Vec2)>,
}

impl Steering {
    /// Steering for `behavior`, seeded (one seed per bot gives each its own path).
    pub fn new(behavior: Behavior, seed: u64) -> Self {
        Self {
            behavior,
            rng: StdRng::seed_from_u64(seed),
            velocity: Vec2::ZERO,
            next_turn: None,
            home: None,
            checkpoint: None,
        }
    }

    /// The velocity to send at `now`, given where the replica shows the bot (if it has
    /// seen itself yet).
    pub fn velocity(&mut self, now: Instant, own: Option<Vec2>) -> Vec2 {
        if self.behavior == Behavior::Idle {
            return Vec2::ZERO;
        }
        if self.home.is_none() {
            self.home = own;
        }
        let stuck = self.is_stuck(now, own);
        if stuck || self.next_turn.is_none_or(|t| now >= t) {
            self.turn(now, own, stuck);
        }
        self.velocity
    }

    /// Where in the input period the bot's schedule starts. Without a random phase every
    /// bot would send right after the tick that welcomed it, in lockstep with the
    /// server, and every input would wait exactly one tick: real clients are not
    /// phase-locked to the server.
    pub fn input_phase(&mut self, period: Duration) -> Duration {
        period.mul_f64(self.rng.random_range(0.0..1.0))
    }

    /// How long the next session lasts when churning: `period` ±25 %, so bots that
    /// joined together do not all leave together.
    pub fn session_length(&mut self, period: Duration) -> Duration {
        period.mul_f64(self.rng.random_range(0.75..1.25))
    }

    /// True when the bot is walking but has not moved for [`STUCK_CHECK`].
    fn is_stuck(&mut self, now: Instant, own: Option<Vec2>) -> bool {
        let Some(pos) = own else { return false };
        let Some((at, was)) = self.checkpoint else {
            self.checkpoint = Some((now, pos));
            return false;
        };
        if now.saturating_duration_since(at) < STUCK_CHECK {
            return false;
        }
        self.checkpoint = Some((now, pos));
        self.velocity != Vec2::ZERO && pos.distance(was) < STUCK_DISTANCE
    }

    fn turn(&mut self, now: Instant, own: Option<Vec2>, stuck: bool) {
        let (velocity, lasts) = match self.behavior {
            Behavior::Idle => (Vec2::ZERO, Duration::MAX),
            Behavior::Cross => (self.cross_leg(), CROSS_LEG),
            Behavior::Wander | Behavior::Churn => self.wander_leg(own, stuck),
        };
        self.velocity = velocity;
        self.next_turn = Some(now.checked_add(lasts).unwrap_or(now + CROSS_LEG));
    }

    /// The first leg goes along a random axis; every later one turns back.
    fn cross_leg(&mut self) -> Vec2 {
        if self.velocity != Vec2::ZERO {
            return self.velocity * -1.0;
        }
        match self.rng.random_range(0..4) {
            0 => Vec2::new(SPEED, 0.0),
            1 => Vec2::new(-SPEED, 0.0),
            2 => Vec2::new(0.0, SPEED),
            _ => Vec2::new(0.0, -SPEED),
        }
    }

    /// A random direction and speed, or straight home when too far from it (and not
    /// stuck trying).
    fn wander_leg(&mut self, own: Option<Vec2>, stuck: bool) -> (Vec2, Duration) {
        let lasts = Duration::from_secs_f32(self.rng.random_range(WANDER_TURN_S));
        let speed = self.rng.random_range(WANDER_SPEED_MIN..SPEED);
        if let (Some(pos), Some(home)) = (own, self.home) {
            let to_home = home - pos;
            let far = to_home.length();
            if far > WANDER_RADIUS && !stuck {
                return (to_home * (speed / far), lasts);
            }
        }
        let angle = self.rng.random_range(0.0..std::f32::consts::TAU);
        (Vec2::new(angle.cos(), angle.sin()) * speed, lasts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn idle_never_moves() {
        let t0 = Instant::now();
        let mut s = Steering::new(Behavior::Idle, 1);
        for i in 0..100 {
            let v = s.velocity(t0 + 50 * MS * i, Some(Vec2::new(1.0, 1.0)));
            assert_eq!(v, Vec2::ZERO);
        }
    }

    #[test]
    fn no_behaviour_exceeds_the_server_speed_limit() {
        let t0 = Instant::now();
        for behavior in [Behavior::Wander, Behavior::Cross, Behavior::Churn] {
            let mut s = Steering::new(behavior, 7);
            let mut pos = Vec2::new(100.0, 100.0);
            for i in 0..2000 {
                let v = s.velocity(t0 + 50 * MS * i, Some(pos));
                assert!(v.is_finite() && v.length() <= 8.0, "{behavior:?}: {v:?}");
                pos = pos + v * 0.05;
            }
        }
    }

    #[test]
    fn crossing_walks_straight_then_turns_back() {
        let t0 = Instant::now();
        let mut s = Steering::new(Behavior::Cross, 3);
        let mut pos = Vec2::new(10.0, 10.0);
        let first = s.velocity(t0, Some(pos));
        assert!((first.length() - SPEED).abs() < 1e-3);
        let mut t = t0;
        while t < t0 + CROSS_LEG - 100 * MS {
            t += 50 * MS;
            pos = pos + first * 0.05;
            assert_eq!(s.velocity(t, Some(pos)), first, "no turn within a leg");
        }
        let back = s.velocity(t0 + CROSS_LEG, Some(pos));
        assert_eq!(back, first * -1.0);
    }

    #[test]
    fn a_bot_against_a_wall_turns() {
        let t0 = Instant::now();
        let mut s = Steering::new(Behavior::Cross, 3);
        let wall = Vec2::new(0.0, 0.0);
        let first = s.velocity(t0, Some(wall));
        // The server keeps it at the edge: the position never changes.
        let v = s.velocity(t0 + STUCK_CHECK, Some(wall));
        assert_eq!(v, first * -1.0);
    }

    #[test]
    fn wandering_heads_home_when_far() {
        let t0 = Instant::now();
        let mut s = Steering::new(Behavior::Wander, 9);
        let home = Vec2::new(100.0, 100.0);
        s.velocity(t0, Some(home));
        let far = Vec2::new(100.0 + 2.0 * WANDER_RADIUS, 100.0);
        let v = s.velocity(t0 + Duration::from_secs(4), Some(far));
        assert!(v.x < 0.0 && v.y.abs() < 1e-3, "{v:?} points home");
    }

    #[test]
    fn the_same_seed_walks_the_same_path() {
        let t0 = Instant::now();
        let mut a = Steering::new(Behavior::Wander, 42);
        let mut b = Steering::new(Behavior::Wander, 42);
        for i in 0..200 {
            let t = t0 + 50 * MS * i;
            assert_eq!(a.velocity(t, None), b.velocity(t, None));
        }
        let period = Duration::from_secs(10);
        assert!(a.input_phase(period) < period);
        let length = a.session_length(period);
        assert!(length >= period.mul_f64(0.75) && length <= period.mul_f64(1.25));
    }
}
