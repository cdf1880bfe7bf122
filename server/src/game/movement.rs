//! Built-in movement: integrate velocities every tick. Max-speed enforcement happens
//! where inputs enter the zone (see `zone::inputs`), so no system can forget it.

use super::components::{Position, Velocity, ZoneInfo};
use bevy_ecs::prelude::*;
use zonemesh_shared::quant::Vec2;

/// Moves every entity by its velocity over one tick.
pub(crate) fn integrate_velocity(
    info: Res<'_, ZoneInfo>,
    mut query: Query<'_, '_, (&mut Position, &Velocity)>,
) {
    let dt = info.dt;
    for (mut pos, vel) in &mut query {
        if vel.0 != Vec2::ZERO {
            pos.0 = info.world_bounds.clamp(pos.0 + vel.0 * dt);
        }
    }
}
