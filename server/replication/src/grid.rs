//! A uniform grid over entity positions for area-of-interest queries.
//!
//! The grid works in quantised position units ([`QPos`]), so cell assignment is exact
//! integer arithmetic. It covers exactly the bounding box of the states it was built
//! from and is stored densely (counting sort into one array), so a query touches a few
//! contiguous runs of memory. When positions are so spread out that the requested cell
//! size would need too many cells, the cells grow (doubling) until the grid fits a
//! bound proportional to the number of states: queries get slower, never wrong. Cell
//! sizes are powers of two (in steps), so placing a state in its cell is two shifts,
//! not two divisions: that is most of a rebuild's cost at 100,000 states.

use crate::state::ReplicatedState;
use zonemesh_shared::quant::{POSITION_STEP, QPos, Vec2};

/// Fewest cells the grid may always use, whatever the number of states.
const CELLS_MIN: usize = 4096;
/// Cells allowed per indexed state beyond [`CELLS_MIN`].
const CELLS_PER_STATE: usize = 2;

/// One indexed state: its index in the slice given to [`SpatialGrid::rebuild`] and its
/// position (kept here so queries need not touch the states).
#[derive(Debug, Clone, Copy)]
struct GridEntry {
    index: u32,
    pos: QPos,
}

/// Uniform grid over the positions of a tick's [`ReplicatedState`]s, answering "which
/// states lie within this circle". Rebuilt every tick; allocations are reused.
#[derive(Debug, Clone)]
pub struct SpatialGrid {
    /// Requested cell size: `1 << shift_requested` position steps.
    shift_requested: u32,
    /// Cell size in use: `1 << cell_shift` position steps (the requested size,
    /// doubled as needed).
    cell_shift: u32,
    /// Position (in steps) of the grid's minimum corner.
    origin: (i64, i64),
    cols: usize,
    rows: usize,
    /// `cell_start[c]..cell_start[c + 1]` are the entries of cell `c` (row-major).
    cell_start: Vec<u32>,
    /// Entries sorted by cell.
    entries: Vec<GridEntry>,
    /// Scratch: each state's cell and position during a rebuild, so placing the
    /// entries reads 12 bytes per state instead of the whole state again.
    cell_of: Vec<(u32, QPos)>,
}

impl SpatialGrid {
    /// An empty grid with cells about `cell_size` world units wide: the largest power
    /// of two position steps not above it, so at least half of it. About the
    /// area-of-interest radius is a good size: a query then scans 3x3 to 5x5 cells. A
    /// size that is not a positive finite number is treated as the smallest possible
    /// (one position step).
    pub fn new(cell_size: f32) -> Self {
        let steps = f64::from(cell_size) / f64::from(POSITION_STEP);
        let steps = if steps.is_finite() && steps >= 1.0 {
            steps.min(f64::from(u32::MAX)) as u64
        } else {
            1
        };
        let shift_requested = steps.ilog2();
        Self {
            shift_requested,
            cell_shift: shift_requested,
            origin: (0, 0),
            cols: 0,
            rows: 0,
            cell_start: vec![0],
            entries: Vec::new(),
            cell_of: Vec::new(),
        }
    }

    /// Cell size currently in use, in world units (larger than requested only when the
    /// states are spread too widely for a dense grid of the requested size).
    pub fn cell_size(&self) -> f32 {
        (self.cell_steps() as f64 * f64::from(POSITION_STEP)) as f32
    }

    /// Number of states indexed by the last rebuild.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the last rebuild indexed no state.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Indexes `states` (replacing the previous contents). Only the first `u32::MAX`
    /// states are indexed, since query results are `u32` indices.
    pub fn rebuild(&mut self, states: &[ReplicatedState]) {
        let n = states.len().min(u32::MAX as usize);
        let states = &states[..n];
        self.entries.clear();
        self.cell_of.clear();
        let Some((min, max)) = bounds(states) else {
            self.cols = 0;
            self.rows = 0;
            self.cell_start.clear();
            self.cell_start.push(0);
            return;
        };
        self.fit_cells(min, max, n);
        self.counting_sort(states);
    }

    /// Chooses the origin, cell size and dimensions covering `min..=max` (in steps).
    fn fit_cells(&mut self, min: (i64, i64), max: (i64, i64), n: usize) {
        let cells_max = CELLS_MIN.max(n.saturating_mul(CELLS_PER_STATE));
        self.origin = min;
        self.cell_shift = self.shift_requested;
        loop {
            let cols = ((max.0 - min.0) >> self.cell_shift) + 1;
            let rows = ((max.1 - min.1) >> self.cell_shift) + 1;
            // Positions span at most 2^33 steps, so this ends after about 33 doublings.
            if cols.saturating_mul(rows) <= cells_max as i64 {
                self.cols = cols as usize;
                self.rows = rows as usize;
                return;
            }
            self.cell_shift += 1;
        }
    }

    /// Sorts the states' indices by cell into `entries` and fills `cell_start`.
    fn counting_sort(&mut self, states: &[ReplicatedState]) {
        let n_cells = self.cols * self.rows;
        self.cell_start.clear();
        self.cell_start.resize(n_cells + 1, 0);
        for s in states {
            let cell = self.cell_index(s.pos);
            self.cell_of.push((cell as u32, s.pos));
            self.cell_start[cell + 1] += 1;
        }
        for c in 0..n_cells {
            self.cell_start[c + 1] += self.cell_start[c];
        }
        // Place each entry at its cell's cursor; `cell_start[c]` is used as the cursor
        // and restored below by shifting the array back one cell.
        let placeholder = GridEntry {
            index: 0,
            pos: QPos::default(),
        };
        self.entries.resize(states.len(), placeholder);
        for (i, &(cell, pos)) in self.cell_of.iter().enumerate() {
            let cell = cell as usize;
            let slot = self.cell_start[cell] as usize;
            self.entries[slot] = GridEntry {
                index: i as u32,
                pos,
            };
            self.cell_start[cell] += 1;
        }
        self.cell_start.copy_within(0..n_cells, 1);
        self.cell_start[0] = 0;
    }

    /// Cell size in use, in position steps.
    fn cell_steps(&self) -> i64 {
        1i64 << self.cell_shift
    }

    /// Row-major cell of a position inside the grid's bounds (so both offsets from the
    /// origin are at least 0: shifting them right is dividing by the cell size).
    fn cell_index(&self, pos: QPos) -> usize {
        let col = (i64::from(pos.x) - self.origin.0) >> self.cell_shift;
        let row = (i64::from(pos.y) - self.origin.1) >> self.cell_shift;
        row as usize * self.cols + col as usize
    }

    /// Replaces `out` with the indices (into the states of the last rebuild) of every
    /// state whose position is within `radius` world units of `center`, boundary
    /// included, measured exactly in `f64`. A non-finite center or a negative or NaN
    /// radius matches nothing. Order: by cell, row-major.
    pub fn query(&self, center: Vec2, radius: f32, out: &mut Vec<u32>) {
        out.clear();
        if self.entries.is_empty() || !center.is_finite() || radius.is_nan() || radius < 0.0 {
            return;
        }
        let step = f64::from(POSITION_STEP);
        let c = (f64::from(center.x) / step, f64::from(center.y) / step);
        let r = f64::from(radius) / step;
        let r2 = r * r;
        // One extra step of margin: the cell range only has to contain the circle.
        let Some((c0, c1)) = self.span(c.0 - r - 1.0, c.0 + r + 1.0, self.origin.0, self.cols)
        else {
            return;
        };
        let Some((r0, r1)) = self.span(c.1 - r - 1.0, c.1 + r + 1.0, self.origin.1, self.rows)
        else {
            return;
        };
        for row in r0..=r1 {
            let start = self.cell_start[row * self.cols + c0] as usize;
            let end = self.cell_start[row * self.cols + c1 + 1] as usize;
            for e in &self.entries[start..end] {
                let dx = f64::from(e.pos.x) - c.0;
                let dy = f64::from(e.pos.y) - c.1;
                if dx * dx + dy * dy <= r2 {
                    out.push(e.index);
                }
            }
        }
    }

    /// The inclusive range of cells along one axis overlapping `lo..=hi` (in steps), or
    /// `None` when the range misses the grid.
    fn span(&self, lo: f64, hi: f64, origin: i64, cells: usize) -> Option<(usize, usize)> {
        let size = self.cell_steps() as f64;
        let first = ((lo - origin as f64) / size).floor();
        let last = ((hi - origin as f64) / size).floor();
        let top = cells as f64 - 1.0;
        if last < 0.0 || first > top || first.is_nan() || last.is_nan() {
            return None;
        }
        Some((first.max(0.0) as usize, last.min(top) as usize))
    }
}

/// Bounding box of the states' positions in steps, `None` when there are none.
fn bounds(states: &[ReplicatedState]) -> Option<((i64, i64), (i64, i64))> {
    let first = states.first()?.pos;
    let mut min = (i64::from(first.x), i64::from(first.y));
    let mut max = min;
    for s in states {
        let (x, y) = (i64::from(s.pos.x), i64::from(s.pos.y));
        min = (min.0.min(x), min.1.min(y));
        max = (max.0.max(x), max.1.max(y));
    }
    Some((min, max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use zonemesh_shared::ids::NetId;

    fn states_at(points: &[(i32, i32)]) -> Vec<ReplicatedState> {
        points
            .iter()
            .enumerate()
            .map(|(i, &(x, y))| ReplicatedState::new(NetId(i as u64), 0, QPos { x, y }, vec![]))
            .collect()
    }

    fn brute_force(states: &[ReplicatedState], center: Vec2, radius: f32) -> Vec<u32> {
        if !center.is_finite() || radius.is_nan() || radius < 0.0 {
            return Vec::new();
        }
        let step = f64::from(POSITION_STEP);
        let r = f64::from(radius) / step;
        (0..states.len() as u32)
            .filter(|&i| {
                let p = states[i as usize].pos;
                let dx = f64::from(p.x) - f64::from(center.x) / step;
                let dy = f64::from(p.y) - f64::from(center.y) / step;
                dx * dx + dy * dy <= r * r
            })
            .collect()
    }

    fn query_sorted(grid: &SpatialGrid, center: Vec2, radius: f32) -> Vec<u32> {
        let mut out = vec![99];
        grid.query(center, radius, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn empty_grid_finds_nothing() {
        let mut grid = SpatialGrid::new(64.0);
        grid.rebuild(&[]);
        assert!(query_sorted(&grid, Vec2::ZERO, 1e9).is_empty());
        assert!(grid.is_empty());
    }

    #[test]
    fn boundary_is_inclusive_and_outside_is_excluded() {
        // 16 steps = 1 world unit.
        let states = states_at(&[(16, 0), (17, 0), (0, -16), (0, 0)]);
        let mut grid = SpatialGrid::new(0.5);
        grid.rebuild(&states);
        assert_eq!(query_sorted(&grid, Vec2::ZERO, 1.0), vec![0, 2, 3]);
    }

    #[test]
    fn bad_queries_find_nothing_and_bad_cell_size_still_works() {
        let states = states_at(&[(0, 0), (5, 5)]);
        let mut grid = SpatialGrid::new(f32::NAN);
        grid.rebuild(&states);
        assert!(query_sorted(&grid, Vec2::new(f32::NAN, 0.0), 10.0).is_empty());
        assert!(query_sorted(&grid, Vec2::ZERO, -1.0).is_empty());
        assert!(query_sorted(&grid, Vec2::ZERO, f32::NAN).is_empty());
        assert_eq!(query_sorted(&grid, Vec2::ZERO, f32::INFINITY), vec![0, 1]);
    }

    #[test]
    fn far_outliers_coarsen_cells_instead_of_exploding_memory() {
        let states = states_at(&[(i32::MIN, i32::MIN), (i32::MAX, i32::MAX), (0, 0)]);
        let mut grid = SpatialGrid::new(1.0);
        grid.rebuild(&states);
        assert!(grid.cols * grid.rows <= CELLS_MIN);
        assert!(grid.cell_size() > 1.0);
        assert_eq!(query_sorted(&grid, Vec2::ZERO, 1.0), vec![2]);
        let corner = QPos {
            x: i32::MAX,
            y: i32::MAX,
        }
        .to_world();
        assert_eq!(query_sorted(&grid, corner, 1.0), vec![1]);
    }

    #[test]
    fn rebuild_replaces_previous_contents() {
        let mut grid = SpatialGrid::new(4.0);
        grid.rebuild(&states_at(&[(0, 0), (1, 1), (2, 2)]));
        grid.rebuild(&states_at(&[(800, 800)]));
        assert_eq!(grid.len(), 1);
        assert!(query_sorted(&grid, Vec2::ZERO, 2.0).is_empty());
        assert_eq!(query_sorted(&grid, Vec2::new(50.0, 50.0), 0.1), vec![0]);
    }

    proptest! {
        #[test]
        fn query_matches_brute_force(
            points in proptest::collection::vec((-4000i32..4000, -4000i32..4000), 0..300),
            cell_size in 0.05f32..100.0,
            cx in -300.0f32..300.0,
            cy in -300.0f32..300.0,
            radius in 0.0f32..200.0,
        ) {
            let states = states_at(&points);
            let mut grid = SpatialGrid::new(cell_size);
            grid.rebuild(&states);
            let center = Vec2::new(cx, cy);
            prop_assert_eq!(query_sorted(&grid, center, radius), brute_force(&states, center, radius));
        }

        #[test]
        fn query_matches_brute_force_over_wide_ranges(
            points in proptest::collection::vec((any::<i32>(), any::<i32>()), 1..50),
            pick in any::<prop::sample::Index>(),
            radius in 0.0f32..1e8,
        ) {
            let states = states_at(&points);
            let mut grid = SpatialGrid::new(64.0);
            grid.rebuild(&states);
            let center = states[pick.index(states.len())].pos.to_world();
            prop_assert_eq!(query_sorted(&grid, center, radius), brute_force(&states, center, radius));
        }
    }
}
