//! Measurements, their raw lines, and the summary: medians with min–max over runs and
//! the stateful / stateless ratios next to the targets (≥ 20x throughput at
//! saturation, ≥ 10x lower p99 at half of the stateless maximum rate).

use super::load::{LoadResult, LoadSpec};
use super::subject::{Mode, SubjectReport};

/// Which phase a measurement belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Closed loop, throughput.
    Saturation,
    /// Open loop at a fixed rate, latency.
    Latency,
}

impl Phase {
    /// A short tag for player names and raw lines.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Self::Saturation => "sat",
            Self::Latency => "lat",
        }
    }
}

/// One measured point.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    phase: Phase,
    run: usize,
    store: String,
    mode: Mode,
    clients: usize,
    window: usize,
    rate: Option<f64>,
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Open loop: the load generator's p99 lag behind the intended send times.
    lag_p99_ms: f64,
    unanswered: u64,
    lost_updates: u64,
    server: SubjectReport,
}

impl Measurement {
    pub(crate) fn new(
        phase: Phase,
        run: usize,
        store: &str,
        mode: Mode,
        spec: &LoadSpec,
        result: &LoadResult,
        server: SubjectReport,
    ) -> Self {
        let ms = |q: f64| result.latency_us.value_at_quantile(q) as f64 / 1000.0;
        Self {
            phase,
            run,
            store: store.to_owned(),
            mode,
            clients: spec.clients,
            window: spec.window,
            rate: spec.rate,
            throughput: result.throughput,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: result.latency_us.max() as f64 / 1000.0,
            lag_p99_ms: result.send_lag_us.value_at_quantile(0.99) as f64 / 1000.0,
            unanswered: result.unanswered,
            lost_updates: result.lost_updates,
            server,
        }
    }

    /// One line with everything measured, for the record.
    pub(crate) fn raw_line(&self) -> String {
        format!(
            "raw phase={} run={} store={} mode={} clients={} window={} rate={} \
             throughput={:.0}/s p50={:.3}ms p99={:.3}ms max={:.2}ms send_lag_p99={:.3}ms unanswered={} \
             lost_updates={} store_writes={} server_errors={} tick_round={:.0}us",
            self.phase.tag(),
            self.run,
            store_name(&self.store),
            self.mode,
            self.clients,
            self.window,
            self.rate
                .map_or("closed".to_owned(), |r| format!("{r:.0}/s")),
            self.throughput,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.lag_p99_ms,
            self.unanswered,
            self.lost_updates,
            self.server.store_writes,
            self.server.errors,
            self.server.tick_round_us,
        )
    }
}

/// `embedded` or `postgres` (never the URL).
fn store_name(store: &str) -> &'static str {
    if store.starts_with("postgres") {
        "postgres"
    } else {
        "embedded"
    }
}

/// Median, min and max of some values.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Self {
            median,
            min: values[0],
            max: values[n - 1],
        }
    }

    fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} [{:.d$}–{:.d$}]",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

fn select<'a>(
    all: &'a [Measurement],
    phase: Phase,
    store: &'a str,
    mode: Mode,
) -> impl Iterator<Item = &'a Measurement> {
    all.iter()
        .filter(move |m| m.phase == phase && m.store == store && m.mode == mode)
}

/// Saturation throughput: per run the best point, then the spread over runs.
pub(crate) fn saturation(all: &[Measurement], store: &str, mode: Mode) -> Spread {
    let runs: Vec<usize> = select(all, Phase::Saturation, store, mode)
        .map(|m| m.run)
        .collect();
    let mut best = Vec::new();
    for run in dedup(runs) {
        let max = select(all, Phase::Saturation, store, mode)
            .filter(|m| m.run == run)
            .map(|m| m.throughput)
            .fold(0.0, f64::max);
        best.push(max);
    }
    Spread::of(best)
}

fn dedup(mut values: Vec<usize>) -> Vec<usize> {
    values.sort_unstable();
    values.dedup();
    values
}

/// Prints the per-point table, the saturation summary and the latency summary.
pub(crate) fn print_summary(all: &[Measurement], stores: &[String]) {
    println!("\n## Closed loop, throughput per point (answers/s, median [min–max] over runs)");
    for store in stores {
        print_points(all, store);
    }
    println!("\n## Saturation (best point per run; median [min–max])");
    println!("| store | stateless | stateful | ratio (target ≥ 20x) |");
    println!("|---|---:|---:|---:|");
    for store in stores {
        let sl = saturation(all, store, Mode::Stateless);
        let sf = saturation(all, store, Mode::Stateful);
        println!(
            "| {} | {} | {} | {:.1}x |",
            store_name(store),
            sl.show(0),
            sf.show(0),
            sf.median / sl.median.max(f64::MIN_POSITIVE)
        );
    }
    print_latency(all, stores);
}

fn print_points(all: &[Measurement], store: &str) {
    let mut points: Vec<(usize, usize)> = select(all, Phase::Saturation, store, Mode::Stateless)
        .map(|m| (m.clients, m.window))
        .collect();
    points.sort_unstable();
    points.dedup();
    println!("\n{}:", store_name(store));
    println!("| clients x window | stateless | stateful | stateful p50 / p99 ms |");
    println!("|---|---:|---:|---:|");
    for (c, w) in points {
        let at = |mode| {
            select(all, Phase::Saturation, store, mode)
                .filter(|m| m.clients == c && m.window == w)
                .collect::<Vec<_>>()
        };
        let tput = |ms: &[&Measurement]| Spread::of(ms.iter().map(|m| m.throughput).collect());
        let (sl, sf) = (at(Mode::Stateless), at(Mode::Stateful));
        let p50 = Spread::of(sf.iter().map(|m| m.p50_ms).collect());
        let p99 = Spread::of(sf.iter().map(|m| m.p99_ms).collect());
        println!(
            "| {c}x{w} | {} | {} | {:.1} / {:.1} |",
            tput(&sl).show(0),
            tput(&sf).show(0),
            p50.median,
            p99.median
        );
    }
}

fn print_latency(all: &[Measurement], stores: &[String]) {
    println!("\n## Open loop at half the stateless maximum (ms, median [min–max] over runs)");
    println!("| store | rate | mode | p50 | p99 | achieved/s | send lag p99 |");
    println!("|---|---:|---|---:|---:|---:|---:|");
    for store in stores {
        let mut p99s = [0.0; 3];
        let modes = [Mode::Stateless, Mode::Stateful, Mode::Floor];
        for (i, mode) in modes.into_iter().enumerate() {
            let ms: Vec<&Measurement> = select(all, Phase::Latency, store, mode).collect();
            let Some(rate) = ms.first().and_then(|m| m.rate) else {
                continue;
            };
            let p50 = Spread::of(ms.iter().map(|m| m.p50_ms).collect());
            let p99 = Spread::of(ms.iter().map(|m| m.p99_ms).collect());
            let got = Spread::of(ms.iter().map(|m| m.throughput).collect());
            let lag = Spread::of(ms.iter().map(|m| m.lag_p99_ms).collect());
            p99s[i] = p99.median;
            println!(
                "| {} | {rate:.0}/s | {mode} | {} | {} | {:.0} | {:.3} |",
                store_name(store),
                p50.show(3),
                p99.show(3),
                got.median,
                lag.median
            );
        }
        let ratio = |over: f64| p99s[0] / over.max(f64::MIN_POSITIVE);
        for (i, label) in [
            (1, "stateful (target ≥ 10x)"),
            (2, "floor (the most any server could reach)"),
        ] {
            println!(
                "| {} | | p99 stateless / {label}: of medians; per run | {:.2}x | {} | | |",
                store_name(store),
                ratio(p99s[i]),
                paired_p99_ratios(all, store, modes[i]).show(2)
            );
        }
    }
}

/// Stateless p99 over `mode`'s p99, run by run (the two ran back to back, so a noisy
/// stretch of the machine tends to hit both): the spread of those ratios.
fn paired_p99_ratios(all: &[Measurement], store: &str, mode: Mode) -> Spread {
    let ratios = select(all, Phase::Latency, store, Mode::Stateless)
        .filter_map(|base| {
            select(all, Phase::Latency, store, mode)
                .find(|m| m.run == base.run)
                .map(|m| base.p99_ms / m.p99_ms.max(f64::MIN_POSITIVE))
        })
        .collect();
    Spread::of(ratios)
}
