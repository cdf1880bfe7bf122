//! The `/status` document of a running server: its [`ServerStatus`] in the shape of
//! [`NodeStatusReport`] (pure conversion, no IO).

use crate::net::ServerStatus;
use crate::zone::ZoneStatus;
use zonemesh_shared::status::{NodeStatusReport, ZoneStatusReport};

/// The status document for `status`.
pub fn node_report(status: &ServerStatus) -> NodeStatusReport {
    let mut zones: Vec<ZoneStatusReport> = status.zones.iter().map(zone_report).collect();
    zones.sort_by_key(|z| (z.y, z.x));
    NodeStatusReport {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_s: status.uptime.as_secs_f64(),
        tick_hz: status.tick_hz,
        workers: status.workers,
        sessions: status.sessions,
        busy_answers: status.busy_answers,
        inbox_input_drops: status.inbox_input_drops,
        ticks: status.ticks.clone(),
        zones,
        cluster: status.cluster.clone(),
    }
}

fn zone_report(zone: &ZoneStatus) -> ZoneStatusReport {
    let ms = |q: f64| {
        if zone.tick_time_us.is_empty() {
            0.0
        } else {
            zone.tick_time_us.value_at_quantile(q) as f64 / 1000.0
        }
    };
    ZoneStatusReport {
        x: zone.zone.x(),
        y: zone.zone.y(),
        ticks: zone.ticks,
        missed_ticks: zone.missed_ticks,
        tick_p50_ms: ms(0.5),
        tick_p99_ms: ms(0.99),
        players: zone.players,
        entities: zone.entities,
        inputs_applied: zone.inputs_applied,
        inputs_superseded: zone.inputs_superseded,
    }
}
