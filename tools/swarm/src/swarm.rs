//! [`run`]: one swarm run. Binds the shared endpoints, spawns the bots along the ramp,
//! collects the shards every interval (interval log, progress line), stops everything
//! at the end of the run and builds the [`Report`].
//!
//! The run always ends by itself: bots stop at `duration`; those still busy after
//! [`SHUTDOWN_GRACE`] are aborted (and counted); endpoints get a bounded drain.

use crate::bot::{self, BotContext, Stop};
use crate::config::{ConfigError, Credentials, SwarmConfig};
use crate::histlog::{HistLogError, HistLogWriter, RunSummary};
use crate::metrics::{Hub, Metric, MetricSet};
use crate::own_cpu::CpuClock;
use crate::report::{Progress, Report};
use crate::server_figures::{ServerFigures, read_status};
use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinSet;
use zonemesh_client::{Client, ClientError, quinn};
use zonemesh_shared::status::NodeStatusReport;

/// How long bots get to close their sessions once the run is over.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long endpoints get to deliver the last close frames.
const ENDPOINT_DRAIN: Duration = Duration::from_secs(1);

/// Why a run could not start or could not write its log.
#[derive(Debug, Error)]
pub enum SwarmError {
    /// A setting is outside its limits.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The certificate or token secret could not be loaded.
    #[error("cannot load credentials: {0}")]
    Credentials(#[source] ClientError),
    /// A client endpoint could not be bound.
    #[error("cannot bind a client endpoint: {0}")]
    Endpoint(#[source] ClientError),
    /// The interval log could not be created or written.
    #[error("interval log: {0}")]
    HistLog(#[from] HistLogError),
    /// The server's admin endpoint (`--server-admin`) did not answer at the start.
    #[error("cannot read the server's status: {0}")]
    ServerAdmin(String),
}

/// Runs the swarm `config` describes until its duration passes or `shutdown`
/// completes, and reports what it measured.
pub async fn run(
    config: &SwarmConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Report, SwarmError> {
    config.validate()?;
    let credentials = Arc::new(Credentials::load(&config.auth).map_err(SwarmError::Credentials)?);
    let endpoints = bind_endpoints(config)?;
    let before = match &config.server_admin {
        Some(admin) => Some(read_status(admin).await.map_err(SwarmError::ServerAdmin)?),
        None => None,
    };
    let start = Instant::now();
    let cpu = CpuClock::start();
    let mut collector = Collector::new(config, start)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = Stop::new(start + config.duration, stop_rx);
    let mut bots = spawn_bots(
        config,
        &credentials,
        &endpoints,
        &collector.hub,
        &stop,
        start,
    );
    tracing::info!(bots = config.n_bots, servers = ?config.servers, "swarm started");
    collector
        .run_until_stop(config, start, &mut bots, shutdown)
        .await?;
    // The report's duration is the load phase; closing sessions and draining the
    // endpoints afterwards is not load.
    let duration = start.elapsed();
    let own_cpu = cpu.finish();
    if own_cpu.saturated {
        tracing::warn!(
            cores_used = own_cpu.cores_used,
            cores = own_cpu.cores_available,
            "the swarm saturated its cores: its figures include its own delays"
        );
    }
    let server = server_window(config, before.as_ref(), duration).await;
    let _ = stop_tx.send(true);
    collector.stop_bots(&mut bots).await;
    drain_endpoints(&endpoints).await;
    let mut report = collector.finish(start, duration)?;
    report.swarm = Some(own_cpu);
    match server {
        Some(Ok(figures)) => report.server = Some(figures),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "no server figures for this run");
            *report.errors.entry("server_status".to_owned()).or_default() += 1;
        }
        None => {}
    }
    Ok(report)
}

/// The server's figures from `before` to now, when its admin endpoint was given.
async fn server_window(
    config: &SwarmConfig,
    before: Option<&NodeStatusReport>,
    window: Duration,
) -> Option<Result<ServerFigures, String>> {
    let (admin, before) = (config.server_admin.as_ref()?, before?);
    Some(
        read_status(admin)
            .await
            .and_then(|after| ServerFigures::between(before, &after, window)),
    )
}

fn bind_endpoints(config: &SwarmConfig) -> Result<Vec<quinn::Endpoint>, SwarmError> {
    // Validation keeps every server in the first one's address family.
    let family_of = config.server_for(0);
    let n = config
        .n_endpoints
        .min(usize::try_from(config.n_bots).unwrap_or(usize::MAX));
    (0..n.max(1))
        .map(|_| Client::bind_endpoint(family_of).map_err(SwarmError::Endpoint))
        .collect()
}

fn spawn_bots(
    config: &SwarmConfig,
    credentials: &Arc<Credentials>,
    endpoints: &[quinn::Endpoint],
    hub: &Arc<Hub>,
    stop: &Stop,
    start: Instant,
) -> JoinSet<()> {
    // Another swarm process on the same server must not replace our sessions (one
    // session per player name), so names carry a random run tag.
    let run_tag = format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff);
    let mut bots = JoinSet::new();
    let all_servers: Arc<[std::net::SocketAddr]> = config.servers.clone().into();
    for index in 0..config.n_bots {
        let ctx = BotContext {
            index,
            player: config.player_name(&run_tag, index),
            server: config.server_for(index),
            all_servers: Arc::clone(&all_servers),
            endpoint: endpoints[index as usize % endpoints.len()].clone(),
            credentials: Arc::clone(credentials),
            recorder: hub.recorder(index),
            behavior: config.behavior,
            input_period: config.input_period(),
            churn_period: config.churn_period,
            connect_deadline: config.connect_deadline,
            replica_scope: config.replica_scope,
            start_at: start + ramp_offset(config, index),
            stop: stop.clone(),
            seed: config.seed.wrapping_add(u64::from(index)),
        };
        bots.spawn(bot::run(ctx));
    }
    bots
}

/// How many bots start on each server: the round-robin spread, by address.
fn bots_per_server(config: &SwarmConfig) -> BTreeMap<String, u64> {
    let n_servers = config.servers.len().max(1) as u64;
    let n_bots = u64::from(config.n_bots);
    let spread = config.servers.iter().enumerate().map(|(i, addr)| {
        // Bots i, i + n, i + 2n, ...: the first `n_bots % n` servers get one more.
        let extra = u64::from((i as u64) < n_bots % n_servers);
        (addr.to_string(), n_bots / n_servers + extra)
    });
    spread.collect()
}

/// Bot `index`'s start within the ramp: evenly spread, the first at once.
fn ramp_offset(config: &SwarmConfig, index: u32) -> Duration {
    config
        .ramp
        .mul_f64(f64::from(index) / f64::from(config.n_bots.max(1)))
}

async fn drain_endpoints(endpoints: &[quinn::Endpoint]) {
    for e in endpoints {
        e.close(0u32.into(), b"swarm done");
    }
    let idle = async {
        for e in endpoints {
            e.wait_idle().await;
        }
    };
    let _ = tokio::time::timeout(ENDPOINT_DRAIN, idle).await;
}

/// Gathers the shards every interval into the totals, the log and the progress line.
struct Collector {
    hub: Arc<Hub>,
    totals: MetricSet,
    interval: MetricSet,
    log: Option<HistLogWriter<BufWriter<File>>>,
    /// Where `log` goes, for error messages.
    log_path: Option<PathBuf>,
    /// Start of the interval being collected.
    interval_start: Instant,
    progress: bool,
    n_bots: u32,
    duration: Duration,
}

impl Collector {
    fn new(config: &SwarmConfig, start: Instant) -> Result<Self, SwarmError> {
        let log = match &config.hist_log {
            Some(path) => Some(open_log(path)?),
            None => None,
        };
        let mut totals = MetricSet::new();
        totals.counters.bots_requested = u64::from(config.n_bots);
        totals.counters.bots_per_server = bots_per_server(config);
        Ok(Self {
            hub: Hub::new(),
            totals,
            interval: MetricSet::new(),
            log,
            log_path: config.hist_log.clone(),
            interval_start: start,
            progress: config.progress,
            n_bots: config.n_bots,
            duration: config.duration,
        })
    }

    /// Collects every interval until the run's end, `shutdown`, or every bot is done.
    async fn run_until_stop(
        &mut self,
        config: &SwarmConfig,
        start: Instant,
        bots: &mut JoinSet<()>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), SwarmError> {
        let end = tokio::time::Instant::from_std(start + config.duration);
        let first_tick = tokio::time::Instant::from_std(start + config.interval);
        let mut ticks = tokio::time::interval_at(first_tick, config.interval);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(end) => return Ok(()),
                () = &mut shutdown => return Ok(()),
                _ = ticks.tick() => self.collect(start)?,
                joined = bots.join_next() => match joined {
                    Some(result) => self.reaped(result),
                    None => return Ok(()),
                },
            }
        }
    }

    /// Waits for the bots to close their sessions; aborts those that take too long.
    async fn stop_bots(&mut self, bots: &mut JoinSet<()>) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while let Ok(Some(result)) = tokio::time::timeout_at(deadline, bots.join_next()).await {
            self.reaped(result);
        }
        let n_stuck = bots.len() as u64;
        if n_stuck > 0 {
            tracing::warn!(n_stuck, "bots did not stop in time; aborting them");
            self.totals
                .counters
                .errors_n("bot/aborted_at_shutdown", n_stuck);
            bots.shutdown().await;
        }
    }

    fn reaped(&mut self, result: Result<(), tokio::task::JoinError>) {
        if let Err(e) = result {
            tracing::error!(error = %e, "bot task failed");
            let kind = if e.is_panic() {
                "bot/panicked"
            } else {
                "bot/cancelled"
            };
            self.totals.counters.error(kind);
        }
    }

    /// Ends the interval now: log it, add it to the totals, redraw progress.
    fn collect(&mut self, start: Instant) -> Result<(), SwarmError> {
        let now = Instant::now();
        self.interval.reset();
        self.hub.drain_into(&mut self.interval);
        let length = now.saturating_duration_since(self.interval_start);
        if let Some(log) = &mut self.log {
            let since_start = self.interval_start.saturating_duration_since(start);
            log.write_interval(&self.interval, since_start, length)?;
        }
        self.totals.add(&self.interval);
        self.interval_start = now;
        if self.progress {
            self.draw_progress(now.saturating_duration_since(start), length);
        }
        Ok(())
    }

    fn draw_progress(&self, elapsed: Duration, length: Duration) {
        let latency = self.totals.histogram(Metric::InputToVisible);
        let progress = Progress {
            elapsed,
            duration: self.duration,
            connected_now: self.hub.connected_now(),
            n_bots: self.n_bots,
            inputs_per_s: self.interval.counters.inputs_sent as f64
                / length.as_secs_f64().max(1e-3),
            p99_ms: (!latency.is_empty()).then(|| latency.value_at_quantile(0.99) as f64 / 1e3),
            n_errors: self.totals.counters.n_errors(),
        };
        // Clear the line and redraw in place; stderr is a terminal (checked by caller).
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", progress.line());
        let _ = err.flush();
    }

    /// The last interval, the counter line, and the report.
    fn finish(mut self, start: Instant, duration: Duration) -> Result<Report, SwarmError> {
        self.collect(start)?;
        if self.progress {
            eprintln!();
        }
        if let Some(mut log) = self.log.take() {
            log.write_summary(&RunSummary {
                duration_s: duration.as_secs_f64(),
                counters: self.totals.counters.clone(),
            })?;
            log.finish().map_err(|source| HistLogError::Io {
                path: self.log_path.clone().unwrap_or_default(),
                source,
            })?;
        }
        Ok(Report::build(&self.totals, duration, true))
    }
}

fn open_log(path: &Path) -> Result<HistLogWriter<BufWriter<File>>, SwarmError> {
    let file = File::create(path).map_err(|source| HistLogError::Io {
        path: path.to_owned(),
        source,
    })?;
    HistLogWriter::begin(BufWriter::new(file), SystemTime::now()).map_err(|source| {
        SwarmError::HistLog(HistLogError::Io {
            path: path.to_owned(),
            source,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Auth;

    #[test]
    fn the_ramp_spreads_bots_evenly_from_the_start() {
        let mut c = SwarmConfig::new(
            "127.0.0.1:1".parse().expect("addr"),
            Auth::DevData(".".into()),
        );
        c.n_bots = 4;
        c.ramp = Duration::from_secs(2);
        let offsets: Vec<_> = (0..4).map(|i| ramp_offset(&c, i)).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(offsets, vec![ms(0), ms(500), ms(1000), ms(1500)]);
        c.ramp = Duration::ZERO;
        assert_eq!(ramp_offset(&c, 3), Duration::ZERO);
    }

    #[test]
    fn bots_per_server_matches_the_round_robin_spread() {
        let mut c = SwarmConfig::new(
            "127.0.0.1:1".parse().expect("addr"),
            Auth::DevData(".".into()),
        );
        c.servers.push("127.0.0.1:2".parse().expect("addr"));
        c.servers.push("127.0.0.1:3".parse().expect("addr"));
        c.n_bots = 7;
        let mut by_hand = BTreeMap::<String, u64>::new();
        for i in 0..c.n_bots {
            *by_hand.entry(c.server_for(i).to_string()).or_default() += 1;
        }
        assert_eq!(bots_per_server(&c), by_hand);
        assert_eq!(by_hand.get("127.0.0.1:1"), Some(&3));
    }
}
