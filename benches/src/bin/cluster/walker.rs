//! The crossing benchmark's walker: an SDK client that walks east and west along a row
//! of zones, turning at two fixed x coordinates, and notes when each snapshot was
//! applied, when each crossing was seen (the client's zone changed) and, for a move to
//! another node, when the client was first seen moving (the old node's `Redirect`
//! read). The gaps are computed afterwards from those instants ([`longest_gap`]).

use std::time::{Duration, Instant};
use zonemesh_client::Client;
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::quant::Vec2;

/// The demo's player speed limit (`zonemesh_server::demo::PLAYER_MAX_SPEED`), world
/// units per second: the walker asks for exactly that.
const SPEED: f32 = zonemesh_server::demo::PLAYER_MAX_SPEED;
/// How often an input is sent (the velocity the walker wants now).
const INPUT_EVERY: Duration = Duration::from_millis(50);
/// How often the client is pumped and looked at besides when a snapshot arrives: the
/// resolution of "first seen moving" (a `Redirect` wakes the client but applies no
/// snapshot, so only this looks at it).
const OBSERVE_EVERY: Duration = Duration::from_millis(5);
/// Most snapshot instants kept (a 20 Hz zone for ten hours); the walk stops there.
const SNAPSHOTS_MAX: usize = 1 << 20;
/// Most crossings kept; the walk stops there.
const CROSSINGS_MAX: usize = 1 << 16;

/// Where the walker turns and how much it walks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    /// It turns east at or west of this x.
    pub(crate) west_x: f32,
    /// It turns west at or east of this x.
    pub(crate) east_x: f32,
    /// The column of zones whose western border is a border between nodes: a crossing
    /// between columns `cross_column - 1` and `cross_column` is a move to another
    /// node, any other is not.
    pub(crate) cross_column: u16,
    /// Crossings of each kind to see before stopping.
    pub(crate) per_kind: usize,
    /// Longest the walk may take.
    pub(crate) limit: Duration,
}

/// One crossing as the walker saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Crossing {
    /// When the client's zone was first seen changed.
    pub(crate) at: Instant,
    pub(crate) from: ZoneId,
    pub(crate) to: ZoneId,
    /// Whether this border is between two nodes (by the placement).
    pub(crate) between_nodes: bool,
    /// Whether the client moved to another node on the way (`Client::moves` grew).
    pub(crate) moved: bool,
    /// When the client was first seen moving (the old node's `Redirect` read), for a
    /// move; `None` if the whole move fell between two looks.
    pub(crate) redirect_seen: Option<Instant>,
    /// quinn's RTT estimate when the crossing was seen.
    pub(crate) rtt: Duration,
}

impl Crossing {
    /// True when the client did what the placement says this border does.
    pub(crate) fn as_expected(&self) -> bool {
        self.moved == self.between_nodes
    }
}

/// What one walk recorded.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// When each pump that applied snapshots returned, in order.
    pub(crate) snapshots: Vec<Instant>,
    pub(crate) crossings: Vec<Crossing>,
    /// Why the walk stopped early, if it did.
    pub(crate) failure: Option<String>,
}

impl Walk {
    fn count(&self, between_nodes: bool) -> usize {
        self.crossings
            .iter()
            .filter(|c| c.as_expected() && c.between_nodes == between_nodes)
            .count()
    }

    fn enough(&self, per_kind: usize) -> bool {
        self.count(false) >= per_kind && self.count(true) >= per_kind
    }

    fn full(&self) -> bool {
        self.snapshots.len() >= SNAPSHOTS_MAX || self.crossings.len() >= CROSSINGS_MAX
    }
}

/// What the walker last saw of its client.
struct Seen {
    snapshots: u64,
    zone: ZoneId,
    moves: u32,
    redirect_seen: Option<Instant>,
    east: bool,
}

/// Walks `client` along `route` until it saw `route.per_kind` crossings of each
/// kind, its session ended, or `route.limit` passed. Closes the client.
pub(crate) async fn walk(mut client: Client, route: Route) -> Walk {
    let mut walk = Walk::default();
    let start_x = own_x(&client).unwrap_or(route.west_x);
    let mut seen = Seen {
        snapshots: client.stats().snapshots,
        zone: client.zone(),
        moves: client.moves(),
        redirect_seen: None,
        east: start_x < route.east_x,
    };
    let deadline = tokio::time::Instant::now() + route.limit;
    let mut inputs = tokio::time::interval(INPUT_EVERY);
    let mut observe = tokio::time::interval(OBSERVE_EVERY);
    observe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !walk.enough(route.per_kind) && !walk.full() {
        tokio::select! {
            done = client.wait_snapshot() => {
                if let Err(e) = done {
                    walk.failure = Some(format!("the session ended: {e}"));
                    break;
                }
            }
            _ = observe.tick() => client.update(),
            _ = inputs.tick() => {
                let velocity = Vec2::new(if seen.east { SPEED } else { -SPEED }, 0.0);
                if let Err(e) = client.send_input(velocity, 0) {
                    walk.failure = Some(format!("input refused: {e}"));
                    break;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                walk.failure = Some(format!("not enough crossings within {:?}", route.limit));
                break;
            }
        }
        look(&client, &route, &mut seen, &mut walk, Instant::now());
    }
    client.close().await;
    walk
}

/// Notes what changed since the last look.
fn look(client: &Client, route: &Route, seen: &mut Seen, walk: &mut Walk, now: Instant) {
    let snapshots = client.stats().snapshots;
    if snapshots != seen.snapshots {
        seen.snapshots = snapshots;
        walk.snapshots.push(now);
    }
    if client.is_moving() && seen.redirect_seen.is_none() {
        seen.redirect_seen = Some(now);
    }
    let zone = client.zone();
    if zone != seen.zone {
        let moved = client.moves() != seen.moves;
        let between_nodes = crosses_column(seen.zone, zone, route.cross_column);
        walk.crossings.push(Crossing {
            at: now,
            from: seen.zone,
            to: zone,
            between_nodes,
            moved,
            redirect_seen: seen.redirect_seen.take().filter(|_| moved),
            rtt: client.rtt(),
        });
        seen.zone = zone;
        seen.moves = client.moves();
    }
    if let Some(x) = own_x(client) {
        if x <= route.west_x {
            seen.east = true;
        } else if x >= route.east_x {
            seen.east = false;
        }
    }
}

/// True when a step from zone `a` to zone `b` crosses the western border of column
/// `column`.
fn crosses_column(a: ZoneId, b: ZoneId, column: u16) -> bool {
    a.x().min(b.x()) + 1 == column && a.x().max(b.x()) == column
}

/// The player's own x, once a snapshot showed it.
pub(crate) fn own_x(client: &Client) -> Option<f32> {
    client.replica().get(client.player()).map(|e| e.position.x)
}

/// The longest interval between consecutive instants of `times` (sorted) that
/// overlaps `[from, to]`: `(a, b)` with `b >= from` and `a <= to`. `None` when no such
/// interval exists (fewer than two instants around).
pub(crate) fn longest_gap(times: &[Instant], from: Instant, to: Instant) -> Option<Duration> {
    // The first interval that may count ends at the first instant at or after `from`.
    let first_end = times.partition_point(|t| *t < from).max(1);
    // The last that may count starts at the last instant at or before `to`.
    let last_start = times.partition_point(|t| *t <= to);
    times
        .get(first_end - 1..last_start.saturating_add(1).min(times.len()))?
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .max()
}

/// The last instant of `times` (sorted) before `t`.
pub(crate) fn last_before(times: &[Instant], t: Instant) -> Option<Instant> {
    let i = times.partition_point(|x| *x < t);
    i.checked_sub(1).map(|i| times[i])
}

/// The first instant of `times` (sorted) at or after `t`.
pub(crate) fn first_from(times: &[Instant], t: Instant) -> Option<Instant> {
    let i = times.partition_point(|x| *x < t);
    times.get(i).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: &[u64]) -> Vec<Instant> {
        ms.iter()
            .map(|&m| base + Duration::from_millis(m))
            .collect()
    }

    #[test]
    fn the_longest_gap_counts_intervals_overlapping_the_window() {
        let base = Instant::now();
        let times = at(base, &[0, 50, 100, 250, 300, 350, 700]);
        let ms = |m| base + Duration::from_millis(m);
        // [120, 200] lies inside the 100..250 interval.
        assert_eq!(
            longest_gap(&times, ms(120), ms(200)),
            Some(Duration::from_millis(150))
        );
        // [260, 340]: 250..300 and 300..350 overlap it, 350..700 does not.
        assert_eq!(
            longest_gap(&times, ms(260), ms(340)),
            Some(Duration::from_millis(50))
        );
        // [300, 360] touches 350..700.
        assert_eq!(
            longest_gap(&times, ms(310), ms(360)),
            Some(Duration::from_millis(350))
        );
        // Before every instant, after every instant, or one instant only: no interval.
        assert_eq!(longest_gap(&times, ms(800), ms(900)), None);
        assert_eq!(longest_gap(&times[..1], ms(0), ms(900)), None);
        assert_eq!(longest_gap(&[], ms(0), ms(900)), None);
        // The whole range.
        assert_eq!(
            longest_gap(&times, base, ms(1000)),
            Some(Duration::from_millis(350))
        );
    }

    #[test]
    fn neighbours_of_an_instant() {
        let base = Instant::now();
        let times = at(base, &[0, 50, 100]);
        let ms = |m| base + Duration::from_millis(m);
        assert_eq!(last_before(&times, ms(50)), Some(ms(0)));
        assert_eq!(last_before(&times, ms(0)), None);
        assert_eq!(first_from(&times, ms(50)), Some(ms(50)));
        assert_eq!(first_from(&times, ms(101)), None);
    }

    #[test]
    fn only_the_named_border_is_between_nodes() {
        let z = ZoneId::grid;
        assert!(crosses_column(z(1, 0), z(2, 0), 2));
        assert!(crosses_column(z(2, 4), z(1, 4), 2));
        assert!(!crosses_column(z(0, 0), z(1, 0), 2));
        assert!(!crosses_column(z(1, 0), z(0, 0), 2));
    }
}
