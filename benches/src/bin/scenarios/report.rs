//! Pure arithmetic of the report: medians with ranges, per-item CPU, the expected
//! number of entities in an area of interest, and the naive full-state encoding the
//! bandwidth scenario compares against.

use serde::Serialize;

/// Median, minimum and maximum of a few runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Spread {
    /// Median (mean of the middle two for an even count).
    pub(crate) median: f64,
    /// Smallest.
    pub(crate) min: f64,
    /// Largest.
    pub(crate) max: f64,
    /// Runs.
    pub(crate) n: usize,
}

impl Spread {
    /// The spread of `values` (NaN ignored); `None` when there is none.
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            f64::midpoint(v[mid - 1], v[mid])
        };
        Some(Self {
            median,
            min: v[0],
            max: v[v.len() - 1],
            n: v.len(),
        })
    }

    /// `median [min–max]` with `digits` decimals.
    pub(crate) fn show(&self, digits: usize) -> String {
        if self.n == 1 {
            return format!("{:.digits$} (1 run)", self.median);
        }
        format!(
            "{:.digits$} [{:.digits$}–{:.digits$}]",
            self.median, self.min, self.max
        )
    }
}

/// Shows an optional spread, `n/a` when absent.
pub(crate) fn show(spread: Option<Spread>, digits: usize) -> String {
    spread.map_or_else(|| "n/a".to_owned(), |s| s.show(digits))
}

/// CPU microseconds per item from a CPU rate (cores) and an item rate (per second).
pub(crate) fn per_item_us(cores: f64, items_per_s: f64) -> f64 {
    if items_per_s <= 0.0 {
        return f64::NAN;
    }
    cores / items_per_s * 1e6
}

/// Mean area of a disc of `radius` clipped to a square of `side`, over centres spread
/// uniformly in the square (what a uniformly placed observer sees of a uniformly
/// filled world). Midpoint rule, 64 centres per side by symmetry over a quarter, 256
/// strips per disc.
pub(crate) fn mean_visible_area(side: f64, radius: f64) -> f64 {
    assert!(
        side > 0.0 && radius >= 0.0,
        "bad world {side} or radius {radius}"
    );
    const CENTRES: usize = 64;
    let mut sum = 0.0;
    for i in 0..CENTRES {
        for j in 0..CENTRES {
            // A quarter of the square suffices: the clipped area is symmetric.
            let x = (i as f64 + 0.5) / CENTRES as f64 * side / 2.0;
            let y = (j as f64 + 0.5) / CENTRES as f64 * side / 2.0;
            sum += clipped_disc_area(x, y, radius, side);
        }
    }
    sum / (CENTRES * CENTRES) as f64
}

/// Area of the disc at (`x`, `y`) inside `[0, side]²`, by vertical strips.
fn clipped_disc_area(x: f64, y: f64, radius: f64, side: f64) -> f64 {
    const STRIPS: usize = 256;
    let (x0, x1) = ((x - radius).max(0.0), (x + radius).min(side));
    if x1 <= x0 {
        return 0.0;
    }
    let w = (x1 - x0) / STRIPS as f64;
    (0..STRIPS)
        .map(|k| {
            let sx = x0 + (k as f64 + 0.5) * w;
            let half = (radius * radius - (sx - x) * (sx - x)).max(0.0).sqrt();
            ((y + half).min(side) - (y - half).max(0.0)).max(0.0) * w
        })
        .sum()
}

/// Entities of a world of `side` holding `count` uniformly spread entities that one
/// observer sees within `radius`, on average.
pub(crate) fn expected_in_view(count: f64, side: f64, radius: f64) -> f64 {
    count / (side * side) * mean_visible_area(side, radius)
}

/// Entities a world must hold for `in_view` of them to be visible on average.
pub(crate) fn entities_for_view(in_view: f64, side: f64, radius: f64) -> f64 {
    in_view * side * side / mean_visible_area(side, radius)
}

/// Naive full-state bytes of one NPC per tick: id u64, kind u16, x/y f32, u16
/// component count (20) and its one component, `Hue` (u16 id + u16 length + 1 byte).
pub(crate) const NAIVE_NPC_BYTES: f64 = 25.0;
/// Naive header per packet: u32 sequence, u64 tick.
pub(crate) const NAIVE_PACKET_HEADER_BYTES: f64 = 12.0;
/// Packet payload the naive encoding fills (the snapshot bench's MTU).
pub(crate) const NAIVE_PACKET_BYTES: f64 = 1200.0;

/// Naive full-state bytes of one bot per tick: the 20 fixed bytes, `Nameplate`
/// (4 + 1 length byte + name), `Emote` (4 + 1) and `Coins` (4 + 1, zero coins).
pub(crate) fn naive_bot_bytes(name_len: usize) -> f64 {
    20.0 + (5.0 + name_len as f64) + 5.0 + 5.0
}

/// Length of the swarm's player names, `bot-RUNTAG-INDEX` (6-hex-digit tag), for the
/// typical index of `bots` bots.
pub(crate) fn bot_name_len(bots: u64) -> usize {
    let digits = bots.saturating_sub(1).max(1).to_string().len();
    "bot-".len() + 6 + 1 + digits
}

/// Naive full-state bytes per second one client receives seeing `npcs` NPCs and
/// `bots` bots every tick (formula in BENCHMARKS.md).
pub(crate) fn naive_bytes_per_s(npcs: f64, bots: f64, name_len: usize, tick_hz: f64) -> f64 {
    let body = npcs * NAIVE_NPC_BYTES + bots * naive_bot_bytes(name_len);
    let packets = (body / (NAIVE_PACKET_BYTES - NAIVE_PACKET_HEADER_BYTES))
        .ceil()
        .max(1.0);
    (body + packets * NAIVE_PACKET_HEADER_BYTES) * tick_hz
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_odd_even_and_nan() {
        let s = Spread::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = Spread::of([4.0, 1.0, f64::NAN, 2.0, 3.0]).unwrap();
        assert_eq!((s.median, s.n), (2.5, 4));
        assert_eq!(Spread::of([]), None);
        assert_eq!(Spread::of([f64::NAN]), None);
        assert_eq!(Spread::of([1.5]).unwrap().show(1), "1.5 (1 run)");
        assert_eq!(show(None, 1), "n/a");
    }

    #[test]
    fn per_item() {
        assert!((per_item_us(0.5, 10_000.0) - 50.0).abs() < 1e-9);
        assert!(per_item_us(0.5, 0.0).is_nan());
    }

    #[test]
    fn visible_area_far_from_edges_is_the_disc() {
        // A tiny disc in a huge world: edge effects vanish.
        let a = mean_visible_area(1e6, 10.0);
        assert!(
            (a / (std::f64::consts::PI * 100.0) - 1.0).abs() < 1e-3,
            "{a}"
        );
    }

    #[test]
    fn visible_area_of_a_disc_covering_the_world_is_the_world() {
        let a = mean_visible_area(10.0, 100.0);
        assert!((a - 100.0).abs() < 1e-6, "{a}");
    }

    #[test]
    fn edges_cut_the_view() {
        let full = std::f64::consts::PI * 64.0 * 64.0;
        let a = mean_visible_area(1024.0, 64.0);
        assert!(a < full && a > 0.85 * full, "{a} vs {full}");
        let n = expected_in_view(4000.0, 1024.0, 64.0);
        assert!(n > 40.0 && n < 49.1, "{n}");
        let total = entities_for_view(n, 1024.0, 64.0);
        assert!((total - 4000.0).abs() < 1e-6);
    }

    #[test]
    fn naive_encoding() {
        assert_eq!(bot_name_len(1000), 14);
        assert_eq!(bot_name_len(50), 13);
        assert!((naive_bot_bytes(14) - 49.0).abs() < 1e-9);
        // 40 NPCs and 10 bots: 1000 + 490 bytes in two packets (24 B of headers).
        let b = naive_bytes_per_s(40.0, 10.0, 14, 20.0);
        assert!((b - 20.0 * 1514.0).abs() < 1e-9, "{b}");
        // Nothing in view still costs one header a tick.
        assert!((naive_bytes_per_s(0.0, 0.0, 14, 20.0) - 240.0).abs() < 1e-9);
    }
}
