//! The load generator: real SDK clients sending `EVENT_ADD_COIN` and waiting for the
//! answer, either closed loop (each client keeps `window` requests outstanding and sends
//! the next when an answer arrives) or open loop (a fixed total rate released by the
//! [`Pacer`]; latency measured from each request's *intended* send time, so a stalled
//! server cannot hide its queueing: no coordinated omission).
//!
//! Every answer carries the player's new coin count; each client checks that the counts
//! it receives are consecutive, so a lost update on either server shows up as an error.

use super::pacer::{OpenLoopPlan, Pacer};
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout_at};
use zonemesh_client::{Client, ClientConfig, Event};
use zonemesh_server::demo::EVENT_ADD_COIN;

/// Clients sharing one UDP socket.
const CLIENTS_PER_ENDPOINT: usize = 32;
/// Time allowed after the measurement for outstanding answers to arrive.
const DRAIN: Duration = Duration::from_secs(2);
/// Most requests one open-loop client keeps outstanding (beyond it, sends wait, and
/// their latency still counts from the intended time).
const OPEN_LOOP_MAX_IN_FLIGHT: usize = 256;

/// What to run against a server.
#[derive(Debug, Clone)]
pub(crate) struct LoadSpec {
    /// Concurrent clients (players).
    pub(crate) clients: usize,
    /// Closed loop: requests each client keeps outstanding.
    pub(crate) window: usize,
    /// Open loop: total requests per second (`None`: closed loop).
    pub(crate) rate: Option<f64>,
    /// Unmeasured time at the start.
    pub(crate) warmup: Duration,
    /// Measured time.
    pub(crate) measure: Duration,
}

/// What one run measured.
#[derive(Debug)]
pub(crate) struct LoadResult {
    /// Answers received inside the measured interval, per second.
    pub(crate) throughput: f64,
    /// Latency of measured requests, microseconds.
    pub(crate) latency_us: Histogram<u64>,
    /// Open loop: how late measured requests left after their intended time,
    /// microseconds (the load generator's own lag, included in `latency_us`).
    pub(crate) send_lag_us: Histogram<u64>,
    /// Requests still unanswered when the drain time ran out.
    pub(crate) unanswered: u64,
    /// Answers whose count was not the previous one plus one.
    pub(crate) lost_updates: u64,
}

/// Where the clients connect.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) data_dir: PathBuf,
    /// Player names are `{prefix}-{i}`.
    pub(crate) prefix: String,
}

/// Connects `spec.clients` clients and runs the load; every client is closed after.
pub(crate) async fn run(target: &Target, spec: &LoadSpec) -> anyhow::Result<LoadResult> {
    let (endpoints, clients) = connect_all(target, spec.clients).await?;
    let start = Instant::now() + Duration::from_millis(100);
    let window = Window {
        from: start + spec.warmup,
        to: start + spec.warmup + spec.measure,
    };
    let (pacer, schedules) = schedules(spec.rate, clients.len(), start, window)?;
    let mut tasks = JoinSet::new();
    for (client, schedule) in clients.into_iter().zip(schedules) {
        let depth = spec.window;
        tasks.spawn(async move { drive(client, depth, schedule, start, window).await });
    }
    let mut total = ClientTally::new()?;
    while let Some(joined) = tasks.join_next().await {
        let tally = joined.context("a client task panicked")??;
        total.merge(&tally)?;
    }
    if let Some(pacer) = pacer {
        // Already done or about to be: its plan ends with the measured window.
        pacer.join()?;
    }
    for endpoint in endpoints {
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    }
    Ok(total.into_result(spec.measure))
}

/// One client's intended send times, from the pacer.
type Schedule = mpsc::Receiver<std::time::Instant>;

/// Open loop (`rate` given): the pacer and each client's schedule from it. Closed
/// loop: no pacer and no schedules.
fn schedules(
    rate: Option<f64>,
    clients: usize,
    start: Instant,
    window: Window,
) -> anyhow::Result<(Option<Pacer>, Vec<Option<Schedule>>)> {
    let Some(rate) = rate else {
        return Ok((None, (0..clients).map(|_| None).collect()));
    };
    let plan = OpenLoopPlan {
        rate,
        clients,
        start: start.into_std(),
        until: window.to.into_std(),
    };
    let (pacer, receivers) = Pacer::start(plan)?;
    Ok((Some(pacer), receivers.into_iter().map(Some).collect()))
}

/// Connects the clients over shared endpoints, concurrently.
async fn connect_all(
    target: &Target,
    n: usize,
) -> anyhow::Result<(Vec<quinn::Endpoint>, Vec<Client>)> {
    let endpoints = (0..n.div_ceil(CLIENTS_PER_ENDPOINT))
        .map(|_| Client::bind_endpoint(target.addr).context("cannot bind a client socket"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let endpoint = endpoints[i / CLIENTS_PER_ENDPOINT].clone();
        let config = client_config(target, &target.data_dir, i)?;
        tasks.spawn(async move { (i, Client::connect_with(&endpoint, config).await) });
    }
    let mut clients: Vec<Option<Client>> = (0..n).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, client) = joined.context("a connect task panicked")?;
        clients[i] = Some(client.with_context(|| format!("client {i} cannot connect"))?);
    }
    Ok((endpoints, clients.into_iter().flatten().collect()))
}

fn client_config(target: &Target, dir: &Path, i: usize) -> anyhow::Result<ClientConfig> {
    let name = format!("{}-{i}", target.prefix);
    let mut config = ClientConfig::from_dev_data(target.addr, dir, &name)
        .with_context(|| format!("cannot configure client {name}"))?;
    config.connect_deadline = Duration::from_secs(30);
    Ok(config)
}

/// One client's requests and answers: open loop when it has a schedule from the
/// pacer, else closed loop keeping `depth` requests outstanding.
async fn drive(
    mut client: Client,
    depth: usize,
    schedule: Option<Schedule>,
    start: Instant,
    window: Window,
) -> anyhow::Result<ClientTally> {
    let mut tally = ClientTally::new()?;
    let outcome = match schedule {
        None => closed_loop(&mut client, depth, start, window, &mut tally).await,
        Some(schedule) => open_loop(&mut client, schedule, window, &mut tally).await,
    };
    client.close().await;
    outcome.map(|()| tally)
}

/// The measured interval.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Instant,
    to: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.from && t < self.to
    }
}

/// Keeps `depth` requests outstanding until the window ends, then drains.
async fn closed_loop(
    client: &mut Client,
    depth: usize,
    start: Instant,
    window: Window,
    tally: &mut ClientTally,
) -> anyhow::Result<()> {
    sleep_until(start).await;
    let mut sent = VecDeque::with_capacity(depth);
    for _ in 0..depth {
        send(client, &mut sent, Instant::now()).await?;
    }
    // Bounded: ends at the drain deadline at the latest.
    while !sent.is_empty() {
        let Some(count) = next_answer(client, window.to + DRAIN).await? else {
            break;
        };
        let now = Instant::now();
        let sent_at = sent.pop_front().context("an answer nobody asked for")?;
        tally.answer(count, sent_at, now, window)?;
        if now < window.to {
            send(client, &mut sent, now).await?;
        }
    }
    tally.unanswered += sent.len() as u64;
    Ok(())
}

/// Sends each request when the pacer releases it (whatever the answers do), until
/// the pacer is done, then drains.
async fn open_loop(
    client: &mut Client,
    mut schedule: Schedule,
    window: Window,
    tally: &mut ClientTally,
) -> anyhow::Result<()> {
    let mut sent = VecDeque::new();
    let deadline = window.to + DRAIN;
    let mut sending = true;
    // Bounded: the pacer's plan ends at the window's end, waiting at the drain deadline.
    loop {
        if !sending && sent.is_empty() {
            break;
        }
        let may_send = sending && sent.len() < OPEN_LOOP_MAX_IN_FLIGHT;
        tokio::select! {
            due = schedule.recv(), if may_send => match due {
                Some(due) => {
                    let intended = Instant::from_std(due);
                    send(client, &mut sent, intended).await?;
                    tally.sent_late(intended, Instant::now(), window)?;
                }
                None => sending = false,
            },
            answer = next_answer(client, deadline) => {
                let Some(count) = answer? else { break };
                let intended = sent.pop_front().context("an answer nobody asked for")?;
                tally.answer(count, intended, Instant::now(), window)?;
            }
        }
    }
    tally.unanswered += sent.len() as u64;
    Ok(())
}

/// Sends one request, remembering the time its latency counts from.
async fn send(
    client: &mut Client,
    sent: &mut VecDeque<Instant>,
    counted_from: Instant,
) -> anyhow::Result<()> {
    client
        .send_game_event(EVENT_ADD_COIN, Vec::new())
        .await
        .context("cannot send a request")?;
    sent.push_back(counted_from);
    Ok(())
}

/// The next answer's coin count; `None` if none came before `deadline`. Cancel-safe.
async fn next_answer(client: &mut Client, deadline: Instant) -> anyhow::Result<Option<u32>> {
    // Bounded by the deadline; other events (entities in view) are skipped.
    loop {
        let event = match timeout_at(deadline, client.next_event()).await {
            Ok(event) => event,
            Err(_) => return Ok(None),
        };
        match event {
            Some(Event::GameEvent { kind, payload }) if kind == EVENT_ADD_COIN => {
                let bytes: [u8; 4] = payload
                    .as_slice()
                    .try_into()
                    .context("an answer without a u32 count")?;
                return Ok(Some(u32::from_le_bytes(bytes)));
            }
            Some(Event::Disconnected(reason)) => bail!("disconnected: {reason:?}"),
            Some(_) => {}
            None => bail!("the session ended"),
        }
    }
}

/// Counts and latencies of one client (or, merged, of all).
#[derive(Debug)]
struct ClientTally {
    measured: u64,
    latency_us: Histogram<u64>,
    send_lag_us: Histogram<u64>,
    unanswered: u64,
    lost_updates: u64,
    last_count: Option<u32>,
}

impl ClientTally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            measured: 0,
            latency_us: micros_histogram()?,
            send_lag_us: micros_histogram()?,
            unanswered: 0,
            lost_updates: 0,
            last_count: None,
        })
    }

    /// Records an answer to a request counted from `from`, received at `at`.
    fn answer(
        &mut self,
        count: u32,
        from: Instant,
        at: Instant,
        window: Window,
    ) -> anyhow::Result<()> {
        if self
            .last_count
            .is_some_and(|last| count != last.wrapping_add(1))
        {
            self.lost_updates += 1;
        }
        self.last_count = Some(count);
        // Throughput counts answers received in the window; latency, requests meant
        // to be sent in it.
        if window.contains(at) {
            self.measured += 1;
        }
        if window.contains(from) {
            record_micros(&mut self.latency_us, from, at)?;
        }
        Ok(())
    }

    /// Records how late a request meant for `intended` actually left (at `at`).
    fn sent_late(&mut self, intended: Instant, at: Instant, window: Window) -> anyhow::Result<()> {
        if window.contains(intended) {
            record_micros(&mut self.send_lag_us, intended, at)?;
        }
        Ok(())
    }

    fn merge(&mut self, other: &Self) -> anyhow::Result<()> {
        self.measured += other.measured;
        self.unanswered += other.unanswered;
        self.lost_updates += other.lost_updates;
        self.send_lag_us
            .add(&other.send_lag_us)
            .context("cannot merge histograms")?;
        self.latency_us
            .add(&other.latency_us)
            .context("cannot merge histograms")
    }

    fn into_result(self, measure: Duration) -> LoadResult {
        LoadResult {
            throughput: self.measured as f64 / measure.as_secs_f64(),
            latency_us: self.latency_us,
            send_lag_us: self.send_lag_us,
            unanswered: self.unanswered,
            lost_updates: self.lost_updates,
        }
    }
}

/// Longest time a histogram records: 60 s, in microseconds.
const HISTOGRAM_MAX_US: u64 = 60_000_000;

fn micros_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).context("cannot create a histogram")
}

/// Records the time from `from` to `at` (at least 1 µs, at most the histogram's range).
fn record_micros(histogram: &mut Histogram<u64>, from: Instant, at: Instant) -> anyhow::Result<()> {
    let us = u64::try_from(at.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX);
    histogram
        .record(us.clamp(1, HISTOGRAM_MAX_US))
        .context("cannot record a latency")
}
